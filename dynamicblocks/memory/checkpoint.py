"""``memory="checkpoint"``: store the input of every segment of ``ceil(sqrt(N))`` steps.

The steps run in segments through ``torch.utils.checkpoint`` (non-reentrant,
RNG state preserved, buffers restored after the recomputation): autograd keeps
each segment's input state (and the states asked for), and backward recomputes
one segment at a time, so memory grows like ``sqrt(N)`` (Chen et al., "Training
deep nets with sublinear memory cost", arXiv:1604.06174). Works for every
method: it only calls the method's step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
from torch.utils.checkpoint import checkpoint

__all__ = ["march_checkpointed"]

State = tuple


def march_checkpointed(
    step: Callable[..., State],
    state: State,
    steps: int,
    keep: bool,
    context_fn: Callable[[], tuple[AbstractContextManager, AbstractContextManager]],
) -> list[State]:
    """Apply ``state = step(k, *state)`` for ``k < steps`` in checkpointed segments.

    Returns the states after every step if ``keep``, else a list holding the
    last one. ``context_fn`` gives the contexts of the forward pass and of the
    recomputation (see ``torch.utils.checkpoint.checkpoint``).
    """
    length = math.isqrt(steps - 1) + 1  # ceil(sqrt(steps))
    width, states = len(state), []
    for start in range(0, steps, length):
        stop = min(start + length, steps)

        def segment(*state: torch.Tensor | None, start: int = start, stop: int = stop):
            out: list[torch.Tensor | None] = []
            for k in range(start, stop):
                state = step(k, *state)
                if keep or k == stop - 1:
                    out.extend(state)
            return tuple(out)

        flat = checkpoint(segment, *state, use_reentrant=False, context_fn=context_fn)
        chunks = [tuple(flat[i : i + width]) for i in range(0, len(flat), width)]
        states.extend(chunks)
        state = chunks[-1]
    return states if keep else [state]
