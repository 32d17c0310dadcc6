"""Stability functions of the schemes, stability regions, and a block's step spectrum."""

import math
import warnings

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from dynamicblocks import MLP, TABLEAUS, ButcherTableau, DoubleSymLayer, DynamicBlock
from dynamicblocks.stability import (
    THETA_SCHEMES,
    _rk_amplification,
    amplification,
    plot_stability_regions,
    spectral_radius,
    stability_region,
    step_jacobian_spectrum,
    theta_amplification,
)

SCHEMES = sorted(TABLEAUS)
RK4_BOUND = 2.785293563405282  # |R(-x)| = 1 for classical RK4 (and rk4_38: same polynomial)


def random_z(count: int = 50, scale: float = 3.0, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    values = scale * (rng.standard_normal(count) + 1j * rng.standard_normal(count))
    return torch.from_numpy(values)


def direct_formula(tableau: ButcherTableau, z: torch.Tensor) -> torch.Tensor:
    """1 + z b^T (I - z A)^{-1} 1, point by point with a dense solve."""
    a = torch.tensor(tableau.a, dtype=torch.complex128)
    b = torch.tensor(tableau.b, dtype=torch.complex128)
    eye = torch.eye(tableau.stages, dtype=torch.complex128)
    ones = torch.ones(tableau.stages, dtype=torch.complex128)
    return torch.stack([1 + zi * b @ torch.linalg.solve(eye - zi * a, ones) for zi in z])


def test_euler_is_one_plus_z():
    z = random_z()
    assert torch.allclose(amplification("euler", z), 1 + z, rtol=0, atol=1e-13)


def test_rk4_is_the_degree_four_taylor_polynomial():
    z = random_z()
    expected = 1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24
    for name in ("rk4", "rk4_38"):
        assert torch.allclose(amplification(name, z), expected, rtol=1e-14, atol=1e-12)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_polynomial_matches_the_resolvent_formula(scheme):
    z = random_z(20)
    expected = direct_formula(TABLEAUS[scheme], z)
    assert torch.allclose(amplification(scheme, z), expected, rtol=1e-13, atol=1e-12)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_polynomial_is_the_taylor_polynomial_of_exp_up_to_the_order(scheme):
    """R(z) = sum_k (b^T A^(k-1) 1) z^k: the coefficients 1/k! up to z^p, another at z^(p+1)."""
    tableau = TABLEAUS[scheme]
    a, b = np.array(tableau.a), np.array(tableau.b)
    coefficients = [b @ np.linalg.matrix_power(a, k - 1) @ np.ones(len(b)) for k in range(1, 8)]
    p = tableau.order
    for k in range(1, p + 1):
        assert coefficients[k - 1] == pytest.approx(1 / math.factorial(k), abs=1e-14)
    assert abs(coefficients[p] - 1 / math.factorial(p + 1)) > 1e-6


# Fifth-order pairs: R(z) - exp(z) is near round-off before its z^6 term leads
# (for tsit5 the z^6 and z^7 terms compete down to |z| = 0.05); the coefficient
# test above covers them.
@pytest.mark.parametrize("scheme", [s for s in SCHEMES if TABLEAUS[s].order <= 4])
def test_agrees_with_exp_to_the_order_of_the_scheme(scheme):
    p = TABLEAUS[scheme].order
    radii = 0.1 * 0.5 ** np.arange(5)
    direction = np.exp(0.7j)
    z = torch.from_numpy(radii * direction)
    errors = (amplification(scheme, z) - torch.exp(z)).abs().numpy()
    slope = np.polyfit(np.log(radii), np.log(errors), 1)[0]
    assert abs(slope - (p + 1)) < 0.3, (scheme, slope)
    # leading error constant: nonzero and bounded, so order exactly p
    ratio = errors / radii ** (p + 1)
    assert 1e-4 < ratio.min() and ratio.max() < 1.0


def test_user_tableau():
    alpha = 0.3  # a generic explicit 3-stage scheme of order 1
    tableau = ButcherTableau(
        "custom", 1, (0.0, alpha, 0.9), ((), (alpha,), (0.5, 0.4)), (0.2, 0.5, 0.3)
    )
    z = random_z(20)
    assert torch.allclose(amplification(tableau, z), direct_formula(tableau, z), atol=1e-12)


def test_shapes_dtypes_and_input_kinds():
    assert amplification("rk4", 1 + 1j).shape == ()
    assert amplification("rk4", -1.0).dtype == torch.complex128
    assert amplification("heun", np.zeros((3, 4))).shape == (3, 4)
    assert amplification("heun", [[0.5, 1j]]).shape == (1, 2)
    value = amplification("midpoint", torch.tensor([1.0], dtype=torch.float32))
    assert value.dtype == torch.complex128 and value.item() == 2.5
    assert amplification("EULER", 2.0).item() == 3.0
    assert amplification(TABLEAUS["rk4"], 0.0).item() == 1.0


def test_implicit_schemes_via_the_theta_formula():
    z = random_z()
    assert torch.allclose(amplification("backward_euler", z), 1 / (1 - z), atol=1e-12)
    trapezoid = (1 + z / 2) / (1 - z / 2)
    for name in ("trapezoid", "implicit_midpoint"):
        assert torch.allclose(amplification(name, z), trapezoid, atol=1e-12)
    assert torch.allclose(amplification("theta", z, theta=0.0), 1 + z, atol=1e-12)
    assert torch.allclose(theta_amplification(0.3, z), (1 + 0.7 * z) / (1 - 0.3 * z))
    assert set(THETA_SCHEMES) >= {"backward_euler", "trapezoid", "implicit_midpoint"}


def test_theta_formula_matches_implicit_butcher_tableaus():
    z = random_z(20)
    backward = _rk_amplification([[1.0]], [1.0], z)
    midpoint = _rk_amplification([[0.5]], [1.0], z)
    lobatto = _rk_amplification([[0.0, 0.0], [0.5, 0.5]], [0.5, 0.5], z)  # trapezoidal rule
    assert torch.allclose(backward, amplification("backward_euler", z), atol=1e-12)
    assert torch.allclose(midpoint, amplification("implicit_midpoint", z), atol=1e-12)
    assert torch.allclose(lobatto, amplification("trapezoid", z), atol=1e-12)


@pytest.mark.parametrize("scheme", ["backward_euler", "trapezoid", "implicit_midpoint"])
def test_a_stable_schemes(scheme):
    axis = 1j * torch.linspace(-50, 50, 1001, dtype=torch.float64)
    assert amplification(scheme, axis).abs().max() <= 1 + 1e-12
    z = random_z(200, scale=10.0)
    left = torch.complex(-z.real.abs(), z.imag)
    assert amplification(scheme, left).abs().max() <= 1 + 1e-12


def test_explicit_and_weakly_implicit_schemes_are_not_a_stable():
    assert amplification("rk4", -10.0).abs() > 1
    assert amplification("theta", -10.0, theta=0.25).abs() > 1  # theta < 1/2


def test_real_stability_intervals():
    def stable(scheme, x):
        return amplification(scheme, x).abs().item() <= 1.0

    eps = 1e-3
    for scheme in ("euler", "midpoint", "heun", "ralston"):
        assert stable(scheme, -2 + eps) and not stable(scheme, -2 - eps)
        assert stable(scheme, -eps) and not stable(scheme, eps)
    for scheme in ("rk4", "rk4_38"):
        assert stable(scheme, -RK4_BOUND + eps) and not stable(scheme, -RK4_BOUND - eps)
        assert stable(scheme, -1.0) and not stable(scheme, eps)
        assert math.isclose(amplification(scheme, -RK4_BOUND).abs().item(), 1.0, abs_tol=1e-12)


def test_stability_region_grid():
    real, imag, magnitude = stability_region("euler", re=(-3, 1), im=(-2, 2), resolution=41)
    assert real.shape == imag.shape == magnitude.shape == (41, 41)
    assert real.dtype == magnitude.dtype == torch.float64
    assert real[0, 0] == -3 and real[0, -1] == 1 and imag[0, 0] == -2 and imag[-1, 0] == 2
    assert torch.all(real[:, 3] == real[0, 3]) and torch.all(imag[3, :] == imag[3, 0])
    expected = torch.complex(real, imag).add(1).abs()
    assert torch.allclose(magnitude, expected, atol=1e-14)
    real, imag, magnitude = stability_region("theta", resolution=7, theta=0.7)
    assert magnitude.shape == (7, 7)


def test_plot_saves_a_png(tmp_path):
    path = tmp_path / "regions.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figure = plot_stability_regions(
            [*SCHEMES, "backward_euler", "theta"], path=path, resolution=81, theta=0.75
        )
    assert isinstance(figure, Figure)
    assert path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (axes,) = figure.axes
    assert axes.get_xlabel() and axes.get_ylabel()
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    assert labels == [*SCHEMES, "backward_euler", "theta=0.75"]
    assert plot_stability_regions("rk4", resolution=21).axes[0].get_legend() is not None


