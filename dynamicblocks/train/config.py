"""TrainConfig: every knob of a training run, checked when it is built."""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any

from .._validate import int_in_range, positive_int

__all__ = ["TrainConfig", "SCHEDULES", "AMP_MODES", "WEIGHT_DECAY_ON", "BEST_BY"]

SCHEDULES = ("step", "geometric", "cosine", "onecycle", "constant")
AMP_MODES = ("none", "bf16", "fp16")
#: Which parameters weight decay applies to: see :func:`~dynamicblocks.train.param_groups`.
WEIGHT_DECAY_ON = ("kernels", "all_but_norms")
#: What picks the best model: the highest validation accuracy or the lowest validation loss.
BEST_BY = ("acc", "loss")


def _non_negative_float(name: str, value: object, below: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not 0.0 <= value < below:
        upper = "" if math.isinf(below) else f" and < {below}"
        raise ValueError(f"{name} must be >= 0{upper}, got {value!r}")
    return value


def _choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    key = value.lower() if isinstance(value, str) else value
    if key not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return key


def _refine_epochs(value: object, epochs: int) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"refine_at must be a sequence of epochs, got {value!r}")
    refine_at = tuple(int_in_range("refine_at", e, 1, epochs) for e in value)
    if any(b <= a for a, b in zip(refine_at, refine_at[1:])):
        raise ValueError(f"refine_at must be strictly increasing, got {refine_at!r}")
    return refine_at


def _milestones(value: object, epochs: int) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"milestones must be a sequence of epochs, got {value!r}")
    milestones = tuple(int_in_range("milestones", e, 1, epochs + 1) for e in value)
    if not milestones or any(b < a for a, b in zip(milestones, milestones[1:])):
        raise ValueError(
            f"milestones must be a non-empty, non-decreasing sequence of epochs, got {milestones!r}"
        )
    return milestones


