"""One step of an embedded pair: the stages, the new state and the error estimate.

The nonzero coefficients are resolved once per pair; a step only multiplies
them by its size. The adaptive solve, the error estimates of a fixed grid and
the adjoint's backward solve all step through :meth:`Pair.step`, so they
compute the same values with the same arithmetic (that of a fixed-grid
:class:`~dynamicblocks.DynamicBlock`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..methods.runge_kutta import _combine
from ..tableaus import ButcherTableau

__all__ = ["Pair"]


class Pair:
    """An embedded pair's nonzero ``a_ij``, ``b_i`` and error weights ``b_i - b^_i``."""

    def __init__(self, tableau: ButcherTableau) -> None:
        self.tableau = tableau
        self.rows = tuple(
            tuple((j, a) for j, a in enumerate(tableau.a[i][:i]) if a != 0.0)
            for i in range(tableau.stages)
        )
        self.update = tuple((i, b) for i, b in enumerate(tableau.b) if b != 0.0)
        self.error = tuple(
            (i, b - v) for i, (b, v) in enumerate(zip(tableau.b, tableau.b_embedded)) if b != v
        )

    def step(
        self,
        y: torch.Tensor,
        h: float,
        evaluate: Callable[[int, torch.Tensor], torch.Tensor],
        first: torch.Tensor | None = None,
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """``(slopes, y_next, error)`` of a step of size ``h`` from ``y``.

        ``evaluate(i, x)`` is the field at stage ``i``; ``first``, if given, is
        the first stage's slope (an FSAL stage carried over). The error
        estimate ``h sum_i (b_i - b^_i) k_i`` is computed without autograd.
        """
        slopes = [evaluate(0, y) if first is None else first]
        for i in range(1, self.tableau.stages):
            increments = tuple((j, h * a) for j, a in self.rows[i])
            slopes.append(evaluate(i, _combine(y, increments, slopes)))
        y_next = _combine(y, tuple((i, h * b) for i, b in self.update), slopes)
        with torch.no_grad():
            error = sum(h * weight * slopes[i] for i, weight in self.error)
        return slopes, y_next, error
