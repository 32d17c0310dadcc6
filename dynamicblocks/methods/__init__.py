"""Methods (solvers): how one step goes, for each family of blocks.

Each module holds one method and the block that steps by it:

* :mod:`~dynamicblocks.methods.runge_kutta`: any explicit Butcher tableau,
  :class:`~dynamicblocks.DynamicBlock`;
* :mod:`~dynamicblocks.methods.theta`: the theta-method and the implicit
  midpoint rule, :class:`~dynamicblocks.ImplicitBlock`;
* :mod:`~dynamicblocks.methods.verlet`: two-stream Verlet,
  :class:`~dynamicblocks.HamiltonianBlock`;
* :mod:`~dynamicblocks.methods.leapfrog`: leapfrog for ``y'' = F(y)``,
  :class:`~dynamicblocks.LeapfrogBlock`;
* :mod:`~dynamicblocks.methods.multistep`: Adams-Bashforth 1-4 on any grid,
  :class:`~dynamicblocks.MultistepBlock`;
* :mod:`~dynamicblocks.methods.lm_resnet`: LM-ResNet's linear two-step
  method, :class:`~dynamicblocks.LMBlock`;
* :mod:`~dynamicblocks.methods.imex`: implicit-explicit Runge-Kutta pairs for
  ``x' = f(x) - L x``, :class:`~dynamicblocks.IMEXBlock`;
* :mod:`~dynamicblocks.methods.reversible_heun`: reversible Heun for any
  field, :class:`~dynamicblocks.ReversibleHeunBlock`;
* :mod:`~dynamicblocks.methods.alf`: the asynchronous leapfrog for any field,
  :class:`~dynamicblocks.ALFBlock`.

:mod:`~dynamicblocks.methods.base` says what a method supplies;
:mod:`~dynamicblocks.methods.fixed_point` is the Anderson solver of the implicit
methods.
"""

from .alf import ALFBlock, AsynchronousLeapfrog
from .base import Method
from .imex import IMEXBlock, IMEXRungeKutta
from .leapfrog import Leapfrog, LeapfrogBlock
from .lm_resnet import LinearTwoStep, LMBlock
from .multistep import AdamsBashforth, MultistepBlock
from .reversible_heun import ReversibleHeun, ReversibleHeunBlock
from .runge_kutta import DynamicBlock, RungeKutta
from .theta import ImplicitBlock, ThetaMethod
from .verlet import HamiltonianBlock, Verlet

__all__ = [
    "Method",
    "RungeKutta",
    "ThetaMethod",
    "Verlet",
    "Leapfrog",
    "AdamsBashforth",
    "LinearTwoStep",
    "IMEXRungeKutta",
    "ReversibleHeun",
    "AsynchronousLeapfrog",
    "DynamicBlock",
    "ImplicitBlock",
    "HamiltonianBlock",
    "LeapfrogBlock",
    "MultistepBlock",
    "LMBlock",
    "IMEXBlock",
    "ReversibleHeunBlock",
    "ALFBlock",
]
