"""The explicit Runge-Kutta block; it lives in :mod:`dynamicblocks.methods.runge_kutta`.

This module keeps ``from dynamicblocks.block import DynamicBlock`` working.
"""

from .methods.runge_kutta import DynamicBlock

__all__ = ["DynamicBlock"]
