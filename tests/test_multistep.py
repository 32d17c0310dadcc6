"""Adams-Bashforth blocks: weights, orders on non-uniform grids, torchdiffeq, memory, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torchdiffeq
from grids import rates, refined_grids
from torch import nn

import dynamicblocks as db
from dynamicblocks.methods.multistep import adams_bashforth_weights

pytestmark = pytest.mark.usefixtures("float64")


class Tanh(nn.Module):
    def __init__(self, n: int = 3) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n, n) / n**0.5)

    def forward(self, x):
        return torch.tanh(x @ self.weight.T)


class Scale(nn.Module):
    """f(x) = w x: with weights linear in time, x' = w(t) x has a closed-form solution."""

    def __init__(self, w: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))

    def forward(self, x):
        return self.w * x


class Rotation(nn.Module):
    """f(x) = x J - 0.3 x: a damped rotation, x(t) = x0 exp(t (J - 0.3 I))^T."""

    def forward(self, x):
        return torch.stack([x[:, 1], -x[:, 0]], dim=1) - 0.3 * x


def random_grid(steps: int, seed: int) -> list[float]:
    """A random non-uniform grid on [0, 1]: steps between 0.5 and 1.5 times the mean."""
    generator = torch.Generator().manual_seed(seed)
    h = 0.5 + torch.rand(steps, generator=generator, dtype=torch.float64)
    t = torch.cat([torch.zeros(1), torch.cumsum(h, 0)])
    return (t / t[-1]).tolist()


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        (1, [1]),
        (2, [3 / 2, -1 / 2]),
        (3, [23 / 12, -16 / 12, 5 / 12]),
        (4, [55 / 24, -59 / 24, 37 / 24, -9 / 24]),
    ],
)
def test_uniform_weights_are_the_classical_coefficients(order, expected):
    h = 0.1
    betas = adams_bashforth_weights([-j * h for j in range(order)], h)
    torch.testing.assert_close(torch.tensor(betas), h * torch.tensor(expected), rtol=0, atol=1e-15)


def test_variable_step_weights_integrate_polynomials_exactly():
    times = [0.3, 0.1, -0.35, -0.4]  # t_k, t_{k-1}, ... on a non-uniform grid
    betas = adams_bashforth_weights(times, 0.9)
    for degree in range(4):
        exact = (0.9 ** (degree + 1) - 0.3 ** (degree + 1)) / (degree + 1)
        quadrature = sum(b * t**degree for b, t in zip(betas, times))
        assert quadrature == pytest.approx(exact, abs=1e-14)


@pytest.mark.parametrize("scheme", list(db.ADAMS_BASHFORTH))
def test_order_on_random_non_uniform_grids_against_the_exact_solution(scheme):
    order = db.ADAMS_BASHFORTH[scheme]
    x0 = torch.tensor([[1.0, 0.5], [-0.3, 0.8]])
    generator = torch.tensor([[-0.3, 1.0], [-1.0, -0.3]])
    exact = x0 @ torch.linalg.matrix_exp(2.0 * generator).T
    errors = []
    for grid in refined_grids(seed=order):
        t = [2.0 * time for time in grid]
        block = db.MultistepBlock(Rotation(), t, scheme, t_theta=(0.0,))
        errors.append((block(x0) - exact).abs().max().item())
    measured = rates(errors)
    assert all(abs(rate - order) < 0.2 for rate in measured), (errors, measured)


@pytest.mark.parametrize("scheme", ["ab2", "ab3", "ab4"])
def test_weights_in_time_keep_the_order(scheme):
    """x' = w(t) x with w linear in t between two controls: x(1) = x0 exp(a + (b - a) / 2)."""
    order = db.ADAMS_BASHFORTH[scheme]
    a, b = 0.7, -1.1
    exact = math.exp(a + (b - a) / 2)
    errors = []
    for grid in refined_grids(seed=10 + order):
        block = db.MultistepBlock(Scale(a), grid, scheme, None, (0.0, 1.0), "linear")
        with torch.no_grad():
            block.layers[1].w.fill_(b)
        errors.append(abs(block(torch.ones(1, 1)).item() - exact))
    measured = rates(errors)
    assert all(abs(rate - order) < 0.2 for rate in measured), (errors, measured)


