"""``memory="adjoint"``: gradients by the adjoint method (optimize, then discretize).

The forward pass integrates ``x' = f(x; theta(t))`` without recording anything
for autograd and keeps only the output (with ``return_trajectory``, the states
at the grid points). The backward pass integrates the augmented system of Chen
et al., "Neural ordinary differential equations" (NeurIPS 2018,
arXiv:1806.07366), from ``T`` back to ``t[0]`` over the reversed grid::

    x' = f(x; theta(t))                        (x rebuilt backwards from x(T))
    a' = -(df/dx)^T a                          (a(T) = dL/dx(T))
    g' = -(df/dtheta)^T a                      (g(T) = 0, g(t[0]) = dL/dtheta)

one step at a time with the method's own ``adjoint_step`` (for the explicit
Runge-Kutta methods: the same tableau, step ``-h_k``, stages at
``t_{k+1} - c_i h_k``). With stored states, each backward step starts from the
stored one, as ``torchdiffeq.odeint_adjoint`` does at its output times.
``df/dtheta`` is taken with respect to the controls: a stage whose weights are
blended from two controls gives each its share. The memory is that of one
step's evaluations, whatever the number of steps.

This is the gradient of the *continuous* problem, discretised: it converges to
the discrete gradient (``memory="full"``) as the grid is refined, at the
method's order, but differs from it on a coarse grid. For forward Euler the
discrete gradient takes the Jacobians at the stored states ``x_k`` (the left
ends of the steps), ``a_k = a_{k+1} + h_k J(x_k)^T a_{k+1}``, while the adjoint
takes them at the right ends, at states rebuilt by reversed Euler: the two
differ by ``O(h)``. For a field linear in ``x`` the input gradients agree
exactly (the weight gradients, which involve the states, still differ by
``O(h)``).

The guards of :mod:`dynamicblocks.memory.guards` apply: parameters changed in
place between forward and backward raise, the training modes of forward are
replayed, buffers are restored, and double backward is refused.
"""

from __future__ import annotations

from typing import Any

import torch

from .guards import first_order_only, record, replay

__all__ = ["ADJOINT_GROUP", "adjoint_solve"]

ADJOINT_GROUP = 1
"""The group of blended slots that a method's adjoint evaluations are resolved in."""

State = tuple


def adjoint_solve(block: Any, state: State, keep: bool, scale: float = 1.0) -> list[State]:
    """The states of ``block.integrate(state, keep)``, with gradients by the adjoint method.

    ``block`` is a :class:`~dynamicblocks.core.TimeBlock` whose method has an
    ``adjoint_step``; ``scale`` multiplies the fields (see
    :attr:`~dynamicblocks.core.TimeBlock.steer`).
    """
    params = tuple(block.parameters())
    flat = _Adjoint.apply(block, keep, scale, len(state), *state, *params)
    width = len(state)
    return [tuple(flat[i : i + width]) for i in range(0, len(flat), width)]


class _Adjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, block: Any, keep: bool, scale: float, width: int, *inputs: torch.Tensor):
        states = block.integrate(tuple(inputs[:width]), keep, mode="full", scale=scale)
        flat = [value for state in states for value in state]
        record(ctx, block, inputs[width:])
        ctx.keep, ctx.width, ctx.scale = keep, width, scale
        ctx.save_for_backward(*flat)
        return tuple(flat)

    @staticmethod
    @first_order_only("adjoint")
    def backward(ctx: Any, *grad_outputs: torch.Tensor) -> tuple[Any, ...]:
        block, width, keep = ctx.block, ctx.width, ctx.keep
        saved = ctx.saved_tensors
        stored = [saved[i : i + width] for i in range(0, len(saved), width)]
        cotangents = [grad_outputs[i : i + width] for i in range(0, len(grad_outputs), width)]
        method, plan = block.method, block.plan
        state, a = stored[-1], cotangents[-1]
        grads: dict[torch.Tensor, torch.Tensor] = {}
        with replay(ctx, "adjoint"), torch.no_grad():
            fields = block.fields(detached=True, group=ADJOINT_GROUP, scale=ctx.scale)
            for k in reversed(range(block.num_steps)):
                if keep:  # the stored state, rather than the one rebuilt backwards
                    state = stored[k]
                state, a = method.adjoint_step(plan[k], state, a, fields, grads)
                if keep and k > 0:
                    a = tuple(u + v for u, v in zip(a, cotangents[k - 1]))
        grads = fields.parameter_gradients(grads)
        return (None, None, None, None, *a, *(grads.get(p) for p in ctx.params))
