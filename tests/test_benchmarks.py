"""Smoke tests: every benchmark script runs with tiny arguments, so none can rot.

Timings depend on the machine and its load, so no test asserts on one: a timed
figure (a time, a throughput, a ratio of two) must only be a number >= 0. The
agreement checks, the saved-activation counts and the FLOPs are exact and are
checked as such.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from handwritten import build_pair  # noqa: E402
from ode_libraries import importable  # noqa: E402


def run_benchmark(name: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(ROOT / "benchmarks" / name), *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def timed(cell: str) -> float:
    """A timed figure of a benchmark's table: any finite number >= 0, never its size."""
    value = float(cell)
    assert math.isfinite(value) and value >= 0, cell
    return value


@pytest.mark.parametrize("depth", ["14"])
def test_overhead_benchmark_checks_agreement_and_prints_ratios(depth):
    out = run_benchmark(
        "overhead.py", "--depth", depth, "--batch-size", "4", "--repeats", "1", "--warmup", "0"
    )
    assert "outputs agree to 0.0e+00" in out
    rows = [line.split() for line in out.splitlines() if line.startswith(("train", "inference"))]
    assert len(rows) == 2
    for row in rows:  # library ms, hand ms, ratio
        for cell in row[-3:]:
            timed(cell)


def test_ode_libraries_benchmark_checks_agreement_and_prints_ratios():
    out = run_benchmark(
        "ode_libraries.py", "--sizes", "small", "--steps", "2", "--repeats", "1",
        "--min-time", "0.001",
    )  # fmt: skip
    rows = [line.split() for line in out.splitlines() if line.startswith("small")]
    peers = {"torchdiffeq"} | ({"torchdyn"} if importable("torchdyn") else set())
    assert {row[1] for row in rows} == peers and len(rows) == 2 * len(peers)
    for row in rows:
        assert float(row[4]) <= 1e-4  # agreement before timing
        times = [timed(cell) for cell in row[5:]]  # peer ms, then (ms, ratio) per variant
        assert len(times) == (7 if row[1] == "torchdiffeq" else 3)


def test_compile_benchmark_compiles_fullgraph_and_prints_speedup():
    out = run_benchmark(
        "compile.py", "--models", "preact_resnet8", "--batch-size", "2", "--repeats", "1",
        "--warmup", "0",
    )  # fmt: skip
    (row,) = [line.split() for line in out.splitlines() if line.startswith("preact_resnet8")]
    assert float(row[1]) <= 1e-4  # the losses agree before timing
    for cell in row[2:]:  # compile s, eager ms, compiled ms, speed-up
        timed(cell)


def test_depth_scaling_benchmark_prints_per_step_costs_and_fits():
    out = run_benchmark(
        "depth_scaling.py", "--steps", "1", "2", "--batch-size", "2", "--repeats", "1"
    )
    rows = [line.split() for line in out.splitlines() if line.startswith(("euler", "rk4"))]
    table = [row for row in rows if row[1] != "fit"]
    assert [(row[0], row[1]) for row in table] == [
        ("euler", "1"), ("euler", "2"), ("rk4", "1"), ("rk4", "2")
    ]  # fmt: skip
    for row in table:  # time s, ms/n
        timed(row[2]), timed(row[3])
    saved = {(row[0], row[1]): float(row[4]) for row in table}
    for scheme in ("euler", "rk4"):  # activations grow with the steps; RK4 keeps more
        assert saved[scheme, "2"] > saved[scheme, "1"] > 0
    assert saved["rk4", "2"] - saved["rk4", "1"] > 3 * (saved["euler", "2"] - saved["euler", "1"])
    assert sum(row[1] == "fit" for row in rows) >= 4


def test_gpu_benchmark_dry_run_on_cpu():
    out = run_benchmark(
        "gpu.py", "--device", "cpu", "--amp", "none", "--no-compile", "--no-channels-last",
        "--models", "preact_resnet8", "rknet", "--batch-size", "2", "--repeats", "1",
        "--min-time", "0",
    )  # fmt: skip
    rows = [line.split() for line in out.splitlines() if line.startswith(("preact", "rknet"))]
    assert [row[0] for row in rows] == ["preact_resnet8", "rknet"]
    for row in rows:  # agreement, images/s and ratio, FLOPs; no peak known for a CPU
        assert float(row[1]) <= 1e-4
        for cell in row[2:5]:  # library and hand-written images/s, their ratio
            timed(cell)
        assert float(row[5]) > 0  # GFLOP per image: counted, not timed
        assert row[6:] == ["-", "-"]


