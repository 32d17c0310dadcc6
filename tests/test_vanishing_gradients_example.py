"""Tests of examples/vanishing_gradients.py: outputs, data, the residual block, gradients, flags."""

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
SCRIPT = ROOT / "examples" / "vanishing_gradients.py"
spec = importlib.util.spec_from_file_location("vanishing_gradients_example", SCRIPT)
vg = importlib.util.module_from_spec(spec)
spec.loader.exec_module(vg)

PNG = b"\x89PNG\r\n\x1a\n"


def hand_written(weights, x, network):
    """The three networks written out with torch ops on the raw (unpadded) weights."""
    (w1, b1), (w2, b2), (w3, b3), (w4, b4) = weights
    width = w1.shape[0]

    def tanh_layer(h, w, b):
        return torch.tanh(h @ w.T + b)

    if network == "plain":
        h = tanh_layer(tanh_layer(tanh_layer(x, w1, b1), w2, b2), w3, b3)
    else:
        stream = torch.cat([x, torch.zeros(len(x), width - 1)], dim=1)  # x zero-padded
        if network == "each":
            h = stream + tanh_layer(x, w1, b1)
            h = h + tanh_layer(h, w2, b2)
            h = h + tanh_layer(h, w3, b3)
        else:  # "chain": one skip around all three
            h = stream + tanh_layer(tanh_layer(tanh_layer(x, w1, b1), w2, b2), w3, b3)
    return h @ w4.T + b4


def independent_gradient_norms(weights, x, y, network):
    leaves = [(w.clone().requires_grad_(), b.clone().requires_grad_()) for w, b in weights]
    loss = ((hand_written(leaves, x, network) - y) ** 2).mean()
    grads = torch.autograd.grad(loss, [p for pair in leaves for p in pair])
    return [
        math.sqrt(grads[2 * k].pow(2).sum().item() + grads[2 * k + 1].pow(2).sum().item())
        for k in range(4)
    ]


def test_main_writes_the_figures_and_results(tmp_path, capsys):
    out = tmp_path / "run"
    results = vg.main(["--epochs", "3", "--seeds", "2", "--out", str(out)])
    for name in ("gradients.png", "loss.png"):
        assert (out / name).read_bytes()[:8] == PNG
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    assert results["seeds"] == [0, 1] and results["epochs"] == 3 and results["lr"] == 1e-3
    assert results["width"] == 1 and results["skip"] == "each" and results["batch_size"] == 8
    # Three epochs reach MSE < 0.01 for neither network (initial MSE > 1 for both seeds).
    assert results["epochs_to_target"] == {"plain": [None, None], "residual": [None, None]}
    for run in results["runs"]:
        for name in ("plain", "residual"):
            r = run[name]
            assert r["note"] == "MSE not below 0.01 within 3 epochs"
            assert len(r["mse_history"]) == 4 and r["final_mse"] == r["mse_history"][-1]
            assert len(r["gradient_norms"]) == 4
    assert results["gradient_norms"]["plain"][1] == results["runs"][1]["plain"]["gradient_norms"]
    printed = capsys.readouterr().out
    assert "> 3 (not reached)" in printed and "residual" in printed


def test_data_is_the_identity_on_the_integers_minus_ten_to_ten():
    x, y = vg.make_data()
    assert x.shape == y.shape == (21, 1) and x.dtype == torch.float32
    assert x[:, 0].tolist() == list(range(-10, 11))
    assert torch.equal(x, y)


def test_initial_weights_are_flux_glorot_uniform_with_zero_bias():
    weights = vg.initial_weights(width=5, seed=3)
    assert [tuple(w.shape) for w, _ in weights] == [(5, 1), (5, 5), (5, 5), (1, 5)]
    for w, b in weights:
        bound = math.sqrt(6.0 / sum(w.shape))
        assert w.abs().max() <= bound and w.abs().max() > bound / 3
        assert torch.equal(b, torch.zeros(w.shape[0]))
    again = vg.initial_weights(width=5, seed=3)
    assert all(torch.equal(w, v) for (w, _), (v, _) in zip(weights, again))
    assert not torch.equal(vg.initial_weights(width=5, seed=4)[1][0], weights[1][0])


