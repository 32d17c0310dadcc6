"""IMEX blocks: orders on a linear split problem, stiff stability, FFT blocks, gradients."""

from __future__ import annotations

import copy

import pytest
import torch
from grids import rates, refined_grids
from torch import nn

import dynamicblocks as db

pytestmark = pytest.mark.usefixtures("float64")


class Linear(nn.Module):
    """f(x) = x W^T."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.clone())

    def forward(self, x):
        return x @ self.weight.T


class Tanh(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return torch.tanh(self.conv(x))


def split_problem(seed: int = 0):
    """x' = A x - L x with A non-normal and L = B^T B + eps I: x(T) = expm(T (A - L)) x0."""
    generator = torch.Generator().manual_seed(seed)
    a = 0.8 * torch.randn(4, 4, generator=generator, dtype=torch.float64)
    operator = db.DenseOperator(4, eps=0.1)
    with torch.no_grad():
        operator.weight.copy_(torch.randn(4, 4, generator=generator, dtype=torch.float64))
    x0 = torch.randn(3, 4, generator=generator, dtype=torch.float64)
    return a, operator, x0


@pytest.mark.parametrize(("scheme", "order"), [("imex_euler", 1), ("ars222", 2)])
def test_order_on_random_non_uniform_grids_against_the_matrix_exponential(scheme, order):
    a, operator, x0 = split_problem()
    exact = x0 @ torch.linalg.matrix_exp(a - operator.matrix()).T
    errors = []
    for grid in refined_grids(seed=order):
        block = db.IMEXBlock(Linear(a), operator, grid, scheme, t_theta=(0.0,))
        errors.append((block(x0) - exact).abs().max().item())
    measured = rates(errors)
    assert all(abs(rate - order) < 0.2 for rate in measured), (errors, measured)


def test_imex_euler_is_the_solve_of_an_explicit_euler_step():
    """x_{k+1} = (I + h_k L_k)^{-1} (x_k + h_k f_k(x_k)), written out with dense solves."""
    torch.manual_seed(0)
    channels, t = 2, (0.0, 0.3, 0.5, 1.2)
    block = db.IMEXBlock(Tanh(channels), db.ConvOperator(channels), t)
    block.reset_parameters()
    x = torch.randn(2, channels, 6, 5)
    y = x
    for k, (layer, operator) in enumerate(zip(block.layers, block.operators)):
        h = t[k + 1] - t[k]
        r = y + h * layer(y)
        # L from the spatial-domain apply, column by column: independent of the FFT
        eye = torch.eye(r[0].numel()).view(-1, *r.shape[1:])
        matrix = operator.apply(eye).flatten(1).T
        system = torch.eye(matrix.shape[0]) + h * matrix
        y = torch.linalg.solve(system, r.flatten(1).T).T.view_as(r)
    torch.testing.assert_close(block(x), y, rtol=0, atol=1e-10)


def test_the_block_stays_bounded_far_beyond_the_explicit_euler_limit():
    """h lambda_max(L) = 50: explicit Euler on f - L x blows up, both IMEX schemes damp."""
    torch.manual_seed(1)
    channels, size = 3, 8
    operator = db.ConvOperator(channels)
    lam = operator.eigenvalues(size, size).max().item()
    t = db.uniform_grid(0.0, 20 * 50.0 / lam, 20)  # 20 steps of h = 50 / lambda_max
    f = Tanh(channels)
    x = torch.randn(4, channels, size, size)

    class Explicit(nn.Module):
        def forward(self, x):
            return f(x) - operator.apply(x)

    explicit = db.DynamicBlock(Explicit(), t, "euler", t_theta=(0.0,))
    assert explicit(x).abs().max() > 1e20
    # IMEX Euler: |x_{k+1}| <= |x_k| + h |f(x_k)| per sample (the solve contracts, |f| <= 1)
    bound = x.flatten(1).norm(dim=1) + t[-1] * x[0].numel() ** 0.5
    for scheme, slack in (("imex_euler", 1.0), ("ars222", 2.0)):
        block = db.IMEXBlock(f, operator, t, scheme, t_theta=(0.0,))
        norms = block(x, return_trajectory=True).flatten(2).norm(dim=2)
        assert (norms <= slack * bound + 1e-9).all(), scheme


