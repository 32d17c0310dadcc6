"""Reproduce the original DynamicBlocks CIFAR-10 run on one GPU and compare with its 89.08 %.

    python examples/reproduce_rknet.py --data-dir DATA_DIR                  # one CUDA GPU
    python examples/reproduce_rknet.py --data-dir DATA_DIR --time-limit 8   # stop, saved, by 8 min
    python examples/reproduce_rknet.py --data-dir DATA_DIR                  # again: continues
    python examples/reproduce_rknet.py --data-dir DATA_DIR --smoke          # CPU check, seconds

The run is ``examples/cifar10.py --recipe original --model rknet`` on
CIFAR-10: the original network (RK4, DoubleSymLayer with TvNorm, ``t =
t_theta = 0..4``, widths 16-32-64-64, 251,866 parameters) trained as the
original code trains it (SGD, momentum 0.9, weight decay 4e-4 except on the
norm layers, weights clipped after every step, batch 125, 120 epochs at
0.1/0.01/0.001/0.0001 for 60/20/20/20, an 80/20 train/validation split,
``best.pt`` by the lowest validation loss, images normalised to ``x - 0.5``;
see ``docs/training.md``), with the fast path of one GPU: autocast to
bfloat16 (``--amp bf16``), ``--channels-last``, ``--compile``, and the
images held on the GPU as uint8 (``CifarDataset`` crops, flips and
normalises them there, so no data loader runs on the host).

Everything goes to ``--out`` (default ``runs/reproduce_rknet``). A folder
that holds an unfinished run is continued (``--resume``), exactly where its
last checkpoint left it; one that holds a finished run is only reported.
With ``--time-limit MINUTES`` the run stops, checkpointed, after the epoch
when one more would end past the limit (see ``--time-limit`` of
``examples/cifar10.py``): call the script again to go on.

When all epochs are done it prints the test accuracy of ``best.pt`` beside
the original's 89.08 % (``results/default_RK4_DoubleSym_cifar10_*.txt`` in
EmoryMLIP/DynamicBlocks), with the training time and images/s, and writes the
same table to ``OUT/reproduction.md``. ``--smoke`` makes a check of the same
path on the CPU in seconds (256 images, one epoch, batch 32, no AMP or
compilation): its accuracy says nothing about the original's.

A mistake (a missing data set, no CUDA, a folder that holds another run)
prints one ``error: ...`` line and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dynamicblocks.train import atomic_write_text

from cifar10 import UsageError, device_of
from cifar10 import main as cifar10_main

PAPER_ACCURACY = 89.08  # %, the original code's CIFAR-10 run (RK4, DoubleSym)
PAPER_EPOCHS = 120
RECIPE = ["--dataset", "cifar10", "--recipe", "original", "--model", "rknet"]
GPU = ["--amp", "bf16", "--channels-last", "--compile"]
SMOKE = ["--subset", "256", "--epochs", "1", "--batch-size", "32", "--amp", "none"]
TABLE = "reproduction.md"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one ``error: ...`` line on stderr (exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see --help)\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--data-dir", default="data", help="the folder holding cifar-10-batches-py/")
    add(
        "--out",
        default=None,
        help="the run folder; default: runs/reproduce_rknet (runs/reproduce_rknet_smoke with "
        "--smoke)",
    )
    add("--device", default=None, help="cuda, cuda:1, ...; default: cuda (cpu with --smoke)")
    add(
        "--time-limit",
        default=None,
        metavar="MINUTES",
        help="stop, checkpointed, before this many minutes of training; call again to go on",
    )
    add("--download", action="store_true", help="download CIFAR-10 into --data-dir if missing")
    add("--smoke", action="store_true", help="a CPU check of the whole path in seconds")
    return parser.parse_args(argv)


def cifar10_args(args: argparse.Namespace, out: Path) -> list[str]:
    """The command line of ``examples/cifar10.py`` that makes (or continues) the run."""
    device = args.device or ("cpu" if args.smoke else "cuda")
    argv = [*RECIPE, "--data-dir", args.data_dir, "--out", str(out), "--device", device]
    argv += SMOKE if args.smoke else GPU
    if not args.download:
        argv.append("--no-download")
    if args.time_limit is not None:
        argv += ["--time-limit", args.time_limit]
    if (out / "checkpoint.pt").is_file():
        argv.append("--resume")
    return argv


def read_results(out: Path, epochs: int) -> dict[str, Any] | None:
    """The ``results.json`` of a run of ``epochs`` epochs in ``out``, or None if there is none."""
    try:
        results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return results if isinstance(results, dict) and results.get("epochs") == epochs else None


def table(results: dict[str, Any], device: str, smoke: bool) -> str:
    """The run's test accuracy beside the original's, as Markdown."""
    minutes = results["train_seconds"] / 60
    run = "this run (smoke check: 256 images, 1 epoch)" if smoke else "this run"
    return "\n".join(
        [
            "| CIFAR-10, rknet (RK4, DoubleSym), original recipe | test accuracy (%) | epochs "
            "| training time | images/s |",
            "|---|---|---|---|---|",
            f"| original DynamicBlocks (paper's code) | {PAPER_ACCURACY:.2f} | {PAPER_EPOCHS} "
            "| | |",
            f"| {run}, {device} | {100 * results['test_acc']:.2f} | {results['epochs']} "
            f"| {minutes:.1f} min | {results['last_images_per_s']:.0f} |",
            "",
            "a smoke check of the path: its accuracy is not comparable with the original's"
            if smoke
            else f"difference: {100 * results['test_acc'] - PAPER_ACCURACY:+.2f} points",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Run (or continue) the reproduction; 0 when done or stopped by the time limit."""
    args = parse_args(argv)
    out = Path(args.out or ("runs/reproduce_rknet_smoke" if args.smoke else "runs/reproduce_rknet"))
    epochs = 1 if args.smoke else PAPER_EPOCHS
    try:
        device = device_of(args.device or ("cpu" if args.smoke else "cuda"))
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    results = read_results(out, epochs)
    if results is None:
        status = cifar10_main(cifar10_args(args, out))
        if status:
            return status
        results = read_results(out, epochs)
        if results is None:  # stopped by --time-limit; cifar10.py said so
            print("call this script again to continue the run", flush=True)
            return 0
    else:
        print(f"{out} holds a finished run: its results", flush=True)
    text = table(results, str(device), args.smoke)
    print(text, flush=True)
    atomic_write_text(out / TABLE, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
