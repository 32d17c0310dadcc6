"""Tests of examples/convergence_test.py: outputs, the data, flags and the finding itself."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import sys
from pathlib import Path

import pytest
import torch

import dynamicblocks as db

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))  # the examples import their helpers (_fit.py)
SCRIPT = ROOT / "examples" / "convergence_test.py"
spec = importlib.util.spec_from_file_location("convergence_test_example", SCRIPT)
example = importlib.util.module_from_spec(spec)
spec.loader.exec_module(example)

TINY = [
    "--iterations", "20", "--trajectories", "16", "--test-trajectories", "8", "--hidden", "8",
    "--intervals", "2", "--train-steps", "2", "--sweep-steps", "1,4", "--order-steps", "2,4",
    "--log-every", "10",
]  # fmt: skip


def _numbers(value):
    """Every number in a JSON-like structure (None counts, so that a dropped NaN is caught)."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from _numbers(item)
    elif value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        yield value


def test_main_writes_the_figures_and_results_with_finite_numbers(tmp_path, capsys):
    out = tmp_path / "run"
    results = example.main([*TINY, "--out", str(out)])
    for name in ("convergence.png", "cross_scheme.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    schemes = {"euler", "midpoint", "rk4"}
    for key in ("slopes", "error_at_h_train", "error_at_finest_h", "cross_scheme", "training"):
        assert set(results[key]) == schemes, key
    for trained in schemes:
        assert set(results["cross_scheme"][trained]) == schemes
    assert results["h_train"] == 0.5 and results["finest_h"] == 0.25
    assert results["settings"]["sweep_steps"] == [1, 2, 4]  # the training step count is added
    assert set(results["checks"]) == {
        "euler_overfits_h_train",
        "rk4_converges",
        "euler_field_poor_in_rk4",
        "rk4_field_good_in_every_scheme",
    }
    assert len(results["findings"]) == 5
    numbers = list(_numbers(results))
    assert numbers and all(x is not None and math.isfinite(x) for x in numbers)
    sweep = results["models"]["euler"]["sweep"]
    assert [row["steps"] for row in sweep] == [1, 2, 4]
    printed = capsys.readouterr().out
    assert "   euler  iteration     0  mse" in printed and "     rk4  iteration    20" in printed
    assert "euler-trained: error at h_train=0.5" in printed and "checks: " in printed


def test_true_trajectories_match_the_closed_form_and_dopri5():
    """``u(t) = e^{-0.1 t} R(2 t) u0`` (A written out here), and torchdiffeq at tight tolerances."""
    from torchdiffeq import odeint

    generator = torch.Generator().manual_seed(3)
    u0 = example.initial_states(5, 2.0, generator)
    data = example.true_trajectories(u0, 0.7, 6)
    assert data.shape == (7, 5, 2) and data.dtype == torch.float64
    assert torch.equal(data[0], u0)

    t = 0.7 * torch.arange(7, dtype=torch.float64)
    c, s = torch.cos(2 * t), torch.sin(2 * t)
    rotation = torch.stack([torch.stack([c, s], -1), torch.stack([-s, c], -1)], -2)
    closed = torch.exp(-0.1 * t)[:, None, None] * torch.einsum("kij,nj->kni", rotation, u0)
    torch.testing.assert_close(data, closed, rtol=0.0, atol=1e-12)

    a = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]], dtype=torch.float64)
    reference = odeint(lambda _, u: u @ a.T, u0, t, rtol=1e-11, atol=1e-11, method="dopri5")
    torch.testing.assert_close(data, reference, rtol=0.0, atol=1e-8)
    assert (data[1:] - data[:-1]).abs().max() > 0.5  # the states move: the check has teeth


def test_initial_states_fill_the_disk_reproducibly():
    states = example.initial_states(4000, 2.0, torch.Generator().manual_seed(0))
    radius = states.norm(dim=1)
    assert states.shape == (4000, 2) and radius.max() <= 2.0
    assert 0.2 < (radius < 1.0).double().mean() < 0.3  # uniform in area: a quarter inside r = 1
    again = example.initial_states(4000, 2.0, torch.Generator().manual_seed(0))
    assert torch.equal(states, again)


