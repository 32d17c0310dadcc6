"""Train a dynamic-block network on CIFAR-10, CIFAR-100 or STL-10.

    python examples/cifar10.py --subset 512 --epochs 1          # a quick check, CPU
    python examples/cifar10.py --recipe original                # the original DynamicBlocks run
    python examples/cifar10.py --recipe original --dataset stl10 --data-dir DATA_DIR
    python examples/cifar10.py --model preact_resnet56 --schedule cosine --amp bf16 --compile
    python examples/cifar10.py --model preact_resnet110_he      # He et al.'s ResNet-110
    python examples/cifar10.py --model hamiltonian --box-constraints 1 1   # Ruthotto & Haber
    torchrun --nproc_per_node 4 examples/cifar10.py --sync-bn   # 4 GPUs, DDP
    python examples/cifar10.py --out RUN_DIR --resume           # continue an interrupted run
    python examples/cifar10.py --out RUN_DIR --time-limit 50    # stop, saved, within 50 minutes
    python examples/cifar10.py --evaluate RUN_DIR/best.pt       # test accuracy of a saved model

Two recipes set the training settings. --recipe original (see
dynamicblocks.train.recipe) is the original DynamicBlocks code's for the
--dataset: SGD with momentum 0.9 and weight decay 4e-4 on every parameter but
the norm layers', the weights clipped after every step (convolutions to
[-0.5, 0.5], linear weights and norm scales to [-1.5, 1.5]), best.pt by the
lowest validation loss, the last incomplete batch kept, an 80/20 train/
validation split; CIFAR: batch 125, images normalised to x - 0.5 (mean 0.5,
std 1), 4-pixel crop padding, CIFAR-10 120 epochs at 0.1/0.01/0.001/0.0001 for
60/20/20/20, CIFAR-100 180 epochs with geometric decays; STL-10: batch 30, 200
epochs at 0.1/0.01/0.001/0.0001 for 80/40/40/40, ImageNet statistics, 12-pixel
crop padding. The default, --recipe library, keeps the same optimiser, batch,
epochs and step schedule (120 epochs, 60/20/20/20, also for CIFAR-100 and
STL-10) but decays kernels only (no biases), does not clip, picks best.pt by
validation accuracy, drops the last incomplete batch and normalises with the
dataset's per-channel statistics (for STL-10 computed from its 5,000 training
images; crop padding 12). A flag given explicitly always overrides the
recipe. The default model is rknet (RK4, DoubleSymLayer, t = 0..4; widths
16-32-64-64, for STL-10 the original's 16-32-64-128-128).

The data is read from --data-dir (CIFAR is downloaded there if missing and
allowed; STL-10 never is: extract stl10_binary.tar.gz there). Everything goes
to --out, a new folder for each run unless named: checkpoint.pt (every epoch),
best.pt, log.jsonl, curves.png, config.json and, at the end, results.json
with the test accuracy of best.pt. A folder that holds a run is never
overwritten: continue it with --resume (with the same flags), or replace it
with --overwrite. Every flag is checked before any data is read or any file
written; a mistake prints one "error: ..." line and exits with status 2.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import dynamicblocks as db
from dynamicblocks import data
from dynamicblocks.train import (
    AMP_MODES,
    BEST_BY,
    DEFAULT_TIMEOUT,
    RECIPES,
    RUN_FILES,
    SCHEDULES,
    WEIGHT_DECAY_ON,
    CheckpointError,
    Distributed,
    NonFiniteLossError,
    ResumeMismatchError,
    TrainConfig,
    Trainer,
    atomic_write_text,
    check_model,
    evaluate,
    load_checkpoint,
    recipe,
    remove_leftovers,
    step_milestones,
)
from dynamicblocks.train.resume import resume_differences

# Arguments that define the network (stored in config.json, reused by --evaluate).
MODEL_ARGS = ("dataset", "model", "scheme", "steps", "grid", "controls")
# Arguments added since, with the value that runs made before them had: a config.json or
# checkpoint without one was made with it. The model's widths and the input normalisation
# are reused by --evaluate too; all are compared on --resume.
LATER_ARGS: dict[str, Any] = {"widths": None, "mean": None, "std": None, "recipe": "library"}
# Arguments that, with the model's, decide the data a run sees (compared on --resume).
DATA_ARGS = ("subset", "val_fraction")
# The flags that shape the network, named in its errors.
NETWORK_ARGS = ("model", "scheme", "steps", "grid", "controls", "widths")
# Every file of a run folder: the trainer's and this script's.
CONFIG, RESULTS = "config.json", "results.json"
ALL_RUN_FILES = (*RUN_FILES, CONFIG, RESULTS)
# Ruthotto & Haber's PDE-motivated networks, by --model name.
PDE_NETS = {
    "parabolic": db.parabolic_net,
    "hamiltonian": db.hamiltonian_net,
    "second_order": db.second_order_net,
    "imexnet": db.imexnet,
}
DATASETS = (*data.DATASETS, *(["stl10"] if "stl10" not in data.DATASETS else []))
# Per-channel input statistics of --recipe library (None: computed from the training images).
STATS = {
    "cifar10": (data.CIFAR10_MEAN, data.CIFAR10_STD),
    "cifar100": (data.CIFAR100_MEAN, data.CIFAR100_STD),
    "stl10": None,
}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "stl10": 10}
# rknet's widths where they are not 16-32-64-64: the original's for STL-10's 96x96 images.
RKNET_WIDTHS = {"stl10": (16, 32, 64, 128, 128)}
# TrainConfig fields whose flag is not --<field with dashes>.
FLAGS = {"sync_batchnorm": "--sync-bn", "augment": "--no-augment", "data": "--data-dir"}


class UsageError(Exception):
    """A mistake on the command line or in the files it names: one error line, exit 2."""


def flag(name: str) -> str:
    """The command-line flag of setting ``name`` (``batch_size`` -> ``--batch-size``)."""
    return FLAGS.get(name, "--" + name.replace("_", "-"))


# --------------------------------------------------------------------------- arguments


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one ``error: ...`` line on stderr (exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see --help)\n")


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's layout and shows every default."""


