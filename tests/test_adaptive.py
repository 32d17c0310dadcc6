"""Adaptive integration: torchdiffeq's steps, tolerances, the accepted grid, gradients, errors."""

from __future__ import annotations

import copy

import pytest
import torch
import torchdiffeq
from torch import nn

import dynamicblocks as db
from dynamicblocks.adaptive import Controller, StepSizeError, solve_adaptive

pytestmark = pytest.mark.usefixtures("float64")

PAIRS = ["heun_euler", "bosh3", "dopri5", "tsit5"]


class Tanh(nn.Module):
    def __init__(self, n: int = 4) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n, n))

    def forward(self, x):
        return torch.tanh(x @ self.weight.T)


class Rotation(nn.Module):
    """f(x) = x J - 0.3 x: x(t) = x0 exp(t (J - 0.3 I))^T."""

    def forward(self, x):
        return torch.stack([x[:, 1], -x[:, 0]], dim=1) - 0.3 * x


class Recorder(nn.Module):
    """torchdiffeq's view of a field: counts evaluations, records the accepted steps' ends."""

    def __init__(self, field: nn.Module) -> None:
        super().__init__()
        self.field, self.evaluations, self.accepted = field, 0, []

    def forward(self, t, y):
        self.evaluations += 1
        return self.field(y)

    def callback_accept_step(self, t0, y0, dt):
        self.accepted.append(float(t0 + dt))


@pytest.mark.parametrize("tol", [1e-4, 1e-6, 1e-8])
def test_dopri5_takes_torchdiffeqs_steps_and_evaluations(tol):
    """Same error estimate, norm, first step and I controller: the same accepted steps.

    torchdiffeq steps past the end and interpolates; the library shortens the
    last step to end on it. Every accepted step before that is the same.
    """
    torch.manual_seed(0)
    field, x = Tanh(), torch.randn(3, 4)
    block = db.DynamicBlock(field, (0.0, 2.0), "dopri5", t_theta=(0.0,))
    times = [0.0, 0.3, 0.5, 1.0, 1.4, 2.0]
    with torch.no_grad():
        solution = solve_adaptive(block, x, rtol=tol, atol=tol / 100, t_eval=times)
        recorder = Recorder(field)
        expected = torchdiffeq.odeint(
            recorder, x, torch.tensor(times), method="dopri5", rtol=tol, atol=tol / 100
        )
    assert solution.evaluations == recorder.evaluations
    assert solution.accepted == len(recorder.accepted)
    steps = torch.tensor(solution.t[1:-1])
    # the same steps up to the round-off of the step-size arithmetic, which drifts slowly
    torch.testing.assert_close(steps, torch.tensor(recorder.accepted[:-1]), rtol=1e-6, atol=0)
    inside = [i for i, time in enumerate(times) if time <= solution.t[-2]]
    torch.testing.assert_close(solution.ys[inside], expected[inside], rtol=0, atol=1e-12)
    assert solution.evaluations == 2 + 6 * (solution.accepted + solution.rejected)


@pytest.mark.parametrize("scheme", PAIRS)
def test_every_pair_meets_its_tolerance_against_the_exact_solution(scheme):
    x0 = torch.tensor([[1.0, 0.5], [-0.3, 0.8]])
    generator = torch.tensor([[-0.3, 1.0], [-1.0, -0.3]])
    block = db.DynamicBlock(Rotation(), (0.0, 4.0), scheme, t_theta=(0.0,))
    times = [0.0, 0.7, 2.5, 4.0]
    exact = torch.stack([x0 @ torch.linalg.matrix_exp(t * generator).T for t in times])
    # tsit5's long fifth-order steps outrun the cubic Hermite interpolant at t_eval
    # (43 times the tolerance at 1e-7 here); its own quartic is not implemented.
    interpolation = 100 if scheme == "tsit5" else 10
    for tol in (1e-4, 1e-7):
        solution = solve_adaptive(block, x0, rtol=tol, atol=tol, t_eval=times)
        assert (solution.y - exact[-1]).abs().max() < 10 * tol
        assert (solution.ys - exact).abs().max() < interpolation * tol
        assert solution.t[0] == 0.0 and solution.t[-1] == 4.0


