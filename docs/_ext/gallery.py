"""Sphinx extension: run the example scripts with small settings and keep their figures.

At ``builder-inited`` every script in :data:`EXAMPLES` runs (CPU, a few seconds
each) with its output folder under ``docs/_generated/gallery/<script>/``; the
page ``gallery.md`` shows the figures from there. A script that fails, or does
not write a figure it should, stops the build.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util import logging

LOGGER = logging.getLogger(__name__)

# script (in examples/), its small settings, the figures it must write
EXAMPLES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("spiral_ode", ("--iterations", "300", "--log-every", "100"), ("spiral.png",)),
    (
        "convergence_test",
        (
            "--trajectories",
            "32",
            "--test-trajectories",
            "16",
            "--iterations",
            "150",
            "--hidden",
            "32",
            "--log-every",
            "50",
        ),
        ("convergence.png",),
    ),  # fmt: skip
    (
        "implicit_1d",
        ("--seeds", "2", "--iterations", "300", "--log-every", "100"),
        ("fits.png", "losses.png"),
    ),
    (
        "implicit_spirals",
        ("--seeds", "2", "--iterations", "300", "--log-every", "100"),
        ("boundary.png", "losses.png"),
    ),
    ("vanishing_gradients", (), ("gradients.png", "loss.png")),
    ("custom_data", ("--overwrite",), ("curves.png",)),  # a rebuild finds the last run
    ("work_precision", ("--levels", "9"), ("work_precision.png",)),
    ("regularized_ode", (), ("trajectories.png",)),
)


def run_examples(app: Sphinx) -> None:
    root = Path(app.srcdir).parent
    out_root = Path(app.srcdir) / "_generated" / "gallery"
    env = {**os.environ, "PYTHONPATH": str(root)}
    for script, args, figures in EXAMPLES:
        out = out_root / script
        path = root / "examples" / f"{script}.py"
        command = [sys.executable, str(path), *args, "--out", str(out)]
        start = time.perf_counter()
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise ExtensionError(f"gallery: {script}.py failed:\n{result.stderr[-3000:]}")
        missing = [name for name in figures if not (out / name).is_file()]
        if missing:
            raise ExtensionError(f"gallery: {script}.py did not write {missing} in {out}")
        LOGGER.info(f"gallery: {script}.py ran in {time.perf_counter() - start:.1f} s")


def setup(app: Sphinx) -> dict:
    app.connect("builder-inited", run_examples)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