def test_rollout_equals_one_block_over_the_whole_horizon():
    """The field is autonomous (one control): K one-interval blocks are one block over [0, K D]."""
    torch.manual_seed(0)
    model = example.build_model("rk4", interval=0.5, train_steps=3, hidden=16, depth=2).double()
    assert len(model.layers) == 1 and model.num_steps == 3
    u0 = torch.randn(6, 2, dtype=torch.float64)
    states = example.rollout(model, u0, intervals=4)
    whole = db.DynamicBlock(model.layers[0], t=db.uniform_grid(0.0, 2.0, 12), scheme="rk4",
                            t_theta=(0.0,))  # fmt: skip
    with torch.no_grad():
        expected = whole(u0, return_trajectory=True)[::3]
    torch.testing.assert_close(states.detach(), expected, rtol=0.0, atol=1e-12)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--iterations", "0"], "argument --iterations: must be a positive integer, got '0'"),
        (["--train-steps", "1.5"], "argument --train-steps: must be a positive integer, got '1.5'"),
        (["--lr=-1e-3"], "argument --lr: must be a positive number, got '-1e-3'"),
        (["--interval", "nan"], "argument --interval: must be a positive number, got 'nan'"),
        (
            ["--sweep-steps", "1,x"],
            "argument --sweep-steps: must be comma-separated positive integers, got '1,x'",
        ),
        (
            ["--order-steps", "0,4"],
            "argument --order-steps: must be comma-separated positive integers, got '0,4'",
        ),
        (["--order-steps", "8"], "argument --order-steps: give at least two step counts"),
    ],
)
def test_bad_flags_exit_with_a_message_naming_the_flag(argv, message, tmp_path, capsys):
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as raised:
        example.main([*argv, "--out", str(out)])
    assert raised.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_euler_overfits_its_step_and_rk4_learns_an_ode(tmp_path):
    """The finding on small real settings (600 Adam steps at lr 2e-2, h_train = 0.25).

    Over seeds 0-4 (torch 2.13 CPU) the max errors against the truth were:
    Euler-trained 0.12-0.22 at h_train and 1.07-1.14 at h_train/64 (5.1-9.2x
    worse); RK4-trained 0.12-0.21 at h_train and 0.97-1.0 times that at
    h_train/64; the Euler field run with RK4 at h_train 1.08-1.15 (5x worse or
    more); the RK4 field run with Euler at h_train/64 within 10 % of its RK4
    error; orders to the own ODE 1.19-1.25, 1.98-2.00, 4.06-4.09.
    """
    argv = [
        "--iterations", "600", "--lr", "2e-2", "--trajectories", "64",
        "--test-trajectories", "32", "--hidden", "32", "--sweep-steps", "1,4,256",
        "--order-steps", "8,16", "--out", str(tmp_path),
    ]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        results = example.main(argv)
    at_train, finest = results["error_at_h_train"], results["error_at_finest_h"]
    # Euler: the trained step is the best one; refining makes it several times worse.
    assert finest["euler"] > 3 * at_train["euler"]
    assert results["models"]["euler"]["best_h"] == 0.25
    # RK4: refining does not hurt, and the limit is far closer to the truth than Euler's.
    assert finest["rk4"] < 1.2 * at_train["rk4"]
    assert finest["rk4"] < finest["euler"] / 3
    # Cross-scheme: the Euler field is poor in RK4, the RK4 field fine in Euler at small h.
    assert results["cross_scheme"]["euler"]["rk4"]["error_at_h_train"] > 3 * at_train["euler"]
    assert results["cross_scheme"]["rk4"]["euler"]["error_at_finest_h"] < 1.5 * at_train["rk4"]
    # Each model converges to its own ODE at its scheme's order.
    for scheme, order in (("euler", 1), ("midpoint", 2), ("rk4", 4)):
        assert results["slopes"][scheme] == pytest.approx(order, abs=0.35), scheme
