"""Argument checks shared by the public constructors."""

from __future__ import annotations

import numbers


def positive_int(name: str, value: object) -> int:
    """Return ``value`` as an int if it is a positive integer (not a bool), else raise.

    Raises:
        ValueError: naming ``name`` and the value.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def int_in_range(name: str, value: object, low: int, high: int | None = None) -> int:
    """Return ``value`` as an int if it is an int (not a bool) in ``[low, high)``, else raise.

    Raises:
        ValueError: naming ``name``, the bounds and the value.
    """
    is_int = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not is_int or value < low or (high is not None and value >= high):
        bounds = f"in [{low}, {high})" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an int {bounds}, got {value!r}")
    return int(value)


def odd_kernel(kernel_size: object) -> int:
    """Return ``kernel_size`` if it is a positive odd int (so padding keeps the size)."""
    kernel_size = positive_int("kernel_size", kernel_size)
    if kernel_size % 2 == 0:
        raise ValueError(
            f"kernel_size must be odd so that padding keeps the spatial size, got {kernel_size}"
        )
    return kernel_size
