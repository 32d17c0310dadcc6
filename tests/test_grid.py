"""Tests for dynamicblocks.grid: validation and construction of time grids."""

from __future__ import annotations

import re
from fractions import Fraction

import numpy as np
import pytest
import torch

from dynamicblocks import as_grid, refine_grid, step_sizes, uniform_grid

# --------------------------------------------------------------------------- as_grid: accepted


@pytest.mark.parametrize(
    "values",
    [
        [0, 1, 2, 3],
        (0, 1, 2, 3),
        np.array([0.0, 1.0, 2.0, 3.0]),
        np.arange(4),
        torch.tensor([0.0, 1.0, 2.0, 3.0]),
        torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64),
        torch.arange(4),
        range(4),
    ],
    ids=["list", "tuple", "ndarray", "int-ndarray", "tensor32", "tensor64", "int-tensor", "range"],
)
def test_as_grid_accepts_sequences_and_returns_tuple_of_python_floats(values):
    grid = as_grid(values)
    assert isinstance(grid, tuple)
    assert grid == (0.0, 1.0, 2.0, 3.0)
    assert all(type(v) is float for v in grid)


def test_as_grid_non_uniform_spacing_is_kept_exactly():
    values = [-1.5, -0.25, 0.0, 0.1, 3.75, 100.0]
    grid = as_grid(values)
    assert grid == tuple(values)
    assert all(type(v) is float for v in grid)


def test_as_grid_tensor_requiring_grad_and_float64_values_exact():
    values = [0.0, 0.1, 0.30000000000000004, 1.0 / 3.0]
    tensor = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    assert as_grid(tensor) == tuple(values)


def test_as_grid_two_points_is_enough():
    assert as_grid([2, 5]) == (2.0, 5.0)


def test_as_grid_min_points_one_accepts_single_point():
    assert as_grid([0.5], name="t_theta", min_points=1) == (0.5,)


# --------------------------------------------------------------------------- as_grid: rejected


@pytest.mark.parametrize("values", [[], [1.0], (), np.array([3.0]), torch.tensor([0.0])])
def test_as_grid_too_few_points(values):
    with pytest.raises(ValueError, match=r"^grid_x must have at least 2 points, got [01]"):
        as_grid(values, name="grid_x")


def test_as_grid_min_points_one_rejects_empty():
    with pytest.raises(ValueError, match=r"t_theta must have at least 1 point, got 0"):
        as_grid([], name="t_theta", min_points=1)


@pytest.mark.parametrize(
    "values",
    [np.zeros((2, 3)), torch.zeros(2, 3), [[0.0, 1.0], [2.0, 3.0]]],
    ids=["ndarray", "tensor", "nested-list"],
)
def test_as_grid_rejects_2d(values):
    with pytest.raises(ValueError, match=r"^my_t must be 1-D, got an array of shape \(2, "):
        as_grid(values, name="my_t")


def test_as_grid_rejects_0d_tensor():
    with pytest.raises(ValueError, match=r"t must be 1-D, got an array of shape \(\)"):
        as_grid(torch.tensor(1.0))


@pytest.mark.parametrize(
    "values, index, shown",
    [
        ([0.0, 1.0, float("nan"), 3.0], 2, "nan"),
        ([float("nan"), 1.0], 0, "nan"),
        ([0.0, float("inf")], 1, "inf"),
        ([float("-inf"), 0.0, 1.0], 0, "-inf"),
        (np.array([0.0, 1.0, 2.0, np.inf]), 3, "inf"),
        (torch.tensor([0.0, float("nan"), float("inf")]), 1, "nan"),
    ],
)
def test_as_grid_rejects_non_finite_and_gives_index(values, index, shown):
    pattern = rf"^s must be finite, got {re.escape(shown)} at index {index}$"
    with pytest.raises(ValueError, match=pattern):
        as_grid(values, name="s")


def test_as_grid_rejects_equal_neighbours_with_index():
    with pytest.raises(ValueError, match=re.escape("t[3] = 2.0 <= t[2] = 2.0")) as info:
        as_grid([0.0, 1.0, 2.0, 2.0, 5.0])
    assert "strictly increasing" in str(info.value)


def test_as_grid_rejects_decreasing_neighbours_with_index_and_name():
    with pytest.raises(
        ValueError,
        match=r"^tt must be strictly increasing, but tt\[1\] = 0\.5 <= tt\[0\] = 1\.0$",
    ):
        as_grid([1.0, 0.5, 2.0], name="tt")


def test_as_grid_reports_first_offending_index():
    # both index 2 and index 4 are bad; the first one is reported
    with pytest.raises(ValueError, match=re.escape("t[2] = 0.0 <= t[1] = 1.0")):
        as_grid([0.0, 1.0, 0.0, 3.0, 1.0])


def test_as_grid_rejects_decreasing_tensor():
    with pytest.raises(ValueError, match=re.escape("t[2] = 1.0 <= t[1] = 2.0")):
        as_grid(torch.tensor([0.0, 2.0, 1.0]))


