"""Reversible Heun and the asynchronous leapfrog: against hand-written loops, full mode, theory."""

from __future__ import annotations

import math

import pytest
import torch
from grids import rates, refined_grids
from test_reversible import saved_bytes
from torch import nn

import dynamicblocks as db
from dynamicblocks import ALFBlock, ReversibleHeunBlock
from dynamicblocks.grid import uniform_grid

BLOCKS = {"reversible_heun": ReversibleHeunBlock, "alf": ALFBlock}

GRID = (0.0, 0.13, 0.3, 0.38, 0.61, 0.7, 0.94, 1.2)


class Mlp(nn.Module):
    """A small nonlinear field ``W2 tanh(W1 x + b1) + b2``."""

    def __init__(self, width: int = 3, hidden: int = 5) -> None:
        super().__init__()
        self.inner, self.outer = nn.Linear(width, hidden), nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer(torch.tanh(self.inner(x)))


class Counting(nn.Module):
    """``A x``, counting its calls."""

    def __init__(self, matrix: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("matrix", matrix)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x @ self.matrix.T


def make(kind: str, t=GRID, controls="step", interpolation="constant", memory="full", seed=0):
    torch.manual_seed(seed)
    t_theta = {"step": None, "shared": [0.0], "coarse": list(t[::3])}[controls]
    block = BLOCKS[kind](Mlp(), t, t_theta, interpolation, memory).double()
    block.reset_parameters()
    return block


def theta_at(block, time: float) -> nn.Module:
    """A module holding ``theta(time)`` of ``block`` (the library's interpolation, by hand)."""
    knots, layers = block.t_theta, block.layers
    index = max([j for j, knot in enumerate(knots) if knot <= time] or [0])
    if block.interpolation == "constant" or index + 1 == len(knots) or time <= knots[0]:
        return layers[index]
    weight = (time - knots[index]) / (knots[index + 1] - knots[index])
    module = Mlp().double()
    with torch.no_grad():
        for p, a, b in zip(
            module.parameters(), layers[index].parameters(), layers[index + 1].parameters()
        ):
            p.copy_((1 - weight) * a + weight * b)
    return module


def heun_loop(block, x, z=None):
    """Kidger et al.'s reversible Heun written out, with ``theta(t_k)`` at every grid point."""
    t = block.t
    y, z = x, x if z is None else z
    f = theta_at(block, t[0])(z)
    for t_k, t_next in zip(t, t[1:]):
        h = t_next - t_k
        z_next = 2 * y - z + h * f
        f_next = theta_at(block, t_next)(z_next)
        y = y + h / 2 * (f + f_next)
        z, f = z_next, f_next
    return y, z


def alf_loop(block, x, v=None):
    """MALI's asynchronous leapfrog written out, ``v_0 = f(t_0, x)`` by default."""
    t = block.t
    z = x
    v = theta_at(block, t[0])(x) if v is None else v
    for t_k, t_next in zip(t, t[1:]):
        h = t_next - t_k
        s = z + h / 2 * v
        v = 2 * theta_at(block, t_k + h / 2)(s) - v
        z = s + h / 2 * v
    return z, v


LOOPS = {"reversible_heun": heun_loop, "alf": alf_loop}


# ============================================================================ the methods


@pytest.mark.parametrize("kind", BLOCKS)
@pytest.mark.parametrize(
    "controls,interpolation", [("step", "constant"), ("shared", "constant"), ("coarse", "linear")]
)
def test_the_block_equals_the_method_written_out(kind, controls, interpolation):
    block = make(kind, controls=controls, interpolation=interpolation)
    x, second = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    for given in (None, second):
        expected = LOOPS[kind](block, x, given)
        got = block(x, given, return_pair=True)
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-13)


@pytest.mark.parametrize("kind", BLOCKS)
def test_one_evaluation_per_step_and_one_to_start(kind):
    field = Counting(torch.eye(3, dtype=torch.float64))
    block = BLOCKS[kind](field, uniform_grid(0.0, 1.0, 10), [0.0], memory="full")
    block(torch.randn(2, 3, dtype=torch.float64))
    assert block.layers[0].calls == 11