def make_linear_block(scheme, t=(0.0, 0.3, 0.7, 1.5)):
    block = DynamicBlock(nn.Linear(2, 2, bias=False), list(t), scheme=scheme).double()
    block.reset_parameters()  # a different W per step
    return block


def sorted_complex(values):
    return np.sort_complex(np.asarray(values, dtype=np.complex128))


@pytest.mark.parametrize("step", [0, 2])
def test_linear_field_euler_spectrum_is_eig_of_i_plus_h_w(step):
    block = make_linear_block("euler")
    x = torch.randn(3, 2, dtype=torch.float64)
    spectrum = step_jacobian_spectrum(block, x, step=step)
    assert spectrum.shape == (3, 2) and spectrum.dtype == torch.complex128
    h = block.t[step + 1] - block.t[step]
    w = block.layers[step].weight.detach()
    expected = sorted_complex(torch.linalg.eigvals(torch.eye(2, dtype=torch.float64) + h * w))
    for row in spectrum:
        np.testing.assert_allclose(sorted_complex(row), expected, atol=1e-12)


def test_linear_field_rk4_spectrum_is_eig_of_r_of_h_w():
    block = make_linear_block("rk4")
    x = torch.randn(4, 2, dtype=torch.float64)
    step = 1
    spectrum = step_jacobian_spectrum(block, x, step=step)
    hw = (block.t[step + 1] - block.t[step]) * block.layers[step].weight.detach()
    eye = torch.eye(2, dtype=torch.float64)
    r_hw = eye + hw + hw @ hw / 2 + hw @ hw @ hw / 6 + hw @ hw @ hw @ hw / 24
    expected = sorted_complex(torch.linalg.eigvals(r_hw))
    for row in spectrum:
        np.testing.assert_allclose(sorted_complex(row), expected, atol=1e-12)
    # and the eigenvalues are R(h mu) for the eigenvalues mu of W
    mus = torch.linalg.eigvals(hw)
    np.testing.assert_allclose(sorted_complex(amplification("rk4", mus)), expected, atol=1e-12)
    radius = spectral_radius(spectrum)
    assert radius.shape == (4,)
    assert torch.allclose(radius, spectrum.abs().amax(-1))


