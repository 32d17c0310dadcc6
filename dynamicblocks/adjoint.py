"""The adjoint method for :class:`~dynamicblocks.DynamicBlock` (optimize, then discretize).

With ``memory="adjoint"`` the forward pass integrates ``x' = f(x; theta(t))``
without recording anything for autograd and keeps only the output ``x(T)``.
The backward pass integrates the augmented system of Chen et al., "Neural
ordinary differential equations" (NeurIPS 2018, arXiv:1806.07366), from ``T``
back to ``t[0]`` over the reversed grid, with the block's own Runge-Kutta
scheme (step ``-h_k``, stages at ``t_{k+1} - c_i h_k``; with ``return_trajectory`` the
states at the grid points are stored anyway, and each backward step starts from
the stored one, as ``torchdiffeq.odeint_adjoint`` does at its output times)::

    x' = f(x; theta(t))                        (x rebuilt backwards from x(T))
    a' = -(df/dx)^T a                          (a(T) = dL/dx(T))
    g' = -(df/dtheta)^T a                      (g(T) = 0, g(t[0]) = dL/dtheta)

``df/dtheta`` is taken with respect to the controls: a stage whose weights are
blended from two controls gives each its share. The memory is that of one
step's evaluations, whatever the number of steps.

This is the gradient of the *continuous* problem, discretised: it converges to
the discrete gradient (``memory="full"``) as the grid is refined, at the
scheme's order, but differs from it on a coarse grid. For forward Euler on one
grid, the discrete gradient is the adjoint equation stepped backwards with the
Jacobians taken at the stored states ``x_k`` (the left ends of the steps),
``a_k = a_{k+1} + h_k J(x_k)^T a_{k+1}``, while the adjoint mode takes them at
the right ends, at states rebuilt by reversed Euler,
``a_k = a_{k+1} + h_k J(x~_{k+1})^T a_{k+1}``: the two differ by ``O(h)``.
For a field linear in ``x`` the Jacobian does not depend on the state, and the
input gradients agree exactly (the weight gradients, which involve the states,
still differ by ``O(h)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ._buffers import buffers_restored
from ._vjp import accumulate, field_vjp

if TYPE_CHECKING:
    from .block import DynamicBlock

__all__ = ["adjoint_integrate"]


def adjoint_integrate(
    block: DynamicBlock, x: torch.Tensor, return_trajectory: bool
) -> torch.Tensor:
    """``block(x, return_trajectory)`` with gradients by the adjoint method."""
    params = tuple(block.parameters())
    return _Adjoint.apply(block, return_trajectory, x, *params)


class _Adjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, block, return_trajectory, x, *params):
        output = block.forward(x, return_trajectory)  # grad mode is off in here: plain loop
        ctx.block, ctx.return_trajectory, ctx.params = block, return_trajectory, params
        ctx.save_for_backward(output)
        return output

    @staticmethod
    def backward(ctx, grad_output):
        block, trajectory, params = ctx.block, ctx.return_trajectory, ctx.params
        (output,) = ctx.saved_tensors
        layers, names = list(block.layers), block._param_names
        grads: dict[nn.Parameter, torch.Tensor] = {}
        x = output[-1] if trajectory else output
        a = grad_output[-1] if trajectory else grad_output
        with torch.no_grad(), buffers_restored(block):
            # the forward plan's h * a_ij and h * b_i, with the controls of the reversed stages
            for k in reversed(range(block.num_steps)):
                step, controls = block._steps[k], block._reverse_controls[k]
                if trajectory:  # the stored state, rather than the one rebuilt backwards
                    x = output[k + 1]
                weights = dict(step.update)
                fs: list[torch.Tensor] = []
                vs: list[torch.Tensor] = []
                for i, (stage, control) in enumerate(zip(step.stages, controls)):
                    xi, ai = x, a
                    for j, increment in stage.increments:
                        xi = torch.sub(xi, fs[j], alpha=increment)
                        ai = torch.add(ai, vs[j], alpha=increment)
                    f, vx, vp = field_vjp(layers, names, control, xi, ai)
                    fs.append(f)
                    vs.append(torch.zeros_like(xi) if vx is None else vx)
                    accumulate(grads, vp, weights.get(i, 0.0))
                for i, weight in step.update:
                    x = torch.sub(x, fs[i], alpha=weight)
                    a = torch.add(a, vs[i], alpha=weight)
                if trajectory:
                    a = a + grad_output[k]
        return (None, None, a, *(grads.get(param) for param in params))
