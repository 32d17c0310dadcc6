"""Linear stability of the integration schemes, and of a trained block's steps.

A Runge-Kutta scheme applied to the test equation ``y' = lambda y`` with step
``h`` multiplies the state by the *stability function* (amplification factor)
``R(z)``, ``z = h lambda``::

    y_{k+1} = R(z) y_k,    R(z) = 1 + z b^T (I - z A)^{-1} 1.

The step is stable (errors do not grow) where ``|R(z)| <= 1``: the scheme's
*stability region*. For an explicit ``s``-stage scheme ``A`` is nilpotent and
``R`` is the polynomial ``1 + sum_{j=1..s} (b^T A^{j-1} 1) z^j``; a scheme of
order ``p`` agrees with ``exp(z)`` up to ``O(z^{p+1})``.

An ``s``-step Adams-Bashforth method (``"ab1"`` ... ``"ab4"``) on the same
equation with a uniform step is the recurrence
``y_{k+1} = y_k + z sum_j beta_j y_{k-j}``; its solutions are combinations of
``zeta^k`` over the roots ``zeta`` of the characteristic polynomial::

    p_z(zeta) = rho(zeta) - z sigma(zeta),
    rho(zeta) = zeta^s - zeta^{s-1},  sigma(zeta) = sum_{j=0..s-1} beta_j zeta^{s-1-j},

so the growth factor per step is the largest root modulus
(:func:`multistep_amplification`), and the stability region is where it is at
most 1; its boundary is traced by ``z = rho(e^{i phi}) / sigma(e^{i phi})``
(:func:`multistep_boundary_locus`).

The reversible two-state methods (:data:`REVERSIBLE_SCHEMES`: reversible Heun
and the asynchronous leapfrog) map their pair of states on ``y' = lambda y``
by a ``2 x 2`` matrix ``M(z)`` with trace ``2 z`` and determinant ``-1``, so
per step the dominant mode grows by the largest root modulus of the explicit
midpoint (leapfrog) two-step polynomial ``mu^2 - 2 z mu - 1``
(:func:`reversible_amplification`). The roots' product is ``-1``: both have
modulus 1 only on the open segment ``(-i, i)`` of the imaginary axis, the
whole (zero-area) stability region.

An IMEX Runge-Kutta pair (:data:`~dynamicblocks.imex_tableaus.IMEX_SCHEMES`)
on ``y' = lambda_E y - mu y`` (explicit part ``lambda_E``, implicit linear
part ``L = mu``) multiplies by a function of two variables,
``z_E = h lambda_E`` and ``z_I = -h mu`` (:func:`imex_amplification`)::

    R(z_E, z_I) = 1 + (z_E b_E + z_I b_I)^T (I - z_E A_E - z_I A_I)^{-1} 1.

For a trained block the same question is asked of the actual step map
``x_k -> x_{k+1}``: :func:`step_jacobian_spectrum` returns the eigenvalues of
its Jacobian at sample states. Locally, perturbations are multiplied by that
Jacobian, so a step is (linearly) stable at a state when all its eigenvalues
lie in the closed unit disk (:func:`spectral_radius` ``<= 1``). For a linear
field ``f(x) = W x`` the Jacobian is exactly ``R(h W)``.
"""

from __future__ import annotations

import cmath
import copy
import math
import numbers
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from ._validate import int_in_range, positive_int, real_number
from .imex_tableaus import IMEX_SCHEMES, IMEXTableau
from .methods.multistep import ADAMS_BASHFORTH, adams_bashforth_weights
from .methods.runge_kutta import DynamicBlock
from .tableaus import TABLEAUS, ButcherTableau, SchemeLike, get_tableau

if TYPE_CHECKING:  # matplotlib is needed only to draw: an optional dependency
    from matplotlib.figure import Figure

__all__ = [
    "THETA_SCHEMES",
    "amplification",
    "theta_amplification",
    "multistep_amplification",
    "multistep_boundary_locus",
    "REVERSIBLE_SCHEMES",
    "reversible_amplification",
    "imex_amplification",
    "stability_region",
    "imex_stability_region",
    "plot_stability_regions",
    "step_jacobian_spectrum",
    "spectral_radius",
]

ComplexLike = complex | float | Sequence | np.ndarray | torch.Tensor
"""A complex number, a (nested) sequence or array of them, or a tensor."""

THETA_SCHEMES: dict[str, float] = {
    "backward_euler": 1.0,
    "trapezoid": 0.5,
    "implicit_midpoint": 0.5,
}
"""Implicit one-step schemes by name, as members of the theta-method family.

:class:`~dynamicblocks.ButcherTableau` holds explicit schemes only, so these
are evaluated with :func:`theta_amplification` (the name ``"theta"`` with an
explicit ``theta=`` argument gives any member of the family). The names are
those of :class:`~dynamicblocks.ImplicitBlock`. The trapezoidal
rule (Crank-Nicolson) and the implicit midpoint rule differ as methods but
share ``R(z) = (1 + z/2) / (1 - z/2)`` on linear problems.
"""


def _as_complex(z: ComplexLike, name: str = "z") -> torch.Tensor:
    """``z`` as a complex128 tensor (on the device of ``z`` if it is a tensor).

    ``name`` is the argument named in the TypeError for a non-numeric ``z``.
    """
    if isinstance(z, torch.Tensor):
        return z.detach().to(torch.complex128)
    if isinstance(z, (bool, str, bytes)) or z is None:
        raise TypeError(f"{name} must be a complex number, array or tensor, got {z!r}")
    try:
        array = np.asarray(z, dtype=np.complex128)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be a complex number, array or tensor, got {z!r}") from error
    return torch.from_numpy(array.copy())


def _check_theta(theta: object) -> float:
    return real_number("theta", theta, "a real number in [0, 1]", 0.0, 1.0)


