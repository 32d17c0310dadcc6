"""Tests of examples/implicit_1d.py and examples/implicit_spirals.py (and their _implicit.py)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

import dynamicblocks as db

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))  # the examples import their helpers (_fit, _implicit)


def load(name: str):
    path = ROOT / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


one_d = load("implicit_1d")
spirals = load("implicit_spirals")
import _implicit  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def check_run(results: dict, out: Path, pngs: tuple[str, ...], seeds: int, iterations: int):
    """Figures and results.json are written; per-seed losses fell; solver counts add up."""
    for name in pngs:
        assert (out / name).read_bytes()[:8] == PNG
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    settings = results["settings"]
    for name, net in results["networks"].items():
        assert len(net["per_seed"]) == seeds and net["diverged_seeds"] == []
        for run in net["per_seed"]:
            first, last = run["history"][0], run["history"][-1]
            assert first[0] == 0 and last[0] == iterations
            assert last[1] == run["final_train_loss"] < first[1]
            assert last[2] == run["final_valid_loss"] < first[2]
        mean = sum(r["final_valid_loss"] for r in net["per_seed"]) / seeds
        assert net["mean_valid_loss"] == pytest.approx(mean)
        layers = settings["layers_resnet" if name == "resnet" else "layers_implicit"]
        assert net["layers"] == layers and net["h"] == pytest.approx(settings["horizon"] / layers)
    assert "solver" not in results["networks"]["resnet"]
    solver = results["networks"]["implicit"]["solver"]
    layers = settings["layers_implicit"]
    # one forward solve per step for every training forward (iterations + the final one),
    # one backward solve per step for every backward
    assert solver["forward"]["solves"] == seeds * (iterations + 1) * layers
    assert solver["backward"]["solves"] == seeds * iterations * layers
    assert solver["forward"]["not_converged"] == solver["backward"]["not_converged"] == 0
    assert 1 < solver["forward"]["mean_iterations"] <= solver["forward"]["max_iterations"] <= 100


def test_1d_main_writes_figures_and_results_and_the_losses_fall(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--seeds", "2", "--iterations", "30", "--eval-every", "5", "--log-every", "10"]
    results = one_d.main([*argv, "--out", str(out)])
    check_run(results, out, ("fits.png", "losses.png"), seeds=2, iterations=30)
    width = results["settings"]["width"]
    for name, layers in (("resnet", 20), ("implicit", 5)):  # the defaults
        net = results["networks"][name]
        assert net["parameters"] == (2 * width) + layers * (width + 1) * width + (width + 1)
    printed = capsys.readouterr().out
    assert "implicit seed 1  iteration    10  loss" in printed
    assert "implicit  mean" in printed and "resnet  mean" in printed


def test_spirals_main_writes_figures_and_results_and_the_losses_fall(tmp_path):
    out = tmp_path / "run"
    argv = ["--seeds", "1", "--iterations", "25", "--eval-every", "5", "--width", "6"]
    results = spirals.main([*argv, "--out", str(out)])
    check_run(results, out, ("boundary.png", "losses.png"), seeds=1, iterations=25)
    assert results["train_points"] == 98 and results["valid_points"] == 96
    for net in results["networks"].values():
        run = net["per_seed"][0]
        for key in ("final_train_accuracy", "final_valid_accuracy"):
            # accuracies are counts over 98 and 96 points
            points = 98 if "train" in key else 96
            assert run[key] * points == pytest.approx(round(run[key] * points))
        assert net["mean_valid_accuracy"] == run["final_valid_accuracy"]


def test_1d_data_are_20_random_points_of_sin_in_the_interval():
    (x, y), (xv, yv) = one_d.make_data()
    assert x.shape == y.shape == (20, 1) and x.dtype == torch.float64
    assert (x >= -5).all() and (x <= 5).all()
    assert x.min() < -3 and x.max() > 3 and x.unique().numel() == 20  # spread, not a constant
    torch.testing.assert_close(y, torch.sin(x), rtol=0, atol=0)
    assert xv.shape == yv.shape == (1000, 1)
    assert xv[0].item() == -5 and xv[-1].item() == 5
    torch.testing.assert_close(yv, torch.sin(xv), rtol=0, atol=0)
    torch.testing.assert_close(one_d.make_data()[0][0], x)  # reproducible
    assert not torch.equal(one_d.make_data(seed=1)[0][0], x)


def test_two_spirals_are_balanced_interleaved_and_split_every_other_point():
    points, labels, index = spirals.two_spirals()
    assert points.shape == (194, 2) and labels.shape == (194, 1)
    assert (labels == 0).sum() == (labels == 1).sum() == 97
    torch.testing.assert_close(points[97:], -points[:97])  # spiral 1 is spiral 0 rotated by pi
    # the classic set: first point (0, 6.5), a quarter turn every 8 points, radius 6.5 -> 0.5
    torch.testing.assert_close(points[0], torch.tensor([0.0, 6.5], dtype=torch.float64))
    torch.testing.assert_close(
        points[8], torch.tensor([6.0, 0.0], dtype=torch.float64), rtol=0, atol=1e-12
    )
    assert points[96].norm().item() == pytest.approx(0.5)

    (x, y), (xv, yv) = spirals.make_data()
    assert x.shape == (98, 2) and xv.shape == (96, 2)
    assert (y == 0).sum() == (y == 1).sum() == 49 and (yv == 0).sum() == (yv == 1).sum() == 48
    # every other point of each spiral: train has i = 0, 2, ..., validation i = 1, 3, ...
    torch.testing.assert_close(x[:49], points[0:97:2])
    torch.testing.assert_close(xv[:48], points[1:97:2])

    def members(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """For each row of ``a``: is it exactly a row of ``b``?"""
        return (a[:, None, :] == b[None, :, :]).all(dim=2).any(dim=1)

    assert not members(x, xv).any()  # no point in both sets
    assert members(torch.cat([x, xv]), points).all()  # together: the whole set, once
    assert torch.cat([x, xv]).unique(dim=0).shape == (194, 2)
    assert torch.cdist(x, xv).min() > 0.1  # and no near-duplicates either


def test_resnet_is_the_hand_written_euler_loop_on_the_same_weights():
    args = one_d.parse_args([])
    specs = _implicit.network_specs(args)
    spec = specs["resnet"]
    assert spec["theta"] == 0 and spec["h"] == args.horizon / args.layers_resnet == 0.25
    torch.manual_seed(0)
    model = _implicit.ThetaNet(1, 8, 1, spec["layers"], args.horizon, 0.0, "relu").double()
    x = torch.linspace(-5, 5, 33, dtype=torch.float64)[:, None]

    z = model.lift.weight @ x.T + model.lift.bias[:, None]  # by hand, column states
    for layer in model.block.layers:
        z = z + 0.25 * torch.relu(layer.linear.weight @ z + layer.linear.bias[:, None])
    expected = (model.head.weight @ z + model.head.bias[:, None]).T
    torch.testing.assert_close(model(x), expected, rtol=1e-12, atol=1e-12)

    # one independently Glorot-initialised copy per step, all of them used
    weights = [layer.linear.weight for layer in model.block.layers]
    assert len(weights) == 20 and not torch.equal(weights[0], weights[1])
    bound = math.sqrt(6 / (8 + 8))
    assert all(w.abs().max() <= bound for w in weights) and weights[0].abs().max() > bound / 2
    with torch.no_grad():
        model.block.layers[13].linear.bias += 1.0
    assert not torch.allclose(model(x), expected)


def test_implicit_network_takes_trapezoidal_steps():
    """One step ``y = z + h/2 (f(z) + f(y))`` with h = T / L' (not Euler, not backward Euler)."""
    args = spirals.parse_args([])
    spec = _implicit.network_specs(args)["implicit"]
    assert spec["theta"] == 0.5 and spec["layers"] < args.layers_resnet
    assert spec["h"] == args.horizon / args.layers_implicit == 1.0
    torch.manual_seed(0)
    model = _implicit.ThetaNet(2, 6, 1, 1, 1.0, 0.5, "tanh", tol=1e-12).double()
    points = spirals.make_data()[0][0]
    with torch.no_grad():
        z = model.lift(points)
        y = model.block(z)
        f = model.block.layers[0]
        residual = y - z - 0.5 * (f(z) + f(y))
        assert residual.abs().max() < 1e-9
        assert (y - z - f(z)).abs().max() > 1e-3 and (y - z - f(y)).abs().max() > 1e-3


