"""Train a dynamic-block network on CIFAR-10 or CIFAR-100.

    python examples/cifar10.py --subset 512 --epochs 1          # a quick check, CPU
    python examples/cifar10.py                                  # the original DynamicBlocks run
    python examples/cifar10.py --model preact_resnet56 --schedule cosine --amp bf16 --compile
    python examples/cifar10.py --model hamiltonian --box-constraints 1 1   # Ruthotto & Haber
    torchrun --nproc_per_node 4 examples/cifar10.py --sync-bn   # 4 GPUs, DDP
    python examples/cifar10.py --out RUN_DIR --resume           # continue an interrupted run
    python examples/cifar10.py --evaluate RUN_DIR/best.pt       # test accuracy of a saved model

The defaults reproduce the original DynamicBlocks CIFAR-10 run: rknet (RK4,
DoubleSymLayer, t = 0..4), batch 125, 120 epochs of SGD (momentum 0.9, weight
decay 4e-4) with the step schedule, 40k/10k train/validation split. The data is
read from --data-dir (downloaded there if missing and allowed). Everything goes
to --out, a new folder for each run unless named: checkpoint.pt (every epoch),
best.pt (by validation accuracy), log.jsonl, curves.png, config.json and, at
the end, results.json with the test accuracy of best.pt. A folder that holds a
run is never overwritten: continue it with --resume, or replace it with
--overwrite. Every flag is checked before any data is read or any file written;
a mistake prints one "error: ..." line and exits with status 2.
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
    DEFAULT_TIMEOUT,
    RUN_FILES,
    SCHEDULES,
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
    remove_leftovers,
)
from dynamicblocks.train.resume import resume_differences

# Arguments that define the network (stored in config.json, reused by --evaluate).
MODEL_ARGS = ("dataset", "model", "scheme", "steps", "grid", "controls")
# Arguments that, with the model's, decide the data a run sees (compared on --resume).
DATA_ARGS = ("subset", "val_fraction")
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
STATS = {
    "cifar10": (data.CIFAR10_MEAN, data.CIFAR10_STD),
    "cifar100": (data.CIFAR100_MEAN, data.CIFAR100_STD),
}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, each flag checked on its own (see :func:`check` for the rest)."""
    parser = _Parser(description=__doc__, formatter_class=_Formatter)
    add = parser.add_argument
    add("--dataset", default="cifar10", choices=data.DATASETS, help="which CIFAR")
    add("--data-dir", default="data", help="where the CIFAR archive or folder is")
    add(
        "--download",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="download the official archive if the data is missing",
    )
    add(
        "--model",
        default="rknet",
        help="rknet, preact_resnet<6n+2> (20, 32, 44, 56, 110), lm_resnet<6n+2> (LM-ResNet), "
        f"or one of the PDE-motivated {', '.join(PDE_NETS)}",
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
    add("--epochs", type=_number(int, 1), default=120, help="passes over the training set")
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
        help="global batch size (split across ranks)",
    )
    add("--lr", type=_number(float, 0, closed=False), default=0.1, help="peak learning rate")
    add("--momentum", type=_number(float, 0, 1), default=0.9, help="SGD momentum")
    add("--nesterov", action="store_true", help="Nesterov momentum")
    add("--weight-decay", type=_number(float, 0), default=4e-4, help="on kernels only")
    add("--schedule", default="step", choices=SCHEDULES, help="learning-rate schedule")
    add("--label-smoothing", type=_number(float, 0, 1), default=0.0, help="of the loss")
    add(
        "--box-constraints",
        type=_number(float, 0, closed=False),
        nargs=2,
        default=None,
        metavar=("CONV", "OTHER"),
        help="clamp conv weights to [-CONV, CONV], other weights to [-OTHER, OTHER] after "
        "every step (the original code: 0.5 1.5)",
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
        "folder's config.json, if any, sets the model)",
    )
    return parser.parse_args(argv)


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
            schedule=args.schedule,
            label_smoothing=args.label_smoothing,
            box_constraints=args.box_constraints,
            amp=args.amp,
            channels_last=args.channels_last,
            compile=args.compile,
            sync_batchnorm=args.sync_bn,
            augment=args.augment,
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


