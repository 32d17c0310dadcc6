"""Methods (solvers): how one step goes, for each family of blocks.

Each module holds one method and the block that steps by it:

* :mod:`~dynamicblocks.methods.runge_kutta`: any explicit Butcher tableau,
  :class:`~dynamicblocks.DynamicBlock`;
* :mod:`~dynamicblocks.methods.theta`: the theta-method and the implicit
  midpoint rule, :class:`~dynamicblocks.ImplicitBlock`;
* :mod:`~dynamicblocks.methods.verlet`: two-stream Verlet,
  :class:`~dynamicblocks.HamiltonianBlock`;
* :mod:`~dynamicblocks.methods.leapfrog`: leapfrog for ``y'' = F(y)``,
  :class:`~dynamicblocks.LeapfrogBlock`.

:mod:`~dynamicblocks.methods.base` says what a method supplies;
:mod:`~dynamicblocks.methods.fixed_point` is the Anderson solver of the implicit
methods.
"""

from .base import Method
from .leapfrog import Leapfrog, LeapfrogBlock
from .runge_kutta import DynamicBlock, RungeKutta
from .theta import ImplicitBlock, ThetaMethod
from .verlet import HamiltonianBlock, Verlet

__all__ = [
    "Method",
    "RungeKutta",
    "ThetaMethod",
    "Verlet",
    "Leapfrog",
    "DynamicBlock",
    "ImplicitBlock",
    "HamiltonianBlock",
    "LeapfrogBlock",
]