@pytest.mark.parametrize("name", ["rknet", "preact_resnet8"])
def test_hand_written_twins_compute_the_library_networks(name):
    """The benchmarks' baselines (e.g. RK4 written as ``(k1 + 2k2 + 2k3 + k4) / 6``)."""
    torch.manual_seed(0)
    library, hand = (model.double() for model in build_pair(name))
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    for training in (True, False):
        library.train(training), hand.train(training)
        torch.testing.assert_close(library(x), hand(x), rtol=1e-10, atol=1e-10)


def test_memory_benchmark_prints_every_mode_with_ratios_to_full():
    out = run_benchmark(
        "memory.py", "--steps", "1", "2", "--batch-size", "2", "--repeats", "1", "--widths", "4",
        "8", "--threads", "1", "--target-steps", "2",
    )  # fmt: skip
    networks = ("parabolic", "hamiltonian", "reversible_heun", "alf")
    rows = [line.split() for line in out.splitlines() if line.startswith(networks)]
    rows = [row for row in rows if row[1].isdigit()]  # not the "peak without the blocks" lines
    modes = {(row[0], row[2]) for row in rows}
    assert modes == {
        ("parabolic", "full"), ("parabolic", "checkpoint"), ("parabolic", "adjoint"),
        ("hamiltonian", "full"), ("hamiltonian", "checkpoint"), ("hamiltonian", "reversible"),
        ("reversible_heun", "full"), ("reversible_heun", "checkpoint"),
        ("reversible_heun", "reversible"),
        ("alf", "full"), ("alf", "checkpoint"), ("alf", "reversible"),
    }  # fmt: skip
    assert len(rows) == 24
    for row in rows:
        timed(row[3]), timed(row[4])  # time s and its ratio to full
        assert float(row[5]) > 0  # saved MB: counted, not timed
        if row[2] == "full":
            assert float(row[4]) == 1.0
    saved = {(row[0], row[1], row[2]): float(row[5]) for row in rows}
    for network in ("reversible_heun", "alf"):  # reversible keeps no more as the steps grow
        assert saved[network, "2", "full"] > saved[network, "1", "full"]
        assert saved[network, "2", "reversible"] == saved[network, "1", "reversible"]
    # the summary: one line per mode with a target, each ratio with its verdict
    summary = out.split("targets at 2 steps per block")[1].splitlines()[1:]
    assert [line.split()[:2] for line in summary] == [
        ["parabolic", "checkpoint"], ["parabolic", "adjoint"],
        ["hamiltonian", "checkpoint"], ["hamiltonian", "reversible"],
        ["reversible_heun", "checkpoint"], ["reversible_heun", "reversible"],
        ["alf", "checkpoint"], ["alf", "reversible"],
    ]  # fmt: skip
    for line in summary:
        verdicts = re.findall(r"(\S+) \(target <= [0-9.]+\) (met|MISSED|not measured)", line)
        assert len(verdicts) == (1 if "adjoint" in line else 2), line
        for ratio, verdict in verdicts:  # measured, so any finite number ("-": no probe)
            assert (ratio == "-") == (verdict == "not measured"), line
            assert ratio == "-" or math.isfinite(float(ratio)), line


