"""Smoke tests: every benchmark script runs with tiny arguments, so none can rot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_benchmark(name: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(ROOT / "benchmarks" / name), *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize("depth", ["14"])
def test_overhead_benchmark_checks_agreement_and_prints_ratios(depth):
    out = run_benchmark(
        "overhead.py", "--depth", depth, "--batch-size", "4", "--repeats", "1", "--warmup", "0"
    )
    assert "outputs agree to 0.0e+00" in out
    rows = [line.split() for line in out.splitlines() if line.startswith(("train", "inference"))]
    assert len(rows) == 2 and all(float(row[-1]) > 0 for row in rows)