def test_ab3_started_by_the_3_8_rule_equals_torchdiffeq_explicit_adams():
    """torchdiffeq's explicit_adams with max_order=4: two RK4 (3/8) steps, then AB3."""
    torch.manual_seed(0)
    field = Tanh(3)
    x = torch.randn(4, 3)
    t = torch.linspace(0.0, 2.0, 11)
    expected = torchdiffeq.odeint(
        lambda _, y: field(y), x, t, method="explicit_adams", options={"max_order": 4}
    )
    block = db.MultistepBlock(field, t.tolist(), "ab3", "rk4_38", t_theta=(0.0,))
    torch.testing.assert_close(block(x, return_trajectory=True), expected, rtol=0, atol=1e-14)


def test_ab1_is_forward_euler_and_the_start_steps_are_the_start_scheme():
    torch.manual_seed(1)
    field, t, x = Tanh(3), [0.0, 0.2, 0.5, 0.6, 1.0], torch.randn(2, 3)
    euler = db.DynamicBlock(field, t, "euler")
    ab1 = db.MultistepBlock(field, t, "ab1")
    ab1.load_state_dict(euler.state_dict())
    assert torch.equal(ab1(x), euler(x))
    # AB4's first three steps are RK4 steps with the weights of those steps
    ab4 = db.MultistepBlock(field, t, "ab4")
    rk4 = db.DynamicBlock(field, t, "rk4")
    for block in (ab4, rk4):
        with torch.no_grad():
            for k, layer in enumerate(block.layers):
                layer.weight.mul_(1.0 + 0.1 * k)
    torch.testing.assert_close(
        ab4(x, return_trajectory=True)[:4], rk4(x, return_trajectory=True)[:4], rtol=0, atol=0
    )


def test_the_state_carries_order_minus_one_slopes_and_no_trajectory():
    torch.manual_seed(2)
    block = db.MultistepBlock(Tanh(3), [0.0, 0.1, 0.2, 0.3, 0.4, 0.5], "ab4")
    states = block.integrate((torch.randn(2, 3), None, None, None), keep=True)
    assert all(len(state) == 4 for state in states)  # x and three slopes
    assert all(s is not None for s in states[-1])


def test_checkpoint_gives_the_full_gradient_and_gradcheck_passes():
    torch.manual_seed(3)
    t = random_grid(6, seed=3)
    block = db.MultistepBlock(Tanh(3), t, "ab3", interpolation="linear", t_theta=(0.0, 0.5, 1.0))
    x = torch.randn(2, 3, requires_grad=True)
    torch.autograd.gradcheck(lambda x, *p: block(x), (x, *block.parameters()))
    full = torch.autograd.grad(block(x).sum(), (x, *block.parameters()))
    block.memory = "checkpoint"
    checkpointed = torch.autograd.grad(block(x).sum(), (x, *block.parameters()))
    for a, b in zip(full, checkpointed):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-14)


def test_remanifest_changes_the_scheme_and_start():
    torch.manual_seed(4)
    block = db.MultistepBlock(Tanh(3), [0.0, 0.5, 1.0], "ab2")
    assert block.method.start.name == "heun"
    other = block.remanifest(scheme="ab4")
    assert (other.method.order, other.method.start.name) == (4, "rk4")
    same = block.remanifest(start="midpoint")
    assert (same.method.order, same.method.start.name) == (2, "midpoint")
    assert "scheme=ab2, start=heun" in repr(block)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"scheme must be one of \('ab1', 'ab2', 'ab3', 'ab4'\)"):
        db.MultistepBlock(Tanh(3), [0.0, 1.0], "ab5")
    with pytest.raises(ValueError, match="rk9"):
        db.MultistepBlock(Tanh(3), [0.0, 1.0], "ab2", start="rk9")
    with pytest.raises(ValueError, match=r"MultistepBlock\.memory must be one of"):
        db.MultistepBlock(Tanh(3), [0.0, 1.0], memory="adjoint")
    with pytest.raises(TypeError, match="layer"):
        db.MultistepBlock("relu", [0.0, 1.0])
