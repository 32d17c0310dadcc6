"""Adaptive, error-controlled integration with embedded Runge-Kutta pairs.

:func:`solve_adaptive` steps a block's field with the steps an error estimate
chooses; :class:`Controller` holds the tolerances and the PI step-size
controller.
"""

from .controller import Controller, error_ratio, initial_step
from .solve import AdaptiveSolution, StepSizeError, solve_adaptive

__all__ = [
    "AdaptiveSolution",
    "Controller",
    "StepSizeError",
    "error_ratio",
    "initial_step",
    "solve_adaptive",
]
