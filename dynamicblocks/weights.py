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

A control time outside the grid's range ``[t[0], t[-1]]`` from which no
stage of any step takes a nonzero weight is rejected when a block is built
(:func:`check_controls_used`): its weights would never get a gradient (and
under ``DistributedDataParallel`` the backward pass would fail with "Expected
to have finished reduction"). Outside the range a control is still legal
where a stage uses it (the first control with ``"constant"``, or a
``"linear"`` neighbour of a stage time). Controls inside the range are always
accepted, as they define ``theta(t)`` on the interval whatever grid samples it
(a block may be built on a coarse grid and re-discretised, see
:meth:`~dynamicblocks.DynamicBlock.remanifest`); :func:`unused_controls` lists
those the present grid leaves without a gradient.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from ._validate import format_times, one_of

__all__ = [
    "INTERPOLATIONS",
    "StageControl",
    "check_controls_used",
    "check_interpolation",
    "resolve_stage_controls",
    "unused_controls",
]

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


def _tolerance(t: Sequence[float], t_theta: Sequence[float]) -> float:
    """The absolute tolerance of time comparisons: 1e-9 relative to the largest time."""
    return _REL_TOL * max(1.0, *(abs(v) for v in t), *(abs(v) for v in t_theta))


def check_interpolation(interpolation: str) -> str:
    """Return ``interpolation`` if it is one of :data:`INTERPOLATIONS`, else raise."""
    return one_of("interpolation", interpolation, INTERPOLATIONS)


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
    tol = _tolerance(t, t_theta)
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


def unused_controls(
    t: Sequence[float],
    c: Sequence[float],
    t_theta: Sequence[float],
    interpolation: str,
) -> tuple[int, ...]:
    """The indices of the controls from which no stage takes a nonzero weight.

    Args as for :func:`resolve_stage_controls`; ``c`` should hold only the
    stages whose value reaches the step's result. A blended stage
    ``(1 - w) theta[j] + w theta[j + 1]`` has ``0 < w < 1``, so it uses both.
    """
    used: set[int] = set()
    for step in resolve_stage_controls(t, c, t_theta, interpolation):
        for control in step:
            used.add(control.left)
            if control.right is not None:
                used.add(control.right)
    return tuple(j for j in range(len(t_theta)) if j not in used)


def check_controls_used(
    block: str,
    t: Sequence[float],
    c: Sequence[float],
    t_theta: Sequence[float],
    interpolation: str,
) -> None:
    """Raise if a control time outside ``[t[0], t[-1]]`` is used by no stage.

    See the module docstring for the rule and why controls inside the range
    are accepted even where the present grid does not use them.

    Args:
        block: the block's name for the message, e.g. ``"DynamicBlock"``.
        t: the validated state grid.
        c: the stage times, as fractions of a step, of the stages whose value
            reaches the step's result (the others' weights get no gradient).
        t_theta: the validated control times.
        interpolation: ``"constant"`` or ``"linear"``.

    Raises:
        ValueError: naming ``t_theta``, the unused control times, the grid's
            range and the times at which the stages evaluate ``theta(t)``.
    """
    start, end, tol = t[0], t[-1], _tolerance(t, t_theta)
    unused = [
        j
        for j in unused_controls(t, c, t_theta, interpolation)
        if not start - tol <= t_theta[j] <= end + tol
    ]
    if not unused:
        return
    if interpolation == "constant":
        times = t[:-1]
        rule = (
            "with interpolation='constant' every stage of step k uses the control at or "
            "left of the step's start t_k (the first control before it)"
        )
    else:
        times = sorted({t_k + c_i * (t_next - t_k) for t_k, t_next in zip(t, t[1:]) for c_i in c})
        rule = (
            "with interpolation='linear' a stage blends the two controls around its time "
            "(the first or last control alone beyond them)"
        )
    many = len(unused) > 1
    raise ValueError(
        f"{block}: t_theta = {format_times(t_theta)} has control time{'s' * many} "
        f"{format_times([t_theta[j] for j in unused])} (index{'es' * many} "
        f"{', '.join(map(str, unused))}) outside the grid's range [{start:g}, {end:g}] "
        f"that no stage uses, so {'their' if many else 'its'} weights would never get a "
        f"gradient: the stages evaluate theta(t) at {format_times(times)}, and {rule}; "
        f"expected control times in [{start:g}, {end:g}], or outside it only where a "
        "stage uses them"
    )
