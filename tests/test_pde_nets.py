"""Implicit, Hamiltonian and leapfrog blocks inside DynamicNet, and Ruthotto & Haber's presets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import dynamicblocks as db

pytestmark = pytest.mark.usefixtures("float64")


def _net(*stages: db.Stage) -> db.DynamicNet:
    return db.DynamicNet(stages, in_channels=3, num_classes=5).eval()


def _stage(block: str, width: int = 4, **kwargs) -> db.Stage:
    return db.Stage(
        width,
        width,
        lambda c: db.DoubleSymLayer(c),
        (0.0, 0.5, 1.0),
        pool=None,
        block=block,
        **kwargs,
    )


def test_stages_build_the_named_blocks_with_their_schemes_and_options():
    net = _net(
        _stage("dynamic"),
        _stage("dynamic", scheme="rk4"),
        _stage("implicit"),
        _stage("implicit", scheme="theta", options={"theta": 0.25, "tol": 1e-9}),
        _stage("hamiltonian", t_theta=(0.0,)),
        _stage("leapfrog", options={"start": "taylor"}),
    )
    dynamic, rk4, implicit, theta, hamiltonian, leapfrog = net.blocks
    assert isinstance(dynamic, db.DynamicBlock) and dynamic.tableau.name == "euler"
    assert rk4.tableau.name == "rk4"
    assert isinstance(implicit, db.ImplicitBlock) and implicit.scheme == "backward_euler"
    assert theta.scheme == "theta" and theta.theta == 0.25 and theta.tol == 1e-9
    assert isinstance(hamiltonian, db.HamiltonianBlock) and len(hamiltonian.layers1) == 1
    # the field of a Hamiltonian stage acts on half the channels
    assert hamiltonian.layers1[0].weight.shape[1] == 2
    assert hamiltonian.layers2[0].weight.shape[1] == 2
    assert isinstance(leapfrog, db.LeapfrogBlock) and leapfrog.start == "taylor"
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 5)


def test_an_implicit_stage_solves_its_equation_inside_the_network():
    """The trapezoid block's output y satisfies y = x + h/2 (f(x) + f(y)) step by step."""
    net = _net(_stage("implicit", scheme="trapezoid", options={"tol": 1e-12, "max_iter": 200}))
    block = net.blocks[0]
    seen = {}
    block.register_forward_hook(lambda m, args, out: seen.update(x=args[0], y=out))
    net(torch.randn(2, 3, 8, 8))
    x = seen["x"]
    with torch.no_grad():
        for f in block.layers:  # two steps of h = 0.5, one control each: plain iteration
            y = x
            for _ in range(100):
                y = x + 0.25 * (f(x) + f(y))
            x = y
    torch.testing.assert_close(seen["y"], x, rtol=1e-9, atol=1e-10)


def test_every_controls_copy_is_initialised_independently():
    net = _net(_stage("hamiltonian"), _stage("leapfrog"), _stage("implicit"))
    for layers in (
        net.blocks[0].layers1,
        net.blocks[0].layers2,
        net.blocks[1].layers,
        net.blocks[2].layers,
    ):
        assert not torch.equal(layers[0].weight, layers[1].weight)


@pytest.mark.parametrize(
    "stage, message",
    [
        (_stage("resnet"), r"stages\[0\]\.block must be one of \('dynamic', 'implicit', "),
        (_stage("hamiltonian", scheme="euler"), r"stages\[0\]\.scheme = 'euler'.*Verlet"),
        (_stage("leapfrog", scheme="rk4"), r"stages\[0\]\.scheme = 'rk4'.*leapfrog"),
        (_stage("hamiltonian", width=5), r"stages\[0\]\.width = 5.*must be even"),
        (_stage("implicit", scheme="rk4"), "scheme must be one of"),
        (_stage("implicit", scheme="theta", options={"theta": 2.0}), r"theta must be .*\[0, 1\]"),
    ],
)
def test_bad_stages_are_named(stage, message):
    with pytest.raises(ValueError, match=message):
        _net(stage)


def _handwritten(net: db.DynamicNet, x: torch.Tensor, kind: str) -> torch.Tensor:
    """The networks of Ruthotto & Haber written out with the network's own layers, h = 1."""
    x = net.opening(x)
    for block, connective in zip(net.blocks, net.connectives):
        if kind == "parabolic":  # forward Euler
            for f in block.layers:
                x = x + f(x)
        elif kind == "hamiltonian":  # Verlet on the channel halves
            y, z = x.chunk(2, dim=1)
            for f1, f2 in zip(block.layers1, block.layers2):
                y = y + f1(z)
                z = z - f2(y)
            x = torch.cat([y, z], dim=1)
        else:  # leapfrog from rest: y_{k+1} = 2 y_k - y_{k-1} + F(y_k), y_{-1} = y_0
            previous = x
            for f in block.layers:
                x, previous = 2 * x - previous + f(x), x
        x = connective(x)
    return net.classifier(x.mean(dim=(2, 3)))


PRESETS = {
    "parabolic": (db.parabolic_net, 503_514),
    "hamiltonian": (db.hamiltonian_net, 265_050),
    "second_order": (db.second_order_net, 503_514),
}


@pytest.mark.parametrize("kind", PRESETS)
def test_presets_compute_ruthotto_habers_networks(kind):
    build, documented = PRESETS[kind]
    torch.manual_seed(0)
    net = build().eval()
    assert sum(p.numel() for p in net.parameters()) == documented  # the count in the docstring
    assert [b.num_steps for b in net.blocks] == [3, 3, 3]
    half = 2 if kind == "hamiltonian" else 1
    kernels = [b.layers1[0] if half == 2 else b.layers[0] for b in net.blocks]
    assert [k.weight.shape[:2] for k in kernels] == [(w // half,) * 2 for w in (32, 64, 112)]
    assert all(isinstance(k.norm, db.TvNorm) for k in kernels)
    assert [c.conv.out_channels for c in net.connectives] == [64, 112, 112]
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(net(x), _handwritten(net, x, kind), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", PRESETS)
def test_presets_train_every_parameter(kind):
    net = PRESETS[kind][0](num_classes=3, widths=(4, 6, 8), t=(0.0, 0.5, 1.0))
    loss = nn.functional.cross_entropy(net(torch.randn(4, 3, 8, 8)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    for name, param in net.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_preset_arguments_reach_the_blocks():
    net = db.parabolic_net(100, widths=(8, 16, 16), t=(0, 1, 3), t_theta=(0,), scheme="rk4")
    assert net.classifier.out_features == 100 and len(net.blocks) == 2
    assert net.blocks[0].tableau.name == "rk4" and net.blocks[0].t == (0, 1, 3)
    assert len(net.blocks[1].layers) == 1
    net = db.second_order_net(widths=(4, 4), t=(0, 1, 2), interpolation="linear", t_theta=(0, 2))
    assert net.blocks[0].interpolation == "linear" and isinstance(
        net.connectives[0].pool, nn.Identity
    )
    with pytest.raises(ValueError, match=r"stages\[0\]\.width = 5.*must be even"):
        db.hamiltonian_net(widths=(5, 8))
    with pytest.raises(ValueError, match="widths must have at least two entries"):
        db.parabolic_net(widths=(8,))
