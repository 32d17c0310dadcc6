"""Evaluate a trained CIFAR model re-manifested with other schemes and step counts.

    python examples/remanifest_cifar.py RUN_DIR                 # its best.pt
    python examples/remanifest_cifar.py RUN --schemes euler,rk4 --steps 1,2,4,8,16

A dynamic block is a discretised ODE, so the weights ``theta(t)`` a model
learned can run on another grid or with another scheme without retraining
(:func:`dynamicblocks.remanifest`). This script loads a run of
``examples/cifar10.py`` (its ``config.json`` and ``best.pt``), re-manifests
every block with each scheme and uniform step count, and reports the test
accuracy and the inference time of each manifestation: a model trained with
RK4 keeps most of its accuracy with fewer steps, and runs faster.

Output: a table on stdout and ``remanifest.json`` in the run folder (or --out).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import dynamicblocks as db
from dynamicblocks.train import CheckpointError, evaluate, load_checkpoint

from cifar10 import MODEL_ARGS, NUM_CLASSES, UsageError, device_of, load_data, load_model


def _items(text: str, kind: type, flag: str) -> list:
    try:
        values = [kind(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{flag}: expected a comma-separated list") from None
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.error = lambda message: parser.exit(2, f"error: {message} (see --help)\n")
    parser.add_argument("run", help="a folder written by examples/cifar10.py")
    parser.add_argument("--model-file", default="best.pt", help="in the run folder")
    parser.add_argument("--schemes", default="euler,midpoint,rk4")
    parser.add_argument("--steps", default="1,2,4,8", help="steps per block")
    parser.add_argument("--data-dir", default=None, help="default: the run's")
    parser.add_argument("--subset", type=int, default=None, help="only the first N test images")
    parser.add_argument("--device", default=None)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--out", default=None, help="the JSON file (default: RUN/remanifest.json)")
    args = parser.parse_args(argv)
    run = Path(args.run)
    if not (run / "config.json").is_file() or not (run / args.model_file).is_file():
        parser.error(f"run: {run} has no config.json and {args.model_file}")
    try:
        args.schemes = _items(args.schemes, str, "--schemes")
        args.steps = _items(args.steps, int, "--steps")
        for scheme in args.schemes:
            db.get_tableau(scheme)
    except (argparse.ArgumentTypeError, ValueError) as error:
        parser.error(str(error))
    if min(args.steps) < 1:
        parser.error(f"--steps: step counts must be positive, got {args.steps}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the command line; a mistake is one ``error: ...`` line and exit status 2."""
    args = parse_args(argv)
    try:
        report(args)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    return 0


def _load(args: argparse.Namespace) -> tuple:
    """The run's settings, model and test set, every problem a :class:`UsageError`."""
    run = Path(args.run)
    try:
        stored = argparse.Namespace(**json.loads((run / "config.json").read_text()))
        state = load_checkpoint(run / args.model_file)
    except (ValueError, TypeError, CheckpointError) as error:
        raise UsageError(f"cannot read the run {run}: {error}") from None
    stored.data_dir = args.data_dir or stored.data_dir
    stored.subset, stored.download, stored.val_fraction = args.subset, False, 0.0
    device = device_of(args.device)
    try:
        model = load_model(stored, NUM_CLASSES[stored.dataset], state)
    except (RuntimeError, ValueError) as error:
        raise UsageError(f"{run / args.model_file} does not fit its config.json: {error}") from None
    _, _, test, _, _ = load_data(stored, device)
    return run, stored, model.to(device).eval(), test


def report(args: argparse.Namespace) -> list[dict]:
    """Evaluate every manifestation, print the table and write the JSON file."""
    run, stored, model, test = _load(args)
    trained = [(b.tableau.name, b.num_steps) for b in db.dynamic_blocks(model)]
    print(f"{run / args.model_file}: {stored.model} trained as {trained[0][0]} with "
          f"{[n for _, n in trained]} steps per block; {len(test)} test images")  # fmt: skip
    manifestations = [("trained", None)] + [(s, n) for s in args.schemes for n in args.steps]
    rows = []
    print(f"{'scheme':<9} {'steps':>5} {'accuracy':>9} {'change':>7} {'seconds':>8} {'img/s':>7}")
    for scheme, steps in manifestations:
        variant = model if steps is None else db.remanifest(model, steps=steps, scheme=scheme)
        start = time.perf_counter()
        figures = evaluate(variant, test, args.batch_size)
        seconds = time.perf_counter() - start
        row = {
            "scheme": db.dynamic_blocks(variant)[0].tableau.name,
            "steps": [b.num_steps for b in db.dynamic_blocks(variant)],
            "accuracy": figures["acc"],
            "seconds": seconds,
            "images_per_s": figures["count"] / seconds,
        }
        rows.append(row)
        change = 100 * (row["accuracy"] - rows[0]["accuracy"])
        shown = "trained" if steps is None else scheme
        print(f"{shown:<9} {row['steps'][0]:>5} {100 * row['accuracy']:>8.2f}% {change:>+6.2f} "
              f"{seconds:>8.2f} {row['images_per_s']:>7.0f}", flush=True)  # fmt: skip
    out = Path(args.out) if args.out else run / "remanifest.json"
    settings = {key: getattr(stored, key) for key in MODEL_ARGS}
    out.write_text(json.dumps({"model": settings, "rows": rows}, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    sys.exit(main())