@pytest.mark.parametrize("scheme", ["imex_euler", "ars222"])
def test_gradcheck_through_the_fft_and_cholesky_solves(scheme):
    torch.manual_seed(2)
    conv = db.IMEXBlock(Tanh(2), db.ConvOperator(2), (0.0, 0.4, 1.0), scheme, (0.0, 1.0), "linear")
    conv.reset_parameters()
    x = torch.randn(1, 2, 4, 5, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, *p: conv(x), (x, *conv.parameters()))
    a, operator, x0 = split_problem(3)
    dense = db.IMEXBlock(Linear(a), operator, (0.0, 0.5, 1.0), scheme)
    x0.requires_grad_()
    assert torch.autograd.gradcheck(lambda x, *p: dense(x), (x0, *dense.parameters()))


def test_checkpoint_gives_the_full_gradient_on_images():
    torch.manual_seed(3)
    block = db.IMEXBlock(Tanh(2), db.ConvOperator(2), (0.0, 0.5, 1.0, 1.5), "ars222")
    block.reset_parameters()
    x = torch.randn(2, 2, 6, 6, requires_grad=True)
    other = copy.deepcopy(block)
    other.memory = "checkpoint"
    full = torch.autograd.grad(block(x).square().sum(), (x, *block.parameters()))
    checkpointed = torch.autograd.grad(other(x).square().sum(), (x, *other.parameters()))
    for g, e in zip(checkpointed, full):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-12)


def test_remanifest_changes_the_scheme_and_bad_arguments_are_named():
    a, operator, x0 = split_problem()
    block = db.IMEXBlock(Linear(a), operator, (0.0, 0.5, 1.0))
    assert "scheme=imex_euler" in repr(block)
    assert block.remanifest(scheme="ars222").tableau.name == "ars222"
    with pytest.raises(ValueError, match=r"scheme must be one of \('imex_euler', 'ars222'\)"):
        db.IMEXBlock(Linear(a), operator, (0.0, 1.0), "backward_euler")
    with pytest.raises(TypeError, match="operator"):
        db.IMEXBlock(Linear(a), "L", (0.0, 1.0))
    with pytest.raises(ValueError, match=r"IMEXBlock\.memory must be one of"):
        db.IMEXBlock(Linear(a), operator, (0.0, 1.0), memory="adjoint")


def test_a_tableau_must_be_stiffly_accurate_shaped():
    with pytest.raises(ValueError, match="first column of a_implicit must be zero"):
        db.IMEXTableau("bad", 1, (0.0, 1.0), ((0.0, 0.0), (1.0, 0.0)), ((0.0, 0.0), (0.5, 0.5)))
    with pytest.raises(ValueError, match="row 1 of a_explicit must sum to c"):
        db.IMEXTableau("bad", 1, (0.0, 1.0), ((0.0, 0.0), (0.5, 0.0)), ((0.0, 0.0), (0.0, 1.0)))


def _dense_solve(operator: db.ConvOperator, r: torch.Tensor, h: float) -> torch.Tensor:
    """(I + h L)^{-1} r, with each channel's L built from the spatial-domain apply."""
    n, c, height, width = r.shape
    pixels = height * width
    units = torch.eye(pixels).view(pixels, 1, height, width).expand(pixels, c, height, width)
    columns = operator.apply(units.contiguous()).flatten(2)  # (pixel p, channel, L_c e_p)
    matrices = torch.eye(pixels) + h * columns.permute(1, 2, 0)  # (channel, pixels, pixels)
    solved = torch.linalg.solve(matrices, r.flatten(2).permute(1, 2, 0))  # (channel, pixels, n)
    return solved.permute(2, 0, 1).reshape_as(r)


def test_the_imexnet_preset_is_the_papers_forward_pass():
    torch.manual_seed(4)
    net = db.imexnet().eval()
    x = torch.randn(2, 3, 12, 12)  # the last stage at 3 x 3, the smallest a 3x3 L allows
    y = net.opening(x)
    for block, connective in zip(net.blocks, net.connectives):
        for layer, operator in zip(block.layers, block.operators):
            y = _dense_solve(operator, y + layer(y), 1.0)  # h = 1
        y = connective(y)
    logits = net.classifier(torch.flatten(net.pool(y), 1))
    torch.testing.assert_close(net(x), logits, rtol=0, atol=1e-10)
    assert sum(p.numel() for p in net.parameters()) == 509_130
    assert [b.t for b in net.blocks] == [(0.0, 1.0, 2.0, 3.0)] * 3
