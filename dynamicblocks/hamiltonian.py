"""The reversible blocks; they live in :mod:`dynamicblocks.methods.verlet` and ``.leapfrog``.

This module keeps ``from dynamicblocks.hamiltonian import HamiltonianBlock,
LeapfrogBlock`` working.
"""

from .methods.leapfrog import STARTS, LeapfrogBlock
from .methods.verlet import HamiltonianBlock

__all__ = ["HamiltonianBlock", "LeapfrogBlock", "STARTS"]
