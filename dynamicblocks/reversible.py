"""Reversible backpropagation for the invertible blocks: memory independent of depth.

:class:`~dynamicblocks.HamiltonianBlock` (two-stream Verlet) and
:class:`~dynamicblocks.LeapfrogBlock` (leapfrog for ``y'' = F(y)``) have exact
inverse steps, so their activations need not be stored for backpropagation
(Gomez et al., 2017; Chang et al., 2018). Here the forward pass runs without
recording autograd and keeps only the block's output; the backward pass walks
the steps from last to first, reconstructs each step's input from its output
with the inverse step, evaluates that step's field(s) again with autograd
enabled and back-propagates through the step, accumulating the gradients of
the inputs and of every parameter of the block (all controls; with
``interpolation="linear"`` the ``torch.lerp`` blends distribute a step's
gradient to both controls). Saved for backward: the final state(s) only, so
memory does not grow with the number of steps; the price is one more
evaluation of every field (and its backward) in the backward pass.

As in the RevNet algorithm, the field evaluated to undo a half step is the
one whose vector-Jacobian product that half step needs, so each field is
evaluated once per step in backward (not twice: reconstruct, then recompute).

Accuracy: the reconstruction is exact only up to round-off, so the gradients
equal those of backpropagation through stored activations up to the
round-off of the inverse (about ``1e-12`` relative in float64 for
well-conditioned fields and moderate depth; more where the inverse amplifies
errors, e.g. a leapfrog with an exponentially growing mode).

Requirements, as for any recomputation:

* the fields are deterministic (no dropout) and evaluate the same on the same
  input; BatchNorm in training mode qualifies (batch statistics), and the
  recomputation runs every submodule in the training mode it had in forward
  (so switching ``block.eval()`` between forward and backward is harmless)
  and restores all buffers afterwards, so running statistics and
  ``num_batches_tracked`` end as after one ordinary forward pass;
* the parameters are not changed in place between forward and backward (an
  optimizer step); this is checked and raises a ``RuntimeError``. Buffers read
  in eval mode (BatchNorm running statistics) must not change in between
  either (not checked);
* no double backward (``create_graph=True`` raises a ``RuntimeError``).

References:
    A. N. Gomez, M. Ren, R. Urtasun, R. B. Grosse, "The reversible residual
    network: backpropagation without storing activations", NeurIPS 2017,
    arXiv:1707.04585.

    B. Chang, L. Meng, E. Haber, L. Ruthotto, D. Begert, E. Holtham,
    "Reversible architectures for arbitrarily deep residual neural
    networks", AAAI 2018, arXiv:1709.03698.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ._buffers import buffers_restored
from ._vjp import accumulate, field_vjp

if TYPE_CHECKING:  # no import at run time: hamiltonian.py may import this module
    from .hamiltonian import HamiltonianBlock, LeapfrogBlock

__all__ = ["leapfrog_reversible", "verlet_reversible"]

Pair = tuple[torch.Tensor, torch.Tensor]


# ====================================================================================== helpers


def _check_tensor(name: str, value: object) -> torch.Tensor:
    """Return ``value`` if it is a tensor, else raise a TypeError naming ``name``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def _record(ctx: Any, block: nn.Module, params: Sequence[torch.Tensor]) -> None:
    """Keep on ``ctx`` what backward needs to reach the block (no tensors copied)."""
    ctx.block = block
    ctx.params = tuple(params)
    ctx.versions = tuple(p._version for p in params)
    ctx.modes = tuple((module, module.training) for module in block.modules())


def _check_versions(ctx: Any) -> None:
    """Raise if a parameter was modified in place since forward."""
    if any(p._version != v for p, v in zip(ctx.params, ctx.versions)):
        raise RuntimeError(
            "a parameter of the block was modified in place between the forward and the "
            "backward pass (e.g. by an optimizer step); reversible backpropagation recomputes "
            "the steps with the current parameters and would give wrong gradients"
        )


@contextmanager
def _modes_as(modes: Sequence[tuple[nn.Module, bool]]) -> Iterator[None]:
    """Run the body with every module in its recorded training mode; restore the modes after."""
    current = [(module, module.training) for module, _ in modes]
    try:
        for module, training in modes:
            module.training = training
        yield
    finally:
        for module, training in current:
            module.training = training


def _first_order_only(backward: Callable[..., tuple[Any, ...]]) -> Callable[..., tuple[Any, ...]]:
    """Run ``backward`` without recording autograd; refuse ``create_graph=True`` clearly."""

    @functools.wraps(backward)
    def wrapper(ctx: Any, *grads: torch.Tensor) -> tuple[Any, ...]:
        if torch.is_grad_enabled():  # the engine enables grad mode for create_graph=True
            raise RuntimeError(
                "reversible backpropagation does not support double backward "
                "(create_graph=True); use the block's stored-activation forward"
            )
        return backward(ctx, *grads)

    return wrapper


