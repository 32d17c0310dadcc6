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
        b_embedded: the weights ``b^`` of an embedded solution of lower order on
            the same stages (an *embedded pair*), or None. The difference of the
            two solutions, ``h sum_i (b_i - b^_i) k_i``, estimates the local error
            of the lower-order one.
        embedded_order: the order of ``b_embedded`` (required with it, below
            ``order``).

    Validation on construction: ``c_i = sum_j a_ij``, ``sum(b) = 1``, ``a``
    strictly lower triangular (explicit), and the order conditions of the
    claimed order (checked up to order 4) hold to 1e-12, for ``b`` and, with
    ``embedded_order``, for ``b_embedded``.
    """

    name: str
    order: int
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    b_embedded: tuple[float, ...] | None = None
    embedded_order: int | None = None

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
        self._check_order("b", self.b, self.order)
        if (self.b_embedded is None) != (self.embedded_order is None):
            raise ValueError(
                f"tableau {self.name!r}: give b_embedded and embedded_order together, or neither"
            )
        if self.b_embedded is not None:
            embedded = tuple(float(v) for v in self.b_embedded)
            object.__setattr__(self, "b_embedded", embedded)
            if len(embedded) != stages or not all(math.isfinite(v) for v in embedded):
                raise ValueError(
                    f"tableau {self.name!r}: b_embedded must hold {stages} finite weights, "
                    f"got {embedded!r}"
                )
            order = self.embedded_order
            if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order < self.order:
                raise ValueError(
                    f"tableau {self.name!r}: embedded_order must be an int in [1, {self.order}), "
                    f"got {order!r}"
                )
            self._check_order("b_embedded", embedded, order)

    def _check_order(self, label: str, weights: tuple[float, ...], order: int) -> None:
        """Raise unless ``weights`` satisfy the order conditions up to ``order`` (at most 4)."""
        for condition, value, expected in _order_conditions(order):
            got = value(self.a, weights, self.c)
            if abs(got - expected) > _TOL:
                claim = "order" if label == "b" else f"{label} of order"
                condition = condition.replace("b", label, 1)
                raise ValueError(
                    f"tableau {self.name!r} claims {claim} {order} but violates the order "
                    f"condition {condition} (got {got!r})"
                )

    @property
    def stages(self) -> int:
        """The number of stages ``s``."""
        return len(self.b)

    @property
    def embedded(self) -> bool:
        """Whether the tableau has an embedded solution, hence an error estimate."""
        return self.b_embedded is not None

    @property
    def fsal(self) -> bool:
        """First same as last: the last stage is at ``x_{k+1}`` (last row of ``a`` is ``b``).

        Its evaluation is then the first stage of the next step, when the field
        there is the same (as in an adaptive solve with shared weights).
        """
        return self.c[-1] == 1.0 and self.a[-1] == self.b


def _tableau(name: str, order: int, c, a, b, embedded=None, embedded_order=None) -> ButcherTableau:
    def exact(values):
        return tuple(float(Fraction(v)) for v in values)

    return ButcherTableau(
        name,
        order,
        exact(c),
        tuple(exact(row) for row in a),
        exact(b),
        None if embedded is None else exact(embedded),
        embedded_order,
    )


_TSIT5_B = [
    "0.09646076681806523",
    "0.01",
    "0.4798896504144996",
    "1.379008574103742",
    "-3.290069515436081",
    "2.324710524099774",
    "0",
]
# b - b^, as published (Tsitouras 2011, with the sign of the last entry corrected)
_TSIT5_ERROR = [
    "0.00178001105222577714",
    "0.0008164344596567469",
    "-0.007880878010261995",
    "0.1447110071732629",
    "-0.5823571654525552",
    "0.45808210592918697",
    "-1/66",
]


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
        _tableau("heun_euler", 2, ["0", "1"], [[], ["1"]], ["1/2", "1/2"], ["1", "0"], 1),
        _tableau(
            "bosh3",
            3,
            ["0", "1/2", "3/4", "1"],
            [[], ["1/2"], ["0", "3/4"], ["2/9", "1/3", "4/9"]],
            ["2/9", "1/3", "4/9", "0"],
            ["7/24", "1/4", "1/3", "1/8"],
            2,
        ),
        _tableau(
            "dopri5",
            5,
            ["0", "1/5", "3/10", "4/5", "8/9", "1", "1"],
            [
                [],
                ["1/5"],
                ["3/40", "9/40"],
                ["44/45", "-56/15", "32/9"],
                ["19372/6561", "-25360/2187", "64448/6561", "-212/729"],
                ["9017/3168", "-355/33", "46732/5247", "49/176", "-5103/18656"],
                ["35/384", "0", "500/1113", "125/192", "-2187/6784", "11/84"],
            ],
            ["35/384", "0", "500/1113", "125/192", "-2187/6784", "11/84", "0"],
            # the embedded solution of torchdiffeq and torchode (Shampine, 1986); Hairer's
            # DOPRI5 uses (5179/57600, 0, 7571/16695, 393/640, -92097/339200, 187/2100, 1/40)
            ["1951/21600", "0", "22642/50085", "451/720", "-12231/42400", "649/6300", "1/60"],
            4,
        ),
        _tableau(
            "tsit5",
            5,
            ["0", "0.161", "0.327", "0.9", "0.9800255409045097", "1", "1"],
            [
                [],
                ["0.161"],
                ["-0.008480655492356989", "0.335480655492357"],
                ["2.8971530571054935", "-6.359448489975075", "4.3622954328695815"],
                [
                    "5.325864828439257",
                    "-11.748883564062828",
                    "7.4955393428898365",
                    "-0.09249506636175525",
                ],
                [
                    "5.86145544294642",
                    "-12.92096931784711",
                    "8.159367898576159",
                    "-0.071584973281401",
                    "-0.02826905039406838",
                ],
                _TSIT5_B[:6],
            ],
            _TSIT5_B,
            [Fraction(b) - Fraction(e) for b, e in zip(_TSIT5_B, _TSIT5_ERROR)],
            4,
        ),
    )
}
"""The named explicit schemes, by name.

Four are embedded pairs, with an error estimate (``b_embedded``): Heun-Euler
2(1) ``"heun_euler"``, Bogacki-Shampine 3(2) ``"bosh3"``, Dormand-Prince 5(4)
``"dopri5"`` and Tsitouras 5(4) ``"tsit5"``; the last three are FSAL. On a
fixed grid they step with their higher-order weights ``b``.
"""

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
