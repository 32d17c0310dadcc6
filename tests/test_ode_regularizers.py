"""Kinetic energy, Hutchinson's Jacobian norm and STEER: against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import dynamicblocks as db
from dynamicblocks.data import TensorDataset
from dynamicblocks.grid import uniform_grid
from dynamicblocks.train import TrainConfig, Trainer, check_model

GRID = (0.0, 0.1, 0.25, 0.45, 0.5, 0.8, 1.0)


class Linear(nn.Module):
    """``f(x) = A x``."""

    def __init__(self, matrix: torch.Tensor) -> None:
        super().__init__()
        self.matrix = nn.Parameter(matrix.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.matrix.T


class Mlp(nn.Module):
    def __init__(self, width: int = 3, hidden: int = 6) -> None:
        super().__init__()
        self.inner, self.outer = nn.Linear(width, hidden), nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer(torch.tanh(self.inner(x)))


def mean_square(value: torch.Tensor) -> torch.Tensor:
    return value.square().sum(1).mean()


def blocks(layer: nn.Module) -> dict[str, db.core.TimeBlock]:
    return {
        "rk4": db.DynamicBlock(layer, GRID, "rk4", [0.0]).double(),
        "dopri5": db.DynamicBlock(layer, GRID, "dopri5", [0.0]).double(),
        "reversible_heun": db.ReversibleHeunBlock(layer, GRID, [0.0], memory="full").double(),
        "alf": db.ALFBlock(layer, GRID, [0.0], memory="full").double(),
    }


def by_hand(kind: str, field, x: torch.Tensor) -> list[tuple[float, torch.Tensor]]:
    """``(weight, point)`` of every evaluation of the method, its quadrature weight included."""
    points = []
    for t_k, t_next in zip(GRID, GRID[1:]):
        h = t_next - t_k
        if kind in ("rk4", "dopri5"):
            tableau = db.get_tableau(kind)
            slopes = []
            for i in range(tableau.stages):
                xi = x + sum(h * a * k for a, k in zip(tableau.a[i], slopes))
                slopes.append(field(xi))
                points.append((h * tableau.b[i], xi))
            x = x + sum(h * b * k for b, k in zip(tableau.b, slopes))
        elif kind == "alf":
            if not points:
                v = field(x)
            s = x + h / 2 * v
            points.append((h, s))
            v = 2 * field(s) - v
            x = s + h / 2 * v
    if kind == "reversible_heun":
        y, z = x, x
        f = field(z)
        points.append((GRID[1] / 2, z))
        for k, (t_k, t_next) in enumerate(zip(GRID, GRID[1:])):
            h = t_next - t_k
            z = 2 * y - z + h * f
            f_next = field(z)
            after = GRID[k + 2] - t_next if k + 2 < len(GRID) else 0.0
            points.append(((h + after) / 2, z))
            y, f = y + h / 2 * (f + f_next), f_next
    return points


@pytest.mark.parametrize("kind", ["rk4", "dopri5", "reversible_heun", "alf"])
def test_kinetic_energy_equals_the_quadrature_by_hand(kind):
    torch.manual_seed(0)
    layer = Mlp().double()
    block = blocks(layer)[kind]
    x = torch.randn(5, 3, dtype=torch.float64)
    with db.ode_regularizers(block) as stats:
        block(x)
    with torch.no_grad():
        expected = sum(w * mean_square(layer(p)) for w, p in by_hand(kind, layer, x))
    torch.testing.assert_close(stats.kinetic_energy, expected, rtol=1e-13, atol=0)
    assert stats.jacobian_norm.item() == 0.0


@pytest.mark.parametrize("kind", ["rk4", "reversible_heun", "alf"])
def test_every_quadrature_integrates_constants_exactly(kind):
    """``f = c`` for every state: the kinetic energy is ``(T - t_0) |c|^2`` for every method."""

    class Constant(nn.Module):
        def forward(self, x):
            return torch.full_like(x, 2.0)

    block = blocks(Constant())[kind]
    with db.ode_regularizers(block) as stats:
        block(torch.zeros(4, 3, dtype=torch.float64))
    torch.testing.assert_close(stats.kinetic_energy.item(), 12.0 * (GRID[-1] - GRID[0]))


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
@pytest.mark.parametrize("kind", ["rk4", "reversible_heun", "alf"])
def test_hutchinson_is_unbiased_for_a_linear_field(kind, probe):
    """``J = A`` everywhere: the exact value is ``(T - t_0) ||A||_F^2``."""
    torch.manual_seed(1)
    matrix = torch.randn(3, 3, dtype=torch.float64)
    block = blocks(Linear(matrix))[kind]
    exact = (GRID[-1] - GRID[0]) * matrix.square().sum()
    x = torch.randn(8, 3, dtype=torch.float64)
    estimates = []
    with torch.no_grad():
        for _ in range(400):
            with db.ode_regularizers(block, kinetic=False, probes=1, probe=probe) as stats:
                block(x)
            estimates.append(stats.jacobian_norm)
    estimates = torch.stack(estimates)
    error = estimates.std() / math.sqrt(len(estimates))
    assert abs(estimates.mean() - exact) < 3 * error
    assert error < 0.1 * exact  # the test can fail: the standard error is small


def test_hutchinson_is_unbiased_for_a_nonlinear_field():
    """The exact ``sum h b ||J(x_i)||_F^2`` by full Jacobians at the stages written out."""
    torch.manual_seed(2)
    layer = Mlp().double()
    block = blocks(layer)["rk4"]
    x = torch.randn(4, 3, dtype=torch.float64)
    exact = 0.0
    for weight, points in by_hand("rk4", layer, x):
        for point in points.detach():
            jacobian = torch.autograd.functional.jacobian(layer, point)
            exact += weight * jacobian.square().sum() / len(x)
    estimates = []
    for _ in range(300):
        with db.ode_regularizers(block, kinetic=False, probes=2) as stats:
            block(x)
        estimates.append(stats.jacobian_norm.detach())
    estimates = torch.stack(estimates)
    error = estimates.std() / math.sqrt(len(estimates))
    assert abs(estimates.mean() - exact) < 3 * error


def test_the_regularisers_are_differentiable():
    """gradcheck of the weighted sum, its probes drawn from a fixed seed."""
    torch.manual_seed(3)
    layer = Mlp(2, 3).double()
    block = db.DynamicBlock(layer, (0.0, 0.3, 1.0), "heun", [0.0]).double()
    weight = layer.inner.weight  # perturbed in place by gradcheck: the block sees it

    def loss(x, w):
        torch.manual_seed(4)
        with db.ode_regularizers(block, probes=1) as stats:
            out = block(x)
        return out.sum() + stats.loss(kinetic=0.5, jacobian=2.0)

    x = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(loss, (x, weight))


def test_counts_the_evaluations_of_every_block_and_pass():
    net = nn.Sequential(*blocks(Mlp().double()).values())
    with db.ode_regularizers(net) as stats:
        net(torch.randn(2, 3, dtype=torch.float64))
        net(torch.randn(2, 3, dtype=torch.float64))
    steps = len(GRID) - 1
    assert stats.evaluations == 2 * (4 * steps + 6 * steps + (steps + 1) + (steps + 1))


def test_the_context_refuses_what_it_cannot_integrate():
    with pytest.raises(ValueError, match="LeapfrogBlock.*leapfrog.*cannot integrate"):
        with db.ode_regularizers(db.LeapfrogBlock(Mlp(), GRID)):
            pass
    with pytest.raises(ValueError, match="memory='reversible'.*need.*memory='full'"):
        with db.ode_regularizers(db.ALFBlock(Mlp(), GRID)):
            pass
    with pytest.raises(ValueError, match="probe must be one of"):
        with db.ode_regularizers(db.DynamicBlock(Mlp(), GRID), probe="uniform"):
            pass
    with pytest.raises(ValueError, match="contains no block"):
        with db.ode_regularizers(nn.Linear(2, 2)):
            pass
    block = db.DynamicBlock(Mlp(), GRID)
    with db.ode_regularizers(block):
        with pytest.raises(RuntimeError, match="already collecting"):
            with db.ode_regularizers(block):
                pass
        block.memory = "checkpoint"  # changed inside the context: refused at the forward pass
        with pytest.raises(ValueError, match="memory='checkpoint'"):
            block(torch.randn(2, 3))
    assert block._stats is None


# ============================================================================ STEER


STEERED = {
    "rk4": lambda layer, t, c: db.DynamicBlock(layer, t, "rk4", c, "linear"),
    "reversible_heun": lambda layer, t, c: db.ReversibleHeunBlock(layer, t, c, "linear", "full"),
    "alf": lambda layer, t, c: db.ALFBlock(layer, t, c, "linear", "full"),
    "ab3": lambda layer, t, c: db.MultistepBlock(
        layer, t, "ab3", t_theta=c, interpolation="linear"
    ),
}


@pytest.mark.parametrize("kind", STEERED)
def test_steer_integrates_on_the_scaled_grid(kind):
    make, controls = STEERED[kind], [0.0, 0.5]
    torch.manual_seed(5)
    block = make(Mlp(), GRID, controls).double()
    block.reset_parameters()
    x = torch.randn(4, 3, dtype=torch.float64)
    block.steer = 0.4
    torch.manual_seed(6)
    out = block(x)
    torch.manual_seed(6)
    end = 1.0 + 0.4 * (2.0 * float(torch.rand(())) - 1.0)  # the draw: T' in [T - b, T + b]
    scale = end / (GRID[-1] - GRID[0])
    scaled = make(Mlp(), [scale * t for t in GRID], [scale * c for c in controls]).double()
    scaled.load_state_dict(block.state_dict())
    torch.testing.assert_close(out, scaled(x), rtol=0, atol=1e-13)
    block.eval()
    plain = make(Mlp(), GRID, controls).double()
    plain.load_state_dict(block.state_dict())
    torch.testing.assert_close(block(x), plain.eval()(x), rtol=0, atol=0)


def test_steer_draws_cover_the_range_and_reach_every_memory_mode():
    class Identity(nn.Module):  # x' = x on [0, 1]: the output is x e^{T'}
        def forward(self, x):
            return x

    ends = []
    for mode in ("full", "checkpoint", "adjoint"):
        block = db.DynamicBlock(Identity(), uniform_grid(0.0, 1.0, 200), "rk4", memory=mode)
        block.steer = 0.5
        x = torch.ones(1, 1, dtype=torch.float64, requires_grad=True)
        for _ in range(50):
            out = block.double()(x)
            ends.append(math.log(out.item()))
            (grad,) = torch.autograd.grad(out, x)
            torch.testing.assert_close(grad, out.detach(), rtol=1e-8, atol=0)
    assert 0.5 - 1e-6 < min(ends) < 0.6 and 1.4 < max(ends) < 1.5 + 1e-6


def test_steer_with_reversible_gradients_equals_full_mode():
    torch.manual_seed(7)
    x = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    found = {}
    for mode in ("full", "reversible"):
        torch.manual_seed(8)
        block = db.ReversibleHeunBlock(Mlp(), GRID, memory=mode).double()
        block.steer = 0.3
        torch.manual_seed(9)
        out = block(x)
        found[mode] = torch.autograd.grad(out.square().sum(), [x, *block.parameters()])
    for a, b in zip(found["reversible"], found["full"]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_steer_is_validated_and_set_for_a_whole_network():
    block = db.DynamicBlock(Mlp(), GRID)
    with pytest.raises(ValueError, match=r"steer must be a number in \[0, 1\).*got 1.0"):
        block.steer = 1.0
    with pytest.raises(ValueError, match="steer needs a first-order method.*leapfrog"):
        db.LeapfrogBlock(Mlp(), GRID).steer = 0.1
    net = nn.Sequential(block, db.LeapfrogBlock(Mlp(), GRID))
    with pytest.raises(ValueError, match="block '1'"):
        db.set_steer(net, 0.1)
    assert block.steer == 0.0  # nothing changed
    assert db.set_steer(nn.Sequential(block), 0.2) == ["0"] and block.steer == 0.2


# ============================================================================ training


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.open = nn.Linear(4, 3)
        self.block = db.DynamicBlock(Mlp(), uniform_grid(0.0, 1.0, 3), "rk4", [0.0])
        self.close = nn.Linear(3, 2)

    def forward(self, x):
        return self.close(self.block(self.open(x.flatten(1))))


def train_once(config: TrainConfig) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = Net()
    data = TensorDataset(torch.randn(16, 1, 2, 2), torch.randint(0, 2, (16,)), 2)
    Trainer(model, config).fit(data)
    return [p.detach().clone() for p in model.parameters()]


def test_the_trainer_adds_the_regularisers_to_the_loss():
    common = dict(epochs=1, batch_size=8, augment=False, progress=False, verbose=False, plot=False)
    plain = train_once(TrainConfig(**common))
    kinetic = train_once(TrainConfig(kinetic_energy=1.0, **common))
    assert any(not torch.equal(a, b) for a, b in zip(plain, kinetic))
    again = train_once(TrainConfig(kinetic_energy=1.0, **common))
    assert all(torch.equal(a, b) for a, b in zip(kinetic, again))
    train_once(TrainConfig(jacobian_norm=0.1, probes=2, steer=0.5, **common))


def test_check_model_names_the_setting():
    model = Net()
    model.block.memory = "checkpoint"
    with pytest.raises(ValueError, match="^kinetic_energy: block 'block' has memory='checkpoint'"):
        check_model(model, TrainConfig(kinetic_energy=0.1))
    with pytest.raises(ValueError, match="^steer: block 'block'.*got 2.0"):
        check_model(model, TrainConfig(steer=2.0))
    check_model(model, TrainConfig(steer=0.5))
    assert model.block.steer == 0.0  # a check sets nothing