@pytest.mark.parametrize("scheme", PAIRS)
@pytest.mark.parametrize("interpolation", ["constant", "linear"])
def test_the_fixed_block_on_the_accepted_grid_is_the_adaptive_solve(scheme, interpolation):
    """Values and gradients, exactly: discretize-then-optimize through the accepted steps."""
    torch.manual_seed(1)
    block = db.DynamicBlock(Tanh(), (0.0, 1.0), scheme, (0.0, 0.4, 1.0), interpolation)
    block.reset_parameters()
    x = torch.randn(3, 4, requires_grad=True)
    solution = solve_adaptive(block, x, rtol=1e-5, atol=1e-7)
    fixed = block.remanifest(solution.t)
    assert torch.equal(fixed(x), solution.y)
    assert fixed.num_steps == solution.accepted
    weights = torch.randn(3, 4)
    got = torch.autograd.grad(
        (solution.y * weights).sum(), (x, *block.parameters()), allow_unused=True
    )
    expected = torch.autograd.grad(
        (fixed(x) * weights).sum(), (x, *fixed.parameters()), allow_unused=True
    )
    for g, e in zip(got, expected):  # equal up to the order autograd sums the FSAL slope
        if e is None:
            assert g is None
        else:
            torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-14)


def test_the_gradients_pass_gradcheck_on_the_accepted_grid():
    """gradcheck of the fixed block on the accepted grid, whose gradients the solve's equal."""
    torch.manual_seed(2)
    block = db.DynamicBlock(Tanh(3), (0.0, 1.0), "bosh3", (0.0, 1.0), "linear")
    x = torch.randn(2, 3, requires_grad=True)
    fixed = block.remanifest(solve_adaptive(block, x, rtol=1e-4, atol=1e-6).t)
    assert torch.autograd.gradcheck(lambda x, *p: fixed(x), (x, *fixed.parameters()))


def test_per_component_tolerances_and_a_pi_controller():
    torch.manual_seed(3)
    block = db.DynamicBlock(Tanh(), (0.0, 2.0), "tsit5", t_theta=(0.0,))
    x = torch.randn(3, 4)
    loose = torch.tensor([1e-3, 1e-3, 1e-3, 1e-9])
    tight = solve_adaptive(block, x, rtol=1e-9, atol=1e-9)
    mixed = solve_adaptive(block, x, rtol=loose, atol=loose)
    uniform = solve_adaptive(block, x, rtol=1e-3, atol=1e-3)
    assert uniform.accepted < mixed.accepted <= tight.accepted
    pi = solve_adaptive(block, x, controller=Controller(1e-6, 1e-8, pcoeff=0.2, icoeff=0.3))
    assert (pi.y - tight.y).abs().max() < 1e-5


def test_bad_input_is_named():
    block = db.DynamicBlock(Rotation(), (0.0, 1.0), "dopri5")
    x = torch.ones(1, 2)
    with pytest.raises(ValueError, match="rtol must be a positive finite number, got 0"):
        solve_adaptive(block, x, rtol=0)
    with pytest.raises(ValueError, match="atol must be a positive finite number"):
        solve_adaptive(block, x, atol=float("nan"))
    with pytest.raises(ValueError, match="rtol must hold positive finite numbers"):
        solve_adaptive(block, x, rtol=torch.tensor([1e-3, -1.0]))
    with pytest.raises(ValueError, match=r"t_eval must lie in the block's interval \[0.0, 1.0\]"):
        solve_adaptive(block, x, t_eval=[0.5, 1.5])
    with pytest.raises(ValueError, match="t_eval must be sorted"):
        solve_adaptive(block, x, t_eval=[0.5, 0.2])
    with pytest.raises(ValueError, match=r"max_steps must be an int >= 1, got 0"):
        solve_adaptive(block, x, max_steps=0)
    with pytest.raises(ValueError, match="first_step must be a positive finite number"):
        solve_adaptive(block, x, first_step=-0.1)
    with pytest.raises(ValueError, match="scheme 'rk4' has no error estimate"):
        solve_adaptive(db.DynamicBlock(Rotation(), (0.0, 1.0), "rk4"), x)
    with pytest.raises(TypeError, match="block must be a DynamicBlock"):
        solve_adaptive(nn.Linear(2, 2), x)
    with pytest.raises(StepSizeError, match=r"max_steps = 2 accepted steps reached t = 0\.\d+"):
        solve_adaptive(block, x, rtol=1e-10, atol=1e-12, max_steps=2)


# --------------------------------------------------------------- error-driven refinement


@pytest.mark.parametrize("interpolation", ["constant", "linear"])
def test_insert_controls_keeps_theta_of_t(interpolation):
    torch.manual_seed(4)
    blocks = [
        db.DynamicBlock(Tanh(), (0.0, 0.5, 1.0, 2.0), "rk4", (0.0, 0.5, 1.0), interpolation),
        db.LMBlock(Tanh(), (0.0, 0.5, 1.0, 2.0), (0.0, 0.5, 1.0), interpolation),
    ]
    x = torch.randn(3, 4)
    grid = db.uniform_grid(0.0, 2.0, 16)
    for block in blocks:
        block.reset_parameters()
        before = block.remanifest(grid)(x)
        sources = block.insert_controls_([0.25, 1.0, 1.5, 3.0])  # 1.0 exists already
        assert block.t_theta == (0.0, 0.25, 0.5, 1.0, 1.5, 3.0)
        per_control = sum(len(list(layers[0].parameters())) for layers in block.control_layers())
        assert len(sources) == 3 * per_control
        torch.testing.assert_close(block.remanifest(grid)(x), before, rtol=0, atol=1e-14)