def _number(kind: type, low: float, high: float = math.inf, closed: bool = True) -> Callable:
    """An argparse type: a finite ``kind`` from ``low`` (unless not ``closed``) below ``high``."""
    bound = f"{'>=' if closed else '>'} {low:g}"
    if math.isfinite(high):
        bound += f" and < {high:g}"
    what = f"{'an integer' if kind is int else 'a number'} {bound}"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        inside = (low <= value if closed else low < value) and value < high
        if not (math.isfinite(value) and inside):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    return parse


def _values(kind: type, low: float, what: str, counts: tuple[int, ...] = ()) -> Callable:
    """An argparse type: comma-separated finite ``kind`` values ``>= low`` (a list).

    ``counts``: the allowed numbers of values (any if empty); a single value
    where 3 are wanted is repeated, one per colour channel.
    """
    many = " or ".join(map(str, counts)) + " " if counts else ""
    if math.isinf(low):
        bound = ""
    else:
        bound = f" (>= {low})" if kind is int else f" ({'> 0' if low > 0 else f'>= {low:g}'})"

    def parse(text: str) -> list:
        try:
            values = [kind(v) for v in text.split(",")]
        except ValueError:
            values = []
        good = values and all(math.isfinite(v) and v >= low for v in values)
        if not good or (counts and len(values) not in counts):
            raise argparse.ArgumentTypeError(
                f"must be {many}comma-separated {what}{bound}, got {text!r}"
            )
        return values * 3 if counts == (1, 3) and len(values) == 1 else values

    return parse


