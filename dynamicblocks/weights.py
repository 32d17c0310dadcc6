"""Weights as a function of time, theta(t): which control a stage uses.

A dynamic block keeps one copy of its layer per *control time* ``t_theta[j]``.
A stage evaluated at time ``s`` uses:

* ``interpolation="constant"`` (piecewise constant, open-set rule): every
  stage of step ``k`` uses the control at or left of ``t_k`` (the last
  ``j`` with ``t_theta[j] <= t_k``; control 0 if ``t_k`` lies before all
  control times). A stage at the right end of step ``k`` (e.g. RK4's last
  stage at ``t_k + h_k``) therefore still uses step ``k``'s control, so that
  one control per step, Euler and ``h = 1`` give exactly a ResNet.
* ``interpolation="linear"``: the parameters are linearly interpolated
  between the two controls around ``s``, and held constant beyond the first
  and last control time (as in the original DynamicBlocks). Buffers, such as
  BatchNorm running statistics, are not interpolated: the stage uses, and in
  training mode updates, the buffers of the *nearer* of the two controls (the
  left one on a tie).

Everything here is resolved once, when a block is built, into
:class:`StageControl` records that the forward loop only reads.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["INTERPOLATIONS", "StageControl", "check_interpolation", "resolve_stage_controls"]

INTERPOLATIONS = ("constant", "linear")
_REL_TOL = 1e-9


@dataclass(frozen=True)
class StageControl:
    """The weights a stage uses: ``(1 - w) * theta[left] + w * theta[right]``.

    ``right is None`` means the stage uses control ``left`` as it is.
    ``owner`` is the control whose module (and buffers) evaluates the stage.
    """

    left: int
    right: int | None = None
    weight: float = 0.0

    @property
    def owner(self) -> int:
        """The nearer control: its buffers are used and updated."""
        return self.right if self.right is not None and self.weight > 0.5 else self.left


def check_interpolation(interpolation: str) -> str:
    """Return ``interpolation`` if it is one of :data:`INTERPOLATIONS`, else raise."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    return interpolation


def resolve_stage_controls(
    t: Sequence[float],
    c: Sequence[float],
    t_theta: Sequence[float],
    interpolation: str,
) -> tuple[tuple[StageControl, ...], ...]:
    """For each step ``k`` of grid ``t`` and stage ``i`` at ``t_k + c_i h_k``, the control.

    Args:
        t: the validated state grid.
        c: the stage times of the tableau, as fractions of a step.
        t_theta: the validated control times.
        interpolation: ``"constant"`` or ``"linear"``.

    Returns:
        ``controls[k][i]``, a :class:`StageControl`.

    Time comparisons tolerate a relative error of 1e-9 so that a stage time
    computed in floating point (``t_k + c_i h_k``) that should equal a control
    time is treated as equal to it.
    """
    check_interpolation(interpolation)
    scale = max(1.0, *(abs(v) for v in t), *(abs(v) for v in t_theta))
    tol = _REL_TOL * scale
    last = len(t_theta) - 1
    steps = []
    for t_k, t_next in zip(t, t[1:]):
        h = t_next - t_k
        if interpolation == "constant":
            index = max(bisect_right(t_theta, t_k + tol) - 1, 0)
            steps.append(tuple(StageControl(index) for _ in c))
            continue
        stages = []
        for c_i in c:
            s = t_k + c_i * h
            j = bisect_right(t_theta, s + tol) - 1
            if j < 0:
                stages.append(StageControl(0))
            elif j >= last:
                stages.append(StageControl(last))
            elif s - t_theta[j] <= tol:
                stages.append(StageControl(j))
            else:
                w = (s - t_theta[j]) / (t_theta[j + 1] - t_theta[j])
                stages.append(StageControl(j, j + 1, w))
        steps.append(tuple(stages))
    return tuple(steps)