def theta_amplification(theta: float, z: ComplexLike) -> torch.Tensor:
    """The stability function of the theta-method ``y_{k+1} = y_k + h f((1-θ) y_k + θ y_{k+1})``.

    On ``y' = lambda y`` (``z = h lambda``) the step multiplies by::

        R(z) = (1 + (1 - theta) z) / (1 - theta z).

    ``theta = 0`` is forward Euler, ``theta = 1/2`` the trapezoidal rule
    (Crank-Nicolson; on linear problems also the implicit midpoint rule),
    ``theta = 1`` backward Euler. Schemes with ``theta >= 1/2`` are A-stable
    (``|R| <= 1`` on the whole left half-plane).

    Args:
        theta: the implicitness, a real number in ``[0, 1]``.
        z: ``h lambda``: a complex (or real) number, array or tensor.

    Returns:
        ``R(z)`` as a complex128 tensor of the shape of ``z``. At the pole
        ``z = 1 / theta`` the value is not finite.

    Raises:
        ValueError: if ``theta`` is not in ``[0, 1]``.
        TypeError: if ``z`` is not numeric.
    """
    theta = _check_theta(theta)
    z = _as_complex(z)
    return (1 + (1 - theta) * z) / (1 - theta * z)


def _polynomial(a: Sequence[Sequence[float]], b: Sequence[float]) -> list[float]:
    """Coefficients ``[1, b.1, b.A1, b.A^2 1, ...]`` of ``R`` for a strictly lower ``A``."""
    matrix = np.asarray(a, dtype=np.float64)
    vector = np.ones(len(b))
    coefficients = [1.0]
    for _ in range(len(b)):
        coefficients.append(float(np.dot(b, vector)))
        vector = matrix @ vector
    return coefficients


def _rk_amplification(
    a: Sequence[Sequence[float]], b: Sequence[float], z: torch.Tensor
) -> torch.Tensor:
    """``R(z) = 1 + z b^T (I - z A)^{-1} 1`` for any (also implicit) Butcher ``A``, ``b``.

    A strictly lower-triangular ``A`` (explicit scheme) is evaluated exactly as
    a polynomial by Horner's rule; any other ``A`` by a batched linear solve.
    """
    matrix = np.asarray(a, dtype=np.float64)
    if not np.any(np.triu(matrix)):
        coefficients = _polynomial(matrix, b)
        result = torch.full_like(z, coefficients[-1])
        for coefficient in reversed(coefficients[:-1]):
            result = result * z + coefficient
        return result
    stages = len(b)
    a_t = torch.as_tensor(matrix, dtype=torch.complex128, device=z.device)
    b_t = torch.as_tensor(np.asarray(b, dtype=np.float64), dtype=torch.complex128, device=z.device)
    eye = torch.eye(stages, dtype=torch.complex128, device=z.device)
    flat = z.reshape(-1, 1, 1)
    ones = torch.ones(flat.shape[0], stages, 1, dtype=torch.complex128, device=z.device)
    stage_values = torch.linalg.solve(eye - flat * a_t, ones)  # (M, s, 1)
    result = 1 + flat.reshape(-1) * (stage_values.squeeze(-1) @ b_t)
    return result.reshape(z.shape)


def _multistep_order(scheme: object) -> int:
    """The number of steps ``s`` of the Adams-Bashforth scheme named ``scheme``."""
    if isinstance(scheme, str) and scheme.lower() in ADAMS_BASHFORTH:
        return ADAMS_BASHFORTH[scheme.lower()]
    raise ValueError(
        f"scheme must be one of {tuple(ADAMS_BASHFORTH)} (an Adams-Bashforth method), "
        f"got {scheme!r}"
    )


def _multistep_betas(order: int) -> tuple[float, ...]:
    """``beta_0, ..., beta_{s-1}`` of the ``order``-step Adams-Bashforth method for ``h = 1``."""
    return adams_bashforth_weights([-float(j) for j in range(order)], 1.0)


def _multistep_roots(order: int, z: torch.Tensor) -> torch.Tensor:
    """The ``s`` roots of ``zeta^s - (1 + z beta_0) zeta^{s-1} - sum_{j>0} z beta_j zeta^{s-1-j}``.

    Eigenvalues of the batched companion matrices, shape ``(*z.shape, s)``
    (``1 + z beta_0`` itself for ``s = 1``). A non-finite ``z`` gives NaN roots.
    """
    betas = _multistep_betas(order)
    nan = complex(math.nan, math.nan)
    if order == 1:
        return torch.where(torch.isfinite(z), 1 + betas[0] * z, nan).unsqueeze(-1)
    flat = z.reshape(-1)
    finite = torch.isfinite(flat)
    values = flat[finite]
    companion = torch.zeros(values.shape[0], order, order, dtype=torch.complex128, device=z.device)
    weights = torch.tensor(betas, dtype=torch.complex128, device=z.device)
    companion[:, 0, :] = values.unsqueeze(-1) * weights
    companion[:, 0, 0] += 1
    sub = torch.arange(1, order, device=z.device)
    companion[:, sub, sub - 1] = 1
    roots = torch.full((flat.shape[0], order), nan, dtype=torch.complex128, device=z.device)
    if values.numel():
        roots[finite] = torch.linalg.eigvals(companion)
    return roots.reshape(*z.shape, order)


def _largest(roots: torch.Tensor) -> torch.Tensor:
    """The entry of largest modulus along the last dimension (NaN if any entry is NaN)."""
    index = roots.abs().nan_to_num(nan=math.inf).argmax(dim=-1, keepdim=True)
    return roots.gather(-1, index).squeeze(-1)


def _dominant_root(order: int, z: torch.Tensor) -> torch.Tensor:
    """The root of largest modulus of the characteristic polynomial, of ``z``'s shape."""
    return _largest(_multistep_roots(order, z))


