"""LM-ResNet blocks and preset: the scheme, its limit ODE, stochastic depth, the paper's forward."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from grids import rates, refined_grids
from torch import nn

import dynamicblocks as db

pytestmark = pytest.mark.usefixtures("float64")


class Tanh(nn.Module):
    def __init__(self, n: int = 3) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n, n) / n**0.5)

    def forward(self, x):
        return torch.tanh(x @ self.weight.T)


class Decay(nn.Module):
    """f(x) = -x."""

    def forward(self, x):
        return -x


def test_the_block_is_the_two_step_formula_written_out():
    torch.manual_seed(0)
    t = (0.0, 0.3, 0.5, 1.1, 1.4)
    block = db.LMBlock(Tanh(), t)
    block.reset_parameters()
    x = torch.randn(4, 3)
    ks = [c.k for c in block.coefficients]
    assert all(-0.1 <= k.item() <= 0.0 for k in ks) and len({k.item() for k in ks}) == 4
    xs = [x, x + 0.3 * block.layers[0](x)]  # the first step: Euler
    for n in range(1, 4):
        h = t[n + 1] - t[n]
        k = ks[n]
        xs.append((1 - k) * xs[n] + k * xs[n - 1] + h * block.layers[n](xs[n]))
    torch.testing.assert_close(
        block(x, return_trajectory=True), torch.stack(xs), rtol=0, atol=1e-15
    )
    # with a given x_{-1} the first step is a two-step one too
    x_prev = torch.randn(4, 3)
    first = (1 - ks[0]) * x + ks[0] * x_prev + 0.3 * block.layers[0](x)
    torch.testing.assert_close(
        block(x, x_prev, return_trajectory=True)[1], first, rtol=0, atol=1e-15
    )


def test_k_zero_is_forward_euler():
    torch.manual_seed(1)
    t = (0.0, 0.2, 0.7, 1.0)
    block = db.LMBlock(Tanh(), t, k=0.0)
    euler = db.DynamicBlock(Tanh(), t, "euler")
    euler.layers.load_state_dict(block.layers.state_dict())
    x = torch.randn(2, 3)
    torch.testing.assert_close(block(x, x + 1.0), euler(x), rtol=0, atol=1e-15)


def test_with_constant_k_it_converges_at_first_order_to_the_rescaled_ode():
    """x' = f(x) / (1 + k): for f(x) = -x, x(1) = x0 exp(-1 / (1 + k)); k = 0 is Euler's order 1."""
    x0 = torch.tensor([[1.0, -2.0]])
    for k in (0.0, -0.3, 0.4):
        exact = x0 * math.exp(-1.0 / (1.0 + k))
        errors = []
        for grid in refined_grids(seed=3):
            block = db.LMBlock(Decay(), grid, t_theta=(0.0,), k=k)
            # start on the exact solution: x_{-1} = x(-h_0) of the rescaled ODE
            x_prev = x0 * math.exp((grid[1] - grid[0]) / (1.0 + k))
            errors.append((block(x0, x_prev) - exact).abs().max().item())
        measured = rates(errors)
        assert all(abs(rate - 1.0) < 0.2 for rate in measured), (k, errors, measured)


def test_stochastic_depth_drops_whole_steps_in_training_and_keeps_them_in_evaluation():
    torch.manual_seed(2)
    t = tuple(float(n) for n in range(5))
    block = db.LMBlock(Tanh(), t, death_rate=(0.2, 0.6), k=0.0)
    assert [round(step.death, 12) for step in block.plan] == [0.2, 0.3, 0.4, 0.5]
    x = torch.randn(3, 3)
    block.eval()
    kept = db.LMBlock(Tanh(), t, k=0.0)
    kept.load_state_dict(block.state_dict())
    assert torch.equal(block(x), kept(x))
    block.train()
    seen = torch.zeros(4)
    draws = 2000
    for _ in range(draws):
        xs = block(x, return_trajectory=True)
        for n in range(4):
            slope = (xs[n + 1] - xs[n]) / 1.0
            expected = block.layers[n](xs[n])
            if slope.abs().max() == 0:
                continue
            seen[n] += 1
            death = block.plan[n].death
            torch.testing.assert_close(slope, expected / (1 - death), rtol=0, atol=1e-12)
    survival = seen / draws
    expected = 1 - torch.tensor([0.2, 0.3, 0.4, 0.5])
    assert (survival - expected).abs().max() < 0.05, survival  # 5 standard errors


def test_checkpoint_with_stochastic_depth_gives_the_full_gradient():
    torch.manual_seed(4)
    block = db.LMBlock(Tanh(), (0.0, 0.5, 1.0, 1.5, 2.0), death_rate=0.3)
    other = copy.deepcopy(block)
    other.memory = "checkpoint"
    x = torch.randn(2, 3, requires_grad=True)
    torch.manual_seed(5)
    full = torch.autograd.grad(block(x).sum(), (x, *block.parameters()), allow_unused=True)
    torch.manual_seed(5)
    got = torch.autograd.grad(other(x).sum(), (x, *other.parameters()), allow_unused=True)
    for g, e in zip(got, full):
        if e is None:
            assert g is None
        else:
            torch.testing.assert_close(g, e, rtol=0, atol=1e-14)


def test_gradcheck_reaches_the_coefficients():
    torch.manual_seed(6)
    block = db.LMBlock(Tanh(), (0.0, 0.4, 0.6, 1.0), (0.0, 1.0), "linear")
    block.reset_parameters()
    x = torch.randn(2, 3, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, *p: block(x), (x, *block.parameters()))
    block(x).sum().backward()
    assert all(c.k.grad is not None and c.k.grad.abs() > 0 for c in block.coefficients)


def test_refine_keeps_k_of_t():
    torch.manual_seed(7)
    block = db.LMBlock(Tanh(), (0.0, 1.0, 2.0))
    block.reset_parameters()
    ks = [c.k.item() for c in block.coefficients]
    block.refine_()
    assert [c.k.item() for c in block.coefficients] == [ks[0], ks[0], ks[1], ks[1]]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"death_rate must be a probability in \[0, 1\)"):
        db.LMBlock(Tanh(), (0.0, 1.0), death_rate=1.0)
    with pytest.raises(ValueError, match="death_rate must be a number or a"):
        db.LMBlock(Tanh(), (0.0, 1.0), death_rate=(0.1, 0.2, 0.3))
    with pytest.raises(ValueError, match="k must be a real number"):
        db.LMBlock(Tanh(), (0.0, 1.0), k="1")
    with pytest.raises(ValueError, match=r"LMBlock\.memory must be one of"):
        db.LMBlock(Tanh(), (0.0, 1.0), memory="reversible")
    with pytest.raises(ValueError, match="return_pair and return_trajectory"):
        db.LMBlock(Tanh(), (0.0, 1.0))(torch.zeros(1, 3), return_pair=True, return_trajectory=True)


def _unit(layer, x):
    """A pre-activation unit written out: conv2(relu(bn2(conv1(relu(bn1(x))))))."""
    out = layer.conv1(F.relu(layer.norm1(x)))
    return layer.conv2(F.relu(layer.norm2(out)))


def test_the_preset_is_the_papers_forward_pass():
    """lm_resnet20 against its equations written out over the network's own modules."""
    torch.manual_seed(8)
    net = db.lm_resnet(20).eval()
    x = torch.randn(2, 3, 32, 32)
    y = net.opening(x)
    for block, connective in zip(net.blocks, net.connectives):
        previous = None
        for layer, coefficient in zip(block.layers, block.coefficients):
            step = _unit(layer, y)
            if previous is None:
                y, previous = y + step, y
            else:
                k = coefficient.k
                y, previous = (1 - k) * y + k * previous + step, y
        y = connective(y)
    logits = net.classifier(torch.flatten(net.pool(y), 1))
    torch.testing.assert_close(net(x), logits, rtol=0, atol=1e-12)
    assert [b.num_steps for b in net.blocks] == [3, 3, 3]
    assert sum(p.numel() for p in net.parameters()) == 299_923


def test_the_presets_death_rate_is_linear_over_the_whole_network():
    net = db.lm_resnet(20, death_rate=0.5)
    deaths = [step.death for block in net.blocks for step in block.plan]
    torch.testing.assert_close(torch.tensor(deaths), torch.linspace(0.0, 0.5, 9))
