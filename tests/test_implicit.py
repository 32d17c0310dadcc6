"""Implicit blocks: fixed points, implicit-function-theorem gradients, orders, reports."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dynamicblocks import MLP, DynamicBlock
from dynamicblocks.analysis import fit_slope
from dynamicblocks.fixed_point import anderson
from dynamicblocks.implicit import ConvergenceError, ConvergenceWarning, ImplicitBlock

GRID = (0.0, 0.1, 0.25, 0.5)  # non-uniform
SCHEMES = ["backward_euler", "trapezoid", "implicit_midpoint"]


pytestmark = pytest.mark.usefixtures("float64")


def block(scheme="backward_euler", t=GRID, **kwargs) -> ImplicitBlock:
    torch.manual_seed(0)
    kwargs = {"tol": 1e-13, "max_iter": 200, **kwargs}
    implicit = ImplicitBlock(MLP(3, 8), t, scheme, t_theta=kwargs.pop("t_theta", None), **kwargs)
    implicit.reset_parameters()
    return implicit


def step_map(b: ImplicitBlock, k: int, x: torch.Tensor):
    """The step's equation written out: y = G(y), with weights of step k (one control each)."""
    h = b.t[k + 1] - b.t[k]
    f = b.layers[k]
    if b.scheme == "implicit_midpoint":
        return lambda y: x + h * f((x + y) / 2)
    theta = b.theta
    fx = f(x)
    return lambda y: x + h * ((1 - theta) * fx + theta * f(y))


def unrolled(b: ImplicitBlock, x: torch.Tensor, iterations: int = 200) -> torch.Tensor:
    """Plain fixed-point iteration recorded by autograd, fully converged."""
    for k in range(b.num_steps):
        G = step_map(b, k, x)
        y = x
        for _ in range(iterations):
            y = G(y)
        x = y
    return x


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_solution_satisfies_its_equation_and_equals_the_unrolled_solve(scheme):
    x = torch.randn(5, 3)
    one_step = block(scheme, t=(0.0, 0.1))
    with torch.no_grad():
        y = one_step(x)
        residual = (step_map(one_step, 0, x)(y) - y).abs().max().item()
    assert residual < 1e-12 and one_step.solver_stats[0]["converged"]
    b = block(scheme)
    with torch.no_grad():
        torch.testing.assert_close(b(x), unrolled(b, x), rtol=0, atol=1e-12)
    assert [s["step"] for s in b.solver_stats] == [0, 1, 2]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_implicit_gradient_equals_the_unrolled_solves_gradient(scheme):
    b = block(scheme)
    x = torch.randn(5, 3, requires_grad=True)
    weights = torch.randn(5, 3)
    params = list(b.parameters())
    implicit = torch.autograd.grad((b(x) * weights).sum(), [x, *params])
    assert all(s["converged"] for s in b.backward_stats) and len(b.backward_stats) == 3
    reference = torch.autograd.grad((unrolled(b, x) * weights).sum(), [x, *params])
    for got, expected in zip(implicit, reference):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_gradcheck_through_the_implicit_block(scheme):
    b = block(scheme, t=(0.0, 0.2, 0.3))
    x = torch.randn(2, 3, requires_grad=True)
    assert torch.autograd.gradcheck(b, (x,), check_undefined_grad=False)


def test_theta_zero_is_explicit_euler_exactly():
    torch.manual_seed(0)
    layer = MLP(3, 8)
    implicit = ImplicitBlock(layer, GRID, "theta", theta=0.0)
    explicit = DynamicBlock(layer, GRID, "euler")
    x = torch.randn(4, 3)
    assert torch.equal(implicit(x), explicit(x)) and implicit.solver_stats == []


