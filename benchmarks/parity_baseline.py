"""Plain-PyTorch CIFAR-10 baseline for benchmarks/parity.py: He et al.'s ResNet-20, no library.

    python benchmarks/parity_baseline.py --data-dir DATA_DIR --out runs/parity/baseline
    python benchmarks/parity_baseline.py --data-dir DATA_DIR --out runs/parity/baseline --resume
    python benchmarks/parity_baseline.py --data-dir DATA_DIR --out runs/smoke --subset 512 \\
        --epochs 1 --overwrite                                    # a check in seconds

The independent reference of the parity benchmark: this file imports nothing
from ``dynamicblocks``. Everything the library's training path does for the
same recipe is written here again in plain PyTorch:

* data: its own reader of the CIFAR-10 "python version" batches
  (``DATA_DIR/cifar-10-batches-py/data_batch_1..5`` and ``test_batch``,
  pickles holding ``b"data"``, N x 3072 uint8, channel-major 32x32, and
  ``b"labels"``). It calls ``pickle.load`` on them, which runs whatever the
  files say: it TRUSTS the files (the official ones, or copies you made).
  The library reads them with a restricted unpickler; this baseline does not
  need to.
* model: the pre-activation ResNet-20 of He et al., "Identity mappings in deep
  residual networks" (ECCV 2016), CIFAR variant: a 3x3 conv to 16 channels
  (no bias); three stages of three units ``x + K2 relu(BN2(K1 relu(BN1 x)))``
  at 16/32/64 channels; the first unit of stages 2 and 3 has stride 2 in
  ``K1`` and a strided 1x1 projection shortcut ``P a`` of the same
  pre-activated input ``a = relu(BN1 x)`` as its residual branch (as in the
  paper's code, KaimingHe/resnet-1k-layers); a final BN -> ReLU, global
  average pooling and a linear layer. 272,282 parameters for 10 classes.
  Initialisation (the distribution of the library's
  ``preact_resnet(20, shortcut="projection")``, He et al.'s): every
  convolution ``N(0, 2 / (k^2 out_channels))``; BatchNorm weight 1, bias 0;
  linear weight ``U(-1/sqrt(64), 1/sqrt(64))`` (PyTorch's default), bias 0.
* augmentation, per batch with tensor ops: each uint8 image is padded by 4
  black (zero) pixels on every side, a 32x32 crop is taken at a random
  offset in ``[0, 8]^2`` and mirrored left-right with probability 1/2; only
  then are the pixels normalised, ``(x / 255 - mean) / std`` with the
  CIFAR-10 mean (0.4914, 0.4822, 0.4465) and std (0.2470, 0.2435, 0.2616)
  per channel (so the padding is black, as in the library).
* loop: the recipe of the library's ``Trainer`` with ``--schedule onecycle``:
  SGD (momentum 0.9, no Nesterov) with weight decay only on parameters with
  ``ndim >= 2`` (kernels and the linear weight); ``OneCycleLR(max_lr=lr,
  total_steps=epochs * steps_per_epoch)`` with its defaults (30 % warm-up from
  lr/25, cosine annealing to lr/25e4, and momentum cycled between 0.95 and
  0.85, which replaces the 0.9) stepped after every batch; cross-entropy; a
  fresh permutation every epoch from a generator seeded with the seed and the
  epoch; the last, incomplete batch of an epoch is dropped (as the trainer's
  ``drop_last=True``), so an epoch is ``floor(N / batch)`` steps. The whole
  training set (50,000 images, no validation split) is trained on; after
  every epoch the 10,000 test images are evaluated (eval mode, batches of
  500). ``seconds`` is the training time of the epoch only
  (``time.perf_counter``, evaluation excluded).

Defaults: 15 epochs, batch 128, peak lr 0.1 (He et al.'s learning rate for
batch 128), weight decay 5e-4; benchmarks/parity.py passes the same values to
the library.

Files in ``--out``: ``checkpoint.pt`` after every epoch (model, optimiser,
scheduler, RNG state, history and the settings, written to a temporary file
in the folder and moved into place with ``os.replace``), ``log.jsonl`` (one
line per epoch: epoch, lr, train_loss, train_acc, test_loss, test_acc,
seconds, images_per_s) and, at the end, ``results.json``. An interrupted run
continues exactly where its last checkpoint left it with ``--resume`` (the
same command plus ``--resume``); a finished one is not trained again. A
folder that holds a run is never overwritten without ``--resume`` or
``--overwrite``; such mistakes print one ``error: ...`` line and exit with
status 2.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{k}" for k in range(1, 6))
TEST_FILES = ("test_batch",)
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
NUM_CLASSES = 10
PARAMETERS = 272_282  # of PreactResNet(20, 10)
PADDING = 4
EVAL_BATCH = 500
CHECKPOINT, LOG, RESULTS = "checkpoint.pt", "log.jsonl", "results.json"
RUN_FILES = (CHECKPOINT, LOG, RESULTS)
FORMAT = "parity_baseline/1"
# The arguments a resumed run must repeat (the data is compared by its fingerprint).
SETTINGS = ("epochs", "batch_size", "lr", "weight_decay", "seed", "subset")


class UsageError(Exception):
    """A mistake on the command line or in the files it names: one error line, exit 2."""


# --------------------------------------------------------------------------- data


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64 of one batch file.

    ``pickle.load`` trusts the file: only read batches you trust.
    """
    with open(path, "rb") as file:
        batch = pickle.load(file, encoding="bytes")
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"{path} is not a CIFAR-10 batch (no b'data' and b'labels')")
    images = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"])
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3 * 32 * 32:
        raise ValueError(
            f"{path}: b'data' must be N x 3072 uint8, got {images.dtype} {images.shape}"
        )
    if labels.shape != (len(images),) or labels.dtype.kind not in "iu":
        raise ValueError(f"{path}: b'labels' must be {len(images)} integers")
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(f"{path}: labels must lie in [0, {NUM_CLASSES})")
    return images.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def load_cifar10(data_dir: str | os.PathLike) -> tuple[np.ndarray, ...]:
    """Train images, train labels, test images, test labels, in the files' order.

    Raises:
        UsageError: naming ``--data-dir``, if a file is missing or unreadable.
    """
    folder = Path(data_dir).expanduser() / FOLDER
    missing = [name for name in TRAIN_FILES + TEST_FILES if not (folder / name).is_file()]
    if missing:
        raise UsageError(
            f"--data-dir {data_dir}: CIFAR-10 not found: {folder} lacks {', '.join(missing)} "
            f"(extract cifar-10-python.tar.gz into {data_dir})"
        )
    parts = []
    for files in (TRAIN_FILES, TEST_FILES):
        try:
            batches = [read_batch(folder / name) for name in files]
        except (OSError, EOFError, ValueError, TypeError, pickle.UnpicklingError) as error:
            raise UsageError(f"--data-dir {data_dir}: {error}") from None
        parts.append(np.ascontiguousarray(np.concatenate([b[0] for b in batches])))
        parts.append(np.concatenate([b[1] for b in batches]))
    return tuple(parts)


