"""Anderson-accelerated fixed-point iteration, for the implicit blocks' forward and backward.

:func:`anderson` solves ``x = g(x)``. It serves the implicit blocks twice per
step: the forward solve of ``y = G(y)`` and the backward solve of
``w = g + J_G^T w`` (implicit function theorem). Two properties matter on that
hot path:

* **Per-sample mixing.** For a batched tensor (``x0.dim() >= 2``) dim 0 is the
  batch, and the samples are (usually) independent problems: each sample gets
  its own Anderson coefficients from its own small least-squares problem, all
  of them solved at once as batched linear algebra. A hard sample therefore
  does not spoil the extrapolation of an easy one, and the result for a sample
  does not depend on what else is in the batch (for a ``g`` that treats
  samples independently). A 1-D ``x0`` is one vector (a batch of one).
* **Few host synchronisations.** Everything in an iteration stays on the
  device: the coefficients come from :func:`torch.linalg.solve_ex`, which
  reports a singular system in a device tensor instead of raising (that sample
  takes the plain step), and the per-sample residuals are compared with the
  tolerance on the device. The host reads the worst residual only every
  ``check_every`` iterations and at the end: one synchronisation per
  ``check_every`` evaluations of ``g`` instead of two per evaluation. A sample
  whose residual is within the tolerance is frozen (its iterate stops
  changing) on the device at once, so the evaluations between checks cannot
  make it worse.

Reference: H. F. Walker and P. Ni, "Anderson acceleration for fixed-point
iterations", SIAM J. Numer. Anal. 49(4), 2011.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from .._validate import int_in_range, positive_int

__all__ = ["FixedPointResult", "anderson"]

DEVICE_CHECK_EVERY = 4
"""The default ``check_every`` for tensors on an accelerator (on the CPU it is 1)."""

_REGULARISATION = 1e-12  # Tikhonov term, relative to the Gram matrix's largest diagonal entry


class FixedPointResult(NamedTuple):
    """The outcome of :func:`anderson`.

    ``solution`` is the last iterate, of ``x0``'s shape; ``iterations`` the
    number of evaluations of ``g``; ``residual`` the largest over samples of
    ``|g(x) - x| / |g(x)|`` at ``solution``; ``converged`` is ``residual <= tol``.
    """

    solution: torch.Tensor
    iterations: int
    residual: float
    converged: bool


def _relative(difference: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Per-row ``|difference| / |value|`` (2-norms over dim 1), on the device."""
    tiny = torch.finfo(value.dtype).tiny
    return torch.linalg.vector_norm(difference, dim=1) / torch.linalg.vector_norm(
        value, dim=1
    ).clamp_min(tiny)


def _worst(relative: torch.Tensor) -> float:
    """The largest per-sample residual, read on the host (the one synchronisation)."""
    if relative.numel() == 0:
        return 0.0
    return relative.max().item()


def _anderson_step(
    f: torch.Tensor, dx: torch.Tensor, df: torch.Tensor, damping: float
) -> torch.Tensor:
    """The Anderson step ``beta f - (dX + beta dF) gamma``, one ``gamma`` per sample.

    Args:
        f: the residuals ``g(x) - x``, shape ``(N, D)``.
        dx: the iterate differences, ``(N, k, D)``: each sample's history
            matrix ``dX`` (``D x k``) stored transposed, so that a new column is
            a contiguous write.
        df: the residual differences ``dF``, likewise ``(N, k, D)``.
        damping: ``beta``.

    Returns:
        The step, ``(N, D)``. ``gamma`` minimises ``|f - dF gamma|`` per sample
        through the regularised normal equations; where a sample's system is
        singular (``info != 0``) its ``gamma`` is zero, i.e. the plain damped step.
    """
    k = dx.shape[1]
    gram = df @ df.transpose(1, 2)  # (N, k, k)
    scale = _REGULARISATION * gram.diagonal(dim1=1, dim2=2).amax(dim=1).clamp_min(1e-30)
    eye = torch.eye(k, dtype=gram.dtype, device=gram.device)
    gram = gram + scale[:, None, None] * eye
    gamma, info = torch.linalg.solve_ex(gram, df @ f.unsqueeze(2))  # (N, k, 1), (N,)
    gamma = torch.where((info == 0)[:, None, None], gamma, 0.0).transpose(1, 2)  # (N, 1, k)
    correction = gamma @ dx + damping * (gamma @ df)  # (N, 1, D)
    return damping * f - correction.squeeze(1)