@pytest.mark.parametrize("kind", BLOCKS)
def test_second_order_on_random_graded_grids(kind):
    """Against the exact flow of a rotation with decay, on grids whose steps vary by 4x."""
    rotation = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]], dtype=torch.float64)
    x = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    exact = x @ torch.linalg.matrix_exp(rotation).T
    errors = []
    for t in refined_grids(seed=3):
        block = BLOCKS[kind](Counting(rotation), t, [0.0], memory="full")
        errors.append((block(x) - exact).norm().item())
    assert all(abs(rate - 2.0) < 0.2 for rate in rates(errors)), rates(errors)


@pytest.mark.parametrize("kind", BLOCKS)
def test_second_order_with_weights_in_time(kind):
    """A nonlinear field with linear weights in time, against a fine RK4 reference."""
    torch.manual_seed(1)
    fine = db.DynamicBlock(Mlp(), uniform_grid(0.0, 1.0, 2048), "rk4", [0.0, 0.5, 1.0], "linear")
    fine = fine.double()
    fine.reset_parameters()
    x = torch.randn(3, 3, dtype=torch.float64)
    with torch.no_grad():
        exact = fine(x)
        errors = []
        for t in refined_grids(seed=5):
            block = BLOCKS[kind](Mlp(), t, [0.0, 0.5, 1.0], "linear", "full").double()
            block.load_state_dict(fine.state_dict())
            errors.append((block(x) - exact).norm().item())
    assert all(abs(rate - 2.0) < 0.2 for rate in rates(errors)), rates(errors)


@pytest.mark.parametrize("kind", BLOCKS)
def test_the_inverse_recovers_the_input(kind):
    block = make(kind, controls="coarse", interpolation="linear")
    x, second = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    with torch.no_grad():
        out = block(x, second, return_pair=True)
        back = block.inverse(*out)
    torch.testing.assert_close(back[0], x, rtol=0, atol=1e-12)
    torch.testing.assert_close(back[1], second, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", BLOCKS)
def test_a_pair_continues_the_solve_in_a_second_block(kind):
    block = make(kind, t=uniform_grid(0.0, 2.0, 8), controls="shared")
    first = BLOCKS[kind](Mlp(), uniform_grid(0.0, 1.0, 4), [0.0], memory="full").double()
    second = BLOCKS[kind](Mlp(), uniform_grid(1.0, 2.0, 4), [1.0], memory="full").double()
    first.layers[0].load_state_dict(block.layers[0].state_dict())
    second.layers[0].load_state_dict(block.layers[0].state_dict())
    x = torch.randn(4, 3, dtype=torch.float64)
    torch.testing.assert_close(second(*first(x, return_pair=True)), block(x), rtol=0, atol=1e-13)


@pytest.mark.parametrize("kind", BLOCKS)
def test_trajectory_starts_at_the_input_and_ends_at_the_output(kind):
    block = make(kind)
    x = torch.randn(4, 3, dtype=torch.float64)
    trajectory = block(x, return_trajectory=True)
    assert trajectory.shape == (len(GRID), 4, 3)
    torch.testing.assert_close(trajectory[0], x, rtol=0, atol=0)
    torch.testing.assert_close(trajectory[-1], block(x), rtol=0, atol=1e-14)


# ============================================================================ reversible memory


@pytest.mark.parametrize("kind", BLOCKS)
@pytest.mark.parametrize(
    "controls,interpolation", [("step", "constant"), ("shared", "constant"), ("coarse", "linear")]
)
@pytest.mark.parametrize("given", [False, True])
def test_reversible_gradients_equal_full_mode(kind, controls, interpolation, given):
    block = make(kind, controls=controls, interpolation=interpolation)
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    second = torch.randn(4, 3, dtype=torch.float64, requires_grad=True) if given else None
    inputs = [x, *([second] if given else []), *block.parameters()]
    cotangent = [torch.randn(4, 3, dtype=torch.float64) for _ in range(2)]
    found = {}
    for mode in ("full", "checkpoint", "reversible"):
        block.memory = mode
        out = block(x, second, return_pair=True)
        found[mode] = torch.autograd.grad(out, inputs, cotangent)
    for mode in ("checkpoint", "reversible"):
        for a, b in zip(found[mode], found["full"]):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", BLOCKS)
def test_reversible_passes_gradcheck(kind):
    block = make(kind, t=(0.0, 0.2, 0.5, 0.6, 1.0), controls="coarse", interpolation="linear")
    block.memory = "reversible"
    # perturbed in place by gradcheck: the block sees them
    weights = (block.layers[0].inner.weight, block.layers[-1].outer.bias)
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    second = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, s, *w: block(x, s), (x, second, *weights))
    assert torch.autograd.gradcheck(lambda x, *w: block(x), (x, *weights))


