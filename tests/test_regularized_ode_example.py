"""Tests of examples/regularized_ode.py: its table, files and flags, on a few iterations.

Whether the regularisers lower the adaptive solver's evaluations is a result of
the full run (see the script's docstring), not asserted here.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))  # the examples import their helpers (_fit.py)
SCRIPT = ROOT / "examples" / "regularized_ode.py"
spec = importlib.util.spec_from_file_location("regularized_ode_example", SCRIPT)
regularized = importlib.util.module_from_spec(spec)
spec.loader.exec_module(regularized)

NUMBERS = (
    "train_loss",
    "test_loss",
    "adaptive_test_loss",
    "adaptive_test_accuracy",
    "kinetic_energy",
    "jacobian_norm",
    "final_objective",
)


def test_main_tabulates_every_configuration_and_writes_its_files(tmp_path, capsys):
    out = tmp_path / "run"
    threads = torch.get_num_threads()
    argv = ["--iterations", "3", "--log-every", "2", "--steer", "0.25", "--out", str(out)]
    results = regularized.main(argv)
    assert torch.get_num_threads() == threads  # --threads is set for the run only

    rows = results["rows"]
    assert [row["configuration"] for row in rows] == list(regularized.CONFIGURATIONS)
    for row in rows:
        assert all(math.isfinite(row[key]) for key in NUMBERS), row
        assert row["kinetic_energy"] > 0 and row["jacobian_norm"] > 0
        assert 0.0 <= row["adaptive_test_accuracy"] <= 1.0
        for key in ("evaluations", "accepted", "rejected"):
            assert isinstance(row[key], int) and not isinstance(row[key], bool)
        assert row["evaluations"] > 0 and row["accepted"] > 0 and row["rejected"] >= 0
        # dopri5: six new evaluations per attempted step
        assert row["evaluations"] >= 6 * (row["accepted"] + row["rejected"])
    weights = {row["configuration"]: row for row in rows}
    assert (weights["none"]["kinetic_weight"], weights["none"]["jacobian_weight"]) == (0.0, 0.0)
    assert weights["kinetic"]["kinetic_weight"] == 0.01
    assert weights["jacobian"]["jacobian_weight"] == 0.01
    assert weights["kinetic+jacobian"]["kinetic_weight"] == 0.01
    assert weights["kinetic+jacobian"]["jacobian_weight"] == 0.01
    assert weights["steer"]["steer"] == 0.25 and weights["none"]["steer"] == 0.0

    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    assert results["settings"]["iterations"] == 3
    markdown = (out / "table.md").read_text().splitlines()
    assert len(markdown) == 2 + len(rows)
    assert markdown[0].startswith("| configuration | train loss |") and "NFE" in markdown[0]
    for line, row in zip(markdown[2:], rows):
        assert line.startswith(f"| {row['configuration']} |")
        assert f"| {row['evaluations']} | {row['accepted']} | {row['rejected']} |" in line
    assert (out / "trajectories.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    printed = capsys.readouterr().out
    assert "configuration" in printed and "NFE (dopri5)" in printed
    assert all(f"\n{name} " in printed for name in regularized.CONFIGURATIONS)
    assert "configurations in" in printed


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--iterations", "0"], "argument --iterations: must be a positive integer, got '0'"),
        (["--kinetic=-0.1"], "argument --kinetic: must be a positive number, got '-0.1'"),
        (["--jacobian", "inf"], "argument --jacobian: must be a positive number, got 'inf'"),
        (["--steer", "1.5"], "argument --steer: must be a number in (0, 1), got '1.5'"),
        (["--steer", "abc"], "argument --steer: must be a number in (0, 1), got 'abc'"),
        (["--rtol", "0"], "argument --rtol: must be a positive number, got '0'"),
        (["--seed", "x"], "argument --seed: invalid int value: 'x'"),
    ],
)
def test_a_bad_flag_exits_with_a_one_line_error(argv, message, tmp_path, capsys):
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as raised:
        regularized.main([*argv, "--out", str(out)])
    assert raised.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error: " in last and last.endswith(message)
    assert not out.exists()