def fingerprint(arrays: tuple[np.ndarray, ...]) -> str:
    """A short hash of the images and labels a run sees (compared on ``--resume``)."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()[:16]


def augment(images: torch.Tensor, generator: torch.Generator, padding: int = PADDING):
    """Random crops of the zero-padded uint8 batch ``(B, C, H, W)``, each mirrored w.p. 1/2.

    The offsets and flips are drawn on the CPU from ``generator``.
    """
    batch, channels, height, width = images.shape
    device = images.device
    offsets = torch.randint(0, 2 * padding + 1, (batch, 2), generator=generator).to(device)
    flips = (torch.rand(batch, generator=generator) < 0.5).to(device)
    padded = F.pad(images, (padding, padding, padding, padding))  # black pixels
    rows = offsets[:, :1] + torch.arange(height, device=device)  # (B, H)
    cols = offsets[:, 1:] + torch.arange(width, device=device)  # (B, W)
    crops = padded[
        torch.arange(batch, device=device).view(-1, 1, 1, 1),
        torch.arange(channels, device=device).view(1, -1, 1, 1),
        rows.view(batch, 1, height, 1),
        cols.view(batch, 1, 1, width),
    ]
    return torch.where(flips.view(-1, 1, 1, 1), crops.flip(3), crops)


def normalise(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, C, H, W)`` -> float32 ``(x / 255 - mean) / std``."""
    return (images.float() / 255.0 - mean) / std


# --------------------------------------------------------------------------- model