@pytest.mark.parametrize("kind", BLOCKS)
def test_reversible_with_batchnorm_equals_full_and_keeps_the_buffers(kind):
    def conv_field() -> nn.Module:
        return nn.Sequential(nn.BatchNorm2d(2), nn.Tanh(), nn.Conv2d(2, 2, 3, padding=1))

    x = torch.randn(4, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    found, buffers = {}, {}
    for mode in ("full", "reversible"):
        torch.manual_seed(0)
        block = BLOCKS[kind](conv_field(), uniform_grid(0.0, 1.0, 5), memory=mode).double()
        out = block(x)
        found[mode] = torch.autograd.grad(out.square().sum(), [x, *block.parameters()])
        buffers[mode] = [b.clone() for b in block.buffers()]
    for a, b in zip(found["reversible"], found["full"]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    for a, b in zip(buffers["reversible"], buffers["full"]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("kind", BLOCKS)
def test_saved_bytes_do_not_grow_with_the_steps(kind):
    def measure(steps: int, memory: str) -> int:
        torch.manual_seed(0)
        block = BLOCKS[kind](Mlp(6, 8), uniform_grid(0.0, 1.0, steps), [0.0], memory=memory)
        x = torch.randn(16, 6, dtype=torch.float64, requires_grad=True)
        return saved_bytes(lambda: block.double()(x))

    state = 16 * 6 * 8
    outputs = 3 if kind == "reversible_heun" else 2  # (y, z, f) or (z, v)
    assert measure(2, "reversible") == measure(64, "reversible") == outputs * state
    full = {steps: measure(steps, "full") for steps in (2, 3, 64)}
    assert full[64] - full[2] == 62 * (full[3] - full[2]) > 0  # linear in the steps


@pytest.mark.parametrize("kind", BLOCKS)
def test_adjoint_is_refused_with_the_standard_message(kind):
    with pytest.raises(ValueError, match="memory must be one of .*'reversible'.*got 'adjoint'"):
        make(kind, memory="adjoint")


# ============================================================================ the core's operations


@pytest.mark.parametrize("kind", BLOCKS)
def test_refine_keeps_theta_and_converges(kind):
    block = make(kind, t=uniform_grid(0.0, 1.0, 8))
    x = torch.randn(4, 3, dtype=torch.float64)
    coarse = block(x).detach()
    refined = block.remanifest(uniform_grid(0.0, 1.0, 8))
    torch.testing.assert_close(refined(x), coarse, rtol=0, atol=0)
    block.refine_()
    assert block.num_steps == 16 and len(block.t_theta) == 16
    assert (block(x) - coarse).abs().max() < 0.05 * coarse.abs().max()


def test_the_network_builder_knows_both_blocks():
    for kind in BLOCKS:
        net = db.DynamicNet(
            [db.Stage(4, 4, lambda c: db.DoubleSymLayer(c), uniform_grid(0.0, 1.0, 3), block=kind)],
            in_channels=3,
            num_classes=5,
        )
        assert isinstance(net.blocks[0], BLOCKS[kind])
        assert net(torch.randn(2, 3, 8, 8)).shape == (2, 5)


def test_stability_is_the_imaginary_segment_in_practice():
    """On a rotation with h omega < 1 both schemes stay bounded for 10^4 steps."""
    omega, steps = 0.9, 10_000
    rotation = torch.tensor([[0.0, omega], [-omega, 0.0]], dtype=torch.float64)
    x = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    for kind in BLOCKS:
        block = BLOCKS[kind](
            Counting(rotation), uniform_grid(0.0, float(steps), steps), [0.0], memory="full"
        )
        with torch.no_grad():
            assert block(x).norm() < 3.0
    decay = torch.tensor([[-0.5]], dtype=torch.float64)  # h lambda = -0.5: off the segment
    for kind in BLOCKS:
        block = BLOCKS[kind](Counting(decay), uniform_grid(0.0, 200.0, 200), [0.0], memory="full")
        with torch.no_grad():
            assert block(torch.ones(1, 1, dtype=torch.float64)).abs() > 1e6 > math.exp(-100)