def _build_parser() -> _Parser:
    parser = _Parser(description=__doc__, formatter_class=_Formatter)
    add = parser.add_argument
    add(
        "--recipe",
        default="library",
        choices=RECIPES,
        help="the training settings: the original DynamicBlocks code's for --dataset, or the "
        "library's (see the top); a flag given explicitly overrides the recipe",
    )
    add("--dataset", default="cifar10", choices=DATASETS, help="which data set")
    add(
        "--data-dir",
        default="data",
        help="where the CIFAR archive or folder is, or the folder holding stl10_binary/",
    )
    add(
        "--download",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="download the official CIFAR archive if the data is missing (STL-10 is never "
        "downloaded)",
    )
    add(
        "--model",
        default="rknet",
        help="rknet, preact_resnet<6n+2> (20, 32, 44, 56, 110; the library's connective "
        "layout), preact_resnet<6n+2>_he (He et al.'s with projection shortcuts), "
        f"lm_resnet<6n+2> (LM-ResNet), or one of the PDE-motivated {', '.join(PDE_NETS)}",
    )
    add(
        "--widths",
        type=_values(int, 1, "channel counts"),
        default=None,
        metavar="W1,W2,...",
        help="rknet's widths: the blocks' channels, then the last connective unit's; None: "
        "16,32,64,64 (for stl10 the original's 16,32,64,128,128)",
    )
    add(
        "--scheme",
        default=None,
        help=f"integration scheme of every block ({', '.join(db.TABLEAUS)}; for imexnet "
        f"{', '.join(db.IMEX_SCHEMES)}); None: the model's",
    )
    grid = parser.add_mutually_exclusive_group()
    grid.add_argument(
        "--steps",
        type=_number(int, 1),
        default=None,
        help="steps per block, uniform over the model's time interval; None: the model's",
    )
    grid.add_argument("--grid", default=None, help="the state grid of every block, e.g. 0,0.5,2,4")
    add(
        "--controls",
        default=None,
        help="control times t_theta of every block, e.g. 0,2,4 (not for preact_resnet)",
    )
    add(
        "--memory",
        default="full",
        choices=db.MEMORY_MODES,
        help="how backward gets the blocks' activations: store all (full), recompute each "
        "step (checkpoint), solve the adjoint ODE (adjoint), or invert the blocks "
        "(reversible: hamiltonian, second_order)",
    )
    add(
        "--epochs",
        type=_number(int, 1),
        default=120,
        help="passes over the training set (--recipe original: 120 for cifar10, 180 for "
        "cifar100, 200 for stl10)",
    )
    add(
        "--refine-at",
        default=None,
        metavar="E1,E2,...",
        help="epochs after which every block is refined (steps halved, controls doubled), "
        "e.g. 30,50,70",
    )
    add(
        "--batch-size",
        type=_number(int, 1),
        default=125,
        help="global batch size, split across ranks (--recipe original: 30 for stl10)",
    )
    add("--lr", type=_number(float, 0, closed=False), default=0.1, help="peak learning rate")
    add("--momentum", type=_number(float, 0, 1), default=0.9, help="SGD momentum")
    add("--nesterov", action="store_true", help="Nesterov momentum")
    add("--weight-decay", type=_number(float, 0), default=4e-4, help="L2 weight decay")
    add(
        "--weight-decay-on",
        default="kernels",
        choices=WEIGHT_DECAY_ON,
        help="which parameters are decayed: kernels only (no biases, no norm parameters) or "
        "all but the norm layers' (--recipe original)",
    )
    add(
        "--schedule",
        default="step",
        choices=SCHEDULES,
        help="learning-rate schedule: step divides it by 10 at --milestones; geometric is the "
        "original's cifar100 schedule (--recipe original there)",
    )
    add(
        "--milestones",
        type=_values(int, 1, "epochs"),
        default=None,
        metavar="E1,E2,...",
        help="epochs after which --schedule step divides the learning rate by 10; None: 1/2, "
        "2/3 and 5/6 of --epochs (--recipe original for stl10: 2/5, 3/5, 4/5)",
    )
    add("--label-smoothing", type=_number(float, 0, 1), default=0.0, help="of the loss")
    box = parser.add_mutually_exclusive_group()
    box.add_argument(
        "--box-constraints",
        type=_number(float, 0, closed=False),
        nargs=2,
        default=None,
        metavar=("CONV", "OTHER"),
        help="clamp conv kernels and biases to [-CONV, CONV], linear weights and norm scales "
        "to [-OTHER, OTHER] after every step (--recipe original: 0.5 1.5)",
    )
    box.add_argument(
        "--no-box-constraints",
        dest="box_constraints",
        action="store_const",
        const=None,
        help="no clamping, whatever the recipe",
    )
    add(
        "--kinetic-energy",
        type=_number(float, 0),
        default=0.0,
        metavar="W",
        help="add W x the blocks' kinetic energy to the loss (RNODE; needs --memory full)",
    )
    add(
        "--jacobian-norm",
        type=_number(float, 0),
        default=0.0,
        metavar="W",
        help="add W x Hutchinson's estimate of the fields' Jacobian Frobenius norm to the loss",
    )
    add(
        "--probes",
        type=_number(int, 1),
        default=1,
        help="Hutchinson probes per block and step for --jacobian-norm",
    )
    add(
        "--steer",
        type=_number(float, 0),
        default=0.0,
        metavar="B",
        help="STEER: in training, each block's end time is drawn from [T-B, T+B]",
    )
    add(
        "--val-fraction",
        type=_number(float, 0, 1),
        default=0.2,
        help="fraction of the training images held out for validation (0.2: 40k/10k)",
    )
    add(
        "--subset",
        type=_number(int, 1),
        default=None,
        help="use only the first N training images (and at most N test images)",
    )
    add("--no-augment", dest="augment", action="store_false", help="no random crop and flip")
    add(
        "--crop-padding",
        type=_number(int, 0),
        default=4,
        help="zero padding of the random crop (for stl10 12, in both recipes)",
    )
    add(
        "--drop-last",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="drop each epoch's last, incomplete batch (--recipe original: no)",
    )
    add(
        "--best-by",
        default="acc",
        choices=BEST_BY,
        help="best.pt is the model of the highest validation accuracy or of the lowest "
        "validation loss (--recipe original)",
    )
    add(
        "--mean",
        type=_values(float, -math.inf, "numbers", (1, 3)),
        default=None,
        metavar="M[,M,M]",
        help="per-channel mean subtracted from the images in [0, 1]; None: the dataset's "
        "(--recipe original: 0.5; for stl10 the ImageNet mean)",
    )
    add(
        "--std",
        type=_values(float, 1e-12, "numbers", (1, 3)),
        default=None,
        metavar="S[,S,S]",
        help="per-channel standard deviation the images are divided by; None: the dataset's "
        "(--recipe original: 1; for stl10 the ImageNet std)",
    )
    add("--device", default=None, help="cpu, cuda, cuda:1, ...; None: cuda if available")
    add("--amp", default="none", choices=AMP_MODES, help="mixed precision")
    add("--channels-last", action="store_true", help="channels_last memory format")
    add("--compile", action="store_true", help="torch.compile the model")
    add("--sync-bn", action="store_true", help="SyncBatchNorm under torchrun on CUDA")
    add(
        "--dist-timeout",
        type=_number(float, 0, closed=False),
        default=DEFAULT_TIMEOUT,
        help="seconds every rank waits for the others under torchrun before failing",
    )
    add("--seed", type=_number(int, 0), default=0, help="seeds the weights, split and batches")
    add(
        "--time-limit",
        type=_number(float, 0, closed=False),
        default=None,
        metavar="MINUTES",
        help="stop, checkpointed, after the epoch when one more would end past this many "
        "minutes of training (continue with --resume); None: no limit",
    )
    add(
        "--out",
        default=None,
        help="the run folder; None: a new runs/<dataset>_<model>_<scheme>_<date-time>",
    )
    run = parser.add_mutually_exclusive_group()
    run.add_argument(
        "--resume", action="store_true", help="continue the run in --out (which it needs)"
    )
    run.add_argument(
        "--overwrite", action="store_true", help="replace the run in --out, if there is one"
    )
    add(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="no progress bars (one line per epoch is still printed)",
    )
    add("--log-every", type=_number(int, 1), default=20, help="steps between bar updates")
    add(
        "--evaluate",
        default=None,
        metavar="MODEL.pt",
        help="only report the test accuracy of a saved model (best.pt or checkpoint.pt; its "
        "folder's config.json, if any, sets the model and the input normalisation)",
    )
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, each flag checked on its own, with the recipe's settings filled in.

    Every setting of ``recipe(args.recipe, args.dataset)`` (see
    :func:`dynamicblocks.train.recipe`) replaces the flag's default unless the
    flag is given explicitly.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _build_parser().parse_args(argv)
    given = _build_parser()
    for action in given._actions:
        action.default = argparse.SUPPRESS
    apply_recipe(args, explicit=set(vars(given.parse_args(argv))))
    return args


