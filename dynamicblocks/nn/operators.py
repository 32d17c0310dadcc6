"""Learnable positive semidefinite linear operators ``L`` for implicit-explicit blocks.

An IMEX block (:class:`~dynamicblocks.IMEXBlock`, after IMEXnet: Haber,
Lensink, Treister & Ruthotto, 2019, arXiv:1903.02639) steps
``dx/dt = f(x) - L x`` with ``f`` explicit and ``L`` implicit. The operators
here are called as ``operator(x, scale)`` and return the exact solve
``(I + scale L)^{-1} x``:

* :class:`ConvOperator` for images ``(N, C, H, W)``: ``L = K^T K`` with ``K`` a
  depthwise periodic convolution, solved by FFT in ``O(HW log HW)``;
* :class:`DenseOperator` for vectors ``(N, D)``: ``L = A^T A + eps I``, solved
  by a Cholesky factorisation.

Both read nothing but their parameters in ``forward`` (no cached factors or
spectra), so ``torch.func.functional_call`` with replaced or blended
parameters solves with the replaced operator, and gradients flow through the
solve to the state and to the parameters.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .._validate import positive_int, real_number

__all__ = ["ConvOperator", "DenseOperator"]


def _scale(scale: object) -> float:
    """``scale`` as a float if it is a finite real number >= 0, else raise."""
    return real_number(
        "scale", scale, "a finite non-negative number", 0.0, math.inf, open_high=True
    )


class ConvOperator(nn.Module):
    """``L = K^T K`` with ``K`` a learnable depthwise periodic convolution.

    ``K`` convolves each channel with its own ``k x k`` kernel (``weight``,
    shape ``(C, 1, k, k)``, as ``groups=C`` in :func:`torch.nn.functional.conv2d`)
    with circular boundaries. ``L`` is then symmetric positive semidefinite and
    diagonalised by the 2-D DFT: on channel ``c`` its eigenvalues are
    ``|K_c^(w)|^2``, the squared modulus of the DFT of the kernel zero-padded
    to ``H x W`` (the modulus does not depend on where the kernel sits in the
    padded array, so no shift is needed). ``forward`` solves exactly::

        y = irfft2( rfft2(x) / (1 + scale |K^|^2) )

    The spectrum is recomputed from ``weight`` on every call, for the state's
    ``H x W``, so one operator serves any image size ``>= kernel_size``.

    Args:
        channels: channels ``C`` of the state ``(N, C, H, W)``.
        kernel_size: side ``k`` of each kernel (any positive int; an even ``k``
            is placed with one more tap after the centre than before it).

    Raises:
        ValueError: if ``channels`` or ``kernel_size`` is not a positive int.

    Shape:
        ``forward(x, scale)`` and ``apply(x)``: ``(N, C, H, W) -> (N, C, H, W)``
        with ``H, W >= kernel_size``.
    """

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.channels = positive_int("channels", channels)
        self.kernel_size = positive_int("kernel_size", kernel_size)
        self.weight = nn.Parameter(torch.empty(self.channels, 1, kernel_size, kernel_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Normal ``weight`` with standard deviation ``1 / kernel_size``.

        Then ``E ||w_c||^2 = 1``; since ``trace(L_c) / (HW) = ||w_c||^2``, the
        mean eigenvalue of ``L`` on each channel is about 1 at any image size,
        and each eigenvalue ``|K_c^(w)|^2`` has expectation 1.
        """
        nn.init.normal_(self.weight, 0.0, 1.0 / self.kernel_size)

    def _check_state(self, x: torch.Tensor) -> tuple[int, int]:
        """``(H, W)`` of ``x`` after checking its shape against the operator."""
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"ConvOperator: x must have shape (N, C, H, W) with C = channels = "
                f"{self.channels}, got shape {tuple(x.shape)}"
            )
        return self._check_size(int(x.shape[2]), int(x.shape[3]), "x has spatial size")

    def _check_size(self, height: int, width: int, what: str) -> tuple[int, int]:
        k = self.kernel_size
        if height < k or width < k:
            raise ValueError(
                f"ConvOperator: {what} (H, W) = ({height}, {width}); both must be >= "
                f"kernel_size = {k} for the kernel to fit in the periodic domain"
            )
        return height, width

    def _symbol(self, height: int, width: int, onesided: bool) -> torch.Tensor:
        """``|K^|^2`` on the ``height x width`` DFT grid, one-sided or full.

        Shape ``(C, height, width // 2 + 1)`` if ``onesided``, else ``(C, height, width)``.
        """
        fft = torch.fft.rfft2 if onesided else torch.fft.fft2
        spectrum = fft(self.weight[:, 0], s=(height, width))
        return spectrum.real.square() + spectrum.imag.square()

    def eigenvalues(self, height: int, width: int) -> torch.Tensor:
        """The eigenvalues ``|K_c^(w)|^2`` of ``L`` on ``height x width`` images.

        Returns:
            A tensor of shape ``(C, height, width)``: entry ``[c, i, j]`` is the
            eigenvalue of the Fourier mode ``(i, j)`` on channel ``c``
            (unsorted; the ``height * width`` values of a channel are all of
            that channel's eigenvalues).

        Raises:
            ValueError: if ``height`` or ``width`` is not a positive int, or
                smaller than ``kernel_size``.
        """
        height = positive_int("height", height)
        width = positive_int("width", width)
        self._check_size(height, width, "height and width are")
        return self._symbol(height, width, onesided=False)

    def _padding(self) -> tuple[int, int]:
        """Circular padding ``(before, after)`` of ``K``; its adjoint uses ``(after, before)``."""
        before = self.kernel_size // 2
        return before, self.kernel_size - 1 - before

    def _conv(self, x: torch.Tensor, weight: torch.Tensor, before: int, after: int) -> torch.Tensor:
        x = F.pad(x, (before, after, before, after), mode="circular")
        return F.conv2d(x, weight, groups=self.channels)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``L x = K^T (K x)``, computed in the spatial domain (no FFT).

        ``K`` is a circularly padded depthwise :func:`~torch.nn.functional.conv2d`;
        ``K^T`` is the same with the flipped kernel and the padding mirrored.

        Raises:
            ValueError: if ``x`` is not ``(N, C, H, W)`` with ``C = channels``
                and ``H, W >= kernel_size``.
        """
        self._check_state(x)
        before, after = self._padding()
        z = self._conv(x, self.weight, before, after)
        return self._conv(z, self.weight.flip(-2, -1), after, before)

    def forward(self, x: torch.Tensor, scale: float) -> torch.Tensor:
        """``(I + scale L)^{-1} x`` by FFT, exact up to round-off.

        Half-precision states (``float16``, ``bfloat16``, e.g. under autocast)
        are solved in ``float32`` and returned in their own dtype.

        Args:
            x: the state ``(N, C, H, W)``.
            scale: ``h`` times the implicit coefficient, a finite number ``>= 0``.

        Raises:
            ValueError: if ``x`` is not ``(N, C, H, W)`` with ``C = channels``
                and ``H, W >= kernel_size``, or ``scale`` is negative or not
                finite.
        """
        height, width = self._check_state(x)
        scale = _scale(scale)
        dtype = x.dtype
        if dtype in (torch.float16, torch.bfloat16):  # no half-precision FFTs: solve in float32
            x = x.float()
        symbol = self._symbol(height, width, onesided=True).to(x.dtype)
        y = torch.fft.irfft2(torch.fft.rfft2(x) / (1.0 + scale * symbol), s=(height, width))
        return y.to(dtype)

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}"


class DenseOperator(nn.Module):
    """``L = A^T A + eps I`` with a learnable square matrix ``A`` (``weight``).

    ``L`` is symmetric positive definite for ``eps > 0`` (semidefinite for
    ``eps = 0``), with every eigenvalue ``>= eps``. ``forward`` solves
    ``(I + scale L) y = x`` with one Cholesky factorisation of the ``D x D``
    matrix per call and all ``N`` rows of ``x`` as right-hand sides, in
    ``O(D^3 + N D^2)``.

    Args:
        features: state dimension ``D``.
        eps: the multiple of the identity added to ``A^T A``, a finite
            number ``>= 0``.

    Raises:
        ValueError: if ``features`` is not a positive int, or ``eps`` is
            negative or not finite.

    Shape:
        ``forward(x, scale)`` and ``apply(x)``: ``(N, D) -> (N, D)``.
    """

    def __init__(self, features: int, eps: float = 1e-3) -> None:
        super().__init__()
        self.features = positive_int("features", features)
        self.eps = real_number(
            "eps", eps, "a finite non-negative number", 0.0, math.inf, open_high=True
        )
        self.weight = nn.Parameter(torch.empty(self.features, self.features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Normal ``weight`` with standard deviation ``1 / sqrt(features)``.

        Then ``E ||A||_F^2 = D``, so the mean eigenvalue ``trace(A^T A) / D`` of
        ``A^T A`` is about 1 (the largest about 4, Marchenko-Pastur).
        """
        nn.init.normal_(self.weight, 0.0, 1.0 / math.sqrt(self.features))

    def _check_state(self, x: torch.Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.features:
            raise ValueError(
                f"DenseOperator: x must have shape (N, D) with D = features = "
                f"{self.features}, got shape {tuple(x.shape)}"
            )

    def matrix(self) -> torch.Tensor:
        """The ``D x D`` matrix ``L = A^T A + eps I``."""
        a = self.weight
        eye = torch.eye(self.features, dtype=a.dtype, device=a.device)
        return a.mT @ a + self.eps * eye

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``L x`` for each row: ``x L^T`` (``= x L``, ``L`` being symmetric).

        Raises:
            ValueError: if ``x`` is not ``(N, D)`` with ``D = features``.
        """
        self._check_state(x)
        return x @ self.matrix().mT

    def forward(self, x: torch.Tensor, scale: float) -> torch.Tensor:
        """``(I + scale L)^{-1} x`` for each row, by Cholesky.

        Args:
            x: the state ``(N, D)``.
            scale: ``h`` times the implicit coefficient, a finite number ``>= 0``.

        Raises:
            ValueError: if ``x`` is not ``(N, D)`` with ``D = features``, or
                ``scale`` is negative or not finite.
        """
        self._check_state(x)
        scale = _scale(scale)
        a = self.weight
        eye = torch.eye(self.features, dtype=a.dtype, device=a.device)
        system = (1.0 + scale * self.eps) * eye + scale * (a.mT @ a)
        factor = torch.linalg.cholesky(system)
        return torch.cholesky_solve(x.mT, factor).mT

    def extra_repr(self) -> str:
        return f"{self.features}, eps={self.eps:g}"
