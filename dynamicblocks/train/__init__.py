"""Training: the loop behind the example scripts (``from dynamicblocks.train import Trainer``).

- :class:`TrainConfig`: every setting of a run, checked up front.
- :class:`Trainer`: SGD with schedules, AMP, ``channels_last``, ``torch.compile``,
  DistributedDataParallel under ``torchrun``, atomic checkpoints, exact resume,
  the best model, a JSON-lines log and plots.
- :func:`evaluate`: loss and accuracy of a model on a dataset.
"""

from ._atomic import atomic_write_text, remove_leftovers
from .checkpoint import CheckpointError, atomic_save, load_checkpoint
from .config import AMP_MODES, SCHEDULES, TrainConfig
from .distributed import DEFAULT_TIMEOUT, Distributed
from .history import plot_curves, read_log, write_log
from .loader import LoaderData
from .optim import BoxConstraints, make_optimizer, make_scheduler, param_groups
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
    "DEFAULT_TIMEOUT",
    "SCHEDULES",
    "BoxConstraints",
    "CheckpointError",
    "Distributed",
    "LoaderData",
    "NonFiniteLossError",
    "NonFiniteStateError",
    "RUN_FILES",
    "ResumeMismatchError",
    "TrainConfig",
    "Trainer",
    "atomic_save",
    "atomic_write_text",
    "check_model",
    "epoch_generator",
    "evaluate",
    "load_checkpoint",
    "make_optimizer",
    "make_scheduler",
    "param_groups",
    "plot_curves",
    "read_log",
    "remove_leftovers",
    "write_log",
]
