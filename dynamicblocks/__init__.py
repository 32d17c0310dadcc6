"""dynamicblocks: residual blocks read as discretized ODEs, for PyTorch."""

from .adaptive import AdaptiveSolution, Controller, StepSizeError, solve_adaptive
from .grid import as_grid, refine_grid, step_sizes, uniform_grid
from .imex_tableaus import IMEX_SCHEMES, IMEXTableau
from .manifest import (
    carry_optimizer_state,
    dynamic_blocks,
    refine_,
    refine_to_match_,
    remanifest,
    time_blocks,
)
from .memory import MEMORY_MODES, set_memory
from .methods.alf import ALFBlock
from .methods.imex import IMEXBlock
from .methods.leapfrog import LeapfrogBlock
from .methods.lm_resnet import LMBlock
from .methods.multistep import ADAMS_BASHFORTH, MultistepBlock
from .methods.reversible_heun import ReversibleHeunBlock
from .methods.runge_kutta import DynamicBlock
from .methods.theta import ConvergenceError, ConvergenceWarning, ImplicitBlock
from .methods.verlet import HamiltonianBlock
from .models import (
    hamiltonian_net,
    imexnet,
    lm_resnet,
    parabolic_net,
    preact_resnet,
    rknet,
    rknet_from_original,
    second_order_net,
)
from .network import BLOCKS, DynamicNet, Stage
from .nn.activations import make_activation
from .nn.connective import ConnectiveUnit
from .nn.layers import MLP, DoubleLayer, DoubleSymLayer, PreactDoubleLayer
from .nn.norms import TvNorm, make_norm
from .nn.operators import ConvOperator, DenseOperator
from .ode_regularizers import SolveStats, ode_regularizers, set_steer
from .projection import projection_matrix
from .regularization import time_regularization
from .stability import (
    THETA_SCHEMES,
    amplification,
    imex_amplification,
    imex_stability_region,
    multistep_amplification,
    multistep_boundary_locus,
    plot_stability_regions,
    reversible_amplification,
    spectral_radius,
    stability_region,
    step_jacobian_spectrum,
    theta_amplification,
)
from .tableaus import TABLEAUS, ButcherTableau, get_tableau

__version__ = "0.1.0"

__all__ = [
    "solve_adaptive",
    "AdaptiveSolution",
    "Controller",
    "StepSizeError",
    "IMEX_SCHEMES",
    "IMEXTableau",
    "IMEXBlock",
    "ReversibleHeunBlock",
    "ALFBlock",
    "ConvOperator",
    "DenseOperator",
    "LMBlock",
    "ADAMS_BASHFORTH",
    "MultistepBlock",
    "MEMORY_MODES",
    "set_memory",
    "BLOCKS",
    "parabolic_net",
    "lm_resnet",
    "imexnet",
    "hamiltonian_net",
    "second_order_net",
    "LeapfrogBlock",
    "HamiltonianBlock",
    "theta_amplification",
    "step_jacobian_spectrum",
    "stability_region",
    "spectral_radius",
    "plot_stability_regions",
    "amplification",
    "multistep_amplification",
    "multistep_boundary_locus",
    "reversible_amplification",
    "imex_amplification",
    "imex_stability_region",
    "THETA_SCHEMES",
    "ImplicitBlock",
    "ConvergenceError",
    "ConvergenceWarning",
    "refine_to_match_",
    "time_regularization",
    "ode_regularizers",
    "set_steer",
    "SolveStats",
    "projection_matrix",
    "remanifest",
    "refine_",
    "dynamic_blocks",
    "time_blocks",
    "carry_optimizer_state",
    "ButcherTableau",
    "ConnectiveUnit",
    "DoubleLayer",
    "DoubleSymLayer",
    "DynamicBlock",
    "DynamicNet",
    "MLP",
    "PreactDoubleLayer",
    "Stage",
    "TABLEAUS",
    "TvNorm",
    "as_grid",
    "get_tableau",
    "make_activation",
    "make_norm",
    "preact_resnet",
    "refine_grid",
    "rknet",
    "rknet_from_original",
    "step_sizes",
    "uniform_grid",
]
