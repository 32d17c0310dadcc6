"""``memory="reversible"``: backpropagation that rebuilds the states with the exact inverse.

For every method with an exact inverse step (Verlet, leapfrog, ...) the
activations need not be stored (Gomez et al., 2017; Chang et al., 2018). The
forward pass runs without recording autograd and keeps only the final state.
The backward pass walks the steps from last to first. For step ``k`` it runs
the method's ``inverse_step`` from the step's output, which rebuilds the step's
input and evaluates, with autograd enabled, the very fields the forward step
evaluated; it then replays the forward ``step`` from the rebuilt input with
those evaluations (their values and vector-Jacobian products, not new
evaluations) and back-propagates through it. Each field is therefore evaluated
once per step in backward, as in the RevNet algorithm; the memory is that of
one step, whatever the number of steps. A new method gets this mode by
writing its ``inverse_step`` so that it evaluates the same fields at the same
states as its ``step`` (each evaluation of a step at most once).

A method that carries an evaluation in its state (the next step reads
``f(x_{k+1})``, computed at the end of step ``k``, as reversible Heun does)
marks that evaluation :class:`~dynamicblocks.core.fields.Carried` in its plan. Its inverse step then
evaluates the field at the state it rebuilds (``f(x_k)``, for the state
before the step), and the replay of step ``k - 1`` takes that record for its
carried evaluation; the last step's carried evaluation, which no inverse
rebuilds, is evaluated afresh, once. An evaluation that only starts the
solve (marked :class:`~dynamicblocks.core.fields.Initial`, e.g. a first
velocity ``f(t_0, x_0)``) is likewise evaluated afresh.

Accuracy: the reconstruction is exact only up to round-off, so the gradients
equal those of backpropagation through stored activations up to the round-off
of the inverse (about ``1e-12`` relative in float64 for well-conditioned fields
and moderate depth; more where the inverse amplifies errors, e.g. a leapfrog
with an exponentially growing mode).

Requirements, as for any recomputation (checked where possible, see
:mod:`dynamicblocks.memory.guards`): deterministic fields (no dropout;
BatchNorm in training mode qualifies, its buffers are restored); parameters not
changed in place between forward and backward (raises); no double backward
(raises).

References:
    A. N. Gomez, M. Ren, R. Urtasun, R. B. Grosse, "The reversible residual
    network: backpropagation without storing activations", NeurIPS 2017,
    arXiv:1707.04585.

    B. Chang, L. Meng, E. Haber, L. Ruthotto, D. Begert, E. Holtham,
    "Reversible architectures for arbitrarily deep residual neural
    networks", AAAI 2018, arXiv:1709.03698.
"""

from __future__ import annotations

from typing import Any

import torch

from .guards import first_order_only, record, replay

__all__ = ["reversible_solve"]

State = tuple
Records = dict  # Evaluation -> (leaf x, f(x), inputs, fields, grads)


def reversible_solve(block: Any, state: State, scale: float = 1.0) -> State:
    """The final state of ``block.integrate(state)``, back-propagated reversibly.

    ``block`` is a :class:`~dynamicblocks.core.TimeBlock` whose method has an
    ``inverse_step``. Entries of ``state`` may be ``None`` (e.g. no previous
    state for a leapfrog); the output has only tensors. ``scale`` multiplies
    the fields (see :attr:`~dynamicblocks.core.TimeBlock.steer`).
    """
    params = tuple(block.parameters())
    return _Reversible.apply(block, scale, len(state), *state, *params)


class _Replayed(torch.autograd.Function):
    """A recorded evaluation ``f(x)``: its value, and its vector-Jacobian product in backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, record: tuple) -> torch.Tensor:
        ctx.record = record
        return record[1].detach()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        x, f, inputs, fields, grads = ctx.record
        if not f.requires_grad:  # neither x nor a parameter reaches the field
            return None, None
        found = torch.autograd.grad(f, (x, *inputs), grad, allow_unused=True)
        fields.accumulate(grads, zip(inputs, found[1:]))
        return found[0], None


class _Reversible(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, block: Any, scale: float, width: int, *inputs: torch.Tensor | None):
        state = tuple(inputs[:width])
        (out,) = block.integrate(state, False, mode="full", scale=scale)  # no grad in here
        record(ctx, block, inputs[width:])
        ctx.scale = scale
        ctx.missing = tuple(value is None for value in state)
        ctx.save_for_backward(*out)
        return tuple(out)

    @staticmethod
    @first_order_only("reversible")
    def backward(ctx: Any, *cotangent: torch.Tensor) -> tuple[Any, ...]:
        block = ctx.block
        state: State = ctx.saved_tensors
        grads: dict[torch.Tensor, torch.Tensor] = {}
        carried: Records = {}
        with replay(ctx, "reversible"):
            fields = block.fields(detached=True, scale=ctx.scale)
            for k in reversed(range(block.num_steps)):
                missing = ctx.missing if k == 0 else None
                state, cotangent, carried = _back_step(
                    block.method, block.plan[k], state, cotangent, fields, grads, missing, carried
                )
        grads = fields.parameter_gradients(grads)
        inputs = tuple(g if ctx.needs_input_grad[3 + i] else None for i, g in enumerate(cotangent))
        return (None, None, None, *inputs, *(grads.get(p) for p in ctx.params))


def _record(
    fields: Any, grads: dict, evaluation: Any, x: torch.Tensor, shape: torch.Size | None
) -> tuple:
    """Evaluate ``evaluation`` at a leaf copy of ``x`` with autograd (for a later VJP)."""
    with torch.enable_grad():
        leaf = x.detach().requires_grad_()
        f = fields(evaluation, leaf, shape)
    return leaf, f, tuple(fields.inputs(evaluation)), fields, grads


def _back_step(
    method: Any,
    plan: Any,
    state: State,
    cotangent: tuple,
    fields: Any,
    grads: dict,
    missing: tuple[bool, ...] | None,
    carried: Records,
) -> tuple[State, tuple, Records]:
    """Rebuild the input of one step from its output, and pull ``cotangent`` back through it.

    ``missing`` marks the entries of the first step's input that were ``None``;
    ``carried`` holds the records the inverse of the following step left for
    this step's carried evaluations. Returns the input, its cotangent
    and the records this step's inverse leaves for the step before.
    """
    recorded: Records = {}

    def evaluate(evaluation: Any, x: torch.Tensor, shape: torch.Size | None = None, **_: Any):
        recorded[evaluation] = found = _record(fields, grads, evaluation, x, shape)
        return found[1].detach()

    def replayed(evaluation: Any, x: torch.Tensor, shape: torch.Size | None = None, **_: Any):
        found = None
        if not evaluation.initial:
            found = (carried if evaluation.carried else recorded).pop(evaluation, None)
        if found is None:  # no inverse made it: evaluate it afresh, once
            found = _record(fields, grads, evaluation, x, shape)
        return _Replayed.apply(x, found)

    with torch.no_grad():
        before = method.inverse_step(plan, state, evaluate)
    if missing is not None:
        before = tuple(None if gone else v for v, gone in zip(before, missing))
    leaves = tuple(None if v is None else v.detach().requires_grad_() for v in before)
    present = [leaf for leaf in leaves if leaf is not None]
    with torch.enable_grad():
        after = method.step(plan, leaves, replayed)
    found = iter(torch.autograd.grad(after, present, cotangent, allow_unused=True))
    back = []
    for leaf in leaves:
        grad = None if leaf is None else next(found)
        back.append(torch.zeros_like(leaf) if leaf is not None and grad is None else grad)
    return before, tuple(back), recorded
