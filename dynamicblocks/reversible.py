"""Reversible backpropagation; it lives in :mod:`dynamicblocks.memory.reversible`.

This module keeps ``from dynamicblocks.reversible import verlet_reversible,
leapfrog_reversible`` working; those two functions live with their methods.
"""

from .methods.leapfrog import leapfrog_reversible
from .methods.verlet import verlet_reversible

__all__ = ["leapfrog_reversible", "verlet_reversible"]
