"""Training: the loop behind the example scripts (``from dynamicblocks.train import Trainer``).

- :class:`TrainConfig`: every setting of a run, checked up front.
- :class:`Trainer`: SGD with schedules, AMP, ``channels_last``, ``torch.compile``,
  DistributedDataParallel under ``torchrun``, atomic checkpoints, exact resume,
  the best model, a JSON-lines log and plots.
- :func:`evaluate`: loss and accuracy of a model on a dataset.
"""

from .checkpoint import atomic_save, load_checkpoint
from .config import AMP_MODES, SCHEDULES, TrainConfig
from .distributed import Distributed
from .history import plot_curves, read_log, write_log
from .optim import BoxConstraints, make_optimizer, make_scheduler, param_groups
from .trainer import NonFiniteLossError, Trainer, epoch_generator, evaluate

__all__ = [
    "AMP_MODES",
    "SCHEDULES",
    "BoxConstraints",
    "Distributed",
    "NonFiniteLossError",
    "TrainConfig",
    "Trainer",
    "atomic_save",
    "epoch_generator",
    "evaluate",
    "load_checkpoint",
    "make_optimizer",
    "make_scheduler",
    "param_groups",
    "plot_curves",
    "read_log",
    "write_log",
]
