"""Training: the loop behind the example scripts (``from dynamicblocks.train import Trainer``).

- :class:`TrainConfig`: every setting of a run, checked up front.
- :class:`Trainer`: SGD with schedules, AMP, ``channels_last``, ``torch.compile``,
  DistributedDataParallel under ``torchrun``, atomic checkpoints, exact resume,
  the best model, a JSON-lines log and plots.
- :func:`evaluate`: loss and accuracy of a model on a dataset.
- :func:`recipe`: the library's and the original DynamicBlocks code's settings
  for CIFAR-10, CIFAR-100 and STL-10.
"""

from ._atomic import atomic_write_text, remove_leftovers
from .checkpoint import CheckpointError, atomic_save, load_checkpoint
from .config import AMP_MODES, BEST_BY, SCHEDULES, WEIGHT_DECAY_ON, TrainConfig
from .distributed import DEFAULT_TIMEOUT, Distributed
from .history import plot_curves, read_log, write_log
from .loader import LoaderData
from .optim import (
    BoxConstraints,
    GeometricSchedule,
    is_norm_layer,
    make_optimizer,
    make_scheduler,
    param_groups,
    step_milestones,
)
from .recipe import RECIPE_DATASETS, RECIPES, Recipe, recipe
from .resume import ResumeMismatchError
from .trainer import (
    RUN_FILES,
    NonFiniteLossError,
    NonFiniteStateError,
    Trainer,
    check_model,
    epoch_generator,
    evaluate,
)

__all__ = [
    "AMP_MODES",
    "BEST_BY",
    "DEFAULT_TIMEOUT",
    "RECIPES",
    "RECIPE_DATASETS",
    "SCHEDULES",
    "WEIGHT_DECAY_ON",
    "BoxConstraints",
    "CheckpointError",
    "Distributed",
    "GeometricSchedule",
    "LoaderData",
    "NonFiniteLossError",
    "NonFiniteStateError",
    "RUN_FILES",
    "Recipe",
    "ResumeMismatchError",
    "TrainConfig",
    "Trainer",
    "atomic_save",
    "atomic_write_text",
    "check_model",
    "epoch_generator",
    "evaluate",
    "is_norm_layer",
    "load_checkpoint",
    "make_optimizer",
    "make_scheduler",
    "param_groups",
    "plot_curves",
    "read_log",
    "recipe",
    "remove_leftovers",
    "step_milestones",
    "write_log",
]
