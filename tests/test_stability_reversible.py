"""Linear stability of the reversible two-state methods: reversible Heun and ALF."""

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

import dynamicblocks as db
from dynamicblocks.stability import (
    REVERSIBLE_SCHEMES,
    _reversible_matrices,
    amplification,
    plot_stability_regions,
    reversible_amplification,
    stability_region,
)

SCHEMES = ["reversible_heun", "alf"]


class Linear(nn.Module):
    """A fixed linear field f(x) = x A^T (A a buffer: no parameters)."""

    def __init__(self, matrix) -> None:
        super().__init__()
        self.register_buffer("matrix", torch.as_tensor(matrix, dtype=torch.float64))

    def forward(self, x):
        return x @ self.matrix.T


def typed_matrix(scheme: str, w: complex) -> np.ndarray:
    """The step matrix on y' = lambda y, w = h lambda, worked out by hand from the method."""
    if scheme == "reversible_heun":  # on (y, z)
        return np.array([[1 + w, w * w / 2], [2, w - 1]], dtype=np.complex128)
    return np.array([[1 + w, w / 2], [2 * w, w - 1]], dtype=np.complex128)  # on (z, h v)


def closed_form_roots(w: complex) -> np.ndarray:
    """The roots w +- sqrt(w^2 + 1) of mu^2 - 2 w mu - 1."""
    root = np.sqrt(np.complex128(w) ** 2 + 1)
    return np.array([w + root, w - root])


