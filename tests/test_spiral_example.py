"""Tests of examples/spiral_ode.py: outputs, the data generator, flags and a short fit."""

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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))  # the examples import their helpers (_fit.py)
SCRIPT = ROOT / "examples" / "spiral_ode.py"
spec = importlib.util.spec_from_file_location("spiral_ode_example", SCRIPT)
spiral = importlib.util.module_from_spec(spec)
spec.loader.exec_module(spiral)


def test_main_writes_the_figure_and_results_and_the_loss_falls(tmp_path, capsys):
    out = tmp_path / "run"
    results = spiral.main(["--iterations", "30", "--log-every", "10", "--out", str(out)])
    assert (out / "spiral.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    assert results["iterations"] == 30 and results["scheme"] == "rk4"
    assert math.isfinite(results["elapsed_seconds"]) and results["elapsed_seconds"] >= 0
    assert results["final_loss"] < results["initial_loss"]
    printed = capsys.readouterr().out
    assert "iteration     0  mse loss" in printed and "iteration    20  mse loss" in printed


def test_make_data_reproduces_the_true_ode():
    """Against torchdiffeq's adaptive dopri5 at tight tolerances, with A written out here."""
    from torchdiffeq import odeint

    a = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]], dtype=torch.float64)
    u0 = torch.tensor([[2.0, 0.0]], dtype=torch.float64)
    t = torch.linspace(0.0, 1.5, 16, dtype=torch.float64)
    reference = odeint(lambda _, u: (u**3) @ a.T, u0, t, rtol=1e-10, atol=1e-10, method="dopri5")

    data = spiral.make_data()
    assert data.shape == (16, 1, 2) and data.dtype == torch.float64
    assert spiral.sample_times() == pytest.approx(t.tolist(), abs=1e-12)
    torch.testing.assert_close(data, reference, rtol=0.0, atol=1e-6)
    # The check has teeth: the trajectory moves by O(1) between samples, and RK4
    # with only one step per sample interval is already off by far more than 1e-6.
    assert (reference[1:] - reference[:-1]).abs().max() > 0.5
    assert (spiral.make_data(substeps=1) - reference).abs().max() > 1e-3


def test_model_is_one_shared_field_on_the_refined_sample_grid():
    model = spiral.build_model("rk4", substeps=3)
    assert len(model.layers) == 1 and model.t_theta == (0.0,)
    assert model.num_steps == 45 and model.t[::3] == pytest.approx(spiral.sample_times())
    prediction = spiral.predict(model, torch.tensor([[2.0, 0.0]]))
    assert prediction.shape == (16, 1, 2)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--iterations", "0"], "argument --iterations: must be a positive integer, got '0'"),
        (["--substeps", "1.5"], "argument --substeps: must be a positive integer, got '1.5'"),
        (["--lr=-1e-3"], "argument --lr: must be a positive number, got '-1e-3'"),
        (["--lr", "nan"], "argument --lr: must be a positive number, got 'nan'"),
        (["--log-every", "-5"], "argument --log-every: must be a positive integer, got '-5'"),
        (["--scheme", "rk5"], "argument --scheme: invalid choice: 'rk5'"),
        (["--adaptive", "rk4"], "argument --adaptive: invalid choice: 'rk4'"),
        (["--adaptive", "tsit5", "--rtol", "0"], "argument --rtol: must be a positive number"),
    ],
)
def test_bad_flags_exit_with_a_message_naming_the_flag(argv, message, tmp_path, capsys):
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as raised:
        spiral.main([*argv, "--out", str(out)])
    assert raised.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_a_short_seeded_fit_lowers_the_loss_twentyfold():
    """300 Adam steps at lr 1e-2 with the default model (RK4, two steps per sample interval).

    Over seeds 0-5 the ratio initial/final loss at 300 steps was 85-185; an
    untrained or wrongly differentiated model stays near the initial loss.
    """
    data = spiral.make_data().float()
    torch.manual_seed(0)
    model = spiral.build_model()
    with contextlib.redirect_stdout(io.StringIO()):
        fit = spiral.train(model, data, iterations=300, lr=1e-2, log_every=100)
    assert fit["final_loss"] < fit["initial_loss"] / 20


def test_adaptive_training_solves_with_tsit5_and_lowers_the_loss(tmp_path):
    """--adaptive tsit5: every forward pass an adaptive solve in float64, read at the samples."""
    out = tmp_path / "adaptive"
    with contextlib.redirect_stdout(io.StringIO()):
        results = spiral.main(["--adaptive", "tsit5", "--iterations", "60", "--out", str(out)])
    assert (out / "spiral.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert results["adaptive"] == "tsit5" and results["rtol"] == 1e-7 and results["atol"] == 1e-9
    work = results["final_solve"]
    assert work["accepted"] > 0 and work["evaluations"] >= 6 * work["accepted"]
    assert results["final_loss"] < results["initial_loss"] / 2
