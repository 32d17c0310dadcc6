"""Argument checks shared by the public constructors."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
from torch import nn


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


def real_number(
    name: str,
    value: object,
    expected: str,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    open_low: bool = False,
    open_high: bool = False,
) -> float:
    """Return ``value`` as a float if it is a real number (not a bool) in the range, else raise.

    The range is ``[low, high]``, each end open where asked (``nan`` is never in it).

    Raises:
        ValueError: ``"{name} must be {expected}, got {value!r}"``, e.g. ``expected``
            ``"a number in [0, 1]"`` or ``"a positive number"``.
    """
    is_real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    number = float(value) if is_real else math.nan
    above = number > low if open_low else number >= low
    below = number < high if open_high else number <= high
    if not (above and below):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return number


def odd_kernel(kernel_size: object) -> int:
    """Return ``kernel_size`` if it is a positive odd int (so padding keeps the size)."""
    kernel_size = positive_int("kernel_size", kernel_size)
    if kernel_size % 2 == 0:
        raise ValueError(
            f"kernel_size must be odd so that padding keeps the spatial size, got {kernel_size}"
        )
    return kernel_size


def format_times(values: Sequence[float]) -> str:
    """A short rendering of a grid (or any times) for ``extra_repr`` and messages."""
    shown = [f"{v:g}" for v in values]
    if len(shown) > 7:
        shown = shown[:3] + ["..."] + shown[-2:]
    return "[" + ", ".join(shown) + "]"


def describe_layer(layer: nn.Module) -> str:
    """``repr(layer)`` if it fits on one short line, else ``ClassName(...)``."""
    text = repr(layer)
    if "\n" in text or len(text) > 100:
        return f"{type(layer).__name__}(...)"
    return text


def check_layer_output(
    block: str,
    layer: nn.Module,
    state: torch.Tensor,
    output: object,
    expected: tuple[int, ...] | None = None,
) -> None:
    """Raise if a layer function's output is not a tensor of the shape it must have.

    Only host metadata is compared: no device synchronisation.

    Args:
        block: the block's name for the message, e.g. ``"DynamicBlock"``.
        layer: the module that was evaluated.
        state: the tensor it was evaluated on.
        output: what it returned.
        expected: the shape the output must have, if not ``state``'s (e.g. the
            other stream's, for a Hamiltonian field acting on one half).

    Raises:
        ValueError: naming the block, the layer and both shapes.
    """
    must = state.shape if expected is None else expected
    if isinstance(output, torch.Tensor) and output.shape == must:
        return
    shape = tuple(state.shape)
    if isinstance(output, torch.Tensor):
        got = f"shape {tuple(output.shape)}"
    else:
        got = f"a {type(output).__name__}, not a tensor"
    if expected is None or tuple(expected) == shape:
        rule = "a layer function must return a tensor of its input's shape"
    else:
        rule = (
            f"it must return a tensor of shape {tuple(expected)}, the shape of the state "
            "its output is added to"
        )
    raise ValueError(
        f"{block}: the layer {describe_layer(layer)} maps a state of shape {shape} to {got}; {rule}"
    )


def check_module(name: str, value: object) -> nn.Module:
    """Return ``value`` if it is an ``nn.Module``, else raise a TypeError naming ``name``."""
    if not isinstance(value, nn.Module):
        raise TypeError(f"{name} must be an nn.Module, got {type(value).__name__}")
    return value


def one_of(name: str, value: object, choices: Sequence[object]) -> object:
    """Return ``value`` if it is one of ``choices``, else raise a ValueError naming ``name``.

    The message lists the choices as a tuple, e.g.
    ``interpolation must be one of ('constant', 'linear'), got 'cubic'``.
    """
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_tensor(name: str, value: object) -> torch.Tensor:
    """Return ``value`` if it is a tensor, else raise a TypeError naming ``name``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value
