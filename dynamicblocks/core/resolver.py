"""Resolving a method's evaluations (a field at a time in a step) into controls and slots."""

from __future__ import annotations

from collections.abc import Sequence

from ..weights import StageControl, resolve_stage_controls
from .fields import Evaluation, Slot

__all__ = ["Resolver"]


class Resolver:
    """Turns ``(step k, time c, field, group)`` into an :class:`Evaluation`, at construction.

    The weights at ``t_k + c h_k`` follow the rules of :mod:`dynamicblocks.weights`.
    Blended weights get a slot, numbered in order of first use within a
    group (group 0: the forward pass; the adjoint resolves its reversed stages
    in its own group, so that the forward pass blends only what it uses).
    """

    def __init__(
        self, t: Sequence[float], t_theta: Sequence[float], interpolation: str, groups: int = 2
    ) -> None:
        self._t, self._t_theta, self._interpolation = t, t_theta, interpolation
        self._controls: dict[float, tuple[tuple[StageControl, ...], ...]] = {}
        self._slots: list[dict[Slot, int]] = [{} for _ in range(groups)]

    def __call__(self, k: int, c: float, field: int = 0, group: int = 0) -> Evaluation:
        controls = self._controls.get(c)
        if controls is None:
            controls = resolve_stage_controls(self._t, (c,), self._t_theta, self._interpolation)
            self._controls[c] = controls
        (control,) = controls[k]
        if control.right is None:
            return Evaluation(field, control.owner, None)
        slots = self._slots[group]
        return Evaluation(field, control.owner, slots.setdefault(Slot(field, control), len(slots)))

    def slots(self) -> tuple[tuple[Slot, ...], ...]:
        """The blended slots of every group, in slot order."""
        return tuple(tuple(slots) for slots in self._slots)
