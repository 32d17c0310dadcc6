"""Linear stability of the Adams-Bashforth methods and of the IMEX Runge-Kutta pairs."""

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from dynamicblocks.imex_tableaus import IMEX_SCHEMES
from dynamicblocks.stability import (
    _rk_amplification,
    amplification,
    imex_amplification,
    imex_stability_region,
    multistep_amplification,
    multistep_boundary_locus,
    plot_stability_regions,
    stability_region,
)

# The classical Adams-Bashforth coefficients (Hairer, Norsett & Wanner I, III.1),
# typed in: the characteristic polynomial is zeta^s - zeta^(s-1) - z sum_j beta_j zeta^(s-1-j).
BETAS = {
    "ab1": [1.0],
    "ab2": [3 / 2, -1 / 2],
    "ab3": [23 / 12, -16 / 12, 5 / 12],
    "ab4": [55 / 24, -59 / 24, 37 / 24, -9 / 24],
}
STEPS = {"ab1": 1, "ab2": 2, "ab3": 3, "ab4": 4}
ERROR_CONSTANTS = {"ab1": 1 / 2, "ab2": 5 / 12, "ab3": 3 / 8, "ab4": 251 / 720}
REAL_INTERVALS = {"ab1": -2.0, "ab2": -1.0, "ab3": -6 / 11, "ab4": -3 / 10}
GAMMA = 1 - 1 / math.sqrt(2)  # the implicit diagonal of ARS(2,2,2)