def test_nonlinear_block_along_trajectory_and_loop_agree():
    block = DynamicBlock(MLP(3, hidden=8, act="tanh"), [0.0, 0.5, 1.0, 1.2], scheme="heun")
    x = torch.randn(5, 3)
    vmapped = step_jacobian_spectrum(block, x, step=2)
    looped = step_jacobian_spectrum(block, x, step=2, vectorize=False)
    assert torch.allclose(vmapped, looped, atol=1e-10)
    # along the trajectory == at the state x_2 passed directly
    with torch.no_grad():
        x2 = block.double()(x.double(), return_trajectory=True)[2]
    direct = step_jacobian_spectrum(block, x2, step=2, along_trajectory=False)
    assert torch.allclose(vmapped, direct, atol=1e-10)
    # sorted by decreasing modulus
    assert torch.all(vmapped.abs()[:, :-1] >= vmapped.abs()[:, 1:])


def test_batchnorm_block_in_train_mode_is_left_unchanged():
    block = DynamicBlock(MLP(3, hidden=6, norm="batch"), [0.0, 0.5, 1.0])
    block(torch.randn(16, 3))  # give the running statistics some values
    block.train()
    before = {k: v.clone() for k, v in block.state_dict().items()}
    spectrum = step_jacobian_spectrum(block, torch.randn(4, 3), step=1, dtype=None)
    assert spectrum.shape == (4, 3) and spectrum.dtype == torch.complex64
    assert not spectrum.requires_grad
    assert block.training and all(m.training for m in block.modules())
    assert all(torch.equal(before[k], v) for k, v in block.state_dict().items())
    assert all(p.grad is None for p in block.parameters())
    assert next(block.parameters()).dtype == torch.float32
    # per sample: one sample's spectrum does not depend on the others
    x = torch.randn(3, 3)
    alone = step_jacobian_spectrum(block.eval(), x[:1])
    assert torch.allclose(step_jacobian_spectrum(block, x)[:1], alone, atol=1e-12)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown scheme 'rk5'"):
        amplification("rk5", 1.0)
    with pytest.raises(TypeError, match="scheme must be"):
        amplification(4, 1.0)
    with pytest.raises(TypeError, match="z must be"):
        amplification("euler", "one")
    with pytest.raises(ValueError, match="needs a theta"):
        amplification("theta", 1.0)
    with pytest.raises(ValueError, match=r"theta must be a real number in \[0, 1\]"):
        amplification("theta", 1.0, theta=1.5)
    with pytest.raises(ValueError, match="theta is only used"):
        amplification("rk4", 1.0, theta=0.5)
    with pytest.raises(ValueError, match="theta must be"):
        theta_amplification(-0.1, 1.0)
    for resolution in (0, -3, 1, 2.5, True):
        with pytest.raises(ValueError, match="resolution must be"):
            stability_region("euler", resolution=resolution)
    for bad in ((1, -5), (0, 0), (0, math.nan), (0, math.inf), (0,), "ab", None, (0, 1, 2)):
        with pytest.raises(ValueError, match="re must be a pair"):
            stability_region("euler", re=bad)
    with pytest.raises(ValueError, match="im must be a pair"):
        stability_region("euler", im=(2, -2))
    with pytest.raises(ValueError, match="at least one scheme"):
        plot_stability_regions([])
    with pytest.raises(ValueError, match="theta is only used"):
        plot_stability_regions(["rk4"], theta=0.5)
    block = make_linear_block("euler")
    x = torch.randn(2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"step must be an int in \[0, 3\)"):
        step_jacobian_spectrum(block, x, step=3)
    with pytest.raises(ValueError, match="step must be"):
        step_jacobian_spectrum(block, x, step=-1)
    with pytest.raises(ValueError, match=r"x must have shape \(N, \*\)"):
        step_jacobian_spectrum(block, torch.randn(2))
    with pytest.raises(ValueError, match=r"x must have shape \(N, \*\)"):
        step_jacobian_spectrum(block, torch.randn(0, 2))
    with pytest.raises(ValueError, match="max_dim"):
        step_jacobian_spectrum(block, x, max_dim=1)
    with pytest.raises(TypeError, match="block must be a DynamicBlock"):
        step_jacobian_spectrum(nn.Linear(2, 2), x)
    with pytest.raises(TypeError, match="x must be a tensor"):
        step_jacobian_spectrum(block, [[1.0, 2.0]])
    with pytest.raises(ValueError, match="dtype must be"):
        step_jacobian_spectrum(block, x, dtype=torch.int64)
    with pytest.raises(ValueError, match="eigenvalues must have shape"):
        spectral_radius(torch.zeros(2, 0))
    with pytest.raises(TypeError, match="eigenvalues must be a tensor"):
        spectral_radius([1.0])


def test_image_state_with_batchnorm_and_linear_controls():
    layer = DoubleSymLayer(2, norm="batch")
    block = DynamicBlock(layer, [0.0, 0.5, 1.0], "rk4", t_theta=[0.0, 1.0], interpolation="linear")
    block(torch.randn(8, 2, 3, 3))
    x = torch.randn(2, 2, 3, 3)
    spectrum = step_jacobian_spectrum(block, x, step=1)
    assert spectrum.shape == (2, 18)
    looped = step_jacobian_spectrum(block, x, step=1, vectorize=False)
    assert torch.allclose(spectrum, looped, atol=1e-10)