# =================================================================================== Verlet


class _VerletFunction(torch.autograd.Function):
    """``(y_0, z_0, *params) -> (y_N, z_N)`` of a HamiltonianBlock; saves only ``(y_N, z_N)``."""

    @staticmethod
    def forward(
        ctx: Any, block: HamiltonianBlock, y: torch.Tensor, z: torch.Tensor, *params: torch.Tensor
    ) -> Pair:
        f1, f2 = list(block.layers1), list(block.layers2)
        for h, control in zip(block._h, block._controls):
            y, z = block._step(y, z, h, control, f1, f2)
        _record(ctx, block, params)
        ctx.save_for_backward(y, z)
        return y, z

    @staticmethod
    @_first_order_only
    def backward(ctx: Any, grad_y: torch.Tensor, grad_z: torch.Tensor) -> tuple[Any, ...]:
        _check_versions(ctx)
        block, params = ctx.block, ctx.params
        y, z = ctx.saved_tensors
        grads: dict[nn.Parameter, torch.Tensor] = {}
        f1, f2 = list(block.layers1), list(block.layers2)
        with _modes_as(ctx.modes), buffers_restored(block):
            for h, control in zip(reversed(block._h), reversed(block._controls)):
                # (y, z) = (y_{k+1}, z_{k+1}); undo z_{k+1} = z_k - h F2(y_{k+1}) ...
                force, back, pairs = field_vjp(f2, block._names2, control, y, grad_z * -h)
                z = torch.add(z, force, alpha=h)
                accumulate(grads, pairs)
                if back is not None:  # dL/dy_{k+1} before the z half step
                    grad_y = grad_y + back
                # ... then y_{k+1} = y_k + h F1(z_k)
                force, back, pairs = field_vjp(f1, block._names1, control, z, grad_y * h)
                y = torch.sub(y, force, alpha=h)
                accumulate(grads, pairs)
                if back is not None:
                    grad_z = grad_z + back
        return (
            None,
            grad_y if ctx.needs_input_grad[1] else None,
            grad_z if ctx.needs_input_grad[2] else None,
            *(grads.get(p) for p in params),
        )


def verlet_reversible(block: HamiltonianBlock, y: torch.Tensor, z: torch.Tensor) -> Pair:
    """``(y_N, z_N)`` of ``block`` from ``(y, z)``, back-propagated reversibly.

    The same values as the block's forward loop on the pair ``(y, z)``
    (``block((y, z))``), but autograd stores only ``(y_N, z_N)``: backward
    reconstructs ``(y_k, z_k)`` step by step with the inverse Verlet step
    ``z_k = z_{k+1} + h_k F2_k(y_{k+1})``, ``y_k = y_{k+1} - h_k F1_k(z_k)``
    and back-propagates through each step, giving gradients for ``y``, ``z``
    and every parameter of ``block``. They equal the stored-activation
    gradients up to the round-off of the reconstruction (see the module
    docstring for the requirements).

    Args:
        block: a :class:`~dynamicblocks.HamiltonianBlock` (its steps and fields
            are used; its ``forward``, which calls this function, is not).
        y: the first stream ``y_0``.
        z: the second stream ``z_0``.

    Returns:
        ``(y_N, z_N)``.

    Raises:
        TypeError: if ``block`` is not a HamiltonianBlock or ``y``, ``z`` are not tensors.
    """
    from .hamiltonian import HamiltonianBlock  # here: hamiltonian.py may import this module

    if not isinstance(block, HamiltonianBlock):
        raise TypeError(f"block must be a HamiltonianBlock, got {type(block).__name__}")
    _check_tensor("y", y)
    _check_tensor("z", z)
    return _VerletFunction.apply(block, y, z, *block.parameters())


# ================================================================================= leapfrog


