"""Lives in :mod:`dynamicblocks.methods.fixed_point`; this module keeps the old import path."""

from .methods.fixed_point import FixedPointResult, anderson

__all__ = ["FixedPointResult", "anderson"]