@dataclass
class TrainConfig:
    """Settings of a :class:`~dynamicblocks.train.Trainer` run.

    The defaults are the library's CIFAR recipe. Its optimiser and schedule
    are the original DynamicBlocks CIFAR-10 run's: 120 epochs of SGD
    (momentum 0.9, no Nesterov, weight decay 4e-4) with batch 125 and the
    step schedule (learning rate 0.1, divided by 10 after 1/2, 2/3 and 5/6
    of the epochs: 60/20/20/20 epochs at 0.1/0.01/0.001/0.0001 for 120).
    It differs from the original in four settings: weight decay on kernels
    only (the original: on everything but the norm layers' parameters, so
    on biases too), no box constraints (the original: ``(0.5, 1.5)``),
    ``best.pt`` by validation accuracy (the original: validation loss) and
    the last incomplete batch of an epoch dropped (the original kept it);
    and the data it is usually given is normalised with the dataset's
    statistics (the original: mean 0.5 and std 1 per channel).
    :func:`~dynamicblocks.train.recipe` gives the original's settings for
    CIFAR-10, CIFAR-100 and STL-10:
    ``recipe("original", "cifar10").train_config()``.

    Args:
        epochs: number of passes over the training set.
        batch_size: the *global* batch size; under ``torchrun`` each of the
            ``world_size`` ranks takes ``batch_size / world_size`` images of
            every batch (it must divide evenly).
        lr: the peak learning rate.
        momentum: SGD momentum.
        nesterov: Nesterov momentum.
        weight_decay: L2 weight decay (coupled, as in :class:`torch.optim.SGD`)
            on the parameters that ``weight_decay_on`` names.
        weight_decay_on: ``"kernels"``: parameters with 2 or more
            dimensions (convolution kernels, linear weights), so no biases
            and no norm parameters; ``"all_but_norms"`` (the original's):
            every parameter but those of normalisation layers (biases are
            decayed). See :func:`~dynamicblocks.train.param_groups`.
        schedule: ``"step"`` (divided by 10 at ``milestones``),
            ``"geometric"`` (the original's CIFAR-100 schedule: in ninths of
            the epochs, 3 at ``lr``, then three times 1 ninth falling
            geometrically by a factor 10 per epoch and 1 ninth level: 60 at
            0.1, 20 from 0.1 to 0.01, 20 at 0.01, ..., 20 at 0.0001 for 180
            epochs; the rate is set per epoch), ``"cosine"`` (to 0 over the
            run, per iteration), ``"onecycle"``
            (:class:`torch.optim.lr_scheduler.OneCycleLR`) or ``"constant"``.
        milestones: for ``"step"``: the epochs after which the learning
            rate is divided by 10 (by 100 after an epoch given twice),
            non-decreasing, each in ``[1, epochs]`` (None: ``round(epochs * f)`` for ``f`` in
            ``1/2, 2/3, 5/6``; the original's STL-10 run: ``(80, 120, 160)``
            of 200 epochs).
        label_smoothing: passed to :func:`torch.nn.functional.cross_entropy`.
        box_constraints: if set, ``(conv, other)`` bounds: after every
            optimiser step convolution kernels and their biases are clamped
            to ``[-conv, conv]`` and other weights (linear weights, norm
            scales) to ``[-other, other]``; other biases, including those of
            transposed convolutions, stay free, exactly as the original's
            ``ClippedModule.clip`` with its bounds ``(0.5, 1.5)`` (see
            :class:`~dynamicblocks.train.BoxConstraints`).
        amp: ``"none"``, ``"bf16"`` (autocast) or ``"fp16"`` (autocast and a
            gradient scaler).
        channels_last: train in the ``channels_last`` memory format.
        compile: wrap the model in :func:`torch.compile`.
        sync_batchnorm: under ``torchrun`` on CUDA, convert BatchNorm layers
            to :class:`torch.nn.SyncBatchNorm`.
        augment: random crop (from the image padded by ``crop_padding``
            zero pixels) and horizontal flip, for a
            :class:`~dynamicblocks.data.CifarDataset`.
        crop_padding: the random crop's padding (the original: 4 for
            CIFAR's 32x32 images, 12 for STL-10's 96x96).
        drop_last: drop each epoch's last, incomplete batch (the original
            kept it; under ``torchrun`` a kept one is filled up by wrapping
            around, as :class:`~torch.utils.data.DistributedSampler` does).
        best_by: ``"acc"``: ``best.pt`` is the model of the highest
            validation accuracy; ``"loss"`` (the original's): of the lowest
            validation loss.
        seed: seeds the model-independent randomness: epoch ``e`` draws its
            order and augmentation from a generator seeded with
            ``(seed, e)``, so a resumed run sees the same batches.
        log_every: steps between progress-bar updates (and non-finite-loss
            checks, which synchronise with the device).
        progress: show a tqdm progress bar (on rank 0 only).
        verbose: print one line per epoch (on rank 0 only), with or
            without the progress bar.
        plot: write ``curves.png`` at the end (needs matplotlib).
        refine_at: epochs after which every dynamic block of the model is
            refined (:func:`dynamicblocks.refine_`: steps halved, controls
            doubled, ``theta(t)`` kept), strictly increasing, each in
            ``[1, epochs - 1]``. The optimiser keeps its momentum
            (:func:`dynamicblocks.carry_optimizer_state`) and the schedule
            goes on; checkpoints record how many refinements were done.
        kinetic_energy: weight of the solves' kinetic energy in the loss
            (:func:`dynamicblocks.ode_regularizers`; 0: off).
        jacobian_norm: weight of Hutchinson's estimate of the fields'
            Jacobian Frobenius norm in the loss (0: off).
        probes: Hutchinson probes per block and step for ``jacobian_norm``.
        steer: STEER's half-width ``b`` (:func:`dynamicblocks.set_steer`):
            in training every block integrates to an end time drawn from
            ``[T - b, T + b]`` (0: off).
    """

    epochs: int = 120
    batch_size: int = 125
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 4e-4
    weight_decay_on: str = "kernels"
    schedule: str = "step"
    milestones: tuple[int, ...] | None = None
    label_smoothing: float = 0.0
    box_constraints: tuple[float, float] | None = None
    amp: str = "none"
    channels_last: bool = False
    compile: bool = False
    sync_batchnorm: bool = False
    augment: bool = True
    crop_padding: int = 4
    drop_last: bool = True
    best_by: str = "acc"
    seed: int = 0
    log_every: int = 20
    progress: bool = True
    verbose: bool = True
    plot: bool = True
    refine_at: tuple[int, ...] = ()
    kinetic_energy: float = 0.0
    jacobian_norm: float = 0.0
    probes: int = 1
    steer: float = 0.0

    def __post_init__(self) -> None:
        self.epochs = positive_int("epochs", self.epochs)
        self.batch_size = positive_int("batch_size", self.batch_size)
        self.lr = _non_negative_float("lr", self.lr)
        if self.lr == 0.0:
            raise ValueError("lr must be > 0, got 0.0")
        self.momentum = _non_negative_float("momentum", self.momentum, below=1.0)
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov=True needs momentum > 0, got momentum=0.0")
        self.weight_decay = _non_negative_float("weight_decay", self.weight_decay)
        self.weight_decay_on = _choice("weight_decay_on", self.weight_decay_on, WEIGHT_DECAY_ON)
        self.schedule = _choice("schedule", self.schedule, SCHEDULES)
        if self.milestones is not None:
            if self.schedule != "step":
                raise ValueError(
                    f"milestones is only for schedule='step', got schedule={self.schedule!r}"
                )
            self.milestones = _milestones(self.milestones, self.epochs)
        self.label_smoothing = _non_negative_float("label_smoothing", self.label_smoothing, 1.0)
        if self.box_constraints is not None:
            bounds = tuple(self.box_constraints)
            if len(bounds) != 2:
                raise ValueError(f"box_constraints must be (conv, other), got {bounds!r}")
            conv, other = (_non_negative_float("box_constraints", b) for b in bounds)
            if conv == 0.0 or other == 0.0:
                raise ValueError(f"box_constraints must be positive, got {bounds!r}")
            self.box_constraints = (conv, other)
        self.amp = _choice("amp", self.amp, AMP_MODES)
        self.crop_padding = int_in_range("crop_padding", self.crop_padding, 0)
        self.best_by = _choice("best_by", self.best_by, BEST_BY)
        self.seed = int_in_range("seed", self.seed, 0)
        self.log_every = positive_int("log_every", self.log_every)
        self.refine_at = _refine_epochs(self.refine_at, self.epochs)
        self.kinetic_energy = _non_negative_float("kinetic_energy", self.kinetic_energy)
        self.jacobian_norm = _non_negative_float("jacobian_norm", self.jacobian_norm)
        self.probes = positive_int("probes", self.probes)
        self.steer = _non_negative_float("steer", self.steer)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-friendly dict."""
        return dataclasses.asdict(self)
