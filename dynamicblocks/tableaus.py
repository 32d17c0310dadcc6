"""Butcher tableaus of explicit Runge-Kutta schemes, as validated frozen data.

A scheme with ``s`` stages advances ``x' = f(t, x)`` over a step of size ``h``
from ``t_k`` by::

    k_i     = f(t_k + c_i h, x_k + h * sum_{j<i} a_ij k_j),   i = 1..s
    x_{k+1} = x_k + h * sum_i b_i k_i

One generic stepper (:class:`dynamicblocks.DynamicBlock`) runs every tableau;
users may pass their own :class:`ButcherTableau` wherever a scheme name is
accepted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

__all__ = ["ButcherTableau", "TABLEAUS", "get_tableau", "SchemeLike"]

_TOL = 1e-12


def _order_conditions(order: int) -> list[tuple[str, Callable, float]]:
    """The rooted-tree order conditions up to ``order`` (at most 4)."""

    def dot(u, v):
        return sum(p * q for p, q in zip(u, v))

    def matvec(a, v):
        return [dot(row, v) for row in a]

    def times(u, v):
        return [p * q for p, q in zip(u, v)]

    conditions = [
        ("sum(b) = 1", lambda a, b, c: sum(b), 1.0),
        ("b.c = 1/2", lambda a, b, c: dot(b, c), 1 / 2),
        ("b.c^2 = 1/3", lambda a, b, c: dot(b, times(c, c)), 1 / 3),
        ("b.Ac = 1/6", lambda a, b, c: dot(b, matvec(a, c)), 1 / 6),
        ("b.c^3 = 1/4", lambda a, b, c: dot(b, times(c, times(c, c))), 1 / 4),
        ("b.(c*Ac) = 1/8", lambda a, b, c: dot(b, times(c, matvec(a, c))), 1 / 8),
        ("b.Ac^2 = 1/12", lambda a, b, c: dot(b, matvec(a, times(c, c))), 1 / 12),
        ("b.AAc = 1/24", lambda a, b, c: dot(b, matvec(a, matvec(a, c))), 1 / 24),
    ]
    count = {1: 1, 2: 2, 3: 4, 4: 8}[min(order, 4)]
    return conditions[:count]


@dataclass(frozen=True)
class ButcherTableau:
    """An explicit Runge-Kutta scheme.

    Args:
        name: a short identifier, e.g. ``"rk4"``.
        order: the classical order of accuracy.
        c: stage times as fractions of the step, length ``s``.
        a: the ``s x s`` stage matrix (rows may be given ragged, as the strictly
            lower-triangular part only: row ``i`` then has ``i`` entries).
        b: quadrature weights, length ``s``.

    Validation on construction: ``c_i = sum_j a_ij``, ``sum(b) = 1``, ``a``
    strictly lower triangular (explicit), and the order conditions of the
    claimed order (checked up to order 4) hold to 1e-12.
    """

    name: str
    order: int
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]

    def __post_init__(self) -> None:
        stages = len(self.b)
        if stages < 1:
            raise ValueError(f"tableau {self.name!r}: b must have at least one entry")
        if isinstance(self.order, bool) or not isinstance(self.order, int) or self.order < 1:
            raise ValueError(
                f"tableau {self.name!r}: order must be a positive int, got {self.order!r}"
            )
        if len(self.c) != stages or len(self.a) != stages:
            raise ValueError(
                f"tableau {self.name!r}: c, a and b must have the same number of stages, "
                f"got len(c)={len(self.c)}, len(a)={len(self.a)}, len(b)={stages}"
            )
        rows = []
        for i, row in enumerate(self.a):
            row = tuple(float(v) for v in row)
            if len(row) == i:  # ragged strictly-lower-triangular form
                row = row + (0.0,) * (stages - i)
            if len(row) != stages:
                raise ValueError(
                    f"tableau {self.name!r}: row {i} of a must have {i} or {stages} entries, "
                    f"got {len(row)}"
                )
            upper = [j for j in range(i, stages) if row[j] != 0.0]
            if upper:
                raise ValueError(
                    f"tableau {self.name!r} is not explicit: a[{i}][{upper[0]}] = {row[upper[0]]} "
                    "but a must be strictly lower triangular"
                )
            rows.append(row)
        object.__setattr__(self, "a", tuple(rows))
        object.__setattr__(self, "b", tuple(float(v) for v in self.b))
        object.__setattr__(self, "c", tuple(float(v) for v in self.c))
        values = [*self.b, *self.c, *(v for row in rows for v in row)]
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"tableau {self.name!r}: all coefficients must be finite")
        for i, (ci, row) in enumerate(zip(self.c, rows)):
            if abs(ci - sum(row)) > _TOL:
                raise ValueError(
                    f"tableau {self.name!r}: c[{i}] = {ci} but sum(a[{i}]) = {sum(row)}; "
                    "expected c_i = sum_j a_ij"
                )
        for label, value, expected in _order_conditions(self.order):
            got = value(rows, self.b, self.c)
            if abs(got - expected) > _TOL:
                raise ValueError(
                    f"tableau {self.name!r} claims order {self.order} but violates the order "
                    f"condition {label} (got {got!r})"
                )

    @property
    def stages(self) -> int:
        """The number of stages ``s``."""
        return len(self.b)


def _tableau(name: str, order: int, c, a, b) -> ButcherTableau:
    def exact(values):
        return tuple(float(Fraction(v)) for v in values)

    return ButcherTableau(name, order, exact(c), tuple(exact(row) for row in a), exact(b))


TABLEAUS: dict[str, ButcherTableau] = {
    t.name: t
    for t in (
        _tableau("euler", 1, ["0"], [[]], ["1"]),
        _tableau("midpoint", 2, ["0", "1/2"], [[], ["1/2"]], ["0", "1"]),
        _tableau("heun", 2, ["0", "1"], [[], ["1"]], ["1/2", "1/2"]),
        _tableau("ralston", 2, ["0", "2/3"], [[], ["2/3"]], ["1/4", "3/4"]),
        _tableau("rk3", 3, ["0", "1/2", "1"], [[], ["1/2"], ["-1", "2"]], ["1/6", "2/3", "1/6"]),
        _tableau(
            "ralston3", 3, ["0", "1/2", "3/4"], [[], ["1/2"], ["0", "3/4"]], ["2/9", "1/3", "4/9"]
        ),
        _tableau(
            "ssprk3", 3, ["0", "1", "1/2"], [[], ["1"], ["1/4", "1/4"]], ["1/6", "1/6", "2/3"]
        ),
        _tableau(
            "rk4",
            4,
            ["0", "1/2", "1/2", "1"],
            [[], ["1/2"], ["0", "1/2"], ["0", "0", "1"]],
            ["1/6", "1/3", "1/3", "1/6"],
        ),
        _tableau(
            "rk4_38",
            4,
            ["0", "1/3", "2/3", "1"],
            [[], ["1/3"], ["-1/3", "1"], ["1", "-1", "1"]],
            ["1/8", "3/8", "3/8", "1/8"],
        ),
    )
}
"""The named explicit schemes, by name."""

SchemeLike = str | ButcherTableau


def get_tableau(scheme: SchemeLike) -> ButcherTableau:
    """Return the tableau named ``scheme``, or ``scheme`` itself if it is a tableau.

    Raises:
        ValueError: for an unknown name (the message lists the known ones).
        TypeError: for anything that is neither a string nor a tableau.
    """
    if isinstance(scheme, ButcherTableau):
        return scheme
    if isinstance(scheme, str):
        try:
            return TABLEAUS[scheme.lower()]
        except KeyError:
            raise ValueError(
                f"unknown scheme {scheme!r}; expected one of {sorted(TABLEAUS)} or a ButcherTableau"
            ) from None
    raise TypeError(f"scheme must be a name or a ButcherTableau, got {type(scheme).__name__}")
