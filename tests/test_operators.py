"""ConvOperator and DenseOperator against dense references, in float64 to round-off."""

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from dynamicblocks.nn.operators import ConvOperator, DenseOperator

SIZES = [  # (C, H, W, kernel_size): square and not, odd and even sides, kernels 1 to 5
    (2, 5, 6, 3),
    (2, 6, 5, 3),
    (1, 7, 4, 1),
    (3, 4, 6, 3),
    (2, 5, 5, 5),
    (1, 6, 7, 5),
    (2, 5, 6, 2),
    (1, 4, 5, 4),
]


def conv_operator(channels: int, kernel_size: int) -> ConvOperator:
    return ConvOperator(channels, kernel_size).double()


def dense_of(fn, shape: tuple[int, ...]) -> torch.Tensor:
    """The matrix of the linear map ``fn`` on states of ``shape``, column by column."""
    n = math.prod(shape)
    units = torch.eye(n, dtype=torch.float64).reshape(n, *shape)
    return fn(units).reshape(n, n).mT  # row i of fn(units) is column i


def circular_conv_matrix(op: ConvOperator, height: int, width: int) -> torch.Tensor:
    """``K`` from torch's own circular depthwise convolution (odd kernels)."""
    k = op.kernel_size
    conv = nn.Conv2d(
        op.channels, op.channels, k, padding=k // 2, padding_mode="circular", groups=op.channels
    )
    conv = conv.double()
    with torch.no_grad():
        conv.weight.copy_(op.weight)
        conv.bias.zero_()
        return dense_of(conv, (op.channels, height, width))


@pytest.mark.parametrize("channels, height, width, kernel_size", SIZES)
@pytest.mark.parametrize("scale", [0.3, 7.0])
def test_conv_solve_matches_dense_solve(channels, height, width, kernel_size, scale):
    op = conv_operator(channels, kernel_size)
    shape = (channels, height, width)
    with torch.no_grad():
        matrix = dense_of(op.apply, shape)
        x = torch.randn(3, *shape, dtype=torch.float64)
        eye = torch.eye(matrix.shape[0], dtype=torch.float64)
        expected = torch.linalg.solve(eye + scale * matrix, x.reshape(3, -1).mT).mT
        y = op(x, scale)
    assert y.shape == x.shape and y.dtype == torch.float64
    torch.testing.assert_close(y.reshape(3, -1), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("channels, height, width, kernel_size", SIZES)
def test_conv_apply_is_symmetric_psd(channels, height, width, kernel_size):
    op = conv_operator(channels, kernel_size)
    with torch.no_grad():
        matrix = dense_of(op.apply, (channels, height, width))
    torch.testing.assert_close(matrix, matrix.mT, rtol=0, atol=1e-12)
    assert torch.linalg.eigvalsh(matrix).min() >= -1e-12


@pytest.mark.parametrize("channels, height, width, kernel_size", [s for s in SIZES if s[3] % 2])
def test_conv_apply_is_kt_k_of_circular_conv(channels, height, width, kernel_size):
    op = conv_operator(channels, kernel_size)
    k_matrix = circular_conv_matrix(op, height, width)
    with torch.no_grad():
        matrix = dense_of(op.apply, (channels, height, width))
    torch.testing.assert_close(matrix, k_matrix.mT @ k_matrix, rtol=0, atol=1e-12)


@pytest.mark.parametrize("channels, height, width, kernel_size", SIZES)
def test_conv_eigenvalues_match_eigvalsh(channels, height, width, kernel_size):
    op = conv_operator(channels, kernel_size)
    with torch.no_grad():
        matrix = dense_of(op.apply, (channels, height, width))
        eigenvalues = op.eigenvalues(height, width)
    assert eigenvalues.shape == (channels, height, width)
    blocks = matrix.reshape(channels, height * width, channels, height * width)
    for c in range(channels):
        expected = torch.linalg.eigvalsh(blocks[c, :, c])
        got = eigenvalues[c].flatten().sort().values
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)
        for d in range(channels):  # depthwise: no coupling between channels
            if d != c:
                assert blocks[c, :, d].abs().max() == 0


def test_conv_solve_inverts_spatial_apply_on_a_larger_image():
    op = conv_operator(3, 3)
    x = torch.randn(2, 3, 16, 21, dtype=torch.float64)
    with torch.no_grad():
        for scale in (1e-3, 0.5, 40.0):
            y = op(x, scale)
            torch.testing.assert_close(y + scale * op.apply(y), x, rtol=0, atol=1e-10)


def test_conv_scale_zero_is_identity():
    op = conv_operator(2, 3)
    x = torch.randn(2, 2, 5, 6, dtype=torch.float64)
    torch.testing.assert_close(op(x, 0.0), x, rtol=0, atol=1e-14)


