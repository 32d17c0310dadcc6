"""Training recipes: the library's and the original DynamicBlocks code's, per dataset.

A :class:`Recipe` holds every setting of a run that is not the network: the
:class:`~dynamicblocks.train.TrainConfig` fields, the input normalisation and
the train/validation split. ``recipe("original", dataset)`` is what the
original code (EmoryMLIP/DynamicBlocks, ``RKNet.py``'s ``runRKNet`` with
``utils.py``'s ``getRunDefaults`` and ``trainNet``) trained with:

- SGD, momentum 0.9, no Nesterov, weight decay 4e-4 on every parameter but
  those of the normalisation layers (biases are decayed);
- after every optimiser step, ``ClippedModule.clip``: convolution kernels and
  biases clamped to ``[-0.5, 0.5]``, linear weights and norm scales to
  ``[-1.5, 1.5]`` (:class:`~dynamicblocks.train.BoxConstraints` ``(0.5, 1.5)``);
- the mean softmax cross-entropy, without label smoothing;
- the learning rate set per epoch; the best model by lowest validation loss;
  the last incomplete batch of an epoch kept; 20% of the training images held
  out for validation, evaluated in eval mode without augmentation;
- CIFAR-10: batch 125, 120 epochs at 0.1/0.01/0.001/0.0001 for
  60/20/20/20 epochs; CIFAR-100: batch 125, 180 epochs, 60 at 0.1, then
  20 falling geometrically to 0.01, 20 at 0.01, and so on to 20 at 0.0001;
  both normalised with mean 0.5 and std 1 per channel (``x - 0.5`` for
  ``x`` in ``[0, 1]``), random crop with 4-pixel zero padding and flip;
- STL-10: batch 30, 200 epochs at 0.1/0.01/0.001/0.0001 for 80/40/40/40,
  normalised with the ImageNet statistics, random crop with 12-pixel padding
  and flip (and the RKNet widths 16-32-64-128-128, a setting of the network).

``recipe("library", dataset)`` is :class:`~dynamicblocks.train.TrainConfig`'s
defaults (the same optimiser and step schedule; weight decay on kernels only,
no box constraints, best model by validation accuracy, last incomplete batch
dropped), with the dataset's own per-channel statistics, and a 12-pixel crop
padding for STL-10.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .config import TrainConfig
from .optim import step_milestones

__all__ = ["RECIPES", "RECIPE_DATASETS", "IMAGENET_MEAN", "IMAGENET_STD", "Recipe", "recipe"]

RECIPES = ("library", "original")
RECIPE_DATASETS = ("cifar10", "cifar100", "stl10")
#: The ImageNet statistics, which the original normalised STL-10 with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_HALF = ((0.5, 0.5, 0.5), (1.0, 1.0, 1.0))  # the original's CIFAR normalisation


@dataclass(frozen=True)
class Recipe:
    """The settings of a run other than the network.

    Attributes:
        name: ``"library"`` or ``"original"``.
        dataset: ``"cifar10"``, ``"cifar100"`` or ``"stl10"``.
        settings: the :class:`~dynamicblocks.train.TrainConfig` fields the
            recipe sets (the others keep their defaults).
        milestone_fractions: if set, and the schedule is ``"step"``, the
            milestones are ``round(epochs * f)`` for these ``f``, with the
            run's final ``epochs`` (STL-10's 80/120/160 of 200 epochs).
        mean, std: per-channel input normalisation of images in ``[0, 1]``;
            None: the dataset's own statistics.
        val_fraction: the fraction of the training images held out for
            validation.
    """

    name: str
    dataset: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    milestone_fractions: tuple[float, ...] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    val_fraction: float = 0.2

    def train_config(self, **overrides: Any) -> TrainConfig:
        """The :class:`~dynamicblocks.train.TrainConfig` of the recipe, ``overrides`` on top.

        The milestones of ``milestone_fractions`` follow the final ``epochs``
        unless ``milestones`` is overridden or the schedule is not ``"step"``.
        """
        fields = {**self.settings, **overrides}
        if (
            self.milestone_fractions is not None
            and "milestones" not in overrides
            and fields.get("schedule", TrainConfig.schedule) == "step"
        ):
            epochs = fields.get("epochs", TrainConfig.epochs)
            fields["milestones"] = tuple(step_milestones(epochs, self.milestone_fractions))
        return TrainConfig(**fields)


def _original(dataset: str) -> Recipe:
    settings: dict[str, Any] = {
        "epochs": 120,
        "batch_size": 125,
        "lr": 0.1,
        "momentum": 0.9,
        "nesterov": False,
        "weight_decay": 4e-4,
        "weight_decay_on": "all_but_norms",
        "schedule": "step",
        "label_smoothing": 0.0,
        "box_constraints": (0.5, 1.5),
        "augment": True,
        "crop_padding": 4,
        "drop_last": False,
        "best_by": "loss",
    }
    if dataset == "cifar100":
        settings.update(epochs=180, schedule="geometric")
    if dataset == "stl10":
        settings.update(epochs=200, batch_size=30, crop_padding=12)
        return Recipe(
            "original",
            dataset,
            MappingProxyType(settings),
            milestone_fractions=(2 / 5, 3 / 5, 4 / 5),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
        )
    return Recipe("original", dataset, MappingProxyType(settings), mean=_HALF[0], std=_HALF[1])


def recipe(name: str = "original", dataset: str = "cifar10") -> Recipe:
    """The recipe ``name`` (``"library"`` or ``"original"``) for ``dataset``.

    Example::

        config = recipe("original", "cifar10").train_config(epochs=60)

    Raises:
        ValueError: for an unknown recipe or dataset.
    """
    if name not in RECIPES:
        raise ValueError(f"recipe must be one of {', '.join(RECIPES)}, got {name!r}")
    if dataset not in RECIPE_DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(RECIPE_DATASETS)}, got {dataset!r}")
    if name == "original":
        return _original(dataset)
    settings = MappingProxyType({"crop_padding": 12} if dataset == "stl10" else {})
    return Recipe("library", dataset, settings)
