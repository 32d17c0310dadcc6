"""HamiltonianBlock and LeapfrogBlock against hand-written loops, exact solutions and inverses."""

import math
import re

import pytest
import torch
from conftest import random_grid
from torch import nn

from dynamicblocks import MLP, DoubleSymLayer, uniform_grid
from dynamicblocks.hamiltonian import HamiltonianBlock, LeapfrogBlock

F64 = torch.float64


class Affine(nn.Module):
    """f(x) = tanh(x W^T + b) from ``n_in`` to ``n_out`` features, blendable by hand."""

    def __init__(self, n_in: int, n_out: int | None = None) -> None:
        super().__init__()
        n_out = n_in if n_out is None else n_out
        self.weight = nn.Parameter(torch.randn(n_out, n_in))
        self.bias = nn.Parameter(torch.randn(n_out))

    def forward(self, x):
        return torch.tanh(x @ self.weight.T + self.bias)


class Linear(nn.Module):
    """A fixed linear map f(x) = x M^T (M a buffer: no parameters)."""

    def __init__(self, matrix: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("matrix", matrix)

    def forward(self, x):
        return x @ self.matrix.T


def theta_at(layers, t_theta, s, rule):
    """(W, b) of an Affine theta(s), computed by hand from the controls."""
    weights = [layer.weight for layer in layers]
    biases = [layer.bias for layer in layers]
    if s <= t_theta[0]:
        return weights[0], biases[0]
    if s >= t_theta[-1]:
        return weights[-1], biases[-1]
    j = max(i for i, v in enumerate(t_theta) if v <= s)
    if rule == "constant":
        return weights[j], biases[j]
    w = (s - t_theta[j]) / (t_theta[j + 1] - t_theta[j])
    return (1 - w) * weights[j] + w * weights[j + 1], (1 - w) * biases[j] + w * biases[j + 1]


def affine(layers, t_theta, s, rule, x):
    weight, bias = theta_at(layers, t_theta, s, rule)
    return torch.tanh(x @ weight.T + bias)


def order(coarse: float, fine: float) -> float:
    """Observed order of convergence from errors at step sizes h and h / 2."""
    return math.log2(coarse / fine)


# ================================================================================ HamiltonianBlock


@pytest.mark.parametrize(
    ("interpolation", "t_theta"),
    [("constant", None), ("constant", [0.1, 0.5, 0.9]), ("linear", [0.25, 0.7, 1.1, 1.8])],
)
def test_verlet_matches_hand_loop_on_nonuniform_grid(interpolation, t_theta):
    t = random_grid(6, 0.0, 2.0, seed=5)
    # y has 3 features, z has 2: F1 maps z to y's space, F2 maps y to z's space.
    block = HamiltonianBlock(Affine(2, 3), t, t_theta, interpolation, layer2=Affine(3, 2))
    block = block.double()
    block.reset_parameters()
    y0, z0 = torch.randn(4, 3, dtype=F64), torch.randn(4, 2, dtype=F64)
    tt = block.t_theta
    y, z = y0, z0
    for t0, t1 in zip(t, t[1:]):
        h = t1 - t0
        y = y + h * affine(block.layers1, tt, t0, interpolation, z)
        z = z - h * affine(block.layers2, tt, t0, interpolation, y)
    got_y, got_z = block((y0, z0))
    assert (got_y - y).abs().max() < 1e-12
    assert (got_z - z).abs().max() < 1e-12


def test_verlet_is_chang_network_with_one_control_per_step():
    # h = 1, one control per step: Y += act(K1 Z + b1); Z -= act(K2^T Y + b2).
    block = HamiltonianBlock(Affine(3), [0.0, 1.0, 2.0, 3.0]).double()
    block.reset_parameters()
    assert len(block.layers1) == len(block.layers2) == 3
    x = torch.randn(5, 6, dtype=F64)
    y, z = x[:, :3], x[:, 3:]
    for f1, f2 in zip(block.layers1, block.layers2):
        y = y + torch.tanh(z @ f1.weight.T + f1.bias)
        z = z - torch.tanh(y @ f2.weight.T + f2.bias)
    assert torch.equal(block(x), torch.cat([y, z], dim=1))


def test_verlet_tensor_input_is_channel_halves():
    t = random_grid(4, seed=6)
    block = HamiltonianBlock(DoubleSymLayer(2, norm="tv", act="tanh"), t).double()
    block.reset_parameters()
    x = torch.randn(2, 4, 5, 5, dtype=F64)
    y, z = block((x[:, :2], x[:, 2:]))
    out = block(x)
    assert out.shape == x.shape
    assert torch.equal(out, torch.cat([y, z], dim=1))
    trajectory = block(x, return_trajectory=True)
    assert trajectory.shape == (len(t), *x.shape)
    assert torch.equal(trajectory[0], x)
    assert torch.equal(trajectory[-1], out)
    ys, zs = block((x[:, :2], x[:, 2:]), return_trajectory=True)
    assert torch.equal(torch.cat([ys, zs], dim=2), trajectory)


def _field(kind: str, channels: int, x_channels: int) -> tuple[nn.Module, torch.Tensor]:
    """A field on ``channels`` channels and an input with ``x_channels`` channels."""
    if kind == "mlp":
        return MLP(channels, hidden=8, act="tanh"), torch.randn(4, x_channels)
    norm = None if kind == "sym" else "tv"
    return DoubleSymLayer(channels, norm=norm, act="tanh"), torch.randn(2, x_channels, 5, 5)


@pytest.mark.parametrize("kind", ["sym", "sym_tv", "mlp"])
@pytest.mark.parametrize(("interpolation", "t_theta"), [("constant", None), ("linear", [0.3, 0.8])])
def test_verlet_inverse_recovers_input(kind, interpolation, t_theta):
    layer, x = _field(kind, 2, 4)
    block = HamiltonianBlock(layer, random_grid(8, seed=7), t_theta, interpolation).double()
    block.reset_parameters()
    x = x.double()
    out = block(x)
    assert (out - x).abs().max() > 1e-2  # the block does something
    assert (block.inverse(out) - x).abs().max() < 1e-10
    y, z = block.inverse(block((x[:, :2], x[:, 2:])))
    assert (torch.cat([y, z], dim=1) - x).abs().max() < 1e-10


def test_verlet_inverse_with_batchnorm_in_eval_mode():
    block = HamiltonianBlock(DoubleSymLayer(2, norm="batch"), [0.0, 0.5, 1.0, 1.5]).double()
    block(torch.randn(8, 4, 5, 5, dtype=F64))  # train mode: running statistics move
    block.eval()
    x = torch.randn(3, 4, 5, 5, dtype=F64)
    assert (block.inverse(block(x)) - x).abs().max() < 1e-10


def _linear_oscillator(steps: int, t_end: float, y0, z0, stiffness):
    """(y_k, z_k) of y' = z, z' = -S y: F1(z) = z, F2(y) = S y, shared weights."""
    dim = stiffness.shape[0]
    t = uniform_grid(0.0, t_end, steps)
    block = HamiltonianBlock(Linear(torch.eye(dim, dtype=F64)), t, [0.0], layer2=Linear(stiffness))
    ys, zs = block((y0, z0), return_trajectory=True)
    return ys[:, 0], zs[:, 0], t_end / steps


def test_verlet_energy_of_linear_hamiltonian_system():
    # H(y, z) = |z|^2 / 2 + y^T S y / 2. The scheme is symplectic Euler, i.e.
    # Stormer-Verlet with z_k the momentum at t_k + h / 2. It conserves
    # H_mod = H + (h / 2) z^T S y exactly; H at the synchronised momentum
    # v_k = z_k + (h / 2) S y_k is H_mod + O(h^2), H(y_k, z_k) only H_mod + O(h).
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(3, 3, dtype=F64, generator=generator)
    stiffness = a @ a.T + torch.eye(3, dtype=F64)  # SPD, eigenvalues ~1 to ~11
    y0 = torch.randn(1, 3, dtype=F64, generator=generator)
    z0 = torch.randn(1, 3, dtype=F64, generator=generator)
    t_end = 200.0  # ~100 to ~350 periods
    errors = {}
    for steps in (10_000, 20_000):
        y, z, h = _linear_oscillator(steps, t_end, y0, z0, stiffness)
        potential = 0.5 * ((y @ stiffness) * y).sum(-1)
        raw = 0.5 * z.square().sum(-1) + potential
        modified = raw + 0.5 * h * ((y @ stiffness) * z).sum(-1)
        synced = 0.5 * (z + 0.5 * h * y @ stiffness).square().sum(-1) + potential
        assert ((modified - modified[0]).abs() / modified[0]).max() < 1e-12
        sync_error = (synced - synced[0]).abs()
        # bounded, no drift: the second half of the run is no worse than the first
        half = steps // 2
        assert sync_error[half:].max() < 1.1 * sync_error[:half].max()
        assert sync_error.max() < 0.01 * synced[0]
        errors[steps] = (sync_error.max().item(), (raw - raw[0]).abs().max().item())
    sync_order = order(errors[10_000][0], errors[20_000][0])
    raw_order = order(errors[10_000][1], errors[20_000][1])
    assert abs(sync_order - 2) < 0.3, sync_order  # measured 2.00
    assert abs(raw_order - 1) < 0.3, raw_order  # measured 1.02


# =================================================================================== LeapfrogBlock


def hand_leapfrog(y0, y_prev, t, field):
    """The documented formulas; uniform grid: 2 y_k - y_{k-1} + h^2 F_k(y_k)."""
    h = [b - a for a, b in zip(t, t[1:])]
    uniform = max(h) - min(h) < 1e-12
    y_before, y = y_prev, y0
    for k in range(len(h)):
        before = h[k - 1] if k else h[0]
        if uniform:
            y_next = 2 * y - y_before + h[0] ** 2 * field(k, t[k], y)
        else:
            y_next = (
                y + h[k] / before * (y - y_before) + h[k] * (h[k] + before) / 2 * field(k, t[k], y)
            )
        y_before, y = y, y_next
    return y, y_before


@pytest.mark.parametrize("grid", ["uniform", "random"])
@pytest.mark.parametrize(
    ("interpolation", "t_theta"), [("constant", None), ("linear", [0.2, 0.5, 0.9])]
)
def test_leapfrog_matches_hand_loop(grid, interpolation, t_theta):
    t = list(uniform_grid(0.0, 1.0, 6)) if grid == "uniform" else random_grid(6, seed=8)
    block = LeapfrogBlock(Affine(3), t, t_theta, interpolation).double()
    block.reset_parameters()
    tt = block.t_theta

    def field(k, s, y):
        return affine(block.layers, tt, s, interpolation, y)

    x, x_prev = torch.randn(4, 3, dtype=F64), torch.randn(4, 3, dtype=F64)
    expected, expected_before = hand_leapfrog(x, x, t, field)  # rest: y_{-1} = y_0
    assert (block(x) - expected).abs().max() < 1e-12
    last, before = block(x, return_pair=True)
    assert (last - expected).abs().max() < 1e-12
    assert (before - expected_before).abs().max() < 1e-12
    expected, _ = hand_leapfrog(x, x_prev, t, field)
    assert (block(x, x_prev) - expected).abs().max() < 1e-12
    # Taylor start: y_{-1} = y_0 + (h_0^2 / 2) F_0(y_0)
    taylor = LeapfrogBlock(Affine(3), t, t_theta, interpolation, start="taylor").double()
    taylor.load_state_dict(block.state_dict())
    y_prev = x + (t[1] - t[0]) ** 2 / 2 * field(0, t[0], x)
    expected, _ = hand_leapfrog(x, y_prev, t, field)
    assert (taylor(x) - expected).abs().max() < 1e-12
    trajectory = block(x, return_trajectory=True)
    assert trajectory.shape == (len(t), 4, 3)
    assert torch.equal(trajectory[0], x)
    assert torch.equal(trajectory[-1], block(x))


@pytest.mark.parametrize("kind", ["sym", "sym_tv", "mlp"])
@pytest.mark.parametrize("start", ["rest", "taylor"])
@pytest.mark.parametrize("grid", ["uniform", "random"])
def test_leapfrog_inverse_recovers_input(kind, start, grid):
    layer, x = _field(kind, 3, 3)
    t = uniform_grid(0.0, 2.0, 10) if grid == "uniform" else random_grid(10, 0.0, 2.0, seed=9)
    block = LeapfrogBlock(layer, t, [0.0, 1.0, 2.0], "linear", start=start).double()
    block.reset_parameters()
    x = x.double()
    pair = block(x, return_pair=True)
    assert (pair[0] - x).abs().max() > 1e-2  # the block does something
    y0, y_prev = block.inverse(*pair)
    assert (y0 - x).abs().max() < 1e-10
    if start == "rest":
        assert (y_prev - x).abs().max() < 1e-10
    # (y_0, y_{-1}) is a valid starting pair: forward from it gives the same output
    again = block(y0, y_prev, return_pair=True)
    assert max((a - b).abs().max() for a, b in zip(again, pair)) < 1e-10


class Scale(nn.Module):
    """F(y) = c y."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = c

    def forward(self, y):
        return self.c * y


@pytest.mark.parametrize("start", ["rest", "taylor", "exact_prev"])
def test_leapfrog_order_on_harmonic_oscillator(start):
    # y'' = -w^2 y, y(0) = y0, y'(0) = 0: y(t) = cos(w t) y0.
    w, t_end = 2.0, 3.0
    y0 = torch.tensor([[1.0, -0.5]], dtype=F64)
    errors = []
    for steps in (200, 400, 800):
        t = torch.tensor(uniform_grid(0.0, t_end, steps), dtype=F64)
        h = t_end / steps
        rule = "taylor" if start == "taylor" else "rest"
        block = LeapfrogBlock(Scale(-(w**2)), t, [0.0], start=rule)
        x_prev = math.cos(w * h) * y0 if start == "exact_prev" else None
        trajectory = block(y0, x_prev, return_trajectory=True)[:, 0]
        errors.append((trajectory - torch.cos(w * t)[:, None] * y0).abs().max().item())
        if start == "rest":
            # the exact discrete solution of the rest start y_{-1} = y_0
            theta = math.acos(1 - (h * w) ** 2 / 2)
            k = torch.arange(steps + 1, dtype=F64)
            discrete = torch.cos(theta * (k + 0.5))[:, None] / math.cos(theta / 2) * y0
            assert (trajectory - discrete).abs().max() < 1e-10
            # its error is the O(h) start error ~ (w h / 2) max|y0|
            assert errors[-1] == pytest.approx(w * h / 2, rel=0.05)
    orders = [order(a, b) for a, b in zip(errors, errors[1:])]
    expected = 1.0 if start == "rest" else 2.0  # measured 1.01, 1.00 / 2.00, 2.00
    assert all(abs(p - expected) < 0.3 for p in orders), orders


def test_leapfrog_second_order_on_smoothly_graded_grid():
    w, t_end = 2.0, 3.0
    y0 = torch.tensor([[1.0, -0.5]], dtype=F64)
    errors = []
    for steps in (200, 400):
        u = torch.linspace(0.0, 1.0, steps + 1, dtype=F64)
        t = t_end * (u + 0.15 * torch.sin(2 * math.pi * u) / (2 * math.pi))  # h varies 0.85-1.15x
        block = LeapfrogBlock(Scale(-(w**2)), t, [0.0], start="taylor")
        trajectory = block(y0, return_trajectory=True)[:, 0]
        errors.append((trajectory - torch.cos(w * t)[:, None] * y0).abs().max().item())
    assert abs(order(*errors) - 2) < 0.3


# ============================================================================ shared: compile etc.


@pytest.mark.parametrize("interpolation", ["constant", "linear"])
def test_compile_fullgraph(interpolation):
    t, t_theta = [0.0, 0.4, 1.0, 1.5], [0.0, 0.7, 1.5]
    hamiltonian = HamiltonianBlock(DoubleSymLayer(2, norm="tv"), t, t_theta, interpolation)
    leapfrog = LeapfrogBlock(DoubleSymLayer(4, norm="tv"), t, t_theta, interpolation)
    x = torch.randn(2, 4, 5, 5)
    for block in (hamiltonian, leapfrog):
        compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
        assert torch.allclose(compiled(x), block(x), atol=1e-6)
    inverse = torch.compile(hamiltonian.inverse, fullgraph=True, backend="aot_eager")
    assert torch.allclose(inverse(x), hamiltonian.inverse(x), atol=1e-6)


@pytest.mark.parametrize("block_type", [HamiltonianBlock, LeapfrogBlock])
def test_gradcheck(block_type):
    block = block_type(MLP(2, hidden=3, act="tanh"), [0.0, 0.3, 0.7, 1.0], [0.0, 1.0], "linear")
    block = block.double()
    block.reset_parameters()
    names, params = zip(*block.named_parameters())
    x = torch.randn(2, 4 if block_type is HamiltonianBlock else 2, dtype=F64)

    def run(x, *params):
        return torch.func.functional_call(block, dict(zip(names, params)), (x,))

    inputs = (x.requires_grad_(), *(p.detach().clone().requires_grad_() for p in params))
    assert torch.autograd.gradcheck(run, inputs, eps=1e-6, atol=1e-7)


def test_extra_repr_and_properties():
    block = HamiltonianBlock(MLP(2), [0.0, 0.5, 1.0], interpolation="constant")
    text = repr(block)
    assert "t=[0, 0.5, 1] (2 steps)" in text
    assert "t_theta=[0, 0.5] (2 controls)" in text
    assert block.num_steps == 2 and block.interpolation == "constant"
    leapfrog = LeapfrogBlock(MLP(2), [0.0, 0.5, 1.0], [0.0], "linear", start="taylor")
    assert "interpolation=linear, start=taylor" in repr(leapfrog)
    assert leapfrog.start == "taylor" and leapfrog.t_theta == (0.0,)
    assert len(leapfrog.layers) == 1


# ========================================================================================== errors


def _lit(value) -> str:
    return re.escape(repr(value))


@pytest.mark.parametrize("shape", [(2, 5, 4, 4), (3, 7)])
def test_odd_channel_count_raises(shape):
    block = HamiltonianBlock(MLP(2), [0.0, 1.0])
    channels = shape[1]
    with pytest.raises(ValueError, match=rf"x must have an even number.*got {channels} channels"):
        block(torch.randn(shape))
    with pytest.raises(ValueError, match=rf"output must .*got {channels} channels"):
        block.inverse(torch.randn(shape))
    with pytest.raises(ValueError, match=r"x must have shape \(N, C, \*\).*got shape \(4,\)"):
        block(torch.randn(4))
    with pytest.raises(TypeError, match="x must be a tensor or a pair"):
        block((torch.randn(2, 2),))


@pytest.mark.parametrize("block_type", [HamiltonianBlock, LeapfrogBlock])
def test_bad_arguments_raise(block_type):
    layer = MLP(2)
    with pytest.raises(ValueError, match=r"t must be strictly increasing.*t\[2\] = 0\.5"):
        block_type(layer, [0.0, 1.0, 0.5])
    with pytest.raises(ValueError, match=r"t must have at least 2 points, got 1"):
        block_type(layer, [0.0])
    with pytest.raises(ValueError, match=r"t_theta must be strictly increasing"):
        block_type(layer, [0.0, 1.0], t_theta=[0.5, 0.5])
    with pytest.raises(TypeError, match="layer must be an nn.Module, got function"):
        block_type(lambda x: x, [0.0, 1.0])
    with pytest.raises(ValueError, match=f"interpolation must be one of .*got {_lit('cubic')}"):
        block_type(layer, [0.0, 1.0], interpolation="cubic")


def test_block_specific_bad_arguments_raise():
    with pytest.raises(TypeError, match="layer2 must be an nn.Module, got int"):
        HamiltonianBlock(MLP(2), [0.0, 1.0], layer2=3)
    with pytest.raises(ValueError, match=f"start must be one of .*got {_lit('still')}"):
        LeapfrogBlock(MLP(2), [0.0, 1.0], start="still")
    block = LeapfrogBlock(MLP(2), [0.0, 1.0])
    with pytest.raises(ValueError, match="return_pair and return_trajectory"):
        block(torch.randn(3, 2), return_pair=True, return_trajectory=True)