def test_conv_float32_default():
    op = ConvOperator(4)
    x = torch.randn(2, 4, 8, 9)
    y = op(x, 0.7)
    assert y.dtype == torch.float32 and y.shape == x.shape
    torch.testing.assert_close(y + 0.7 * op.apply(y), x, rtol=0, atol=1e-4)


def test_dense_solve_matches_dense_solve():
    op = DenseOperator(7, eps=0.05).double()
    x = torch.randn(5, 7, dtype=torch.float64)
    with torch.no_grad():
        matrix = op.matrix()
        for scale in (0.0, 0.2, 3.0, 100.0):
            expected = torch.linalg.solve(torch.eye(7, dtype=torch.float64) + scale * matrix, x.mT)
            torch.testing.assert_close(op(x, scale), expected.mT, rtol=0, atol=1e-12)


def test_dense_matrix_is_spd_with_eps_floor():
    eps = 0.05
    op = DenseOperator(6, eps=eps).double()
    with torch.no_grad():
        matrix = op.matrix()
        a = op.weight
        torch.testing.assert_close(matrix, a.mT @ a + eps * torch.eye(6, dtype=torch.float64))
        torch.testing.assert_close(matrix, matrix.mT, rtol=0, atol=1e-14)
        assert torch.linalg.eigvalsh(matrix).min() >= eps - 1e-12
        x = torch.randn(4, 6, dtype=torch.float64)
        torch.testing.assert_close(op.apply(x), (matrix @ x.mT).mT, rtol=0, atol=1e-12)


def test_dense_rank_deficient_a_keeps_eps():
    op = DenseOperator(5, eps=0.1).double()
    with torch.no_grad():
        op.weight.zero_()
        op.weight[0, 0] = 2.0
        eigenvalues = torch.linalg.eigvalsh(op.matrix())
    torch.testing.assert_close(eigenvalues.min(), torch.tensor(0.1, dtype=torch.float64))


class _Apply(nn.Module):
    """Calls ``op.apply``, so that ``functional_call`` can replace the operator's parameters."""

    def __init__(self, op: nn.Module) -> None:
        super().__init__()
        self.op = op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op.apply(x)