def multistep_amplification(scheme: str, z: ComplexLike) -> torch.Tensor:
    """The growth factor per step of an Adams-Bashforth scheme on ``y' = lambda y``.

    With a uniform step ``h`` and ``z = h lambda`` the ``s``-step method
    ``y_{k+1} = y_k + z sum_{j=0..s-1} beta_j y_{k-j}`` has the solutions
    ``y_k = sum_i c_i zeta_i^k`` over the roots ``zeta_i`` of its
    characteristic polynomial::

        zeta^s - zeta^{s-1} - z sum_{j=0..s-1} beta_j zeta^{s-1-j}.

    The dominant mode grows by the largest root modulus per step, which is
    returned; the scheme is stable at ``z`` where it is at most 1 (the root
    condition). One subtlety is left out: a *multiple* root of modulus
    exactly 1 grows linearly, yet gives 1 here (it can happen only at isolated
    points of the boundary). Near ``z = 0`` the dominant root is the principal
    root ``zeta_1 = exp(z) + O(z^{s+1})``; the others start at 0. ``"ab1"`` is
    forward Euler, ``|1 + z|``. Real stability intervals: ``[-2, 0]``,
    ``[-1, 0]``, ``[-6/11, 0]``, ``[-3/10, 0]`` for ``s = 1..4``.

    The roots are the eigenvalues of the companion matrices, one per entry
    of ``z``, computed in one batched :func:`torch.linalg.eigvals`.

    Args:
        scheme: ``"ab1"``, ``"ab2"``, ``"ab3"`` or ``"ab4"`` (case-insensitive).
        z: ``h lambda``: a complex (or real) number, array or tensor.

    Returns:
        The largest root modulus, a float64 tensor of the shape of ``z``
        (0-d for a number; on the device of ``z`` if it is a tensor). A
        non-finite entry of ``z`` gives NaN.

    Raises:
        ValueError: if ``scheme`` is not an Adams-Bashforth name.
        TypeError: if ``z`` is not numeric.
    """
    order = _multistep_order(scheme)
    return _dominant_root(order, _as_complex(z)).abs()


def multistep_boundary_locus(scheme: str, points: int = 400) -> torch.Tensor:
    """The boundary locus ``z(phi) = rho(e^{i phi}) / sigma(e^{i phi})`` of an AB scheme.

    ``rho(zeta) = zeta^s - zeta^{s-1}`` and
    ``sigma(zeta) = sum_{j=0..s-1} beta_j zeta^{s-1-j}``: at ``z(phi)`` the
    characteristic polynomial has the root ``e^{i phi}`` of modulus 1, so the
    boundary of the stability region lies on this closed curve. For ``"ab4"``
    the curve also has loops outside the region (in the right half-plane),
    where another root is larger: :func:`multistep_amplification` tells them
    apart. ``sigma`` has no root on the unit circle for these schemes, so
    every point is finite.

    Args:
        scheme: ``"ab1"``, ``"ab2"``, ``"ab3"`` or ``"ab4"`` (case-insensitive).
        points: the number of angles ``phi = 2 pi k / points``,
            ``k = 0 .. points - 1``, at least 2.

    Returns:
        ``z(phi)``, a complex128 tensor of shape ``(points,)``; ``z(0) = 0``.

    Raises:
        ValueError: if ``scheme`` is not an Adams-Bashforth name or ``points``
            is not an int ``>= 2``.
    """
    order = _multistep_order(scheme)
    points = int_in_range("points", points, 2)
    betas = _multistep_betas(order)
    phi = torch.arange(points, dtype=torch.float64) * (2 * math.pi / points)
    zeta = torch.polar(torch.ones_like(phi), phi)
    rho = zeta**order - zeta ** (order - 1)
    sigma = sum(beta * zeta ** (order - 1 - j) for j, beta in enumerate(betas))
    return rho / sigma


REVERSIBLE_SCHEMES: tuple[str, ...] = ("reversible_heun", "alf")
"""The reversible two-state methods by name, as :func:`reversible_amplification` takes them.

``"reversible_heun"`` is the method of
:class:`~dynamicblocks.ReversibleHeunBlock` (Kidger et al. 2021),
``"alf"`` the asynchronous leapfrog of :class:`~dynamicblocks.ALFBlock`
(Zhuang et al. 2021). Both share the characteristic polynomial
``mu^2 - 2 z mu - 1`` on ``y' = lambda y`` and are stable only on the open
segment ``(-i, i)`` of the imaginary ``z = h lambda`` axis.
"""


def _reversible_key(scheme: object) -> str:
    """The lower-case name of the reversible method named ``scheme``."""
    if isinstance(scheme, str) and scheme.lower() in REVERSIBLE_SCHEMES:
        return scheme.lower()
    raise ValueError(
        f"scheme must be one of {REVERSIBLE_SCHEMES} (a reversible method), got {scheme!r}"
    )


def _reversible_matrices(key: str, z: torch.Tensor) -> torch.Tensor:
    """The step matrices ``M(z)`` of a reversible method, shape ``(*z.shape, 2, 2)``.

    ``"reversible_heun"`` acts on its states ``(y, z)``, ``"alf"`` on
    ``(z, V)`` with ``V = h v`` (``z`` here the method's state, not ``h lambda``).
    """
    matrices = torch.empty(*z.shape, 2, 2, dtype=torch.complex128, device=z.device)
    matrices[..., 0, 0] = 1 + z
    matrices[..., 1, 1] = z - 1
    if key == "reversible_heun":
        matrices[..., 0, 1] = z * z / 2
        matrices[..., 1, 0] = 2
    else:
        matrices[..., 0, 1] = z / 2
        matrices[..., 1, 0] = 2 * z
    return matrices


