"""A block's fields with ``theta(t)`` resolved: evaluating them, and their vector-Jacobian products.

A method never touches a block's modules. At construction the block resolves
every evaluation a method asks for (a field, at a time ``t_k + c h_k``) into an
:class:`Evaluation`: which copy of the field's layer runs it, and, when the
weights at that time are blended from two controls, which *slot* of blended
parameters it reads. Per forward pass the block builds one :class:`Fields`,
which blends every slot once (``torch.lerp``, the one blend path of the
library) and evaluates :class:`Evaluation` records on states.

The backward passes written by hand (:mod:`dynamicblocks.memory.adjoint`,
:mod:`dynamicblocks.memory.reversible`) use :meth:`Fields.vjp`, which returns
the gradients of the parameters each evaluation reads; blended slots are
detached leaves, and :meth:`Fields.parameter_gradients` sends their gradients
to the two controls by the ``lerp`` weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import torch
from torch import nn
from torch.func import functional_call

from .._validate import check_layer_output
from ..weights import StageControl

__all__ = ["Evaluation", "Carried", "Initial", "Slot", "Fields"]


class Evaluation(NamedTuple):
    """One evaluation of a field, resolved at construction."""

    field: int  # which of the block's fields (layer lists)
    module: int  # the control whose module runs it (its buffers are used)
    blend: int | None  # slot of blended parameters, or None for the module's own

    carried = False  # see Carried
    initial = False  # see Initial


class Carried(Evaluation):
    """An evaluation at a step's output that the next step reads from the state.

    Equal (and hashing equal) to the :class:`Evaluation` it marks. It tells
    ``memory="reversible"`` to take the evaluation's record from the inverse
    of the following step (see :mod:`dynamicblocks.memory.reversible`).
    """

    __slots__ = ()
    carried = True


class Initial(Evaluation):
    """An evaluation that only starts a solve (e.g. a velocity ``f(t_0, x_0)``).

    Equal to the :class:`Evaluation` it marks. No inverse step rebuilds it, so
    ``memory="reversible"`` evaluates it afresh when it replays the first
    step (see :mod:`dynamicblocks.memory.reversible`).
    """

    __slots__ = ()
    initial = True


class Slot(NamedTuple):
    """Blended weights ``(1 - w) theta[left] + w theta[right]`` of one field."""

    field: int
    control: StageControl


Gradients = dict[torch.Tensor, torch.Tensor]


class Fields:
    """The fields of one block for one pass, with every blended slot computed once.

    Args:
        layers: per field, the copies of its layer, one per control.
        names: per field, the names of its layer's parameters.
        slots: the blended slots to compute.
        block: the block's name for error messages.
        detached: blend detached parameters into leaves that require grad
            (for :meth:`vjp`) instead of recording the blend for autograd.
        report: where a method reports its solves (see
            :class:`~dynamicblocks.ImplicitBlock`), if anywhere.
        scale: a factor on every evaluation: ``s f`` integrates the same ODE
            over an ``s`` times longer interval (STEER's random end time, see
            :func:`~dynamicblocks.set_steer`).
    """

    def __init__(
        self,
        layers: Sequence[Sequence[nn.Module]],
        names: Sequence[tuple[str, ...]],
        slots: Sequence[Slot],
        block: str,
        detached: bool = False,
        report: Callable | None = None,
        scale: float = 1.0,
    ) -> None:
        self.scale = scale
        self.layers = [list(field) for field in layers]
        self.names = names
        self.slots = slots
        self.block = block
        self.report = report
        self.blends = [self._blend(slot, detached) for slot in slots]

    def _blend(self, slot: Slot, detached: bool) -> dict[str, torch.Tensor]:
        layers, control = self.layers[slot.field], slot.control
        pairs = zip(layers[control.left].parameters(), layers[control.right].parameters())
        names = self.names[slot.field]
        if not detached:
            return {name: torch.lerp(p, q, control.weight) for name, (p, q) in zip(names, pairs)}
        with torch.no_grad():
            blended = [torch.lerp(p, q, control.weight) for p, q in pairs]
        return {name: value.requires_grad_() for name, value in zip(names, blended)}

    def __call__(
        self,
        evaluation: Evaluation,
        x: torch.Tensor,
        shape: torch.Size | None = None,
        args: tuple = (),
        weight: float = 0.0,
    ) -> torch.Tensor:
        """The field of ``evaluation`` at ``x``, checked to have ``x``'s shape (or ``shape``).

        ``args`` are passed to the layer after ``x`` (e.g. the step factor of an
        IMEX block's linear solve). ``weight`` is the evaluation's weight in the
        method's quadrature of ``integral r(x(t), t) dt`` over the solve (``h b_i``
        for a Runge-Kutta stage); it is read by the regularisers
        (:class:`~dynamicblocks.core.stats.RecordingFields`) and ignored here.

        Raises:
            ValueError: if the layer returns another shape (or no tensor).
        """
        layer = self.layers[evaluation.field][evaluation.module]
        if evaluation.blend is None:
            out = layer(x, *args)
        else:
            out = functional_call(layer, self.blends[evaluation.blend], (x, *args))
        check_layer_output(self.block, layer, x, out, shape)  # host metadata only
        return out if self.scale == 1.0 else out * self.scale

    def inputs(self, evaluation: Evaluation) -> list[torch.Tensor]:
        """The trainable tensors an evaluation reads: its module's parameters, or its slot's."""
        if evaluation.blend is not None:
            return list(self.blends[evaluation.blend].values())
        layer = self.layers[evaluation.field][evaluation.module]
        return [p for p in layer.parameters() if p.requires_grad]

    def vjp(
        self,
        evaluation: Evaluation,
        x: torch.Tensor,
        cotangent: torch.Tensor,
        grads: Gradients,
        weight: float = 1.0,
        shape: torch.Size | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``f(x)`` and ``(df/dx)^T v``; adds ``weight (df/dtheta)^T v`` into ``grads``.

        ``grads`` is keyed by the tensors of :meth:`inputs`; pass it to
        :meth:`parameter_gradients` at the end. ``(df/dx)^T v`` is zero where
        ``f`` does not depend on ``x``.
        """
        params = self.inputs(evaluation)
        with torch.enable_grad():
            x = x.detach().requires_grad_()
            f = self(evaluation, x, shape)
        if not f.requires_grad:  # neither x nor a parameter reaches the field
            return f, torch.zeros_like(x)
        found = torch.autograd.grad(f, (x, *params), cotangent, allow_unused=True)
        self.accumulate(grads, zip(params, found[1:]), weight)
        back = found[0] if found[0] is not None else torch.zeros_like(x)
        return f.detach(), back

    def parameter_gradients(self, grads: Gradients) -> Gradients:
        """``grads`` with every blended slot's gradient sent to its two controls."""
        blended = {id(value) for blend in self.blends for value in blend.values()}
        out = {key: value for key, value in grads.items() if id(key) not in blended}
        for slot, blend in zip(self.slots, self.blends):
            layers, control = self.layers[slot.field], slot.control
            left, right = layers[control.left], layers[control.right]
            for name, value in blend.items():
                grad = grads.get(value)
                if grad is None:
                    continue
                self.accumulate(out, [(left.get_parameter(name), grad)], 1.0 - control.weight)
                self.accumulate(out, [(right.get_parameter(name), grad)], control.weight)
        return out

    @staticmethod
    def accumulate(
        grads: Gradients,
        pairs: Iterable[tuple[torch.Tensor, torch.Tensor | None]],
        weight: float = 1.0,
    ) -> None:
        """``grads[p] += weight * g`` for every ``(p, g)`` in ``pairs`` with ``g`` not None."""
        if weight == 0.0:
            return
        for param, grad in pairs:
            if grad is None:
                continue
            if param in grads:
                grads[param].add_(grad, alpha=weight)
            else:
                grads[param] = grad * weight