def test_step_errors_fall_with_the_embedded_order():
    """Halving every step divides the local error estimate by about 2^(embedded order + 1)."""
    torch.manual_seed(5)
    x = torch.randn(3, 4)
    block = db.DynamicBlock(Tanh(), db.uniform_grid(0.0, 1.0, 8), "dopri5", t_theta=(0.0,))
    coarse = db.adaptive.step_errors(block, x, rtol=1e-10, atol=1e-10)
    fine = db.adaptive.step_errors(
        block.remanifest(db.refine_grid(block.t)), x, rtol=1e-10, atol=1e-10
    )
    pairs = coarse / (fine[0::2] + fine[1::2])  # a coarse step against its two halves
    rate = torch.log2(pairs).mean().item() + 1  # two halves: one factor of 2 back
    assert abs(rate - 5) < 0.3, (coarse, fine, rate)


def test_refine_by_error_splits_only_the_steps_that_fail_and_keeps_theta():
    torch.manual_seed(6)
    block = db.DynamicBlock(Tanh(), db.uniform_grid(0.0, 2.0, 8), "bosh3")
    block.reset_parameters()
    x = torch.randn(3, 4)
    # with rtol = atol the ratio is inversely proportional to the tolerance: the
    # median ratio at tolerance 1 as the tolerance fails about half the steps
    median = db.adaptive.step_errors(block, x, rtol=1.0, atol=1.0).median().item()
    tol = {"rtol": median, "atol": median}
    ratios = db.adaptive.step_errors(block, x, **tol)
    old = copy.deepcopy(block)
    split, sources = db.adaptive.refine_by_error_(block, x, **tol)
    assert split == tuple(k for k, ratio in enumerate(ratios.tolist()) if ratio > 1)
    assert 0 < len(split) < 8  # some steps, not all
    expected = sorted([*old.t, *(0.5 * (old.t[k] + old.t[k + 1]) for k in split)])
    assert list(block.t) == expected and block.t_theta == block.t[:-1]
    assert len(sources) == len(split)  # the weight of every new control
    assert torch.equal(block(x), old.remanifest(block.t)(x))  # theta(t) unchanged
    for _ in range(10):  # refine until no step fails
        if not db.adaptive.refine_by_error_(block, x, **tol)[0]:
            break
    assert (db.adaptive.step_errors(block, x, **tol) <= 1).all()


# ------------------------------------------------------------------ per-sample steps


def test_per_sample_steps_equal_separate_solves_sample_by_sample():
    torch.manual_seed(7)
    block = db.DynamicBlock(Tanh(), (0.0, 2.0), "dopri5", t_theta=(0.0,))
    x = torch.randn(5, 4) * torch.tensor([[0.1], [1.0], [3.0], [10.0], [0.5]])
    x.requires_grad_()
    together = solve_adaptive(block, x, rtol=1e-6, atol=1e-8, per_sample=True)
    grad = torch.autograd.grad(together.y.square().sum(), x)[0]
    assert len(set(together.accepted)) > 1  # the samples do take different steps
    for i in range(5):
        alone = solve_adaptive(block, x[i : i + 1], rtol=1e-6, atol=1e-8)
        assert (together.accepted[i], together.rejected[i]) == (alone.accepted, alone.rejected)
        torch.testing.assert_close(
            torch.tensor(together.t[i]), torch.tensor(alone.t), rtol=1e-8, atol=0
        )
        torch.testing.assert_close(together.y[i : i + 1], alone.y, rtol=0, atol=1e-13)
        own = torch.autograd.grad(alone.y.square().sum(), x)[0]
        torch.testing.assert_close(grad[i], own[i], rtol=0, atol=1e-12)


def test_per_sample_needs_shared_weights_and_no_t_eval():
    block = db.DynamicBlock(Tanh(), (0.0, 1.0), "tsit5", t_theta=(0.0, 0.5))
    x = torch.randn(2, 4)
    with pytest.raises(ValueError, match="per_sample needs shared weights .* 2 controls"):
        solve_adaptive(block, x, per_sample=True)
    shared = db.DynamicBlock(Tanh(), (0.0, 1.0), "tsit5", t_theta=(0.0,))
    with pytest.raises(ValueError, match="t_eval is not available with per_sample=True"):
        solve_adaptive(shared, x, per_sample=True, t_eval=[0.5])