def _reversible_eigenvalues(key: str, z: torch.Tensor) -> torch.Tensor:
    """The two eigenvalues of each ``M(z)``, shape ``(*z.shape, 2)``, in one batched eigvals.

    A non-finite ``z``, or one so large that ``M(z)`` overflows, gives NaN.
    """
    matrices = _reversible_matrices(key, z).reshape(-1, 2, 2)
    finite = torch.isfinite(matrices).flatten(1).all(dim=1)
    nan = complex(math.nan, math.nan)
    eigenvalues = torch.full((matrices.shape[0], 2), nan, dtype=torch.complex128, device=z.device)
    usable = matrices[finite]
    if usable.numel():
        eigenvalues[finite] = torch.linalg.eigvals(usable)
    return eigenvalues.reshape(*z.shape, 2)


def reversible_amplification(scheme: str, z: ComplexLike) -> torch.Tensor:
    """The growth factor per step of a reversible two-state method on ``y' = lambda y``.

    Reversible Heun (Kidger et al. 2021;
    :class:`~dynamicblocks.ReversibleHeunBlock`) steps its states ``(y, z)``
    (this ``z`` is the method's second state, not ``h lambda``) by
    ``z_{k+1} = 2 y_k - z_k + h f(z_k)``,
    ``y_{k+1} = y_k + h/2 (f(z_k) + f(z_{k+1}))``. The asynchronous leapfrog
    (ALF, Zhuang et al. 2021; :class:`~dynamicblocks.ALFBlock`) steps
    ``(z, V)``, ``V = h v``, by ``s = z_k + V_k / 2``,
    ``V_{k+1} = 2 h f(s) - V_k``, ``z_{k+1} = s + V_{k+1} / 2``. On
    ``f(x) = lambda x``, with ``z = h lambda``, one step multiplies the pair
    of states by the matrix::

        reversible_heun, on (y, z):  M(z) = [[1 + z, z^2 / 2], [2,     z - 1]]
        alf, on (z, V):              M(z) = [[1 + z, z / 2],   [2 z,   z - 1]]

    Both have trace ``2 z`` and determinant ``-1``: the characteristic
    polynomial ``mu^2 - 2 z mu - 1`` of the explicit midpoint (leapfrog)
    two-step method, with roots ``mu = z +- sqrt(z^2 + 1)``. The dominant
    mode grows by the larger root modulus per step, which is returned. The
    roots' product is ``-1``, so it is at least 1 everywhere and equals 1
    only for ``z = i y`` with ``|y| <= 1``: the stability region is the
    segment ``(-i, i)`` of the imaginary axis, of zero area, and not a
    neighbourhood of any point. Off the axis it exceeds 1, on the dissipative
    side too: for real ``z < 0`` the root ``z - sqrt(z^2 + 1) < -1`` is a
    growing, sign-alternating (parasitic) mode, while the principal root
    ``z + sqrt(z^2 + 1) = exp(z) + O(z^3)`` decays. At the ends ``z = +-i``
    the root ``+-i`` is double (``M`` is a Jordan block there) and grows
    linearly, yet gives 1 here (to round-off of order ``1e-8``, the accuracy
    of a double eigenvalue): the same isolated subtlety as in
    :func:`multistep_amplification`.

    The roots are the eigenvalues of the matrices above, one per entry of
    ``z``, computed in one batched :func:`torch.linalg.eigvals`, so the
    result describes what the methods' steps do (for the autonomous linear
    field; the tests compare it with the blocks themselves).

    Args:
        scheme: ``"reversible_heun"`` or ``"alf"`` (case-insensitive), see
            :data:`REVERSIBLE_SCHEMES`.
        z: ``h lambda``: a complex (or real) number, array or tensor.

    Returns:
        The largest eigenvalue modulus of ``M(z)``, a float64 tensor of the
        shape of ``z`` (0-d for a number; on the device of ``z`` if it is a
        tensor). A non-finite entry of ``z`` (or one with ``|z|`` above about
        ``1e154``, where ``z^2`` overflows) gives NaN.

    Raises:
        ValueError: if ``scheme`` is not a reversible method's name.
        TypeError: if ``z`` is not numeric.
    """
    key = _reversible_key(scheme)
    return _reversible_eigenvalues(key, _as_complex(z)).abs().amax(dim=-1)


def _imex_tableau(scheme: object) -> IMEXTableau:
    """The IMEX pair named ``scheme`` (case-insensitive), or ``scheme`` itself."""
    if isinstance(scheme, IMEXTableau):
        return scheme
    if isinstance(scheme, str) and scheme.lower() in IMEX_SCHEMES:
        return IMEX_SCHEMES[scheme.lower()]
    if isinstance(scheme, str):
        raise ValueError(
            f"scheme must be one of {tuple(IMEX_SCHEMES)} (an IMEX pair) or an IMEXTableau, "
            f"got {scheme!r}"
        )
    raise TypeError(f"scheme must be a name or an IMEXTableau, got {type(scheme).__name__}")


