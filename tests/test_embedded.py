"""Embedded pairs: both solutions' orders, FSAL, the stages a fixed grid evaluates, validation."""

from __future__ import annotations

import pytest
import torch
from grids import rates, refined_grids
from torch import nn

import dynamicblocks as db

pytestmark = pytest.mark.usefixtures("float64")

PAIRS = ["heun_euler", "bosh3", "dopri5", "tsit5"]


class Rotation(nn.Module):
    """f(x) = x J - 0.3 x: x(t) = x0 exp(t (J - 0.3 I))^T."""

    def forward(self, x):
        return torch.stack([x[:, 1], -x[:, 0]], dim=1) - 0.3 * x


def measured_rates(tableau: db.ButcherTableau, horizon: float = 4.0) -> tuple[list, list]:
    """Rates on random smoothly graded grids, coarse enough to stay above round-off.

    Fifth-order pairs get a fifth level and only their last two rates count:
    Tsitouras minimised tsit5's leading error coefficient, so its rate comes
    down to 5 from above (5.39, 5.30, 5.19, 5.12 here).
    """
    x0 = torch.tensor([[1.0, 0.5], [-0.3, 0.8]], dtype=torch.float64)
    generator = torch.tensor([[-0.3, 1.0], [-1.0, -0.3]], dtype=torch.float64)
    exact = x0 @ torch.linalg.matrix_exp(horizon * generator).T
    fifth = tableau.order >= 5
    steps = 16 if fifth else 8 if tableau.order == 4 else 40
    errors = []
    for grid in refined_grids(seed=tableau.order, steps=steps, levels=5 if fifth else 4):
        block = db.DynamicBlock(Rotation(), [horizon * t for t in grid], tableau, t_theta=(0.0,))
        errors.append((block(x0) - exact).abs().max().item())
    measured = rates(errors)
    return (measured[-2:] if fifth else measured), errors


@pytest.mark.parametrize("name", PAIRS)
def test_both_solutions_of_a_pair_have_their_orders(name):
    pair = db.TABLEAUS[name]
    measured, errors = measured_rates(pair)
    assert all(abs(rate - pair.order) < 0.2 for rate in measured), (errors, measured)
    embedded = db.ButcherTableau(
        f"{name}_embedded", pair.embedded_order, pair.c, pair.a, pair.b_embedded
    )
    measured, errors = measured_rates(embedded)
    assert all(abs(rate - pair.embedded_order) < 0.2 for rate in measured), (errors, measured)


def test_fsal_is_a_last_stage_at_the_new_state():
    assert [db.TABLEAUS[name].fsal for name in PAIRS] == [False, True, True, True]
    assert not db.TABLEAUS["rk4"].fsal and not db.TABLEAUS["euler"].fsal
    assert db.TABLEAUS["dopri5"].embedded and not db.TABLEAUS["rk4"].embedded


class Counted(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(3, 3) / 3)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return torch.tanh(x @ self.weight.T)


def test_a_fixed_grid_skips_the_fsal_stage_and_equals_all_stages_written_out():
    torch.manual_seed(0)
    t = (0.0, 0.3, 0.5, 1.1)
    field = Counted()
    block = db.DynamicBlock(field, t, "dopri5", t_theta=(0.0,))
    layer = block.layers[0]
    x = torch.randn(4, 3)
    tableau = db.TABLEAUS["dopri5"]
    y = x
    for t_k, t_next in zip(t, t[1:]):
        h, k = t_next - t_k, []
        for i in range(7):  # every stage, the seventh included (its b is 0)
            k.append(layer(y + h * sum(a * s for a, s in zip(tableau.a[i], k))))
        y = y + h * sum(b * s for b, s in zip(tableau.b, k))
    layer.calls = 0
    torch.testing.assert_close(block(x), y, rtol=0, atol=1e-15)
    assert layer.calls == 6 * 3  # six evaluations per step
    assert len(block.plan[0].stages) == 6


def test_bad_embedded_weights_are_named():
    with pytest.raises(ValueError, match="give b_embedded and embedded_order together"):
        db.ButcherTableau("pair", 2, (0, 1), ((), (1,)), (0.5, 0.5), (1, 0))
    with pytest.raises(ValueError, match=r"embedded_order must be an int in \[1, 2\)"):
        db.ButcherTableau("pair", 2, (0, 1), ((), (1,)), (0.5, 0.5), (1, 0), 2)
    with pytest.raises(ValueError, match="b_embedded must hold 2 finite weights"):
        db.ButcherTableau("pair", 2, (0, 1), ((), (1,)), (0.5, 0.5), (1,), 1)
    with pytest.raises(
        ValueError, match=r"claims b_embedded of order 1 but violates .* sum\(b_embedded\) = 1"
    ):
        db.ButcherTableau("pair", 2, (0, 1), ((), (1,)), (0.5, 0.5), (0.9, 0), 1)