class Square(nn.Module):
    """x' = x^2 blows up at t = 1 from x(0) = 1."""

    def forward(self, x):
        return x * x


@pytest.mark.parametrize("per_sample", [False, True])
def test_a_blow_up_reports_the_time_and_the_step(per_sample):
    block = db.DynamicBlock(Square(), (0.0, 2.0), "dopri5", t_theta=(0.0,))
    with pytest.raises(StepSizeError, match=r"step size underflowed to .* at t = 1\.0000"):
        solve_adaptive(block, torch.ones(1, 1), per_sample=per_sample)


# ------------------------------------------------------------------ adjoint gradients


class CountedMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 4))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.net(x)


def test_adjoint_gradients_converge_to_the_discretize_then_optimize_ones():
    torch.manual_seed(8)
    block = db.DynamicBlock(Tanh(), (0.0, 2.0), "dopri5", t_theta=(0.0,))
    x = torch.randn(3, 4, requires_grad=True)
    weights = torch.randn(3, 4)
    tight = solve_adaptive(block, x, rtol=1e-12, atol=1e-12)
    reference = torch.autograd.grad((tight.y * weights).sum(), (x, *block.parameters()))
    errors = []
    for tol in (1e-4, 1e-6, 1e-8):
        solution = solve_adaptive(block, x, rtol=tol, atol=tol, gradient="adjoint")
        assert torch.equal(solution.y, solve_adaptive(block, x, rtol=tol, atol=tol).y.detach())
        grads = torch.autograd.grad((solution.y * weights).sum(), (x, *block.parameters()))
        errors.append(max((g - r).abs().max().item() for g, r in zip(grads, reference)))
    assert errors[0] > 30 * errors[1] > 900 * errors[2] and errors[2] < 1e-6, errors


def test_the_seminorm_saves_backward_steps_without_changing_the_gradient_much():
    """Kidger, Chen & Lyons (2021): the weights' gradient need not limit the backward step."""
    torch.manual_seed(9)
    block = db.DynamicBlock(CountedMLP(), (0.0, 3.0), "dopri5", t_theta=(0.0,))
    field = block.layers[0]
    x = torch.randn(16, 4, requires_grad=True)
    weights = torch.randn(16, 4)
    backward, grads = {}, {}
    for seminorm in (False, True):
        solution = solve_adaptive(
            block, x, rtol=1e-6, atol=1e-6, gradient="adjoint", seminorm=seminorm
        )
        field.calls = 0
        grads[seminorm] = torch.autograd.grad(
            (solution.y * weights).sum(), (x, *block.parameters())
        )
        backward[seminorm] = field.calls
    assert backward[True] < backward[False], backward
    for with_it, without in zip(grads[True], grads[False]):
        torch.testing.assert_close(with_it, without, rtol=0, atol=1e-4)


@pytest.mark.parametrize("interpolation", ["constant", "linear"])
def test_adjoint_gradients_with_weights_in_time_converge_too(interpolation):
    """Every control gets its share of the backward g; control times end the steps both ways."""
    torch.manual_seed(10)
    block = db.DynamicBlock(Tanh(), (0.0, 2.0), "dopri5", (0.0, 0.7, 1.3), interpolation)
    block.reset_parameters()
    x = torch.randn(3, 4, requires_grad=True)
    weights = torch.randn(3, 4)
    tight = solve_adaptive(block, x, rtol=1e-12, atol=1e-12)
    reference = torch.autograd.grad((tight.y * weights).sum(), (x, *block.parameters()))
    errors = []
    for tol in (1e-4, 1e-6, 1e-8):
        solution = solve_adaptive(block, x, rtol=tol, atol=tol, gradient="adjoint")
        assert {0.7, 1.3} <= set(solution.t)  # the forward's steps end on the control times
        grads = torch.autograd.grad((solution.y * weights).sum(), (x, *block.parameters()))
        errors.append(max((g - r).abs().max().item() for g, r in zip(grads, reference)))
    assert errors[0] > 30 * errors[1] > 900 * errors[2] and errors[2] < 1e-5, errors


def test_adjoint_refuses_what_it_cannot_do():
    x = torch.randn(2, 4)
    shared = db.DynamicBlock(Tanh(), (0.0, 1.0), "dopri5", t_theta=(0.0,))
    with pytest.raises(ValueError, match="does not take t_eval or per_sample"):
        solve_adaptive(shared, x, gradient="adjoint", t_eval=[0.5])
    with pytest.raises(ValueError, match="takes scalar rtol and atol"):
        solve_adaptive(shared, x, gradient="adjoint", rtol=torch.full((4,), 1e-6))
    with pytest.raises(ValueError, match=r"gradient must be one of \('discretize', 'adjoint'\)"):
        solve_adaptive(shared, x, gradient="backsolve")