def imex_amplification(
    scheme: str | IMEXTableau, z_explicit: ComplexLike, z_implicit: ComplexLike
) -> torch.Tensor:
    """The stability function ``R(z_E, z_I)`` of an IMEX Runge-Kutta pair.

    The pair steps ``x' = f(x) - L x`` with ``f`` explicit and ``L``
    implicit. On the test equation ``y' = lambda_E y - mu y`` (``f = lambda_E``,
    ``L = mu``) one step multiplies ``y`` by::

        R(z_E, z_I) = 1 + (z_E b_E + z_I b_I)^T (I - z_E A_E - z_I A_I)^{-1} 1

    with ``(A_E, b_E)``, ``(A_I, b_I)`` the explicit and implicit tableaus.

    Sign convention: ``z_E = h lambda_E`` and ``z_I = -h mu``, i.e. both are
    ``h`` times the eigenvalue the term contributes to ``y' = (lambda_E +
    lambda_I) y`` with ``lambda_I = -mu``. A dissipative implicit part
    (``mu >= 0``, e.g. ``L`` positive semi-definite) has ``z_I <= 0``, the
    same half-plane as for :func:`amplification`. ``R(z, 0)`` is the
    explicit tableau's polynomial, ``R(0, z)`` the implicit (DIRK) tableau's
    stability function, and ``R(z_E, z_I) = exp(z_E + z_I) + O(|z|^{p+1})``
    for a pair of order ``p``. ``"imex_euler"`` gives
    ``(1 + z_E) / (1 - z_I)``; ``"ars222"`` is L-stable in ``z_I``
    (``R(0, z_I) -> 0`` as ``z_I -> -inf``).

    The implicit tableau is lower triangular, so the system is solved by
    forward substitution, stage by stage, vectorised over the points.

    Args:
        scheme: a name from :data:`~dynamicblocks.imex_tableaus.IMEX_SCHEMES`
            (case-insensitive) or an :class:`~dynamicblocks.imex_tableaus.IMEXTableau`.
        z_explicit: ``z_E = h lambda_E``: a complex (or real) number, array
            or tensor.
        z_implicit: ``z_I = -h mu``: the same, broadcast against ``z_explicit``.

    Returns:
        ``R(z_E, z_I)``, a complex128 tensor of the broadcast shape (on the
        device of the tensor arguments). At a pole (``z_I = 1 / aI_ii``,
        on the unstable side) the value is not finite.

    Raises:
        ValueError: for an unknown scheme name, or shapes that do not broadcast.
        TypeError: if ``scheme`` is neither a name nor an IMEXTableau, or a
            ``z`` is not numeric.
    """
    tableau = _imex_tableau(scheme)
    z_e = _as_complex(z_explicit, "z_explicit")
    z_i = _as_complex(z_implicit, "z_implicit")
    try:
        z_e, z_i = torch.broadcast_tensors(z_e, z_i)
    except RuntimeError:
        raise ValueError(
            f"z_explicit and z_implicit must broadcast together, got shapes "
            f"{tuple(z_e.shape)} and {tuple(z_i.shape)}"
        ) from None
    a_e, a_i = tableau.a_explicit, tableau.a_implicit
    stages: list[torch.Tensor] = []
    for i in range(tableau.stages):
        rhs = torch.ones_like(z_e)
        for j in range(i):
            rhs = rhs + (a_e[i][j] * z_e + a_i[i][j] * z_i) * stages[j]
        stages.append(rhs / (1 - a_i[i][i] * z_i))
    result = torch.ones_like(z_e)
    for b_e, b_i, stage in zip(tableau.b_explicit, tableau.b_implicit, stages):
        result = result + (b_e * z_e + b_i * z_i) * stage
    return result


def _resolve(scheme: SchemeLike, theta: float | None) -> ButcherTableau | float | str:
    """A tableau, the theta of a theta-method name, or an Adams-Bashforth or reversible name."""
    if isinstance(scheme, str):
        key = scheme.lower()
        if key == "theta":
            if theta is None:
                raise ValueError("scheme 'theta' needs a theta argument, a real number in [0, 1]")
            return _check_theta(theta)
        if theta is not None:
            raise ValueError(f"theta is only used with scheme='theta', got scheme {scheme!r}")
        if key in THETA_SCHEMES:
            return THETA_SCHEMES[key]
        if key in ADAMS_BASHFORTH or key in REVERSIBLE_SCHEMES:
            return key
        if key in IMEX_SCHEMES:
            raise ValueError(
                f"scheme {scheme!r} is an IMEX pair, whose stability function has two "
                "arguments: use imex_amplification(scheme, z_explicit, z_implicit) or "
                "imex_stability_region(scheme, z_implicit)"
            )
        if key not in TABLEAUS:
            known = (
                sorted(TABLEAUS)
                + sorted(THETA_SCHEMES)
                + ["theta"]
                + sorted(ADAMS_BASHFORTH)
                + list(REVERSIBLE_SCHEMES)
            )
            raise ValueError(
                f"unknown scheme {scheme!r}; expected one of {known} or a ButcherTableau"
            )
    elif theta is not None:
        raise ValueError(f"theta is only used with scheme='theta', got scheme {scheme!r}")
    return get_tableau(scheme)


def amplification(scheme: SchemeLike, z: ComplexLike, theta: float | None = None) -> torch.Tensor:
    """The stability function ``R(z) = 1 + z b^T (I - z A)^{-1} 1`` of ``scheme``.

    One step of the scheme on ``y' = lambda y`` maps ``y`` to ``R(h lambda) y``.
    For the explicit schemes (every :data:`~dynamicblocks.TABLEAUS` entry and
    every :class:`~dynamicblocks.ButcherTableau`, which holds explicit schemes
    only) ``R`` is a polynomial of degree ``s`` (the number of stages) and is
    evaluated exactly from its coefficients ``b^T A^{j-1} 1``; e.g. Euler gives
    ``1 + z`` and classical RK4 ``1 + z + z^2/2 + z^3/6 + z^4/24``.

    The implicit names of :data:`THETA_SCHEMES` (``"backward_euler"``,
    ``"trapezoid"``, ``"implicit_midpoint"``) and
    ``"theta"`` (with ``theta=``) are evaluated by :func:`theta_amplification`.

    The Adams-Bashforth names ``"ab1"`` ... ``"ab4"`` give the dominant root
    of the characteristic polynomial (the root of largest modulus, see
    :func:`multistep_amplification`, which returns its modulus): the factor
    by which the dominant mode grows per step. For ``"ab1"`` it is ``1 + z``.
    Where two roots share the largest modulus either may be returned.

    The reversible names ``"reversible_heun"`` and ``"alf"``
    (:data:`REVERSIBLE_SCHEMES`) likewise give the dominant eigenvalue of the
    method's ``2 x 2`` step matrix (see :func:`reversible_amplification`,
    which returns its modulus), a root of ``mu^2 - 2 z mu - 1``; on the
    segment ``(-i, i)`` both roots have modulus 1 and either may be returned.

    IMEX pairs have a stability function of two variables: see
    :func:`imex_amplification`.

    Args:
        scheme: a name from :data:`~dynamicblocks.TABLEAUS`,
            :data:`THETA_SCHEMES`,
            :data:`~dynamicblocks.methods.multistep.ADAMS_BASHFORTH` or
            :data:`REVERSIBLE_SCHEMES`, ``"theta"``, or a ButcherTableau
            (names are case-insensitive).
        z: ``h lambda``: a complex (or real) number, array or tensor.
        theta: the implicitness for ``scheme="theta"`` only, in ``[0, 1]``.

    Returns:
        ``R(z)`` as a complex128 tensor of the shape of ``z`` (0-d for a
        number; on the device of ``z`` if it is a tensor).

    Raises:
        ValueError: for an unknown scheme name or an IMEX pair's name, a
            missing or out-of-range ``theta`` with ``"theta"``, or a
            ``theta`` given with another scheme.
        TypeError: if ``scheme`` is neither a name nor a tableau, or ``z`` is
            not numeric.
    """
    resolved = _resolve(scheme, theta)
    if isinstance(resolved, float):
        return theta_amplification(resolved, z)
    if isinstance(resolved, str) and resolved in REVERSIBLE_SCHEMES:
        return _largest(_reversible_eigenvalues(resolved, _as_complex(z)))
    if isinstance(resolved, str):
        return _dominant_root(ADAMS_BASHFORTH[resolved], _as_complex(z))
    return _rk_amplification(resolved.a, resolved.b, _as_complex(z))