class PreactUnit(nn.Module):
    """He et al.'s pre-activation unit ``s(a) + K2 relu(BN2(K1 a))`` with ``a = relu(BN1 x)``.

    ``s(a)`` is ``x`` itself, or a strided 1x1 projection ``P a`` of the same
    pre-activation when the unit changes the width or the resolution.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.norm1(x))
        branch = self.conv2(F.relu(self.norm2(self.conv1(a))))
        return (x if self.shortcut is None else self.shortcut(a)) + branch


class PreactResNet(nn.Module):
    """Pre-activation ResNet for CIFAR (He et al., 2016), depth ``6 n + 2``; 20 by default."""

    def __init__(
        self, depth: int = 20, num_classes: int = NUM_CLASSES, widths=(16, 32, 64)
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1, got {depth}")
        units = (depth - 2) // 6
        self.conv = nn.Conv2d(3, widths[0], 3, padding=1, bias=False)
        stages, channels = [], widths[0]
        for i, width in enumerate(widths):
            stage = [PreactUnit(channels, width, stride=1 if i == 0 else 2)]
            stage += [PreactUnit(width, width) for _ in range(units - 1)]
            stages.append(nn.Sequential(*stage))
            channels = width
        self.stages = nn.Sequential(*stages)
        self.norm = nn.BatchNorm2d(channels)
        self.fc = nn.Linear(channels, num_classes)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """He et al.'s initialisation (see the module's docstring)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_out = module.out_channels * module.kernel_size[0] * module.kernel_size[1]
                module.weight.normal_(0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()  # weight 1, bias 0, fresh running statistics
        bound = 1.0 / math.sqrt(self.fc.in_features)
        self.fc.weight.uniform_(-bound, bound)
        self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm(self.stages(self.conv(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------- training


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator of epoch ``epoch`` (from 0): its order and its augmentation."""
    return torch.Generator().manual_seed(1_000_003 * seed + epoch)


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.SGD:
    """SGD with momentum 0.9; weight decay on kernels and linear weights (``ndim >= 2``) only."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=False)


@torch.no_grad()
def evaluate(model, images, labels, mean, std) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` in eval mode (mode restored after)."""
    was_training = model.training
    model.eval()
    loss_sum = correct = 0.0
    for start in range(0, len(labels), EVAL_BATCH):
        x = normalise(images[start : start + EVAL_BATCH], mean, std)
        y = labels[start : start + EVAL_BATCH]
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    model.train(was_training)
    count = max(len(labels), 1)
    return loss_sum / count, correct / count


def train_epoch(model, optimizer, scheduler, images, labels, mean, std, args, epoch) -> dict:
    """One epoch (``epoch`` from 0) of augmented, shuffled, full batches; its record."""
    generator = epoch_generator(args.seed, epoch)
    order = torch.randperm(len(labels), generator=generator).to(labels.device)
    steps = len(order) // args.batch_size  # the incomplete last batch is dropped
    lr = optimizer.param_groups[0]["lr"]
    model.train()
    totals = torch.zeros(3, dtype=torch.float64, device=labels.device)
    start = time.perf_counter()
    for step in range(steps):
        indices = order[step * args.batch_size : (step + 1) * args.batch_size]
        x = normalise(augment(images[indices], generator), mean, std)
        y = labels[indices]
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        correct = (logits.detach().argmax(1) == y).sum().double()
        count = totals.new_tensor(float(len(y)))
        totals += torch.stack([loss.detach().double() * count, correct, count])
    loss_sum, correct, count = totals.tolist()  # waits for the device
    seconds = time.perf_counter() - start
    if not math.isfinite(loss_sum):
        raise FloatingPointError(f"the training loss became non-finite in epoch {epoch + 1}")
    return {
        "epoch": epoch + 1,
        "lr": lr,
        "train_loss": loss_sum / count,
        "train_acc": correct / count,
        "seconds": seconds,
        "images_per_s": count / seconds,
    }


# --------------------------------------------------------------------------- run folder


def atomic_write(path: Path, write) -> None:
    """Call ``write(temporary_path)``, then move the file onto ``path`` with ``os.replace``.

    The temporary file is in the same folder, so the move is atomic: ``path``
    holds either the old or the new content, never a partial one.
    """
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(name)
        os.replace(name, path)
    finally:
        if os.path.exists(name):
            os.unlink(name)


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda name: Path(name).write_text(text, encoding="utf-8"))


def write_log(history: list[dict], out: Path) -> None:
    write_text(out / LOG, "".join(json.dumps(record) + "\n" for record in history))


def results(history: list[dict], settings: dict, parameters: int) -> dict[str, Any]:
    """``results.json``: the final and best test accuracy and the epoch times."""
    best = max(history, key=lambda record: record["test_acc"])
    seconds = [record["seconds"] for record in history]
    return {
        "model": "preact_resnet20 (He et al. 2016, projection shortcuts), plain PyTorch",
        "parameters": parameters,
        "epochs": len(history),
        "test_loss": history[-1]["test_loss"],
        "test_acc": history[-1]["test_acc"],
        "best_test_acc": best["test_acc"],
        "best_epoch": best["epoch"],
        "train_seconds": sum(seconds),
        "median_seconds_per_epoch": statistics.median(seconds),
        "last_images_per_s": history[-1]["images_per_s"],
        "settings": settings,
    }


def finish(out: Path, history: list[dict], settings: dict, parameters: int) -> None:
    """Write ``log.jsonl`` and ``results.json`` and print the final figures."""
    write_log(history, out)
    figures = results(history, settings, parameters)
    write_text(out / RESULTS, json.dumps(figures, indent=2) + "\n")
    print(
        f"final test accuracy {100 * figures['test_acc']:.2f}% (best "
        f"{100 * figures['best_test_acc']:.2f}% in epoch {figures['best_epoch']}), "
        f"{figures['median_seconds_per_epoch']:.1f} s per epoch (median); "
        f"results in {out / RESULTS}",
        flush=True,
    )


def check_run_folder(args: argparse.Namespace, out: Path) -> None:
    """Refuse to start over a run unless --resume or --overwrite says what to do with it."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    held = [name for name in RUN_FILES if (out / name).exists()]
    if held and not (args.resume or args.overwrite):
        raise UsageError(
            f"--out {out} holds a run ({', '.join(held)}): continue it with --resume, "
            f"choose another --out, or replace it with --overwrite"
        )


def load_state(path: Path, device: torch.device) -> dict[str, Any]:
    """The checkpoint at ``path``, checked to be this script's."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # unpickling errors of every kind: a damaged file
        raise UsageError(f"--resume: cannot read {path}: {error}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UsageError(f"--resume: {path} is not a checkpoint of parity_baseline.py")
    return state


def check_settings(path: Path, stored: dict, settings: dict) -> None:
    """Raise if a resumed run would not repeat the checkpoint's settings."""
    changed = [
        f"--{key.replace('_', '-')} {stored.get(key)} -> {value}"
        for key, value in settings.items()
        if key in stored and stored[key] != value
    ]
    if changed:
        raise UsageError(f"--resume: {path} was trained with other settings: {'; '.join(changed)}")


# --------------------------------------------------------------------------- command line


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one ``error: ...`` line on stderr (exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see --help)\n")


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's layout and shows every default."""


def _positive(kind: type):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
        return value

    return parse


def _non_negative(kind: type):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}") from None
        if not (math.isfinite(value) and value >= 0):
            raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
        return value

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = _Parser(
        description=__doc__,
        formatter_class=_Formatter,
    )
    add = parser.add_argument
    add("--data-dir", default="data", help="the folder holding cifar-10-batches-py/")
    add("--out", required=True, help="the run folder")
    add("--epochs", type=_positive(int), default=15, help="passes over the training set")
    add("--batch-size", type=_positive(int), default=128, help="images per step")
    add("--lr", type=_positive(float), default=0.1, help="peak learning rate of OneCycleLR")
    add("--weight-decay", type=_non_negative(float), default=5e-4, help="on kernels only")
    add("--seed", type=_non_negative(int), default=0, help="seeds the weights and the batches")
    add(
        "--subset",
        type=_positive(int),
        default=None,
        help="use only the first N training and the first N test images (smoke runs)",
    )
    add(
        "--threads",
        type=_positive(int),
        default=None,
        help="torch.set_num_threads; None: torch's default",
    )
    add("--device", default=None, help="cpu, cuda, ...; None: cuda if available")
    add(
        "--stop-after",
        type=_positive(int),
        default=None,
        metavar="E",
        help="stop after epoch E, as an interruption would (continue with --resume)",
    )
    run = parser.add_mutually_exclusive_group()
    run.add_argument("--resume", action="store_true", help="continue the run in --out")
    run.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    return parser.parse_args(argv)


def device_of(text: str | None) -> torch.device:
    if text is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise UsageError(f"--device must be cpu, cuda, cuda:N, ..., got {text!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {text}: CUDA is not available here")
    return device


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, 1 for a failed run, 2 for a mistake)."""
    args = parse_args(argv)
    try:
        return train(args)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    except FloatingPointError as error:
        print(f"error: {error}; the last checkpoint is intact", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print(f"error: interrupted: continue with --resume --out {args.out}", file=sys.stderr)
        return 130


def train(args: argparse.Namespace) -> int:
    out = Path(args.out)
    check_run_folder(args, out)
    device = device_of(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = {key: getattr(args, key) for key in SETTINGS}
    state = None
    if args.resume and (out / CHECKPOINT).is_file():
        state = load_state(out / CHECKPOINT, device)
        check_settings(out / CHECKPOINT, state["settings"], settings)
        if state["epoch"] >= args.epochs:  # nothing to train: bring the files up to date
            print(f"{out} is complete ({state['epoch']} epochs): nothing to do", flush=True)
            finish(out, state["history"], state["settings"], state["parameters"])
            return 0

    print(f"reading CIFAR-10 from {args.data_dir}", flush=True)
    arrays = tuple(part[: args.subset] for part in load_cifar10(args.data_dir))
    settings["data"] = fingerprint(arrays)
    if state is not None:
        check_settings(out / CHECKPOINT, state["settings"], settings)
    train_images, train_labels, test_images, test_labels = (
        torch.from_numpy(part).to(device) for part in arrays
    )
    if len(train_labels) < args.batch_size:
        raise UsageError(
            f"--batch-size {args.batch_size} exceeds the {len(train_labels)} training images"
        )
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)

    torch.manual_seed(args.seed)
    model = PreactResNet(20, NUM_CLASSES).to(device)
    parameters = count_parameters(model)
    optimizer = make_optimizer(model, args.lr, args.weight_decay)
    steps_per_epoch = len(train_labels) // args.batch_size
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=max(args.epochs * steps_per_epoch, 2)
    )
    epoch, history = 0, []
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        epoch, history = state["epoch"], list(state["history"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if torch.cuda.is_available() and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state_all([s.cpu() for s in state["rng"]["cuda"]])
        print(f"resuming {out} after epoch {epoch}", flush=True)
    elif args.overwrite:
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    for leftover in out.glob(".*.tmp"):  # of a save that was killed
        leftover.unlink(missing_ok=True)
    print(
        f"preact_resnet20 ({parameters:,} parameters) on {device}: {len(train_labels)} train / "
        f"{len(test_labels)} test images, {steps_per_epoch} steps per epoch; output in {out}",
        flush=True,
    )

    stop = args.epochs if args.stop_after is None else min(args.epochs, args.stop_after)
    while epoch < stop:
        record = train_epoch(
            model, optimizer, scheduler, train_images, train_labels, mean, std, args, epoch
        )
        loss, acc = evaluate(model, test_images, test_labels, mean, std)
        record = {**record, "test_loss": loss, "test_acc": acc}
        epoch += 1
        history.append(record)
        checkpoint = {
            "format": FORMAT,
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
            "history": history,
            "settings": settings,
            "parameters": parameters,
        }
        atomic_write(out / CHECKPOINT, lambda name, c=checkpoint: torch.save(c, name))
        write_log(history, out)
        print(
            f"epoch {epoch:>3}/{args.epochs}  lr {record['lr']:.2e}  train loss "
            f"{record['train_loss']:.4f} acc {100 * record['train_acc']:.2f}%  test loss "
            f"{loss:.4f} acc {100 * acc:.2f}%  {record['seconds']:.1f} s  "
            f"{record['images_per_s']:.0f} img/s",
            flush=True,
        )
    if epoch < args.epochs:
        print(f"stopped after epoch {epoch} (--stop-after): continue with --resume", flush=True)
        return 0
    finish(out, history, settings, parameters)
    return 0


if __name__ == "__main__":
    sys.exit(main())
