"""Measured convergence orders of every named scheme on refined non-uniform grids."""

import math

import numpy as np
import pytest
import torch
from conftest import random_grid
from torch import nn

from dynamicblocks import TABLEAUS, DynamicBlock, refine_grid, step_sizes

X0 = torch.tensor([[0.1], [0.5], [0.9], [1.5]], dtype=torch.float64)
T_END = 2.0


class Logistic(nn.Module):
    """x' = x (1 - x), solved by x(t) = x0 e^t / (1 - x0 + x0 e^t)."""

    def forward(self, x):
        return x * (1 - x)


class TimeLinearRate(nn.Module):
    """x' = theta x with a learnable scalar theta; theta(t) comes from the block's controls."""

    def __init__(self) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return self.theta * x


def measured_order(errors, grids):
    """Least-squares slope of log(error) against log(largest step)."""
    h = [max(step_sizes(t)) for t in grids]
    slope, _ = np.polyfit(np.log(h), np.log(errors), 1)
    return slope


def grids(levels=4, steps=32, seed=0):
    t = random_grid(steps, 0.0, T_END, seed=seed)
    out = [t]
    for _ in range(levels - 1):
        out.append(refine_grid(out[-1]))
    return out


def order_autonomous(scheme):
    """Shared weights, logistic field: measured order and errors."""
    exact = X0 * math.exp(T_END) / (1 - X0 + X0 * math.exp(T_END))
    ts = grids()
    errors = [
        (DynamicBlock(Logistic(), t, scheme, t_theta=[0.0])(X0) - exact).abs().max().item()
        for t in ts
    ]
    return measured_order(errors, ts), errors


def order_time_dependent(scheme):
    """theta(t) = a + b t held at four control times off the grid and interpolated
    linearly: x' = (a + b t) x, x(t) = x0 exp(a t + b t^2 / 2)."""
    a, b = -0.4, 0.6
    t_theta = [0.0, 0.55, 1.3, T_END]
    exact = X0 * math.exp(a * T_END + b * T_END**2 / 2)
    ts = grids(seed=1)
    errors = []
    for t in ts:
        block = DynamicBlock(TimeLinearRate(), t, scheme, t_theta, "linear").double()
        with torch.no_grad():
            for layer, time in zip(block.layers, t_theta):
                layer.theta.fill_(a + b * time)
        errors.append((block(X0) - exact).abs().max().item())
    return measured_order(errors, ts), errors


# Fifth-order pairs reach round-off on these grids before their rate settles;
# tests/test_embedded.py measures them on smoothly graded grids.
UP_TO_FOURTH = sorted(name for name, tableau in TABLEAUS.items() if tableau.order <= 4)


@pytest.mark.parametrize("scheme", UP_TO_FOURTH)
@pytest.mark.parametrize("problem", [order_autonomous, order_time_dependent])
def test_measured_order_within_0_2_of_theory(problem, scheme):
    order, errors = problem(scheme)
    assert abs(order - TABLEAUS[scheme].order) <= 0.2, (scheme, order, errors)


if __name__ == "__main__":  # python tests/test_convergence.py prints the measured orders
    print(f"{'scheme':<10}{'order':>6}{'shared weights':>16}{'linear theta(t)':>17}")
    for name in UP_TO_FOURTH:
        shared, _ = order_autonomous(name)
        linear, _ = order_time_dependent(name)
        print(f"{name:<10}{TABLEAUS[name].order:>6}{shared:>16.3f}{linear:>17.3f}")
