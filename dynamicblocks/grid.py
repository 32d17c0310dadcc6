"""Time grids: validated, strictly increasing sequences of floats.

A grid is any strictly increasing sequence of at least two finite numbers
(list, tuple, NumPy array or 1-D tensor). Spacing may be arbitrary. Grids are
validated once, at the edge, and stored as tuples of Python floats so that the
integration loop never touches a tensor to find a time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ._validate import positive_int

GridLike = Sequence[float] | np.ndarray | torch.Tensor

__all__ = ["GridLike", "as_grid", "uniform_grid", "refine_grid", "step_sizes"]


def as_grid(values: GridLike, name: str = "t", min_points: int = 2) -> tuple[float, ...]:
    """Validate ``values`` as a time grid and return it as a tuple of floats.

    Args:
        values: a strictly increasing 1-D sequence of finite numbers.
        name: the argument name used in error messages.
        min_points: the fewest points accepted (2 for a state grid, 1 for
            control times).

    Raises:
        ValueError: if ``values`` is not 1-D, has fewer than ``min_points``
            points, holds NaN or infinity, or is not strictly increasing (the
            message names the first offending index).
        TypeError: if ``values`` is not a sequence of real numbers.
    """
    if isinstance(values, torch.Tensor):
        array = values.detach().cpu().double().numpy()
    elif isinstance(values, (str, bytes)) or values is None:
        raise TypeError(f"{name} must be a 1-D sequence of real numbers, got {values!r}")
    else:
        try:
            array = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"{name} must be a 1-D sequence of real numbers, got {values!r}"
            ) from error
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got an array of shape {tuple(array.shape)}")
    if array.size < min_points:
        raise ValueError(
            f"{name} must have at least {min_points} point{'s' * (min_points > 1)}, "
            f"got {array.size}: {array.tolist()}"
        )
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        index = int(bad[0])
        raise ValueError(f"{name} must be finite, got {array[index]} at index {index}")
    steps = np.diff(array)
    bad = np.flatnonzero(steps <= 0)
    if bad.size:
        index = int(bad[0]) + 1
        raise ValueError(
            f"{name} must be strictly increasing, but {name}[{index}] = {array[index]} "
            f"<= {name}[{index - 1}] = {array[index - 1]}"
        )
    return tuple(float(v) for v in array)


def uniform_grid(start: float, stop: float, steps: int) -> tuple[float, ...]:
    """Return ``steps + 1`` equally spaced points from ``start`` to ``stop``.

    Raises:
        ValueError: if ``steps`` is not a positive integer or ``stop <= start``.
    """
    steps = positive_int("steps", steps)
    if not (math.isfinite(start) and math.isfinite(stop)) or stop <= start:
        raise ValueError(f"need finite start < stop, got start={start!r}, stop={stop!r}")
    h = (stop - start) / steps
    return as_grid([start + k * h for k in range(steps)] + [float(stop)])


def refine_grid(t: GridLike, factor: int = 2) -> tuple[float, ...]:
    """Split every step of ``t`` into ``factor`` equal sub-steps (default: halve).

    The points of ``t`` are kept exactly; the new grid has
    ``factor * (len(t) - 1) + 1`` points.
    """
    factor = positive_int("factor", factor)
    grid = as_grid(t)
    refined = [grid[0]]
    for left, right in zip(grid, grid[1:]):
        h = (right - left) / factor
        refined.extend(left + j * h for j in range(1, factor))
        refined.append(right)
    return as_grid(refined)


def step_sizes(t: GridLike) -> tuple[float, ...]:
    """Return the step sizes ``h_k = t[k+1] - t[k]`` of a grid."""
    grid = as_grid(t)
    return tuple(right - left for left, right in zip(grid, grid[1:]))
