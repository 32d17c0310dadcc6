"""The implicit blocks; they live in :mod:`dynamicblocks.methods.theta`.

This module keeps ``from dynamicblocks.implicit import ImplicitBlock, ...`` working.
"""

from .methods.theta import (
    IMPLICIT_SCHEMES,
    ConvergenceError,
    ConvergenceWarning,
    ImplicitBlock,
)

__all__ = ["ImplicitBlock", "IMPLICIT_SCHEMES", "ConvergenceWarning", "ConvergenceError"]