def _network(args: argparse.Namespace, num_classes: int) -> torch.nn.Module:
    grid, controls = _numbers("--grid", args.grid), _numbers("--controls", args.controls)
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
            return db.rknet(num_classes, **times, **scheme)
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
        match = re.fullmatch(r"(preact_resnet|lm_resnet)(\d+)", args.model)
        if match is None:
            raise UsageError(
                "--model must be rknet, preact_resnet<6n+2>, lm_resnet<6n+2> or one of "
                f"{', '.join(PDE_NETS)}, got {args.model!r}"
            )
        name, depth = match.group(1), int(match.group(2))
        if controls is not None:
            raise UsageError(f"--controls is not for {name}, which keeps one control per step")
        if args.steps is not None:
            grid = [float(k) for k in range(args.steps + 1)]
        if name == "lm_resnet":
            if scheme:
                raise UsageError("--scheme is not for lm_resnet, whose blocks have a fixed scheme")
            return db.lm_resnet(depth, num_classes, t=grid)
        return db.preact_resnet(depth, num_classes, t=grid, **scheme)
    except (ValueError, TypeError, KeyError) as error:
        given = [f"{flag(k)} {getattr(args, k)}" for k in MODEL_ARGS[1:] if getattr(args, k)]
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        raise UsageError(f"{', '.join(given)}: {message}") from None


def load_model(args: argparse.Namespace, num_classes: int, state: dict) -> torch.nn.Module:
    """The model of ``args`` with ``state`` loaded, refined first as often as it was."""
    model = build_model(args, num_classes)
    db.refine_to_match_(model, state)
    model.load_state_dict(state)
    return model


# --------------------------------------------------------------------------- the data


def load_data(args: argparse.Namespace, device: torch.device):
    """Train, validation (or None) and test sets, the class count and the data's fingerprint."""
    try:
        arrays = data.load_cifar(args.dataset, args.data_dir, download=args.download)
    except (OSError, ValueError) as error:
        message = str(error).replace("call with download=True", "run without --no-download")
        raise UsageError(f"--data-dir {args.data_dir}: {message}") from None
    mean, std = STATS[arrays.name]
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
    """What the checkpoint stores and a resumption must repeat: model and data flags."""
    return {key: getattr(args, key) for key in (*MODEL_ARGS, *DATA_ARGS)}


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
            shown.append(f"{flag(name)} {old} -> {new}{' ' + reason if reason else ''}")
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
    """The model flags stored in a run's config.json."""
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UsageError(f"cannot read {path}: {error}") from None
    missing = [key for key in MODEL_ARGS if not isinstance(stored, dict) or key not in stored]
    if missing:
        raise UsageError(f"{path} lacks {', '.join(missing)}: not a config.json of this script")
    return {key: stored[key] for key in MODEL_ARGS}


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
        trainer.fit(train, val, resume=args.resume)
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
    best = load_model(args, num_classes, trainer.best_state).to(dist.device)
    figures = evaluate(best, test, amp=args.amp, dist=dist)
    if dist.is_main:
        last = trainer.history[-1]
        results = {
            "test_loss": figures["loss"],
            "test_acc": figures["acc"],
            "best_val_acc": trainer.best_acc if val is not None else None,
            "epochs": trainer.epoch,
            "train_seconds": sum(r["seconds"] for r in trainer.history),
            "last_images_per_s": last["images_per_s"],
        }
        atomic_write_text(out / RESULTS, json.dumps(results, indent=2) + "\n")
        print(f"test accuracy of best.pt: {100 * figures['acc']:.2f}% on {figures['count']} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