@pytest.mark.parametrize("kernel_size", [2, 3])
def test_gradcheck_conv(kernel_size):
    op = conv_operator(2, kernel_size)
    x = torch.randn(2, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    w = op.weight.detach().clone().requires_grad_()
    wrapper = _Apply(op)

    def solve(x, w):
        return functional_call(op, {"weight": w}, (x, 0.8))

    def apply(x, w):
        return functional_call(wrapper, {"op.weight": w}, (x,))

    assert torch.autograd.gradcheck(solve, (x, w))
    assert torch.autograd.gradcheck(apply, (x, w))


def test_gradcheck_dense():
    op = DenseOperator(4, eps=0.01).double()
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    w = op.weight.detach().clone().requires_grad_()
    wrapper = _Apply(op)

    def solve(x, w):
        return functional_call(op, {"weight": w}, (x, 1.3))

    def apply(x, w):
        return functional_call(wrapper, {"op.weight": w}, (x,))

    assert torch.autograd.gradcheck(solve, (x, w))
    assert torch.autograd.gradcheck(apply, (x, w))


def test_gradients_reach_module_parameters():
    for op, x in (
        (conv_operator(2, 3), torch.randn(2, 2, 5, 6, dtype=torch.float64)),
        (DenseOperator(5).double(), torch.randn(3, 5, dtype=torch.float64)),
    ):
        x.requires_grad_()
        op(x, 0.5).square().sum().backward()
        assert x.grad is not None and x.grad.abs().max() > 0
        assert op.weight.grad is not None and op.weight.grad.abs().max() > 0


@pytest.mark.parametrize("scale", [1e-4, 0.1, 1.0, 10.0, 1e4])
def test_solves_contract(scale):
    ops = [
        (conv_operator(3, 3), torch.randn(4, 3, 7, 6, dtype=torch.float64)),
        (conv_operator(1, 5), torch.randn(4, 1, 5, 8, dtype=torch.float64)),
        (DenseOperator(6, eps=0.0).double(), torch.randn(4, 6, dtype=torch.float64)),
    ]
    with torch.no_grad():
        for op, x in ops:
            y = op(x, scale)
            norms_in = x.flatten(1).norm(dim=1)
            norms_out = y.flatten(1).norm(dim=1)
            assert (norms_out <= norms_in * (1 + 1e-12)).all()


def test_functional_call_uses_replaced_parameters():
    conv, other_conv = conv_operator(2, 3), conv_operator(2, 3)
    x = torch.randn(3, 2, 6, 7, dtype=torch.float64)
    replaced = functional_call(conv, {"weight": other_conv.weight}, (x, 0.9))
    torch.testing.assert_close(replaced, other_conv(x, 0.9), rtol=0, atol=1e-14)
    assert (replaced - conv(x, 0.9)).abs().max() > 1e-3  # not the module's own operator

    dense, other_dense = DenseOperator(5).double(), DenseOperator(5).double()
    v = torch.randn(4, 5, dtype=torch.float64)
    replaced = functional_call(dense, {"weight": other_dense.weight}, (v, 2.0))
    torch.testing.assert_close(replaced, other_dense(v, 2.0), rtol=0, atol=1e-14)
    assert (replaced - dense(v, 2.0)).abs().max() > 1e-3

    blended = torch.lerp(conv.weight, other_conv.weight, 0.25)  # as a block blends controls
    middle = conv_operator(2, 3)
    with torch.no_grad():
        middle.weight.copy_(blended)
    torch.testing.assert_close(
        functional_call(conv, {"weight": blended}, (x, 0.9)), middle(x, 0.9), rtol=0, atol=1e-14
    )


def test_one_conv_operator_serves_several_image_sizes():
    op = conv_operator(2, 3)
    with torch.no_grad():
        for height, width in ((3, 3), (8, 5), (12, 12)):
            x = torch.randn(1, 2, height, width, dtype=torch.float64)
            y = op(x, 2.0)
            torch.testing.assert_close(y + 2.0 * op.apply(y), x, rtol=0, atol=1e-10)


def test_init_gives_mean_eigenvalue_near_one():
    conv = ConvOperator(64, kernel_size=3)
    assert abs(conv.eigenvalues(8, 8).mean().item() - 1.0) < 0.25
    dense = DenseOperator(64, eps=0.0)
    assert abs(torch.linalg.eigvalsh(dense.matrix()).mean().item() - 1.0) < 0.25
    before = conv.weight.detach().clone()
    conv.reset_parameters()
    assert not torch.equal(before, conv.weight)


def test_repr():
    assert repr(ConvOperator(4, 5)) == "ConvOperator(4, kernel_size=5)"
    assert repr(DenseOperator(3, eps=0.01)) == "DenseOperator(3, eps=0.01)"
    assert ConvOperator(4, 5).weight.shape == (4, 1, 5, 5)
    assert DenseOperator(3).weight.shape == (3, 3)


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: ConvOperator(0), "channels"),
        (lambda: ConvOperator(-2), "channels"),
        (lambda: ConvOperator(2.0), "channels"),
        (lambda: ConvOperator(True), "channels"),
        (lambda: ConvOperator(2, kernel_size=0), "kernel_size"),
        (lambda: ConvOperator(2, kernel_size=-3), "kernel_size"),
        (lambda: DenseOperator(0), "features"),
        (lambda: DenseOperator(-1), "features"),
        (lambda: DenseOperator(3, eps=-1e-3), "eps"),
        (lambda: DenseOperator(3, eps=math.nan), "eps"),
        (lambda: DenseOperator(3, eps=math.inf), "eps"),
    ],
)
def test_bad_constructor_arguments(make, name):
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        make()


def test_bad_states_and_scales():
    conv = ConvOperator(3, kernel_size=3)
    with pytest.raises(ValueError, match=r"C = channels = 3, got shape \(2, 4, 6, 6\)"):
        conv(torch.randn(2, 4, 6, 6), 1.0)
    with pytest.raises(ValueError, match="got shape"):
        conv.apply(torch.randn(3, 6, 6))
    with pytest.raises(ValueError, match=r"x has spatial size \(H, W\) = \(2, 6\).*kernel_size"):
        conv(torch.randn(1, 3, 2, 6), 1.0)
    with pytest.raises(ValueError, match=r"\(6, 2\).*kernel_size = 3"):
        conv.apply(torch.randn(1, 3, 6, 2))
    with pytest.raises(ValueError, match=r"\(2, 8\).*kernel_size"):
        conv.eigenvalues(2, 8)
    with pytest.raises(ValueError, match="^height must be"):
        conv.eigenvalues(0, 8)
    dense = DenseOperator(4)
    with pytest.raises(ValueError, match=r"D = features = 4, got shape \(2, 5\)"):
        dense(torch.randn(2, 5), 1.0)
    with pytest.raises(ValueError, match="got shape"):
        dense.apply(torch.randn(4))
    for op, x in ((conv, torch.randn(1, 3, 5, 5)), (dense, torch.randn(2, 4))):
        for scale in (-0.1, math.inf, math.nan, "1"):
            with pytest.raises(ValueError, match="^scale must be a finite non-negative number"):
                op(x, scale)


def test_half_precision_states_are_solved_in_float32_and_keep_their_dtype():
    torch.manual_seed(0)
    operator = ConvOperator(3).float()
    x = torch.randn(2, 3, 8, 8)
    exact = operator(x, 0.7)
    for dtype in (torch.bfloat16, torch.float16):
        y = operator(x.to(dtype), 0.7)
        assert y.dtype == dtype
        torch.testing.assert_close(y.float(), exact, rtol=0, atol=3e-2)