def _check_range(name: str, value: object) -> tuple[float, float]:
    message = f"{name} must be a pair (low, high) of finite real numbers with low < high"
    try:
        low, high = value  # type: ignore[misc]
    except (TypeError, ValueError):
        raise ValueError(f"{message}, got {value!r}") from None
    for v in (low, high):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ValueError(f"{message}, got {value!r}")
    if not low < high:
        raise ValueError(f"{message}, got {value!r}")
    return float(low), float(high)


def _z_grid(
    re: tuple[float, float], im: tuple[float, float], resolution: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(real, imag)``: a ``resolution x resolution`` grid of the complex plane, ``xy`` layout."""
    re_low, re_high = _check_range("re", re)
    im_low, im_high = _check_range("im", im)
    resolution = int_in_range("resolution", resolution, 2)
    real_axis = torch.linspace(re_low, re_high, resolution, dtype=torch.float64)
    imag_axis = torch.linspace(im_low, im_high, resolution, dtype=torch.float64)
    return torch.meshgrid(real_axis, imag_axis, indexing="xy")


def stability_region(
    scheme: SchemeLike,
    re: tuple[float, float] = (-5.0, 1.0),
    im: tuple[float, float] = (-4.0, 4.0),
    resolution: int = 400,
    theta: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``|R(z)|`` of ``scheme`` on a uniform grid of the complex ``z = h lambda`` plane.

    The stability region is where the returned magnitude is at most 1. For an
    Adams-Bashforth scheme the magnitude is the largest root modulus of its
    characteristic polynomial (:func:`multistep_amplification`), for a
    reversible method that of its step matrix
    (:func:`reversible_amplification`). The latter's region is the segment
    ``(-i, i)`` of the imaginary axis, of zero area: the magnitude exceeds 1
    at every grid point off the axis, and is 1 (up to round-off, on either
    side) on a grid column that falls exactly on ``Re z = 0``. For an IMEX
    pair see :func:`imex_stability_region`.

    Args:
        scheme: as for :func:`amplification`.
        re: the ``(low, high)`` range of ``Re z``.
        im: the ``(low, high)`` range of ``Im z``.
        resolution: grid points per axis, at least 2.
        theta: as for :func:`amplification` (``scheme="theta"`` only).

    Returns:
        ``(real, imag, magnitude)``, float64 tensors of shape
        ``(resolution, resolution)`` in ``meshgrid(..., indexing="xy")``
        layout (``real`` varies along columns, ``imag`` along rows), ready for
        ``Axes.contour(real, imag, magnitude, levels=[1])``. A pole of an
        implicit scheme that falls on the grid gives a non-finite magnitude.

    Raises:
        ValueError: for a bad range or resolution, or as :func:`amplification`.
    """
    real, imag = _z_grid(re, im, resolution)
    magnitude = amplification(scheme, torch.complex(real, imag), theta=theta).abs()
    return real, imag, magnitude


def imex_stability_region(
    scheme: str | IMEXTableau,
    z_implicit: complex = 0.0,
    re: tuple[float, float] = (-5.0, 1.0),
    im: tuple[float, float] = (-4.0, 4.0),
    resolution: int = 400,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``|R(z_E, z_I)|`` of an IMEX pair on a grid of ``z_E``, for one fixed ``z_I``.

    The slice of the two-variable stability region at ``z_I = -h mu`` (see
    :func:`imex_amplification` for the sign convention): the explicit part is
    stable at ``z_E`` where the returned magnitude is at most 1. ``z_I = 0``
    gives the explicit tableau's own region; a more negative ``z_I`` (a
    stiffer implicit part) typically enlarges it.

    Args:
        scheme: as for :func:`imex_amplification`.
        z_implicit: the fixed ``z_I``, a finite real or complex number.
        re: the ``(low, high)`` range of ``Re z_E``.
        im: the ``(low, high)`` range of ``Im z_E``.
        resolution: grid points per axis, at least 2.

    Returns:
        ``(real, imag, magnitude)`` as for :func:`stability_region`, with
        ``real + i imag`` the grid of ``z_E``.

    Raises:
        ValueError: for an unknown scheme name, a ``z_implicit`` that is not a
            finite number, a bad range or resolution.
        TypeError: if ``scheme`` is neither a name nor an IMEXTableau.
    """
    tableau = _imex_tableau(scheme)
    if (
        isinstance(z_implicit, bool)
        or not isinstance(z_implicit, numbers.Complex)
        or not cmath.isfinite(z_implicit)
    ):
        raise ValueError(
            f"z_implicit must be a finite real or complex number (h times the implicit "
            f"part's eigenvalue), got {z_implicit!r}"
        )
    real, imag = _z_grid(re, im, resolution)
    magnitude = imex_amplification(tableau, torch.complex(real, imag), complex(z_implicit)).abs()
    return real, imag, magnitude


def _label(scheme: SchemeLike, theta: float | None) -> str:
    if isinstance(scheme, ButcherTableau):
        return scheme.name
    if isinstance(scheme, str) and scheme.lower() == "theta" and theta is not None:
        return f"theta={theta:g}"
    return str(scheme).lower()


def plot_stability_regions(
    schemes: SchemeLike | Sequence[SchemeLike],
    path: str | os.PathLike | None = None,
    re: tuple[float, float] = (-5.0, 1.0),
    im: tuple[float, float] = (-4.0, 4.0),
    resolution: int = 400,
    theta: float | None = None,
    title: str | None = "Stability regions |R(hλ)| ≤ 1",
    figsize: tuple[float, float] = (6.4, 5.6),
) -> Figure:
    """Draw the stability region ``|R(z)| <= 1`` of each scheme in the ``z = h lambda`` plane.

    Runge-Kutta, theta-method, Adams-Bashforth and reversible schemes can be
    drawn side by side (for Adams-Bashforth the region where the largest root
    modulus is at most 1, see :func:`multistep_amplification`). The region of
    a reversible method (:data:`REVERSIBLE_SCHEMES`) is the segment
    ``(-i, i)`` of the imaginary axis (:func:`reversible_amplification`),
    which has no area for a contour to fill or outline: it is drawn as a
    thick line from ``-i`` to ``i`` with open circles at the excluded ends,
    where a double root grows linearly.

    Each region is filled (translucent) and outlined in its own colour, with a
    legend entry per scheme; the axes are labelled ``Re(hλ)`` and ``Im(hλ)``
    and drawn with equal aspect. The figure is a plain
    :class:`matplotlib.figure.Figure` (no pyplot, the backend is untouched).

    Args:
        schemes: one scheme or a sequence of schemes, each as for
            :func:`amplification`.
        path: if given, the figure is saved there (format from the suffix).
        re: the ``(low, high)`` range of ``Re z`` shown.
        im: the ``(low, high)`` range of ``Im z`` shown.
        resolution: grid points per axis, at least 2.
        theta: used by entries named ``"theta"`` (and only allowed with them).
        title: the axes title (``None`` for none).
        figsize: the figure size in inches.

    Returns:
        The figure.

    Raises:
        ValueError: for an empty ``schemes``, or as :func:`stability_region`.
        ImportError: if matplotlib is not installed (the library itself
            does not need it).
    """
    if isinstance(schemes, (str, ButcherTableau)):
        schemes = [schemes]
    schemes = list(schemes)
    if not schemes:
        raise ValueError("schemes must name at least one scheme, got an empty sequence")
    if theta is not None and not any(isinstance(s, str) and s.lower() == "theta" for s in schemes):
        raise ValueError("theta is only used with a scheme named 'theta', and none is given")
    regions = []
    for scheme in schemes:
        entry_theta = theta if isinstance(scheme, str) and scheme.lower() == "theta" else None
        segment = isinstance(scheme, str) and scheme.lower() in REVERSIBLE_SCHEMES
        region = stability_region(scheme, re, im, resolution, entry_theta)
        regions.append((_label(scheme, entry_theta), segment, region))

    try:
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
    except ImportError:
        raise ImportError(
            "plot_stability_regions needs matplotlib: pip install matplotlib "
            "(or the examples extra: pip install dynamicblocks[examples])"
        ) from None
    figure = Figure(figsize=figsize, layout="constrained")
    axes = figure.add_subplot()
    colors = [f"C{i % 10}" for i in range(len(regions))]
    handles = []
    for color, (label, segment, (real, imag, magnitude)) in zip(colors, regions):
        if segment:  # the zero-area region (-i, i): a line, open at the ends
            axes.plot([0.0, 0.0], [-1.0, 1.0], color=color, linewidth=3.0, zorder=3)
            axes.plot(
                [0.0, 0.0],
                [-1.0, 1.0],
                color=color,
                linestyle="none",
                marker="o",
                markersize=5,
                markerfacecolor="white",
                markeredgecolor=color,
                zorder=4,
            )
            handles.append(Line2D([], [], color=color, linewidth=3.0, label=label))
            continue
        x, y = real.numpy(), imag.numpy()
        # Cap (and fill poles): the level-1 boundary is unchanged, contouring stays finite.
        values = np.nan_to_num(np.minimum(magnitude.numpy(), 2.0), nan=2.0)
        low, high = values.min(), values.max()
        if low <= 1.0:
            axes.contourf(x, y, values, levels=[0.0, 1.0], colors=[color], alpha=0.18)
        if low < 1.0 < high:
            axes.contour(x, y, values, levels=[1.0], colors=[color], linewidths=1.6)
        handles.append(Line2D([], [], color=color, linewidth=1.6, label=label))
    axes.axhline(0.0, color="0.5", linewidth=0.6)
    axes.axvline(0.0, color="0.5", linewidth=0.6)
    axes.set_xlim(*_check_range("re", re))
    axes.set_ylim(*_check_range("im", im))
    axes.set_aspect("equal")
    axes.set_xlabel("Re(hλ)")
    axes.set_ylabel("Im(hλ)")
    if title:
        axes.set_title(title)
    axes.legend(handles=handles, loc="best", fontsize="small")
    if path is not None:
        figure.savefig(path)
    return figure


def _jacobians(work: DynamicBlock, states: torch.Tensor, vectorize: bool) -> torch.Tensor:
    """Per-sample Jacobians ``(N, D, D)`` of the block's map at ``states`` ``(N, *)``."""
    shape = states.shape[1:]

    def step_map(state: torch.Tensor) -> torch.Tensor:
        return work(state.reshape(1, *shape)).reshape(-1)

    flat = states.reshape(states.shape[0], -1)
    if vectorize:
        return torch.func.vmap(torch.func.jacrev(step_map))(flat)
    return torch.stack([torch.autograd.functional.jacobian(step_map, row) for row in flat])


def step_jacobian_spectrum(
    block: DynamicBlock,
    x: torch.Tensor,
    step: int = 0,
    along_trajectory: bool = True,
    dtype: torch.dtype | None = torch.float64,
    vectorize: bool = True,
    max_dim: int = 4096,
) -> torch.Tensor:
    """Eigenvalues of the Jacobian of one step ``x_k -> x_{k+1}`` of a block, per sample.

    The single-step map is the block re-manifested on the one interval
    ``(t[k], t[k+1])`` (same scheme, same ``theta(t)``, so the same controls as
    step ``k`` of the block). Its Jacobian with respect to the flattened state
    (``D = prod(x.shape[1:])``) is taken per sample (``torch.func.jacrev``
    under ``vmap``, or ``torch.autograd.functional.jacobian`` in a loop), which
    is fine for small states: it costs ``D`` backward passes and an eigen-
    decomposition of a ``D x D`` matrix per sample.

    Perturbations of ``x_k`` are multiplied by this Jacobian, so the step is
    (locally, linearly) stable at a sample when all its eigenvalues lie in the
    closed unit disk, i.e. :func:`spectral_radius` ``<= 1``. For a linear
    field ``f(x) = W x`` the Jacobian is ``R(h W)`` with the scheme's
    :func:`amplification` polynomial ``R``, so its eigenvalues are
    ``R(h mu)`` for the eigenvalues ``mu`` of ``W``.

    The block is not changed: the work is done on a deep copy, in eval mode
    (BatchNorm uses its running statistics, which are not updated, and each
    sample is mapped on its own), with ``requires_grad`` off for the copy's
    parameters, so no ``.grad`` is written and the result carries no graph.

    Args:
        block: the (trained) dynamic block.
        x: sample inputs ``(N, *)`` on the block's device.
        step: the step ``k`` in ``[0, block.num_steps)``.
        along_trajectory: if true, ``x`` is the block's input and step ``k``
            is linearised at the state ``x_k`` that the block (in eval mode)
            reaches from ``x`` after ``k`` steps; if false, ``x`` is ``x_k``
            itself. Same thing for ``step=0``.
        dtype: the floating dtype of the computation (default float64 for
            accurate eigenvalues); ``None`` keeps the block's dtype.
        vectorize: ``vmap(jacrev)`` if true; a per-sample loop with
            ``torch.autograd.functional.jacobian`` if false (for layers that
            ``vmap`` does not support).
        max_dim: refuse states with more than this many entries ``D``.

    Returns:
        ``(N, D)`` complex eigenvalues, each row sorted by decreasing modulus.

    Raises:
        TypeError: if ``block`` is not a DynamicBlock or ``x`` not a tensor.
        ValueError: for ``x`` without a batch dimension or with an empty one,
            a ``step`` out of range, or ``D > max_dim``.
    """
    if not isinstance(block, DynamicBlock):
        raise TypeError(f"block must be a DynamicBlock, got {type(block).__name__}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor of shape (N, *), got {type(x).__name__}")
    if x.dim() < 2 or x.shape[0] < 1:
        raise ValueError(
            f"x must have shape (N, *) with N >= 1 and a state of at least one dimension, "
            f"got shape {tuple(x.shape)}"
        )
    step = int_in_range("step", step, 0, block.num_steps)
    max_dim = positive_int("max_dim", max_dim)
    dim = math.prod(x.shape[1:])
    if dim > max_dim:
        raise ValueError(
            f"the state has D = {dim} entries, more than max_dim = {max_dim}; the Jacobian is "
            "D x D per sample, so pass smaller states or raise max_dim"
        )
    if dtype is not None and not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point dtype or None, got {dtype}")

    work = copy.deepcopy(block)
    work.eval()
    work.requires_grad_(False)
    if dtype is not None:
        work.to(dtype)
    states = x.detach() if dtype is None else x.detach().to(dtype)
    t = block.t
    if along_trajectory and step > 0:
        work.remanifest_(t=t[: step + 1])
        with torch.no_grad():
            states = work(states)
    work.remanifest_(t=(t[step], t[step + 1]))
    jacobians = _jacobians(work, states, vectorize).detach()
    eigenvalues = torch.linalg.eigvals(jacobians)
    order = eigenvalues.abs().argsort(dim=-1, descending=True)
    return eigenvalues.gather(-1, order)


def spectral_radius(eigenvalues: torch.Tensor) -> torch.Tensor:
    """The largest modulus along the last dimension, e.g. of :func:`step_jacobian_spectrum`.

    ``spectral_radius(step_jacobian_spectrum(block, x))`` gives one value per
    sample; the step is linearly stable at a sample when it is at most 1.

    Args:
        eigenvalues: a real or complex tensor ``(..., D)`` with ``D >= 1``.

    Returns:
        A real tensor of shape ``(...)``.

    Raises:
        TypeError: if ``eigenvalues`` is not a tensor.
        ValueError: if it is 0-d or its last dimension is empty.
    """
    if not isinstance(eigenvalues, torch.Tensor):
        raise TypeError(f"eigenvalues must be a tensor, got {type(eigenvalues).__name__}")
    if eigenvalues.dim() < 1 or eigenvalues.shape[-1] < 1:
        raise ValueError(
            f"eigenvalues must have shape (..., D) with D >= 1, got {tuple(eigenvalues.shape)}"
        )
    return eigenvalues.abs().amax(dim=-1)
