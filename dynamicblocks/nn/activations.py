"""Activation functions by name."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

__all__ = ["ActLike", "ACTIVATIONS", "make_activation"]

ActLike = str | nn.Module | Callable[[], nn.Module] | None
"""An activation: a name from :data:`ACTIVATIONS`, ``None`` (identity), a module
instance, or a module class/factory called without arguments."""

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
    "identity": nn.Identity,
}


def make_activation(act: ActLike) -> nn.Module:
    """Build the activation ``act`` (see :data:`ActLike`)."""
    if act is None:
        return nn.Identity()
    if isinstance(act, nn.Module):
        return act
    if isinstance(act, str):
        try:
            return ACTIVATIONS[act.lower()]()
        except KeyError:
            raise ValueError(
                f"unknown activation {act!r}; expected one of {sorted(ACTIVATIONS)}, "
                "None, or an nn.Module"
            ) from None
    if callable(act):
        return act()
    raise TypeError(f"act must be a name, an nn.Module or a factory, got {type(act).__name__}")