@pytest.mark.parametrize("width", [1, 3])
def test_residual_block_is_the_hand_written_skip_loop(width):
    weights = vg.initial_weights(width, seed=1)
    x, _ = vg.make_data()
    model = vg.ResidualNet(weights, skip="each")
    assert isinstance(model.block, db.DynamicBlock) and len(model.block.layers) == 3
    assert model.block.t == (0.0, 1.0, 2.0, 3.0) and model.block.tableau.name == "euler"

    (w1, b1), (w2, b2), (w3, b3), _ = weights
    h = torch.cat([x, torch.zeros(21, width - 1)], dim=1)
    for w, b in ((torch.nn.functional.pad(w1, (0, width - 1)), b1), (w2, b2), (w3, b3)):
        h = h + torch.tanh(h @ w.T + b)
    with torch.no_grad():
        torch.testing.assert_close(model.block(model.pad(x)), h, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(model(x), hand_written(weights, x, "each"))
        torch.testing.assert_close(
            vg.ResidualNet(weights, skip="chain")(x), hand_written(weights, x, "chain")
        )
        torch.testing.assert_close(vg.PlainNet(weights)(x), hand_written(weights, x, "plain"))
        # The skips matter: the residual output is far from the plain one.
        assert (model(x) - vg.PlainNet(weights)(x)).abs().max() > 1.0


def test_reported_gradient_norms_equal_independent_autograd(tmp_path):
    with contextlib.redirect_stdout(io.StringIO()):
        results = vg.main(["--epochs", "1", "--seed", "2", "--out", str(tmp_path)])
    x, y = vg.make_data()
    weights = vg.initial_weights(1, seed=2)
    for name, network in (("plain", "plain"), ("residual", "each")):
        expected = independent_gradient_norms(weights, x, y, network)
        assert results["gradient_norms"][name][0] == pytest.approx(expected, rel=1e-5)
    for skip in ("each", "chain"):  # and with padding (width 3), directly
        weights = vg.initial_weights(3, seed=5)
        expected = independent_gradient_norms(weights, x, y, skip)
        got = vg.gradient_norms(vg.ResidualNet(weights, skip), x, y)
        assert got == pytest.approx(expected, rel=1e-5)
    assert vg.gradient_norms(vg.PlainNet(weights), x, y) == pytest.approx(
        independent_gradient_norms(weights, x, y, "plain"), rel=1e-5
    )


def test_first_layer_gradient_is_smaller_in_the_plain_network_at_the_default_seed(tmp_path):
    """Seed 0, width 1: |dL/dW_1| is about 1.2e2 plain against 2.1e2 residual.

    Not a law: over seeds 0-19 the plain first-layer norm was the smaller in
    18 of 20 (often by orders of magnitude, 1e-3 against 1e-1, when tanh(W_1 x)
    saturates); seeds 14 and 19 are the exceptions.
    """
    with contextlib.redirect_stdout(io.StringIO()):
        results = vg.main(["--epochs", "1", "--out", str(tmp_path)])
    assert results["seeds"] == [0]
    plain, residual = (
        results["gradient_norms"]["plain"][0],
        results["gradient_norms"]["residual"][0],
    )
    assert plain[0] < residual[0]


def test_training_stops_at_the_first_epoch_below_the_target():
    """Near-identity residual weights: W_1..W_3 = 0, head 1.05 (MSE about 0.09)."""
    zero = (torch.zeros(1, 1), torch.zeros(1))
    weights = [zero, zero, zero, (torch.tensor([[1.05]]), torch.zeros(1))]
    x, y = vg.make_data()
    fit = vg.train(vg.ResidualNet(weights), x, y, epochs=200, lr=1e-2, seed=0)
    k = fit["epochs_to_target"]
    assert k is not None and 0 < k < 200 and len(fit["mse_history"]) == k + 1
    assert fit["mse_history"][0] > 0.05
    assert fit["mse_history"][k] < 0.01 <= fit["mse_history"][k - 1]
    assert fit["final_mse"] == fit["mse_history"][-1]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs", "0"], "argument --epochs: must be a positive integer, got '0'"),
        (["--lr=-1e-3"], "argument --lr: must be a positive number, got '-1e-3'"),
        (["--lr", "inf"], "argument --lr: must be a positive number, got 'inf'"),
        (["--width", "1.5"], "argument --width: must be a positive integer, got '1.5'"),
        (["--seeds", "0"], "argument --seeds: must be a positive integer, got '0'"),
        (["--batch-size", "x"], "argument --batch-size: must be a positive integer, got 'x'"),
        (["--seed", "a"], "argument --seed: invalid int value: 'a'"),
        (["--skip", "all"], "argument --skip: invalid choice: 'all'"),
    ],
)
def test_bad_flags_exit_with_a_message_naming_the_flag(argv, message, tmp_path, capsys):
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as raised:
        vg.main([*argv, "--out", str(out)])
    assert raised.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
