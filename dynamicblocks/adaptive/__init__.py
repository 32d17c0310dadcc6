"""Adaptive, error-controlled integration with embedded Runge-Kutta pairs.

:func:`solve_adaptive` steps a block's field with the steps an error estimate
chooses; :class:`Controller` holds the tolerances and the PI step-size
controller; :func:`step_errors` and :func:`refine_by_error_` measure a
fixed-grid block's steps and split those that are too long.
"""

from .controller import Controller, StepSizeError, error_ratio, initial_step
from .refine import refine_by_error_, step_errors
from .solve import AdaptiveSolution, solve_adaptive

__all__ = [
    "AdaptiveSolution",
    "Controller",
    "StepSizeError",
    "error_ratio",
    "initial_step",
    "solve_adaptive",
    "step_errors",
    "refine_by_error_",
]
