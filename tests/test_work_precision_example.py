"""Tests of examples/work_precision.py: its points, orders and figure."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
SCRIPT = ROOT / "examples" / "work_precision.py"
spec = importlib.util.spec_from_file_location("work_precision_example", SCRIPT)
work_precision = importlib.util.module_from_spec(spec)
spec.loader.exec_module(work_precision)


def test_points_figure_and_the_shape_of_the_curves(tmp_path):
    with contextlib.redirect_stdout(io.StringIO()):
        points = work_precision.main(["--levels", "6", "--out", str(tmp_path)])
    assert (tmp_path / "work_precision.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "results.json").is_file()
    fixed = {(p["scheme"], p["steps"]): p for p in points if p["mode"] == "fixed"}
    # evaluations of a fixed grid: live stages per step times steps (dopri5: 6 of 7)
    assert fixed["rk4", 64]["evaluations"] == 4 * 64
    assert fixed["dopri5", 64]["evaluations"] == 6 * 64
    # fourth order at least: 32 -> 64 steps divides the error by 16 or more (28.5 here)
    assert 14 < fixed["rk4", 32]["error"] / fixed["rk4", 64]["error"] < 40
    adaptive = [p for p in points if p["mode"] == "adaptive" and p["scheme"] == "dopri5"]
    errors = [p["error"] for p in adaptive]
    assert errors[-1] < 1e-8 and errors[-1] < errors[3] < errors[0]  # tighter: smaller errors
    evaluations = [p["evaluations"] for p in adaptive]
    assert evaluations[-1] > evaluations[3] > evaluations[1]