class _LeapfrogFunction(torch.autograd.Function):
    """``(y_0, y_{-1} or None, *params) -> (y_N, y_{N-1})``; saves only the output pair."""

    @staticmethod
    def forward(
        ctx: Any,
        block: LeapfrogBlock,
        x: torch.Tensor,
        x_prev: torch.Tensor | None,
        *params: torch.Tensor,
    ) -> Pair:
        layers = list(block.layers)
        y_prev, y = x_prev, x
        for coefficients, control in zip(block._coefficients, block._controls):
            y_prev, y = y, block._step(y, y_prev, coefficients, control, layers)
        _record(ctx, block, params)
        ctx.has_prev = x_prev is not None
        ctx.factor = 1.0 if block._start == "rest" else 0.5
        ctx.save_for_backward(y, y_prev)
        return y, y_prev

    @staticmethod
    @_first_order_only
    def backward(ctx: Any, grad_y: torch.Tensor, grad_prev: torch.Tensor) -> tuple[Any, ...]:
        _check_versions(ctx)
        block, params = ctx.block, ctx.params
        y, y_prev = ctx.saved_tensors  # (y_{k+1}, y_k) for k = N - 1
        grads: dict[nn.Parameter, torch.Tensor] = {}
        layers = list(block.layers)
        steps = list(zip(block._coefficients, block._controls))
        grad_x = grad_x_prev = None
        with _modes_as(ctx.modes), buffers_restored(block):
            for k in reversed(range(len(steps))):
                (ratio, kick), control = steps[k]
                first = k == 0 and not ctx.has_prev  # y_1 = y_0 + factor kick F_0(y_0)
                scale = ctx.factor * kick if first else kick
                force, back, pairs = field_vjp(
                    layers, block._names, control, y_prev, grad_y * scale
                )
                accumulate(grads, pairs)
                # y_{k+1} = y_k + ratio (y_k - y_{k-1}) + kick F_k(y_k): dL/dy_k, dL/dy_{k-1}
                grad_here = grad_prev + grad_y
                if not first:
                    grad_here = torch.add(grad_here, grad_y, alpha=ratio)
                if back is not None:
                    grad_here = grad_here + back
                grad_before = None if first else grad_y * -ratio
                if k == 0:
                    grad_x, grad_x_prev = grad_here, grad_before
                    break
                # y_{k-1} from (y_{k+1}, y_k), as LeapfrogBlock.inverse
                drift = torch.sub(torch.sub(y, y_prev), force, alpha=kick)
                y, y_prev = y_prev, torch.sub(y_prev, drift, alpha=1.0 / ratio)
                grad_y, grad_prev = grad_here, grad_before
        return (
            None,
            grad_x if ctx.needs_input_grad[1] else None,
            grad_x_prev if ctx.needs_input_grad[2] else None,
            *(grads.get(p) for p in params),
        )


def leapfrog_reversible(
    block: LeapfrogBlock,
    x: torch.Tensor,
    x_prev: torch.Tensor | None = None,
) -> Pair:
    """``(y_N, y_{N-1})`` of ``block`` from ``y_0 = x``, back-propagated reversibly.

    The same values as ``block(x, x_prev, return_pair=True)``, but autograd
    stores only the output pair: backward reconstructs ``y_{k-1}`` from
    ``(y_{k+1}, y_k)`` with the inverse leapfrog step
    ``y_{k-1} = y_k - (y_{k+1} - y_k - h_k (h_k + h_{k-1}) / 2 F_k(y_k)) h_{k-1} / h_k``
    down to ``y_0`` (the first step, without ``x_prev``, is the ``start``
    step ``y_1 = y_0 + c h_0^2 F_0(y_0)``, ``c = 1`` for ``"rest"``, ``1/2``
    for ``"taylor"``, and needs no reconstruction), and back-propagates
    through each step, giving gradients for ``x``, ``x_prev`` (when given) and
    every parameter of ``block``. They equal the stored-activation gradients
    up to the round-off of the reconstruction (see the module docstring).

    Args:
        block: a :class:`~dynamicblocks.LeapfrogBlock` (its steps and field are
            used; its ``forward``, which calls this function, is not).
        x: the initial state ``y_0``.
        x_prev: the state ``y_{-1}``, the same shape as ``x``, or ``None``
            for the block's ``start``.

    Returns:
        ``(y_N, y_{N-1})``.

    Raises:
        TypeError: if ``block`` is not a LeapfrogBlock, ``x`` is not a tensor
            or ``x_prev`` is neither a tensor nor ``None``.
        ValueError: if ``x_prev`` has another shape than ``x``.
    """
    from .hamiltonian import LeapfrogBlock  # here: hamiltonian.py may import this module

    if not isinstance(block, LeapfrogBlock):
        raise TypeError(f"block must be a LeapfrogBlock, got {type(block).__name__}")
    _check_tensor("x", x)
    if x_prev is not None:
        _check_tensor("x_prev", x_prev)
        if x_prev.shape != x.shape:
            raise ValueError(
                f"x_prev must have the shape of x, {tuple(x.shape)}, got {tuple(x_prev.shape)}"
            )
    return _LeapfrogFunction.apply(block, x, x_prev, *block.parameters())