def anderson(
    g: Callable[[torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    tol: float,
    max_iter: int,
    memory: int = 5,
    damping: float = 1.0,
    *,
    check_every: int | None = None,
) -> FixedPointResult:
    """Solve ``x = g(x)`` by Anderson acceleration (Walker & Ni, SIAM J. Numer. Anal. 2011).

    Each iteration mixes the last ``memory`` iterates so as to minimise the
    linearised residual (a small regularised least-squares problem);
    ``memory=0`` is the plain damped fixed-point iteration
    ``x <- x + damping (g(x) - x)``.

    For ``x0.dim() >= 2`` dim 0 is the batch and every sample has its own
    mixing coefficients: its own history matrices ``dX, dF`` (``D x m``), Gram
    matrix ``dF^T dF`` (``m x m``) with the Tikhonov term ``1e-12`` times its
    largest diagonal entry, and its own stopping test. A 1-D ``x0`` is one
    vector, mixed as a whole.

    Host synchronisation: the iteration itself runs entirely on the device
    (:func:`torch.linalg.solve_ex`, no error check on the host; a singular
    system makes that sample take the plain step). The worst residual is read
    on the host only when the number of evaluations of ``g`` is a multiple of
    ``check_every``, and once at the end, so a solve costs about
    ``iterations / check_every`` synchronisations. The price is up to
    ``check_every - 1`` evaluations after every sample has converged; samples
    within ``tol`` are frozen on the device (their iterate no longer changes),
    so those evaluations do not change the solution, and samples that
    converge early are not made worse while the others iterate.

    Called under ``torch.no_grad()`` by the implicit blocks, so no iteration
    is recorded for autograd.

    Args:
        g: the map; ``g(x)`` has the shape of ``x``.
        x0: the initial guess: a batch along dim 0, or (1-D) one vector.
        tol: stop when every sample has ``|g(x) - x| / |g(x)| <= tol`` (2-norms
            over the sample's entries; the denominator is clamped at the
            dtype's ``tiny``).
        max_iter: the most evaluations of ``g`` (a positive int).
        memory: how many past iterates are mixed (an int >= 0).
        damping: the mixing parameter ``beta`` in (0, 1].
        check_every: read the stopping test on the host every this many
            evaluations of ``g`` (a positive int; ``1`` checks every iteration).
            Default: 1 for a CPU tensor, where reading costs nothing and the
            extra evaluations would; :data:`DEVICE_CHECK_EVERY` (4) on an
            accelerator, where every read waits for the device.

    Returns:
        The last iterate (shape of ``x0``), the number of evaluations of ``g``
        (at most ``max_iter``), the largest per-sample relative residual and
        whether it is within ``tol``.

    Raises:
        ValueError: if ``max_iter`` or ``check_every`` is not a positive int, or
            ``memory`` not an int >= 0.
    """
    max_iter = positive_int("max_iter", max_iter)
    memory = int_in_range("memory", memory, 0)
    if check_every is None:  # a host read costs nothing on the CPU, so check every time
        check_every = 1 if x0.device.type == "cpu" else DEVICE_CHECK_EVERY
    check_every = positive_int("check_every", check_every)
    shape = x0.shape
    rows = (shape[0], math.prod(shape[1:])) if x0.dim() >= 2 else (1, x0.numel())

    def evaluate(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gx = g(x.reshape(shape)).reshape(rows)
        return gx, gx - x

    x = x0.reshape(rows)
    gx, f = evaluate(x)
    relative = _relative(f, gx)
    iterations = 1
    if memory:
        dx_history = f.new_zeros(rows[0], memory, rows[1])
        df_history = f.new_zeros(rows[0], memory, rows[1])
    stored = 0
    while True:
        if iterations % check_every == 0 or iterations >= max_iter:
            residual = _worst(relative)
            if not residual > tol or iterations >= max_iter:  # a nan residual stops too
                break
        if stored:
            k = min(stored, memory)
            step = _anderson_step(f, dx_history[:, :k], df_history[:, :k], damping)
        else:
            step = damping * f
        done = (relative <= tol).unsqueeze(1)
        x_new = torch.where(done, x, x + step)
        g_new, f_new = evaluate(x_new)
        iterations += 1
        if memory:
            slot = stored % memory  # a ring: the least-squares fit ignores column order
            dx_history[:, slot] = x_new - x
            df_history[:, slot] = f_new - f
            stored += 1
        x, gx, f = x_new, g_new, f_new
        relative = _relative(f, gx)
    return FixedPointResult(x.reshape(shape), iterations, residual, residual <= tol)