class Linear(nn.Module):
    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(a.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.T


@pytest.mark.parametrize(("scheme", "order"), [("backward_euler", 1), ("trapezoid", 2),
                                               ("implicit_midpoint", 2)])  # fmt: skip
def test_orders_on_a_non_uniform_grid(scheme, order):
    a = torch.tensor([[-0.5, 2.0], [-2.0, -0.5]])
    x0 = torch.tensor([[1.0, 0.5]])
    exact = x0 @ torch.linalg.matrix_exp(a).T
    base = [0.0, 0.13, 0.3, 0.42, 0.61, 0.8, 1.0]  # refined by halving: stays non-uniform
    sizes, errors = [], []
    for level in range(4):
        grid = base
        for _ in range(level):
            grid = [v for pair in zip(grid, grid[1:]) for v in (pair[0], sum(pair) / 2)] + [1.0]
        b = ImplicitBlock(Linear(a), grid, scheme, t_theta=(0.0,), tol=1e-14, max_iter=500)
        with torch.no_grad():
            errors.append((b(x0) - exact).abs().max().item())
        sizes.append(max(q - p for p, q in zip(grid, grid[1:])))
    assert abs(fit_slope(sizes, errors) - order) < 0.2, errors


def test_backward_euler_is_stable_where_explicit_euler_blows_up():
    stiff = Linear(torch.tensor([[-50.0]]))
    grid = [0.1 * k for k in range(11)]
    x = torch.ones(1, 1)
    with torch.no_grad():
        implicit = ImplicitBlock(stiff, grid, t_theta=(0.0,), tol=1e-12, max_iter=200)(x)
        explicit = DynamicBlock(stiff, grid, "euler", t_theta=(0.0,))(x)
    assert abs(implicit.item()) < 1e-7 and abs(explicit.item()) > 1e6  # |1/(1+5)|^10, |1-5|^10


def test_non_convergence_warns_or_raises_and_is_recorded():
    x = torch.randn(3, 3)
    b = block(max_iter=2, tol=1e-15)
    with pytest.warns(ConvergenceWarning) as caught:
        b(x)
    assert [str(w.message)[:42] for w in caught] == [
        f"forward solve of step {k} stopped after 2 it" for k in range(3)
    ]
    assert b.solver_stats[0]["iterations"] == 2 and not b.solver_stats[0]["converged"]
    with pytest.raises(ConvergenceError, match="raise max_iter, shrink the step"):
        block(max_iter=2, tol=1e-15, on_failure="raise")(x)
    quiet = block(max_iter=2, tol=1e-15, on_failure="ignore")
    quiet(x)
    assert not quiet.solver_stats[0]["converged"]


def test_memory_does_not_grow_with_the_number_of_iterations():
    x = torch.randn(4, 3, requires_grad=True)

    def saved_tensors(b: ImplicitBlock) -> int:
        count = 0

        def pack(tensor):
            nonlocal count
            count += 1
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            b(x)
        return count

    few, many = block(tol=1e-3), block(tol=1e-14)
    assert saved_tensors(few) == saved_tensors(many)
    assert many.solver_stats[0]["iterations"] > few.solver_stats[0]["iterations"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scheme": "theta", "theta": 1.5}, r"theta must be a number in \[0, 1\], got 1.5"),
        ({"scheme": "theta", "theta": -0.1}, r"theta must be a number in \[0, 1\], got -0.1"),
        ({"scheme": "theta"}, 'scheme="theta" needs theta'),
        ({"scheme": "trapezoid", "theta": 0.3}, "theta is only for scheme='theta'"),
        ({"scheme": "crank"}, "scheme must be one of"),
        ({"tol": 0.0}, "tol must be a positive number, got 0.0"),
        ({"tol": -1e-6}, "tol must be a positive number, got -1e-06"),
        ({"max_iter": 0}, "max_iter must be a positive int, got 0"),
        ({"anderson_memory": -1}, r"anderson_memory must be an int >= 0, got -1"),
        ({"on_failure": "shout"}, "on_failure must be one of"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ImplicitBlock(MLP(3, 8), GRID, **kwargs)


def test_anderson_solves_a_contraction_faster_than_plain_iteration():
    matrix = torch.tensor([[0.9, 0.05], [-0.05, 0.9]])
    shift = torch.tensor([1.0, -1.0])
    exact = torch.linalg.solve(torch.eye(2) - matrix, shift)
    g = lambda v: matrix @ v + shift  # noqa: E731
    accelerated = anderson(g, torch.zeros(2), tol=1e-12, max_iter=100, memory=5)
    plain = anderson(g, torch.zeros(2), tol=1e-12, max_iter=1000, memory=0)
    for result in (accelerated, plain):
        assert result.converged
        torch.testing.assert_close(result.solution, exact, rtol=0, atol=1e-10)
    assert accelerated.iterations < plain.iterations / 10
    assert not math.isnan(accelerated.residual)
