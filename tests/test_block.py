"""DynamicBlock against independent oracles: torchdiffeq, hand-written loops, gradcheck."""

import pytest
import torch
import torch.nn.functional as F
import torchdiffeq
from conftest import random_grid
from torch import nn

from dynamicblocks import MLP, TABLEAUS, DoubleSymLayer, DynamicBlock, PreactDoubleLayer

SCHEMES = sorted(TABLEAUS)


class Affine(nn.Module):
    """f(x) = tanh(x W^T + b), written out so that tests can blend W by hand."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dim, dim) / dim**0.5)
        self.bias = nn.Parameter(torch.randn(dim))

    def forward(self, x):
        return torch.tanh(x @ self.weight.T + self.bias)


def hand_rk(x, t, tableau, field):
    """Explicit RK by the textbook: field(step, stage, time, state) -> slope."""
    for k, (t0, t1) in enumerate(zip(t, t[1:])):
        h = t1 - t0
        slopes = []
        for i, (ci, row) in enumerate(zip(tableau.c, tableau.a)):
            y = x + h * sum((a * s for a, s in zip(row[:i], slopes)), torch.zeros_like(x))
            slopes.append(field(k, i, t0 + ci * h, y))
        x = x + h * sum((b * s for b, s in zip(tableau.b, slopes)), torch.zeros_like(x))
    return x


@pytest.mark.parametrize(
    ("scheme", "method"), [("euler", "euler"), ("midpoint", "midpoint"), ("rk4_38", "rk4")]
)
@pytest.mark.parametrize("state", ["vector", "image"])
def test_shared_control_matches_torchdiffeq(scheme, method, state):
    t = random_grid(7, 0.0, 1.3, seed=1)
    if state == "vector":
        layer, x = MLP(3, hidden=16, act="tanh"), torch.randn(5, 3)
    else:
        layer, x = DoubleSymLayer(3, norm="tv", act="tanh"), torch.randn(2, 3, 5, 5)
    block = DynamicBlock(layer, t, scheme=scheme, t_theta=[0.0]).double()
    x = x.double()
    expected = torchdiffeq.odeint(
        lambda _, y: block.layers[0](y), x, torch.tensor(t, dtype=torch.float64), method=method
    )
    assert (block(x) - expected[-1]).abs().max() < 1e-10
    assert (block(x, return_trajectory=True) - expected).abs().max() < 1e-10


def test_euler_one_control_per_step_is_a_resnet():
    steps = 5
    block = DynamicBlock(PreactDoubleLayer(4), list(range(steps + 1)))
    block.reset_parameters()
    x = torch.randn(3, 4, 6, 6)
    expected = x
    for layer in block.layers:
        expected = expected + layer(expected)
    assert len(block.layers) == steps
    assert torch.equal(block(x), expected)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_per_step_controls_match_hand_written_rk(scheme):
    t = random_grid(4, 0.5, 2.0, seed=2)
    block = DynamicBlock(Affine(3), t, scheme=scheme).double()
    with torch.no_grad():
        for layer in block.layers:
            layer.weight.normal_()
    x = torch.randn(4, 3, dtype=torch.float64)
    expected = hand_rk(x, t, block.tableau, lambda k, i, s, y: block.layers[k](y))
    assert (block(x) - expected).abs().max() < 1e-12


def _affine_at(block, s, rule):
    """theta(s) computed by hand from the block's controls."""
    tt = block.t_theta
    weights = [layer.weight for layer in block.layers]
    biases = [layer.bias for layer in block.layers]
    if s <= tt[0]:
        return weights[0], biases[0]
    if s >= tt[-1]:
        return weights[-1], biases[-1]
    j = max(i for i, v in enumerate(tt) if v <= s)
    if rule == "constant":
        return weights[j], biases[j]
    w = (s - tt[j]) / (tt[j + 1] - tt[j])
    return (1 - w) * weights[j] + w * weights[j + 1], (1 - w) * biases[j] + w * biases[j + 1]


@pytest.mark.parametrize("scheme", ["rk4", "ssprk3", "ralston"])
def test_linear_interpolation_matches_hand_blended_weights(scheme):
    t = random_grid(6, 0.0, 2.0, seed=3)
    t_theta = [0.25, 0.7, 1.1, 1.8]  # not aligned with t; t starts before and ends after
    block = DynamicBlock(Affine(3), t, scheme, t_theta, "linear").double()
    with torch.no_grad():
        for layer in block.layers:
            layer.weight.normal_()
            layer.bias.normal_()

    def field(k, i, s, y):
        weight, bias = _affine_at(block, s, "linear")
        return torch.tanh(y @ weight.T + bias)

    x = torch.randn(4, 3, dtype=torch.float64)
    expected = hand_rk(x, t, block.tableau, field)
    assert (block(x) - expected).abs().max() < 1e-12


def test_constant_interpolation_uses_open_set_rule():
    # Controls at 0, 0.5, 1; RK4 steps of 0.25. Every stage of a step uses the
    # control at or left of the step's start, even the last stage at t_k + h.
    t = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25]
    t_theta = [0.0, 0.5, 1.0]
    block = DynamicBlock(Affine(2), t, "rk4", t_theta).double()
    with torch.no_grad():
        for layer in block.layers:
            layer.weight.normal_()
    controls = [0, 0, 1, 1, 2]
    x = torch.randn(3, 2, dtype=torch.float64)
    expected = hand_rk(x, t, block.tableau, lambda k, i, s, y: block.layers[controls[k]](y))
    assert (block(x) - expected).abs().max() < 1e-12


