"""Implicit-explicit (IMEX) Runge-Kutta pairs, as validated frozen data.

An IMEX scheme advances ``x' = f(x) - L x`` with ``f`` explicit and the linear
term implicit. A pair of tableaus on the same stage times ``c`` (the explicit
``a_E, b_E`` strictly lower triangular, the implicit ``a_I, b_I`` lower
triangular with its first stage explicit) steps from ``x_k`` by::

    Y_i     = x_k + h sum_{j<i} aE_ij f(Y_j) - h sum_{j<=i} aI_ij L Y_j,   i = 1..s
    x_{k+1} = x_k + h sum_i bE_i f(Y_i) - h sum_i bI_i L Y_i

so each stage solves one linear system ``(I + h aI_ii L) Y_i = r_i``. The
pairs here are *stiffly accurate* (``b`` equals the last row of ``a`` in both
tableaus), so ``x_{k+1} = Y_s``: the step ends with a solve and damps the
stiff modes of ``L``.

References:
    U. M. Ascher, S. J. Ruuth, R. J. Spiteri, "Implicit-explicit Runge-Kutta
    methods for time-dependent partial differential equations", Appl. Numer.
    Math. 25 (1997) 151-167 (the schemes ``(1,1,1)`` and ``(2,2,2)``).
    E. Haber, K. Lensink, E. Treister, L. Ruthotto, "IMEXnet: a forward stable
    deep neural network", ICML 2019, arXiv:1903.02639 (IMEX Euler as a network).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._validate import one_of

__all__ = ["IMEXTableau", "IMEX_SCHEMES", "get_imex_tableau"]

_TOL = 1e-12

Matrix = tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class IMEXTableau:
    """A stiffly accurate implicit-explicit Runge-Kutta pair.

    Args:
        name: a short identifier, e.g. ``"imex_euler"``.
        order: the order of the pair on ``x' = f(x) - L x``.
        c: stage times as fractions of the step, length ``s``, ``c[0] = 0``.
        a_explicit: ``s x s``, strictly lower triangular.
        a_implicit: ``s x s``, lower triangular, first column zero (an
            explicit first stage, ``L x_k`` never used), positive diagonal
            after it.

    The weights ``b`` are the last rows of the two matrices (stiff accuracy).

    Raises:
        ValueError: if the shapes, the triangular structure, the row sums
            (``sum_j a_ij = c_i`` in both) or stiff accuracy do not hold.
    """

    name: str
    order: int
    c: tuple[float, ...]
    a_explicit: Matrix
    a_implicit: Matrix

    def __post_init__(self) -> None:
        s = len(self.c)
        if s < 2 or self.c[0] != 0.0:
            raise ValueError(f"{self.name}: c must have at least two stages and c[0] = 0")
        for label, a, strict in (
            ("a_explicit", self.a_explicit, True),
            ("a_implicit", self.a_implicit, False),
        ):
            if len(a) != s or any(len(row) != s for row in a):
                raise ValueError(f"{self.name}: {label} must be {s} x {s}")
            for i, row in enumerate(a):
                upper = row[i:] if strict else row[i + 1 :]
                if any(value != 0.0 for value in upper):
                    raise ValueError(f"{self.name}: {label} must be lower triangular")
                if not math.isclose(sum(row), self.c[i], abs_tol=_TOL):
                    raise ValueError(f"{self.name}: row {i} of {label} must sum to c[{i}]")
        if any(row[0] != 0.0 for row in self.a_implicit):
            raise ValueError(
                f"{self.name}: the first column of a_implicit must be zero (an explicit "
                "first stage whose L x_k no stage uses)"
            )
        if any(self.a_implicit[i][i] <= 0.0 for i in range(1, s)):
            raise ValueError(f"{self.name}: the implicit diagonal must be positive")

    @property
    def stages(self) -> int:
        """Number of stages ``s``."""
        return len(self.c)

    @property
    def b_explicit(self) -> tuple[float, ...]:
        """The explicit weights: the last row of ``a_explicit``."""
        return self.a_explicit[-1]

    @property
    def b_implicit(self) -> tuple[float, ...]:
        """The implicit weights: the last row of ``a_implicit``."""
        return self.a_implicit[-1]


def _ars222() -> IMEXTableau:
    gamma = 1.0 - 1.0 / math.sqrt(2.0)
    delta = 1.0 - 1.0 / (2.0 * gamma)
    return IMEXTableau(
        name="ars222",
        order=2,
        c=(0.0, gamma, 1.0),
        a_explicit=((0.0, 0.0, 0.0), (gamma, 0.0, 0.0), (delta, 1.0 - delta, 0.0)),
        a_implicit=((0.0, 0.0, 0.0), (0.0, gamma, 0.0), (0.0, 1.0 - gamma, gamma)),
    )


IMEX_SCHEMES: dict[str, IMEXTableau] = {
    "imex_euler": IMEXTableau(
        name="imex_euler",
        order=1,
        c=(0.0, 1.0),
        a_explicit=((0.0, 0.0), (1.0, 0.0)),
        a_implicit=((0.0, 0.0), (0.0, 1.0)),
    ),
    "ars222": _ars222(),
}
"""The built-in IMEX pairs by name.

* ``"imex_euler"``: forward-backward Euler, ``x_{k+1} = (I + h L)^{-1} (x_k + h f(x_k))``,
  first order (Ascher-Ruuth-Spiteri ``(1,1,1)``; the step of IMEXnet);
* ``"ars222"``: Ascher-Ruuth-Spiteri ``(2,2,2)``, second order, two stages
  with ``gamma = 1 - 1/sqrt(2)``; its implicit part is L-stable.
"""


def get_imex_tableau(scheme: str | IMEXTableau) -> IMEXTableau:
    """The IMEX pair named ``scheme`` (a key of :data:`IMEX_SCHEMES`), or ``scheme`` itself.

    Raises:
        ValueError: for an unknown name.
    """
    if isinstance(scheme, IMEXTableau):
        return scheme
    return IMEX_SCHEMES[one_of("scheme", scheme, tuple(IMEX_SCHEMES))]
