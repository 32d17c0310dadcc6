"""Error estimates of a fixed-grid block's steps, and refinement where they are too large.

:func:`step_errors` measures every step of a block's grid with an embedded
pair, along the block's own trajectory; :func:`refine_by_error_` splits only
the steps whose error ratio exceeds 1 (the adaptive solve's acceptance test,
:mod:`dynamicblocks.adaptive.controller`), keeping ``theta(t)``, where
:meth:`~dynamicblocks.core.TimeBlock.refine_` halves every step.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.resolver import Resolver
from ..methods.runge_kutta import DynamicBlock
from ..tableaus import SchemeLike
from .controller import Controller, error_ratio
from .pair import Pair
from .solve import _pair

__all__ = ["step_errors", "refine_by_error_"]


def step_errors(
    block: DynamicBlock,
    x: torch.Tensor,
    *,
    rtol: float | torch.Tensor = 1e-6,
    atol: float | torch.Tensor = 1e-8,
    scheme: SchemeLike | None = None,
) -> torch.Tensor:
    """The error ratio of every step of ``block``'s grid, from ``x``.

    The block steps on its grid with its own scheme; from each state ``x_k``
    of that trajectory one step of the embedded pair ``scheme`` (default: the
    block's) over ``[t_k, t_{k+1}]``, with the block's weights in time, gives
    the error estimate ``h sum_i (b_i - b^_i) k_i``, measured as in
    :func:`~dynamicblocks.solve_adaptive` (RMS over the batch of
    ``err / (atol + rtol max(|x_k|, |x_{k+1}|))``). A ratio above 1 is a step
    the adaptive solve would reject.

    Returns:
        A float64 tensor of ``num_steps`` ratios (on the host).

    Raises:
        TypeError: if ``block`` is not a DynamicBlock or ``x`` not a tensor.
        ValueError: for a scheme without an error estimate, or tolerances that
            are not positive and finite.
    """
    tableau = _pair(block, x, scheme)
    controller = Controller(rtol, atol)
    resolver = Resolver(block.t, block.t_theta, block.interpolation, groups=1)
    evaluations = [[resolver(k, c) for c in tableau.c] for k in range(block.num_steps)]
    pair, ratios = Pair(tableau), []
    with torch.no_grad():
        states = block(x, return_trajectory=True)
        fields = block.fields(slots=resolver.slots()[0])
        for k, (t_k, t_next) in enumerate(zip(block.t, block.t[1:])):
            stages = evaluations[k]
            _, y1, error = pair.step(
                states[k], t_next - t_k, lambda i, state, stages=stages: fields(stages[i], state)
            )
            ratios.append(error_ratio(error, states[k], y1, controller.rtol, controller.atol))
    return torch.tensor(ratios, dtype=torch.float64)


def refine_by_error_(
    block: DynamicBlock,
    x: torch.Tensor,
    *,
    rtol: float | torch.Tensor = 1e-6,
    atol: float | torch.Tensor = 1e-8,
    scheme: SchemeLike | None = None,
) -> tuple[tuple[int, ...], dict[nn.Parameter, tuple[nn.Parameter, ...]]]:
    """Split, in place, the steps whose error ratio (:func:`step_errors`) exceeds 1.

    Each such step gets its midpoint as a new grid point. ``theta(t)`` is
    unchanged: a block with one control per step (``t_theta = t[:-1]``) gets a
    control at every new point too, a copy of ``theta`` there
    (:meth:`~dynamicblocks.core.TimeBlock.insert_controls_`), so that it still
    has one per step; other blocks keep their controls.

    Returns:
        The indices (on the old grid) of the steps split, and, for every new
        parameter, the parameters it was made from (pass it to
        :func:`dynamicblocks.carry_optimizer_state`).

    Raises:
        As :func:`step_errors`.
    """
    ratios = step_errors(block, x, rtol=rtol, atol=atol, scheme=scheme)
    split = tuple(k for k, ratio in enumerate(ratios.tolist()) if ratio > 1.0)
    if not split:
        return split, {}
    t = block.t
    middles = [0.5 * (t[k] + t[k + 1]) for k in split]
    sources = {}
    if tuple(block.t_theta) == tuple(t[:-1]):
        sources = block.insert_controls_(middles)
    block.remanifest_(sorted([*t, *middles]))
    return split, sources