def test_linear_rule_uses_and_updates_nearer_controls_batchnorm():
    t = [0.0, 1.0, 2.0]
    layer = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    block = DynamicBlock(layer, t, "rk4", t_theta=[0.0, 2.0], interpolation="linear")
    block(torch.randn(8, 3))
    # Stage times 0, .5, .5, 1 | 1, 1.5, 1.5, 2: weights < .5 own by control 0
    # (t <= 1, tie to the left), the rest by control 1.
    counts = [int(layer[1].num_batches_tracked) for layer in block.layers]
    assert counts == [5, 3]


def _gradcheck_case(state, scheme, interpolation):
    t = [0.0, 0.3, 0.7, 1.0]
    t_theta = [0.0, 0.5, 1.0] if interpolation == "linear" else None
    if state == "vector":
        layer, x = MLP(2, hidden=3, act="tanh"), torch.randn(2, 2)
    else:
        layer, x = DoubleSymLayer(2, norm="tv", act="tanh"), torch.randn(1, 2, 3, 3)
    block = DynamicBlock(layer, t, scheme, t_theta, interpolation).double()
    block.reset_parameters()
    return block, x.double().requires_grad_()


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("interpolation", ["constant", "linear"])
@pytest.mark.parametrize("state", ["vector", "image"])
def test_gradcheck(scheme, interpolation, state):
    block, x = _gradcheck_case(state, scheme, interpolation)
    names, params = zip(*block.named_parameters())

    def run(x, *params):
        return torch.func.functional_call(block, dict(zip(names, params)), (x,))

    inputs = (x, *(p.detach().clone().requires_grad_() for p in params))
    assert torch.autograd.gradcheck(run, inputs, eps=1e-6, atol=1e-7)


def test_trajectory_holds_every_grid_point():
    t = random_grid(5, seed=4)
    block = DynamicBlock(MLP(3), t, "rk4")
    x = torch.randn(2, 3)
    trajectory = block(x, return_trajectory=True)
    assert trajectory.shape == (6, 2, 3)
    assert torch.equal(trajectory[0], x)
    assert torch.equal(trajectory[-1], block(x))
    partial = DynamicBlock(MLP(3), t[:3], "rk4")
    first_two = ("layers.0.", "layers.1.")
    partial.load_state_dict(
        {k: v for k, v in block.state_dict().items() if k.startswith(first_two)}
    )
    assert torch.allclose(partial(x), trajectory[2])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtypes(dtype):
    block = DynamicBlock(DoubleSymLayer(3), [0.0, 0.5, 1.0], "rk4").to(dtype)
    out = block(torch.randn(2, 3, 4, 4, dtype=dtype))
    assert out.dtype == dtype


def test_autocast_bfloat16_close_to_float32():
    block = DynamicBlock(PreactDoubleLayer(4), [0.0, 0.5, 1.0], "rk4", interpolation="linear")
    block.eval()
    x = torch.randn(2, 4, 6, 6)
    reference = block(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(x)
    assert out.shape == reference.shape
    assert torch.allclose(out.float(), reference, atol=0.1, rtol=0.05)
    assert not torch.allclose(out.float(), reference, atol=1e-6, rtol=0)  # autocast took effect


@pytest.mark.parametrize(
    ("scheme", "interpolation"), [("rk4", "linear"), ("rk4_38", "constant"), ("heun", "linear")]
)
def test_compiles_fullgraph(scheme, interpolation):
    block = DynamicBlock(
        DoubleSymLayer(3, norm="tv"), [0.0, 0.4, 1.0, 1.5], scheme, [0.0, 0.7, 1.5], interpolation
    )
    x = torch.randn(2, 3, 5, 5)
    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    assert torch.allclose(compiled(x), block(x), atol=1e-6)


def test_compiles_fullgraph_inductor_with_gradients():
    torch._dynamo.reset()
    block = DynamicBlock(MLP(3, hidden=8), [0.0, 0.3, 1.0], "rk4", [0.0, 1.0], "linear")
    compiled = torch.compile(block, fullgraph=True)
    x = torch.randn(4, 3)
    compiled(x).square().sum().backward()
    compiled_grads = [p.grad.clone() for p in block.parameters()]
    block.zero_grad()
    block(x).square().sum().backward()
    for got, expected in zip(compiled_grads, (p.grad for p in block.parameters())):
        assert torch.allclose(got, expected, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    block = DynamicBlock(
        DoubleSymLayer(3, norm="tv"), [0.0, 0.5, 1.0], "rk4", interpolation="linear"
    )
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    block = block.double()
    expected = block(x)
    got = block.cuda()(x.cuda())
    assert torch.allclose(got.cpu(), expected, atol=1e-12)


def test_user_module_is_a_valid_layer():
    class Rotation(nn.Module):
        def forward(self, x):
            return torch.stack([-x[:, 1], x[:, 0]], dim=1)

    # x' = J x rotates; RK4 with 64 steps over a quarter turn is accurate to ~4e-8.
    block = DynamicBlock(Rotation(), torch.linspace(0, torch.pi / 2, 65), "rk4").double()
    x = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(block(x), torch.tensor([[0.0, 1.0]], dtype=torch.float64), atol=1e-7)
    assert F.mse_loss(block(x), x) > 0.5