@pytest.mark.parametrize(
    "values",
    [["a", "b"], [0.0, "x"], [object(), object()], {"a": 1}],
    ids=["strings", "mixed", "objects", "dict"],
)
def test_as_grid_rejects_non_numeric_with_type_error(values):
    with pytest.raises(TypeError, match=r"^times must be a 1-D sequence of real numbers"):
        as_grid(values, name="times")


# --------------------------------------------------------------------------- uniform_grid


def test_uniform_grid_points():
    grid = uniform_grid(0.0, 1.0, 4)
    assert grid == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert all(type(v) is float for v in grid)


def test_uniform_grid_endpoints_exact_and_count():
    start, stop, steps = 0.1, 0.7, 7
    grid = uniform_grid(start, stop, steps)
    assert len(grid) == steps + 1
    assert grid[0] == start
    assert grid[-1] == stop
    expected = [
        float(Fraction(start) + k * (Fraction(stop) - Fraction(start)) / steps)
        for k in range(steps + 1)
    ]
    np.testing.assert_allclose(grid, expected, rtol=0, atol=1e-15)
    assert all(b > a for a, b in zip(grid, grid[1:]))


def test_uniform_grid_single_step_and_integer_arguments():
    assert uniform_grid(-2, 3, 1) == (-2.0, 3.0)
    assert uniform_grid(0, 4, 4) == (0.0, 1.0, 2.0, 3.0, 4.0)


@pytest.mark.parametrize("steps", [0, -1, 2.0, 1.5, True, "3", None])
def test_uniform_grid_bad_steps(steps):
    pattern = rf"steps must be a positive int, got {re.escape(repr(steps))}"
    with pytest.raises(ValueError, match=pattern):
        uniform_grid(0.0, 1.0, steps)


@pytest.mark.parametrize(
    "start, stop",
    [(1.0, 1.0), (1.0, 0.0), (0.0, float("inf")), (float("nan"), 1.0), (float("-inf"), 0.0)],
)
def test_uniform_grid_bad_start_stop(start, stop):
    pattern = re.escape(f"need finite start < stop, got start={start!r}, stop={stop!r}")
    with pytest.raises(ValueError, match=pattern):
        uniform_grid(start, stop, 3)


# --------------------------------------------------------------------------- refine_grid


def test_refine_grid_halves_and_keeps_points_exactly():
    t = [0.0, 0.1, 0.35, 1.0, 2.7]
    refined = refine_grid(t)
    assert len(refined) == 2 * (len(t) - 1) + 1
    assert refined[::2] == tuple(t)
    expected_mid = [(a + b) / 2 for a, b in zip(t, t[1:])]
    np.testing.assert_allclose(refined[1::2], expected_mid, rtol=0, atol=1e-15)
    assert all(type(v) is float for v in refined)


def test_refine_grid_uniform_exact_values():
    assert refine_grid([0, 1, 2]) == (0.0, 0.5, 1.0, 1.5, 2.0)
    assert refine_grid(torch.tensor([0.0, 4.0]), factor=4) == (0.0, 1.0, 2.0, 3.0, 4.0)


def test_refine_grid_factor_three():
    t = (0.0, 3.0, 4.5)
    refined = refine_grid(t, factor=3)
    assert len(refined) == 3 * (len(t) - 1) + 1
    assert refined[::3] == t
    np.testing.assert_allclose(refined, [0.0, 1.0, 2.0, 3.0, 3.5, 4.0, 4.5], rtol=0, atol=1e-15)


def test_refine_grid_factor_one_is_identity():
    t = (0.0, 0.3, 1.7)
    assert refine_grid(t, factor=1) == t


@pytest.mark.parametrize("factor", [0, -2, 2.0, True, "2", None])
def test_refine_grid_bad_factor(factor):
    pattern = rf"factor must be a positive int, got {re.escape(repr(factor))}"
    with pytest.raises(ValueError, match=pattern):
        refine_grid([0.0, 1.0], factor=factor)


def test_refine_grid_validates_input_grid():
    with pytest.raises(ValueError, match=re.escape("t[1] = 0.0 <= t[0] = 1.0")):
        refine_grid([1.0, 0.0])


# --------------------------------------------------------------------------- step_sizes


def test_step_sizes_values():
    assert step_sizes([0, 1, 3, 7]) == (1.0, 2.0, 4.0)
    sizes = step_sizes(np.array([0.0, 0.1, 0.35, 1.0]))
    assert all(type(h) is float for h in sizes)
    np.testing.assert_allclose(sizes, [0.1, 0.25, 0.65], rtol=0, atol=1e-15)


def test_step_sizes_sum_to_span_and_count():
    t = uniform_grid(-1.0, 2.0, 6)
    sizes = step_sizes(t)
    assert len(sizes) == len(t) - 1
    assert sum(sizes) == pytest.approx(3.0, abs=1e-14)
    np.testing.assert_allclose(sizes, [0.5] * 6, rtol=0, atol=1e-15)


def test_step_sizes_validates():
    with pytest.raises(ValueError, match="at least 2 points"):
        step_sizes([1.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        step_sizes([0.0, 1.0, 1.0])