def test_methods_benchmark_prints_ratios_and_exact_saved_states():
    out = run_benchmark(
        "methods.py", "--batch-size", "2", "--channels", "4", "--size", "8", "--features", "4",
        "--hidden", "8", "--mlp-batch", "8", "--reference-steps", "256", "--memory-steps", "1",
        "3", "9", "16", "--repeats", "1", "--warmup", "0", "--min-time", "0", "--threads", "1",
    )  # fmt: skip
    _, imex, multistep, memory = (  # a line of versions, then the three tables
        [line.split() for line in section.splitlines()] for section in out.strip().split("\n\n")
    )
    imex = [row for row in imex if row[0] == "4"]
    multistep = {row[0]: row for row in multistep if row[0] in ("rk4", "ab4", "ab3")}
    memory = [row for row in memory if row[0].startswith("ab")]
    # 1. one step of each scheme: fwd ms, ratio to euler, train ms, ratio to euler
    assert [row[1] for row in imex] == ["euler", "imex_euler", "ars222"]
    for row in imex:
        assert len(row) == 6
        for cell in row[2:]:
            timed(cell)
    assert imex[0][3] == imex[0][5] == "1.000"
    # 2. fewest steps to 1e-6: evaluations exact (ab<s> starts with s - 1 steps of an
    # order-s Runge-Kutta scheme of s stages), errors within the tolerance
    assert list(multistep) == ["rk4", "ab4", "ab3"]
    for scheme, (_, steps, evals, error, at_rk4_steps, ms, ratio) in multistep.items():
        n = int(steps)
        if scheme == "rk4":
            assert int(evals) == 4 * n
        else:
            order = int(scheme[2])
            starts = min(n, order - 1)
            assert int(evals) == order * starts + n - starts
        assert float(error) <= 1e-6 and float(at_rk4_steps) >= 0
        timed(ms), timed(ratio)
    rk4 = multistep["rk4"]
    assert rk4[3] == rk4[4] and rk4[6] == "1.000"
    assert float(multistep["ab4"][4]) > float(rk4[4])  # larger error at RK4's steps
    # 3. saved for backward: per checkpointed segment x and the slopes carried; in full
    # mode every evaluation's input and hidden activation (hidden 8 = 2 states of 4)
    state_mb = 8 * 4 * 8 / 2**20  # batch 8, 4 features, float64
    assert len(memory) == 4 * 4 * 2
    for scheme, steps, segments, mode, storages, states, mb in memory:
        order, n = int(scheme[2]), int(steps)
        if mode == "checkpoint":
            length = math.isqrt(n - 1) + 1  # ceil(sqrt(n)) steps per segment
            assert int(segments) == math.ceil(n / length)
            expected = sum(1 + min(k, order - 1) for k in range(0, n, length))
            assert int(storages) == int(states) == expected, (scheme, n)
        else:
            assert mode == "full" and segments == "-"
            starts = min(n, order - 1)
            evaluations = order * starts + n - starts
            assert int(storages) == 2 * evaluations and int(states) == 3 * evaluations
        assert math.isclose(float(mb), int(states) * state_mb, rel_tol=1e-2)


def test_adaptive_benchmark_matches_torchdiffeqs_evaluations():
    out = run_benchmark(
        "adaptive.py", "--batches", "1", "--hidden", "8", "--horizon", "2",
        "--repeats", "1", "--min-time", "0", "--threads", "1",
    )  # fmt: skip
    rows = [line.split() for line in out.splitlines() if line.startswith(("spiral", "mlp"))]
    found = {(row[0], row[2], row[3]): row for row in rows}
    for problem in ("spiral", "mlp"):
        ours, peer = found[problem, "db", "dopri5"], found[problem, "torchdiffeq", "dopri5"]
        assert ours[4] == peer[4]  # the same field evaluations as torchdiffeq
        assert float(ours[5]) < 1e-5  # against a tight reference
        assert ours[7] == "1.000"
        for row in (ours, peer):
            timed(row[6]), timed(row[7]), timed(row[8])


def test_regularizers_benchmark_prints_costs_against_the_plain_step():
    out = run_benchmark(
        "regularizers.py", "--batch-size", "2", "--widths", "4", "8", "8", "--features", "2",
        "--hidden", "8", "--mlp-batch", "8", "--mlp-steps", "2", "--repeats", "1", "--warmup",
        "0", "--min-time", "0", "--threads", "1",
    )  # fmt: skip
    rows = [line.split() for line in out.splitlines() if line.startswith(("rknet", "mlp2"))]
    variants = ["none", "kinetic", "kinetic+1probe", "kinetic+2probes"]
    assert [row[:2] for row in rows] == [[net, v] for net in ("rknet", "mlp2") for v in variants]
    evaluations = {"rknet": 2 * 4 * 4, "mlp2": 2 * 4}  # blocks x steps x RK4 stages
    for network, variant, evals, kinetic, jacobian, ms, ratio, target, met in rows:
        assert int(evals) == evaluations[network]  # counted, not timed
        assert (kinetic == "-") == (variant == "none")
        assert (jacobian == "-") == ("probe" not in variant)
        for value in (kinetic, jacobian):
            assert value == "-" or float(value) > 0
        timed(ms), timed(ratio)
        if variant == "none":
            assert ratio == "1.000"
        if variant in ("kinetic", "kinetic+1probe"):
            assert float(target) > 1 and met in ("yes", "no")
        else:
            assert target == met == "-"
    assert sum(line.startswith("  ") for line in out.split("targets")[-1].splitlines()) == 4