def random_z(count: int = 60, scale: float = 1.5, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    values = scale * (rng.standard_normal(count) + 1j * rng.standard_normal(count))
    return torch.from_numpy(values)


# --- the stability function against the closed form ----------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_largest_eigenvalue_modulus_matches_the_closed_form(scheme):
    z = random_z(seed=len(scheme))
    got = reversible_amplification(scheme, z)
    assert got.dtype == torch.float64 and got.shape == z.shape
    expected = torch.tensor([np.abs(closed_form_roots(complex(w))).max() for w in z])
    assert torch.allclose(got, expected, rtol=1e-12, atol=1e-12)
    # and the eigenvalues of the typed-in matrix
    typed = torch.tensor(
        [np.abs(np.linalg.eigvals(typed_matrix(scheme, complex(w)))).max() for w in z]
    )
    assert torch.allclose(got, typed, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_amplification_returns_a_dominant_root_of_the_leapfrog_polynomial(scheme):
    z = random_z(30, seed=3)
    root = amplification(scheme.upper(), z)
    assert root.dtype == torch.complex128 and root.shape == z.shape
    assert torch.allclose(root.abs(), reversible_amplification(scheme, z), rtol=1e-14, atol=0)
    residual = root**2 - 2 * z * root - 1
    assert residual.abs().max() < 1e-12 * (1 + z.abs().max() ** 2)
    # on the real axis the dominant root is w + sign(w) sqrt(w^2 + 1)
    real = torch.tensor([-2.0, -0.3, 0.1, 1.5], dtype=torch.float64)
    expected = real + torch.sign(real) * torch.sqrt(real**2 + 1)
    assert torch.allclose(amplification(scheme, real).real, expected, rtol=1e-13, atol=0)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_modulus_one_exactly_on_the_open_segment_of_the_imaginary_axis(scheme):
    y = torch.linspace(-0.999, 0.999, 401, dtype=torch.float64)
    inside = reversible_amplification(scheme, torch.complex(torch.zeros_like(y), y))
    assert (inside - 1).abs().max() < 1e-12
    y = torch.cat([torch.linspace(1.001, 5.0, 50), -torch.linspace(1.001, 5.0, 50)]).double()
    outside = reversible_amplification(scheme, torch.complex(torch.zeros_like(y), y))
    assert (outside > 1 + 1e-3).all()
    expected = y.abs() + torch.sqrt(y**2 - 1)  # |i (y +- sqrt(y^2 - 1))|
    assert torch.allclose(outside, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_region_is_not_a_neighbourhood_of_any_point(scheme):
    points = [-0.01, 0.01, 0.01 + 0.5j, -1e-3 + 0.5j, -1e-3 - 0.9j, -0.5 + 0.2j, -2.0]
    assert (reversible_amplification(scheme, points) > 1 + 1e-5).all()
    # just off the segment, on both sides: growth 1 + |x| / sqrt(1 - y^2) + O(x^2)
    y = torch.linspace(-0.9, 0.9, 37, dtype=torch.float64)
    for x in (-1e-6, 1e-6):
        growth = reversible_amplification(scheme, torch.complex(torch.full_like(y, x), y))
        assert (growth > 1 + 0.9e-6).all()
        assert torch.allclose(growth - 1, abs(x) / torch.sqrt(1 - y**2), rtol=1e-4, atol=0)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_principal_root_is_second_order_and_the_parasitic_root_grows(scheme):
    for w in (2e-2, 1e-2):  # w > 0: the principal root w + sqrt(w^2 + 1) dominates
        principal = amplification(scheme, w).real.item()
        # w + sqrt(w^2 + 1) = exp(w) - w^3 / 6 + O(w^4)
        assert (math.exp(w) - principal) / w**3 == pytest.approx(1 / 6, rel=0.05)
    for w in (-2e-2, -1e-2):  # w < 0: the parasitic root w - sqrt(w^2 + 1) < -1 dominates
        parasitic = amplification(scheme, w)
        assert parasitic.real.item() == pytest.approx(w - math.sqrt(w * w + 1), abs=1e-15)
        assert parasitic.real.item() < -1 and reversible_amplification(scheme, w).item() > 1


def test_shapes_and_inputs():
    assert reversible_amplification("alf", 0.5j).shape == ()
    assert reversible_amplification("reversible_heun", 0.0).item() == pytest.approx(1.0, abs=1e-15)
    grid = torch.zeros(2, 3, 4, dtype=torch.complex64)
    assert reversible_amplification("ALF", grid).shape == (2, 3, 4)
    assert reversible_amplification("Reversible_Heun", [[-0.5, 0.1j]]).shape == (1, 2)
    assert reversible_amplification("alf", torch.zeros(0)).shape == (0,)
    assert amplification("alf", torch.zeros(0)).shape == (0,)
    values = reversible_amplification("reversible_heun", [0.2j, math.nan, math.inf, 1e200])
    assert values[0].item() == pytest.approx(1.0, abs=1e-12) and values[1:].isnan().all()
    assert amplification("alf", [math.nan]).isnan().all()
    assert REVERSIBLE_SCHEMES == ("reversible_heun", "alf")


# --- the stability function against the blocks ----------------------------------------


def one_step(scheme: str, lam: float, h: float, first: torch.Tensor, second: torch.Tensor):
    """One step of the block on f = lam x from the states (first, second), as (first, second).

    The ALF state is (z, V = h v), so v = V / h goes in and h v' comes out.
    """
    field = Linear([[lam]])
    if scheme == "reversible_heun":
        block = db.ReversibleHeunBlock(field, t=[0.0, h], t_theta=[0.0], memory="full")
        return block(first, second, return_pair=True)
    block = db.ALFBlock(field, t=[0.0, h], t_theta=[0.0], memory="full")
    z, v = block(first, second / h, return_pair=True)
    return z, h * v


@pytest.mark.parametrize("scheme", SCHEMES)
def test_step_matrices_are_the_blocks_steps(scheme):
    h = 0.25
    basis = torch.eye(2, dtype=torch.float64)  # sample j starts at the j-th unit state
    for lam in (-3.0, -0.4, 0.0, 0.8, 2.5):
        w = h * lam
        first, second = one_step(scheme, lam, h, basis[:, :1], basis[:, 1:])
        block_matrix = torch.cat([first, second], dim=1).T  # column j: the image of state j
        expected = torch.from_numpy(typed_matrix(scheme, w).real)
        assert torch.allclose(block_matrix, expected, rtol=0, atol=1e-14)
        ours = _reversible_matrices(scheme, torch.tensor(w, dtype=torch.complex128))
        assert torch.allclose(ours, expected.to(torch.complex128), rtol=0, atol=1e-15)
        spectral = torch.linalg.eigvals(block_matrix).abs().max()
        assert reversible_amplification(scheme, w).item() == pytest.approx(
            spectral.item(), rel=1e-12
        )


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_dissipative_field_grows_in_the_parasitic_mode(scheme):
    # y' = -y decays to exp(-40); both methods grow by |w - sqrt(w^2 + 1)| per step instead
    h, steps = 0.1, 400
    t = [h * k for k in range(steps + 1)]
    field = Linear([[-1.0]])
    x = torch.ones(1, 1, dtype=torch.float64)
    if scheme == "reversible_heun":
        block = db.ReversibleHeunBlock(field, t=t, t_theta=[0.0], memory="full")
        path = block(x, x + 1e-3, return_trajectory=True).reshape(-1)
    else:
        block = db.ALFBlock(field, t=t, t_theta=[0.0], memory="full")
        path = block(x, -x + 1e-3, return_trajectory=True).reshape(-1)
    growth = reversible_amplification(scheme, -h).item()
    assert growth == pytest.approx(h + math.sqrt(h * h + 1), rel=1e-14)
    assert path[-1].abs() > 1e10
    ratios = path[-20:] / path[-21:-1]
    assert torch.allclose(ratios, torch.full_like(ratios, -growth), rtol=1e-10, atol=0)


def rotation_trajectory(scheme: str, omega: float, h: float, steps: int) -> torch.Tensor:
    """|first state| by step on x' = A x, A = [[0, omega], [-omega, 0]], eigenvalues +-i omega."""
    field = Linear([[0.0, omega], [-omega, 0.0]])
    t = [h * k for k in range(steps + 1)]
    x = torch.tensor([[1.0, 0.3]], dtype=torch.float64)
    cls = db.ReversibleHeunBlock if scheme == "reversible_heun" else db.ALFBlock
    block = cls(field, t=t, t_theta=[0.0], memory="full")
    return block(x, return_trajectory=True).reshape(steps + 1, 2).norm(dim=1)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_an_antisymmetric_field_is_stable_inside_the_segment_and_grows_outside(scheme):
    h = 0.1
    # h omega = 0.5: |mu| = 1, the state stays bounded over 2000 steps (no drift)
    norms = rotation_trajectory(scheme, 5.0, h, 2000)
    assert reversible_amplification(scheme, [0.5j, -0.5j]).sub(1).abs().max() < 1e-12
    assert norms.max() < 2 * norms[0] and norms.min() > 0.5 * norms[0]
    assert norms[1000:].max() < 1.01 * norms[:1000].max()
    # h omega = 1.5: both modes grow by 1.5 + sqrt(1.25) per step, as the block does
    steps = 40
    norms = rotation_trajectory(scheme, 15.0, h, steps)
    predicted = reversible_amplification(scheme, [1.5j, -1.5j])
    assert torch.allclose(predicted, torch.full((2,), 1.5 + math.sqrt(1.25), dtype=torch.float64))
    ratios = norms[-10:] / norms[-11:-1]
    assert torch.allclose(ratios, predicted[0].expand(10), rtol=1e-10, atol=0)


# --- regions and plots ----------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_stability_region_is_the_segment(scheme):
    real, imag, magnitude = stability_region(scheme, re=(-1, 1), im=(-2, 2), resolution=41)
    assert torch.equal(magnitude, reversible_amplification(scheme, torch.complex(real, imag)))
    axis = real[0].abs() < 1e-15  # the column Re z = 0
    assert axis.sum() == 1
    column = magnitude[:, axis].reshape(-1)
    segment = imag[:, axis].reshape(-1).abs() < 1
    assert (column[segment] - 1).abs().max() < 1e-12
    assert (column[~segment & (imag[:, axis].reshape(-1).abs() > 1)] > 1).all()
    assert (magnitude[:, ~axis] > 1 + 1e-3).all()


def test_plot_draws_the_segment_next_to_a_region(tmp_path):
    path = tmp_path / "regions.png"
    figure = plot_stability_regions(["rk4", "reversible_heun", "ALF"], path=path, resolution=80)
    assert isinstance(figure, Figure)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    axes = figure.axes[0]
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    assert labels == ["rk4", "reversible_heun", "alf"]
    segments = [
        line
        for line in axes.get_lines()
        if list(line.get_xdata()) == [0.0, 0.0] and list(line.get_ydata()) == [-1.0, 1.0]
    ]
    # per reversible scheme, in its colour: the segment and its open ends
    assert sorted(line.get_color() for line in segments) == ["C1", "C1", "C2", "C2"]
    assert len(axes.collections) >= 2  # rk4's filled region and its outline


# --- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, words",
    [
        (
            lambda: reversible_amplification("rk4", 0.1),
            ["scheme", "'rk4'", "reversible_heun", "alf"],
        ),
        (lambda: reversible_amplification("leapfrog", 0.1), ["scheme", "'leapfrog'", "alf"]),
        (lambda: reversible_amplification(3, 0.1), ["scheme", "3", "reversible_heun"]),
        (
            lambda: amplification("heun_reversible", 0.1),
            ["'heun_reversible'", "reversible_heun", "alf", "rk4"],
        ),
        (lambda: amplification("alf", 0.1, theta=0.5), ["theta", "'alf'"]),
        (lambda: stability_region("alf", resolution=1), ["resolution"]),
        (lambda: plot_stability_regions(["reversible_heun"], re=(1, 0)), ["re", "(1, 0)"]),
    ],
)
def test_bad_arguments_raise_value_errors_naming_them(call, words):
    with pytest.raises(ValueError) as info:
        call()
    for word in words:
        assert word in str(info.value)


def test_non_numeric_z_raises_a_type_error_naming_it():
    with pytest.raises(TypeError, match="z must"):
        reversible_amplification("alf", "0.5j")
    with pytest.raises(TypeError, match="z must"):
        amplification("reversible_heun", None)