def apply_recipe(args: argparse.Namespace, explicit: set[str]) -> None:
    """Set every setting of ``args.recipe`` for ``args.dataset`` not in ``explicit``."""
    chosen = recipe(args.recipe, args.dataset)
    for key, value in chosen.settings.items():
        if key not in explicit:
            setattr(args, key, list(value) if isinstance(value, tuple) else value)
    for key in ("val_fraction", "mean", "std"):
        value = getattr(chosen, key)
        if key not in explicit:
            setattr(args, key, list(value) if isinstance(value, tuple) else value)
    fractions = chosen.milestone_fractions
    if fractions and "milestones" not in explicit and args.schedule == "step":
        args.milestones = step_milestones(args.epochs, fractions)


def _numbers(name: str, text: str | None, kind: type = float, what: str = "numbers") -> Any:
    """``text`` split at commas into ``kind`` values (None for None)."""
    if text is None:
        return None
    try:
        values = [kind(v) for v in text.split(",")]
    except ValueError:
        raise UsageError(f"{name} must be comma-separated {what}, got {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise UsageError(f"{name} must be comma-separated finite {what}, got {text!r}")
    return values


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` of the flags (errors name the flags)."""
    refine_at = _numbers("--refine-at", args.refine_at, int, "epochs") or []
    if refine_at and args.epochs < 2:
        raise UsageError(
            f"--refine-at needs --epochs 2 or more (a refinement comes after an epoch and "
            f"before the last), got --epochs {args.epochs}"
        )
    if any(not 1 <= e < args.epochs for e in refine_at):
        raise UsageError(
            f"--refine-at epochs must each lie in 1..{args.epochs - 1} (after an epoch, before "
            f"the last of --epochs {args.epochs}), got {args.refine_at}"
        )
    try:
        return TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            momentum=args.momentum,
            nesterov=args.nesterov,
            weight_decay=args.weight_decay,
            weight_decay_on=args.weight_decay_on,
            schedule=args.schedule,
            milestones=args.milestones,
            label_smoothing=args.label_smoothing,
            box_constraints=args.box_constraints,
            amp=args.amp,
            channels_last=args.channels_last,
            compile=args.compile,
            sync_batchnorm=args.sync_bn,
            augment=args.augment,
            crop_padding=args.crop_padding,
            drop_last=args.drop_last,
            best_by=args.best_by,
            seed=args.seed,
            log_every=args.log_every,
            progress=args.progress,
            refine_at=tuple(refine_at),
            kinetic_energy=args.kinetic_energy,
            jacobian_norm=args.jacobian_norm,
            probes=args.probes,
            steer=args.steer,
        )
    except ValueError as error:
        raise UsageError(re.sub(r"^(\w+)", lambda m: flag(m.group(1)), str(error))) from None


def device_of(text: str | None) -> torch.device:
    """The ``--device``, checked to exist here."""
    if text is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise UsageError(f"--device must be cpu, cuda, cuda:N, ..., got {text!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {text}: CUDA is not available here (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise UsageError(f"--device {text}: there are {count} CUDA devices")
    elif device.type != "cpu" and not getattr(torch, device.type).is_available():
        raise UsageError(f"--device {text}: {device.type} is not available here")
    return device


# --------------------------------------------------------------------------- the model


def build_model(args: argparse.Namespace, num_classes: int) -> torch.nn.Module:
    """The network that --model, --scheme, --steps or --grid, --controls and --memory ask for.

    Raises:
        UsageError: naming the flags, for a network that cannot be built.
    """
    model = _network(args, num_classes)
    try:
        db.set_memory(model, args.memory)
    except ValueError as error:
        raise UsageError(f"--memory {args.memory}: {error}") from None
    return model


def _setting(args: argparse.Namespace, key: str) -> Any:
    """``args.key``, or for a setting of :data:`LATER_ARGS` that an older run lacks, its value."""
    return getattr(args, key, LATER_ARGS.get(key))


def _network(args: argparse.Namespace, num_classes: int) -> torch.nn.Module:
    grid, controls = _numbers("--grid", args.grid), _numbers("--controls", args.controls)
    widths = _setting(args, "widths")
    if widths is not None and args.model != "rknet":
        raise UsageError(f"--widths is only for rknet, not for {args.model}")
    scheme = {} if args.scheme is None else {"scheme": args.scheme}
    schemes = db.IMEX_SCHEMES if args.model == "imexnet" else db.TABLEAUS
    if args.scheme is not None and args.scheme.lower() not in schemes:
        raise UsageError(f"--scheme must be one of {', '.join(schemes)}, got {args.scheme!r}")
    try:
        if args.model == "rknet":
            if args.steps is not None:
                grid = list(db.uniform_grid(0.0, 4.0, args.steps))
            times = {}
            if grid is not None:  # a new state grid keeps the original control times
                times = {"t": grid, "t_theta": [0.0, 1.0, 2.0, 3.0, 4.0]}
            if controls is not None:
                times["t_theta"] = controls
            if widths is None:
                widths = RKNET_WIDTHS.get(args.dataset, (16, 32, 64, 64))
            return db.rknet(num_classes, widths=widths, **times, **scheme)
        if args.model in PDE_NETS:
            if scheme and args.model not in ("parabolic", "imexnet"):
                raise UsageError(
                    f"--scheme is not for {args.model}, whose blocks have a fixed scheme"
                )
            if args.steps is not None:
                grid = list(db.uniform_grid(0.0, 3.0, args.steps))
            times = {} if grid is None else {"t": grid}
            if controls is not None:
                times["t_theta"] = controls
            return PDE_NETS[args.model](num_classes, **times, **scheme)
        match = re.fullmatch(r"(preact_resnet|lm_resnet)(\d+)(_he)?", args.model)
        if match is None:
            raise UsageError(
                "--model must be rknet, preact_resnet<6n+2>, lm_resnet<6n+2> or one of "
                f"{', '.join(PDE_NETS)} (or preact_resnet<6n+2>_he, He et al.'s layout), "
                f"got {args.model!r}"
            )
        name, depth, he = match.group(1), int(match.group(2)), match.group(3) is not None
        if he and name == "lm_resnet":
            raise UsageError(
                f"--model {args.model}: _he (He et al.'s layout with projection shortcuts) is "
                f"only for preact_resnet<6n+2>_he, not lm_resnet"
            )
        if controls is not None:
            raise UsageError(f"--controls is not for {name}, which keeps one control per step")
        if args.steps is not None:
            grid = [float(k) for k in range(args.steps + 1)]
        if name == "lm_resnet":
            if scheme:
                raise UsageError("--scheme is not for lm_resnet, whose blocks have a fixed scheme")
            return db.lm_resnet(depth, num_classes, t=grid)
        shortcut = "projection" if he else "connective"
        return db.preact_resnet(depth, num_classes, t=grid, shortcut=shortcut, **scheme)
    except (ValueError, TypeError, KeyError) as error:
        values = {key: _setting(args, key) for key in NETWORK_ARGS}
        given = [f"{flag(k)} {_shown(v)}" for k, v in values.items() if v]
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        raise UsageError(f"{', '.join(given)}: {message}") from None


def _shown(value: Any) -> str:
    """A setting as its flag takes it (lists comma-separated)."""
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def load_model(args: argparse.Namespace, num_classes: int, state: dict) -> torch.nn.Module:
    """The model of ``args`` with ``state`` loaded, refined first as often as it was."""
    model = build_model(args, num_classes)
    db.refine_to_match_(model, state)
    model.load_state_dict(state)
    return model


# --------------------------------------------------------------------------- the data


def channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and (population) standard deviation of ``uint8`` images, in [0, 1].

    Exact: computed from each channel's histogram of the 256 pixel values.
    """
    levels = np.arange(256, dtype=np.float64)
    mean, std = [], []
    for channel in range(images.shape[1]):
        counts = np.bincount(images[:, channel].reshape(-1), minlength=256).astype(np.float64)
        m = counts @ levels / counts.sum()
        mean.append(m / 255)
        std.append(math.sqrt(counts @ (levels - m) ** 2 / counts.sum()) / 255)
    return mean, std


def _arrays(args: argparse.Namespace) -> Any:
    """The dataset's arrays, every problem a :class:`UsageError` naming --data-dir."""
    if args.dataset == "stl10":
        try:
            return data.load_stl10(args.data_dir)
        except (OSError, ValueError) as error:
            message = str(error).replace(" as root", " as --data-dir")
            if isinstance(error, data.Stl10NotFoundError):
                message += " (this script never downloads STL-10)"
            raise UsageError(f"--data-dir {args.data_dir}: {message}") from None
    try:
        return data.load_cifar(args.dataset, args.data_dir, download=args.download)
    except (OSError, ValueError) as error:
        message = str(error).replace("call with download=True", "run without --no-download")
        raise UsageError(f"--data-dir {args.data_dir}: {message}") from None


def normalisation(args: argparse.Namespace, arrays: Any) -> tuple[list[float], list[float]]:
    """--mean and --std, each None replaced by the dataset's statistics (see :data:`STATS`)."""
    mean, std = _setting(args, "mean"), _setting(args, "std")
    if mean is None or std is None:
        stats = STATS[arrays.name] or channel_stats(arrays.train_images)
        mean = list(stats[0]) if mean is None else mean
        std = list(stats[1]) if std is None else std
    return mean, std


def load_data(args: argparse.Namespace, device: torch.device):
    """Train, validation (or None) and test sets, the class count and the data's fingerprint."""
    arrays = _arrays(args)
    mean, std = normalisation(args, arrays)
    limit = args.subset
    parts = (arrays.train_images, arrays.train_labels, arrays.test_images, arrays.test_labels)
    parts = tuple(part[:limit] for part in parts)
    digest = hashlib.sha256()
    for part in parts:
        digest.update(np.ascontiguousarray(part).data)

    def dataset(images, labels):
        return data.CifarDataset(images, labels, arrays.num_classes, device, mean, std)

    full, test = dataset(*parts[:2]), dataset(*parts[2:])
    num_val = round(args.val_fraction * len(full))
    train, val = data.split(full, num_val, seed=args.seed) if num_val else (full, None)
    return train, val, test, arrays.num_classes, digest.hexdigest()[:16]


# --------------------------------------------------------------------------- run folders


def default_out(args: argparse.Namespace) -> Path:
    """A new folder under ``runs/`` named after the model and the time."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{args.dataset}_{args.model}_{args.scheme or 'default'}_{stamp}"
    out, count = base, 1
    while out.exists():
        count += 1
        out = base.with_name(f"{base.name}-{count}")
    return out


def check_run_folder(args: argparse.Namespace, out: Path) -> None:
    """Refuse to start over a run unless --resume or --overwrite says what to do with it."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    held = [name for name in ALL_RUN_FILES if (out / name).exists()]
    if held and not (args.resume or args.overwrite):
        raise UsageError(
            f"--out {out} holds a run ({', '.join(held)}): continue it with --resume, "
            f"choose another --out, or replace it with --overwrite"
        )


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """What the checkpoint stores and a resumption must repeat: model, recipe and data flags."""
    return {key: _setting(args, key) for key in (*MODEL_ARGS, *LATER_ARGS, *DATA_ARGS)}


def check_resume(args: argparse.Namespace, out: Path, config: TrainConfig) -> None:
    """Before any data is read: a damaged checkpoint or changed flags are errors."""
    path = out / RUN_FILES[0]
    if not path.is_file():
        return
    try:
        state = load_checkpoint(path)
    except CheckpointError as error:
        raise UsageError(f"--resume: {error}") from None
    if not isinstance(state, dict) or "config" not in state:
        raise UsageError(f"--resume: {path} is not a checkpoint of examples/cifar10.py")
    stored = dict(state.get("extra") or {})
    stored.pop("data", None)  # compared by the trainer once the data is read
    stored = {**LATER_ARGS, **stored}  # an older run was made with their old values
    differences = resume_differences({**state, "extra": stored}, config, settings(args))
    if differences:
        raise UsageError(_resume_message(path, differences))


def _resume_message(path: Path, differences: list[tuple[str, Any, Any]]) -> str:
    shown = []
    for key, old, new in differences:
        if key == "data":
            shown.append(f"--data-dir holds other images (fingerprint {old} -> {new})")
        else:
            name, _, reason = key.partition(" ")
            change = f"{_shown(old)} -> {_shown(new)}"
            shown.append(f"{flag(name)} {change}{' ' + reason if reason else ''}")
    return f"--resume: {path} was trained with other settings: {'; '.join(shown)}"


# --------------------------------------------------------------------------- commands


def run_evaluation(args: argparse.Namespace) -> None:
    """--evaluate: the model file and its settings first, then the data, with progress."""
    path = Path(args.evaluate)
    if not path.is_file():
        raise UsageError(f"--evaluate {path}: no such file")
    try:
        state = load_checkpoint(path)
    except CheckpointError as error:
        raise UsageError(f"--evaluate: {error}") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a trainer's checkpoint.pt
    if not (isinstance(state, dict) and all(torch.is_tensor(v) for v in state.values())):
        raise UsageError(f"--evaluate {path}: not a model's state_dict")
    saved = path.parent / CONFIG
    if saved.is_file():
        for key, value in _read_config(saved).items():
            setattr(args, key, value)
    device = device_of(args.device)
    try:
        model = load_model(args, NUM_CLASSES[args.dataset], state)
    except (RuntimeError, ValueError) as error:
        raise UsageError(f"--evaluate {path} does not fit --model {args.model}: {error}") from None
    print(f"reading {args.dataset} from {args.data_dir}", flush=True)
    _, _, test, _, _ = load_data(args, device)
    figures = evaluate(model.to(device), test, amp=args.amp, progress=args.progress)
    print(
        f"{path}: test loss {figures['loss']:.4f}  test accuracy {100 * figures['acc']:.2f}% "
        f"on {figures['count']} images"
    )


def _read_config(path: Path) -> dict[str, Any]:
    """The model flags and the input normalisation stored in a run's config.json."""
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UsageError(f"cannot read {path}: {error}") from None
    missing = [key for key in MODEL_ARGS if not isinstance(stored, dict) or key not in stored]
    if missing:
        raise UsageError(f"{path} lacks {', '.join(missing)}: not a config.json of this script")
    later = {key: stored.get(key, LATER_ARGS[key]) for key in ("widths", "mean", "std")}
    return {**{key: stored[key] for key in MODEL_ARGS}, **later}


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, 1 for a failed run, 2 for a mistake)."""
    args = parse_args(argv)
    try:
        if args.evaluate is not None:
            run_evaluation(args)
            return 0
        return train_model(args)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        where = (
            f": continue with --resume --out {args.out}" if args.out and not args.evaluate else ""
        )
        print(f"error: interrupted{where}", file=sys.stderr, flush=True)
        return 130


def train_model(args: argparse.Namespace) -> int:
    """Check every flag, then train, evaluate best.pt on the test set and write results.json."""
    if args.resume and args.out is None:
        raise UsageError("--resume needs --out, the folder of the run to continue")
    config = train_config(args)
    device = device_of(args.device)
    torch.manual_seed(args.seed)
    model = build_model(args, NUM_CLASSES[args.dataset])
    try:
        check_model(model, config)
    except ValueError as error:
        message = re.sub(r"^(\w+):", lambda m: flag(m.group(1)) + ":", str(error))
        raise UsageError(message) from None
    dist = Distributed.from_env(device, timeout=args.dist_timeout)
    try:
        status = _train(args, config, model, dist)
    except BaseException:
        dist.close(wait=False)
        raise
    dist.close()
    return status


def _train(
    args: argparse.Namespace, config: TrainConfig, model: torch.nn.Module, dist: Distributed
) -> int:
    problem, out = None, None
    if dist.is_main:
        out = Path(args.out) if args.out is not None else default_out(args)
        try:
            check_run_folder(args, out)
            if args.resume:
                check_resume(args, out, config)
        except UsageError as error:
            problem = str(error)
    problem, out = dist.broadcast_object((problem, out))
    if problem is not None:
        raise UsageError(problem)
    args.out = str(out)
    if config.batch_size % dist.world_size:
        raise UsageError(
            f"--batch-size {config.batch_size} must be divisible by the {dist.world_size} ranks"
        )
    train, val, test, num_classes, fingerprint = load_data(args, dist.device)
    if len(train) < config.batch_size:
        raise UsageError(
            f"--batch-size {config.batch_size} exceeds the {len(train)} training images "
            f"(--subset {args.subset}, --val-fraction {args.val_fraction})"
        )
    if dist.is_main:
        if args.overwrite:
            for name in ALL_RUN_FILES:
                (out / name).unlink(missing_ok=True)
        out.mkdir(parents=True, exist_ok=True)
        remove_leftovers(out, ALL_RUN_FILES)
        atomic_write_text(out / CONFIG, json.dumps(vars(args), indent=2) + "\n")
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(
            f"{args.model} ({params:,} parameters) on {dist.device} x {dist.world_size}: "
            f"{len(train)} train / {len(val) if val is not None else 0} val / {len(test)} test "
            f"images; output in {out}",
            flush=True,
        )
    extra = {**settings(args), "data": fingerprint}
    trainer = Trainer(model, config, out, dist, extra=extra)
    try:
        limit = None if args.time_limit is None else 60 * args.time_limit
        trainer.fit(train, val, resume=args.resume, time_limit=limit)
    except ResumeMismatchError as error:
        raise UsageError(_resume_message(error.path, error.differences)) from None
    except CheckpointError as error:
        raise UsageError(f"--resume: {error}") from None
    except NonFiniteLossError as error:
        if dist.is_main:
            advice = "Start again with a lower --lr, --box-constraints or --amp none."
            message = str(error).replace("Try a lower lr, box_constraints or amp='none'.", advice)
            print(f"error: {message}", file=sys.stderr, flush=True)
        return 1
    if not trainer.finished:
        if dist.is_main:
            print(
                f"stopped after epoch {trainer.epoch}/{config.epochs} (--time-limit "
                f"{args.time_limit:g} minutes): continue with --resume --out {out} and the "
                "same flags",
                flush=True,
            )
        return 0
    best = load_model(args, num_classes, trainer.best_state).to(dist.device)
    figures = evaluate(best, test, amp=args.amp, dist=dist)
    if dist.is_main:
        last = trainer.history[-1]
        results = {
            "test_loss": figures["loss"],
            "test_acc": figures["acc"],
            "best_val_acc": trainer.best_acc if val is not None else None,
            "best_val_loss": trainer.best_loss if val is not None else None,
            "epochs": trainer.epoch,
            "train_seconds": sum(r["seconds"] for r in trainer.history),
            "last_images_per_s": last["images_per_s"],
        }
        atomic_write_text(out / RESULTS, json.dumps(results, indent=2) + "\n")
        print(f"test accuracy of best.pt: {100 * figures['acc']:.2f}% on {figures['count']} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