def test_time_regularization_of_the_implicit_block_is_the_smoothness_term():
    """Of an ImplicitBlock as of a DynamicBlock twin, and written out by hand."""
    torch.manual_seed(0)
    model = _implicit.ThetaNet(1, 4, 1, 6, 3.0, 0.5, "relu")
    twin = db.DynamicBlock(_implicit.ResidualLayer(4, "relu"), t=model.block.t, scheme="euler")
    twin.load_state_dict(model.block.state_dict())
    expected = db.time_regularization(twin, "l2")
    by_hand = sum(
        0.5 * 0.5 * sum((q - p).square().sum() for p, q in zip(a.parameters(), b.parameters()))
        for a, b in zip(model.block.layers, model.block.layers[1:])
    )
    torch.testing.assert_close(db.time_regularization(model.block), expected)
    torch.testing.assert_close(expected, by_hand)
    assert expected > 0


@pytest.mark.parametrize("script", [one_d, spirals], ids=["1d", "spirals"])
@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seeds", "0"], "argument --seeds: must be a positive integer, got '0'"),
        (["--iterations", "1.5"], "argument --iterations: must be a positive integer, got '1.5'"),
        (["--lr=-1e-3"], "argument --lr: must be a positive number, got '-1e-3'"),
        (["--horizon", "inf"], "argument --horizon: must be a positive number, got 'inf'"),
        (["--width", "wide"], "argument --width: must be a positive integer, got 'wide'"),
        (["--layers-implicit", "0"], "argument --layers-implicit: must be a positive integer"),
        (["--smoothness", "-1"], "argument --smoothness: must be a non-negative number, got '-1'"),
    ],
)
def test_bad_flags_exit_with_a_message_naming_the_flag(script, argv, message, tmp_path, capsys):
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as raised:
        script.main([*argv, "--out", str(out)])
    assert raised.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_1d_flag_for_the_training_points():
    with pytest.raises(SystemExit):
        one_d.parse_args(["--train-points", "-20"])
    assert one_d.parse_args(["--train-points", "7"]).train_points == 7


def test_a_failed_seed_is_reported_not_fatal(tmp_path, capsys):
    """A non-finite loss stops that seed's training; it is recorded as diverged, with None."""
    argv = ["--seeds", "1", "--iterations", "5", "--lr", "1e300", "--layers-resnet", "3"]
    results = one_d.main([*argv, "--layers-implicit", "2", "--out", str(tmp_path)])
    net = results["networks"]["resnet"]
    assert net["diverged_seeds"] == [0] and net["per_seed"][0]["final_valid_loss"] is None
    assert net["mean_valid_loss"] is None
    text = (tmp_path / "results.json").read_text()
    json.loads(text, parse_constant=pytest.fail)  # strict JSON: no NaN or Infinity
    printed = capsys.readouterr().out
    assert "  resnet seed 0  stopped: loss is nan at iteration 1: try a smaller --lr" in printed
    assert "resnet  mean  3  1.66667     241   diverged   diverged" in printed