def random_z(count: int = 40, scale: float = 2.0, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    values = scale * (rng.standard_normal(count) + 1j * rng.standard_normal(count))
    return torch.from_numpy(values)


def reference_roots(scheme: str, z: complex) -> np.ndarray:
    """The roots of the textbook characteristic polynomial, by numpy.roots."""
    s = STEPS[scheme]
    coefficients = np.zeros(s + 1, dtype=np.complex128)
    coefficients[0], coefficients[1] = 1.0, -1.0
    coefficients[1:] -= z * np.asarray(BETAS[scheme])
    return np.roots(coefficients)


# --- Adams-Bashforth ---------------------------------------------------------


def test_ab1_is_the_modulus_of_euler():
    z = random_z()
    expected = amplification("euler", z).abs()
    assert torch.allclose(multistep_amplification("ab1", z), expected, rtol=0, atol=1e-12)
    assert torch.allclose(amplification("ab1", z), 1 + z, rtol=0, atol=1e-12)


@pytest.mark.parametrize("scheme", ["ab2", "ab3", "ab4"])
def test_largest_root_matches_numpy_roots_of_the_textbook_polynomial(scheme):
    z = random_z(30, seed=STEPS[scheme])
    got = multistep_amplification(scheme, z)
    expected = torch.tensor([np.abs(reference_roots(scheme, complex(zi))).max() for zi in z])
    assert got.dtype == torch.float64 and got.shape == z.shape
    assert torch.allclose(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("scheme", ["ab2", "ab3", "ab4"])
def test_amplification_returns_the_dominant_root(scheme):
    z = random_z(20, seed=7)
    root = amplification(scheme.upper(), z)
    assert root.dtype == torch.complex128
    assert torch.allclose(root.abs(), multistep_amplification(scheme, z), rtol=1e-13, atol=1e-14)
    for zi, ri in zip(z, root):  # a root of the polynomial
        assert np.min(np.abs(reference_roots(scheme, complex(zi)) - complex(ri))) < 1e-9


def test_shapes_and_inputs():
    assert multistep_amplification("ab3", -0.2).shape == ()
    grid = torch.zeros(2, 3, 4, dtype=torch.complex64)
    assert multistep_amplification("ab4", grid).shape == (2, 3, 4)
    assert multistep_amplification("ab2", [[-0.5, 0.1j]]).shape == (1, 2)
    assert multistep_amplification("ab2", torch.zeros(0)).shape == (0,)
    values = multistep_amplification("ab3", torch.tensor([-0.1, math.nan, math.inf]))
    assert values[0] < 1 and values[1:].isnan().all()
    assert multistep_amplification("ab2", 0.0).item() == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize("scheme", ["ab1", "ab2", "ab3", "ab4"])
def test_real_stability_interval(scheme):
    left = REAL_INTERVALS[scheme]
    inside = torch.linspace(left + 1e-6, -1e-6, 200, dtype=torch.float64)
    assert (multistep_amplification(scheme, inside) <= 1 + 1e-9).all()
    endpoints = multistep_amplification(scheme, torch.tensor([left, 0.0]))
    assert torch.allclose(endpoints, torch.ones(2, dtype=torch.float64), atol=1e-9)
    outside = torch.tensor([left - 1e-6, left - 0.5, 1e-6, 0.3], dtype=torch.float64)
    assert (multistep_amplification(scheme, outside) > 1 + 1e-8).all()


@pytest.mark.parametrize("scheme", ["ab1", "ab2", "ab3", "ab4"])
def test_principal_root_approximates_exp_to_order_s(scheme):
    s = STEPS[scheme]
    errors = []
    for z in (-2e-2, -1e-2):
        error = abs(multistep_amplification(scheme, z).item() - math.exp(z))
        errors.append(error)
        # zeta_1 = exp(z) - C z^(s+1) + O(z^(s+2)), C the error constant
        assert error / abs(z) ** (s + 1) == pytest.approx(ERROR_CONSTANTS[scheme], rel=0.1)
    assert errors[0] / errors[1] == pytest.approx(2 ** (s + 1), rel=0.1)


@pytest.mark.parametrize("scheme", ["ab1", "ab2", "ab3", "ab4"])
def test_boundary_locus_points_have_a_root_of_modulus_one(scheme):
    locus = multistep_boundary_locus(scheme, points=64)
    assert locus.shape == (64,) and locus.dtype == torch.complex128
    assert abs(locus[0]) < 1e-15  # phi = 0: z = 0
    for z in locus:
        moduli = np.abs(reference_roots(scheme, complex(z)))
        assert np.min(np.abs(moduli - 1)) < 1e-9
    # the locus crosses the negative real axis at the end of the real interval
    assert locus[32].real.item() == pytest.approx(REAL_INTERVALS[scheme], abs=1e-12)


def test_ab1_locus_is_the_euler_circle():
    locus = multistep_boundary_locus("ab1", points=10)
    assert torch.allclose((locus + 1).abs(), torch.ones(10, dtype=torch.float64), atol=1e-14)


def test_stability_region_and_plot_accept_adams_bashforth():
    real, imag, magnitude = stability_region("ab2", re=(-1.5, 0.5), im=(-1, 1), resolution=41)
    expected = multistep_amplification("ab2", torch.complex(real, imag))
    assert torch.equal(magnitude, expected)
    axis = real[20]  # imag = 0
    assert ((magnitude[20] <= 1 + 1e-9) == ((axis >= -1) & (axis <= 0))).all()
    figure = plot_stability_regions(["euler", "ab2", "ab3", "rk4"], resolution=60)
    assert isinstance(figure, Figure)
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert labels == ["euler", "ab2", "ab3", "rk4"]


# --- IMEX pairs ----------------------------------------------------------------


def ars222_implicit(z: torch.Tensor) -> torch.Tensor:
    """The stability function of the ARS(2,2,2) implicit DIRK, worked out by hand."""
    return (1 + (1 - 2 * GAMMA) * z) / (1 - GAMMA * z) ** 2


def test_imex_euler():
    z_e = random_z(30, seed=1).reshape(5, 6)
    z_i = random_z(6, seed=2)
    expected = (1 + z_e) / (1 - z_i)
    assert torch.allclose(imex_amplification("imex_euler", z_e, z_i), expected, atol=1e-13)


def test_ars222_explicit_part_alone():
    z = random_z(30, seed=3)
    got = imex_amplification("ars222", z, 0.0)
    assert torch.allclose(got, 1 + z + z**2 / 2, rtol=1e-13, atol=1e-12)
    tableau = IMEX_SCHEMES["ars222"]
    generic = _rk_amplification(tableau.a_explicit, tableau.b_explicit, z)
    assert torch.allclose(got, generic, rtol=1e-13, atol=1e-12)


def test_ars222_implicit_part_alone():
    z = random_z(30, seed=4)
    got = imex_amplification("ARS222", 0.0, z)
    assert torch.allclose(got, ars222_implicit(z), rtol=1e-12, atol=1e-13)
    tableau = IMEX_SCHEMES["ars222"]
    generic = _rk_amplification(tableau.a_implicit, tableau.b_implicit, z)
    assert torch.allclose(got, generic, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("scheme, order", [("imex_euler", 1), ("ars222", 2)])
def test_order_against_exp(scheme, order):
    direction = (0.7 + 0.4j, -1.3 + 0.2j)  # (z_E, z_I) / eps
    errors = []
    for eps in (2e-2, 1e-2, 5e-3):
        z_e, z_i = eps * direction[0], eps * direction[1]
        value = imex_amplification(scheme, z_e, z_i).item()
        errors.append(abs(value - np.exp(z_e + z_i)))
    for coarse, fine in zip(errors, errors[1:]):
        assert coarse / fine == pytest.approx(2 ** (order + 1), rel=0.1)


@pytest.mark.parametrize("scheme", ["imex_euler", "ars222"])
def test_implicit_part_is_stable_on_the_negative_axis(scheme):
    z_i = -torch.cat([torch.zeros(1), torch.logspace(-3, 6, 400)]).double()
    magnitude = imex_amplification(scheme, 0.0, z_i).abs()
    assert (magnitude <= 1 + 1e-12).all()
    # L-stable: |R(0, z_I)| -> 0 as z_I -> -inf
    assert magnitude[-1] < 1e-5


def test_ars222_implicit_part_is_a_stable():
    rng = np.random.default_rng(5)
    z_i = -np.abs(rng.standard_normal(200)) * 10 ** rng.uniform(-2, 4, 200)
    z_i = z_i + 1j * rng.standard_normal(200) * 10 ** rng.uniform(-2, 4, 200)
    magnitude = imex_amplification("ars222", 0.0, torch.from_numpy(z_i)).abs()
    assert (magnitude <= 1 + 1e-12).all()


def test_broadcasting_and_tableau_argument():
    z_e = torch.linspace(-1, 0, 3, dtype=torch.float64).reshape(3, 1)
    z_i = torch.tensor([-1.0, -2.0, -4.0, 0.0])
    by_name = imex_amplification("ars222", z_e, z_i)
    assert by_name.shape == (3, 4) and by_name.dtype == torch.complex128
    by_tableau = imex_amplification(IMEX_SCHEMES["ars222"], z_e, z_i)
    assert torch.equal(by_name, by_tableau)
    assert imex_amplification("imex_euler", 0.5, -1.0).shape == ()


def test_imex_stability_region():
    real, imag, magnitude = imex_stability_region("ars222", 0.0, resolution=50)
    _, _, heun = stability_region("heun", resolution=50)  # also 1 + z + z^2 / 2
    assert torch.allclose(magnitude, heun, rtol=1e-13, atol=1e-13)
    # imex_euler at z_I = -5: |1 + z_E| <= 6, a disk of radius 6 about -1
    real, imag, magnitude = imex_stability_region(
        "imex_euler", -5.0, re=(-8, 6), im=(-7, 7), resolution=57
    )
    inside = (torch.complex(real, imag) + 1).abs() <= 6
    assert torch.equal(magnitude <= 1 + 1e-12, inside)
    # a stiffer implicit part enlarges the explicit part's real interval beyond heun's [-2, 0]
    assert amplification("heun", [-2.1, 0.5]).abs().min() > 1
    for z_i in (-1.0, -10.0):
        real, imag, magnitude = imex_stability_region(
            "ars222", z_i, re=(-2.1, 0.5), im=(-1, 1), resolution=101
        )
        assert imag[50].abs().max() < 1e-15
        assert (magnitude[50] <= 1).all()


# --- bad input -------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: multistep_amplification("ab5", 0.1), ["scheme", "'ab5'", "ab1", "ab4"]),
        (lambda: multistep_amplification("rk4", 0.1), ["scheme", "'rk4'", "ab2"]),
        (lambda: multistep_amplification(2, 0.1), ["scheme", "ab3"]),
        (lambda: multistep_boundary_locus("heun"), ["scheme", "'heun'", "ab1"]),
        (lambda: multistep_boundary_locus("ab2", points=1), ["points", "1"]),
        (lambda: imex_amplification("euler", 0, 0), ["scheme", "'euler'", "imex_euler", "ars222"]),
        (lambda: imex_amplification("ars222", [1, 2], [1, 2, 3]), ["z_explicit", "(2,)", "(3,)"]),
        (lambda: imex_stability_region("ars333"), ["scheme", "'ars333'", "ars222"]),
        (lambda: imex_stability_region("ars222", math.nan), ["z_implicit", "nan"]),
        (lambda: imex_stability_region("ars222", "-1"), ["z_implicit", "'-1'"]),
        (lambda: imex_stability_region("ars222", -1.0, resolution=1), ["resolution"]),
        (lambda: amplification("ab5", 0.1), ["'ab5'", "ab1", "ab4", "rk4"]),
        (lambda: amplification("ars222", 0.1), ["'ars222'", "imex_amplification"]),
        (lambda: amplification("ab2", 0.1, theta=0.5), ["theta", "'ab2'"]),
        (lambda: stability_region("imex_euler"), ["'imex_euler'", "imex_stability_region"]),
    ],
)
def test_bad_arguments_raise_value_errors_naming_them(call, words):
    with pytest.raises(ValueError) as info:
        call()
    for word in words:
        assert word in str(info.value)


def test_non_numeric_z_raises_type_errors_naming_the_argument():
    with pytest.raises(TypeError, match="z_implicit"):
        imex_amplification("ars222", 0.0, "stiff")
    with pytest.raises(TypeError, match="z_explicit"):
        imex_amplification("ars222", None, 0.0)
    with pytest.raises(TypeError, match="IMEXTableau"):
        imex_amplification(3, 0.0, 0.0)
    with pytest.raises(TypeError, match="z must"):
        multistep_amplification("ab2", "0.1")
