"""Train a DynamicNet on your own data with dynamicblocks.train.Trainer.

    python examples/custom_data.py                          # CPU, a few seconds
    python examples/custom_data.py --out RUN_DIR --loader   # the same through a DataLoader
    python examples/custom_data.py --out RUN_DIR --resume   # continue an interrupted run
    python examples/custom_data.py --out RUN_DIR --overwrite --epochs 10   # start again

The data stands in for yours: grey 12x12 images of noisy stripes, labelled by
the stripes' direction (0, 45, 90 or 135 degrees). Replace make_data with code
that returns your inputs, shape (N, C, H, W), and integer labels, shape (N,).
They reach the trainer as a dynamicblocks TensorDataset (batched and shuffled
by the trainer) or, with --loader, as a torch DataLoader (used as it is).

Everything goes to --out: checkpoint.pt (every epoch), best.pt (the model with
the best validation accuracy), log.jsonl and curves.png. A folder that holds a
run is never overwritten: continue it with --resume or replace it with
--overwrite. A mistake prints one "error: ..." line and exits with status 2.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader

import dynamicblocks as db
from dynamicblocks.data import TensorDataset
from dynamicblocks.train import (
    RUN_FILES,
    CheckpointError,
    NonFiniteLossError,
    ResumeMismatchError,
    TrainConfig,
    Trainer,
    evaluate,
    load_checkpoint,
)

NUM_TRAIN, NUM_VAL, NUM_CLASSES = 1024, 256, 4


def make_data(count: int, size: int = 12, noise: float = 1.5, seed: int = 0):
    """``count`` grey images ``(count, 1, size, size)`` of noisy stripes, and their labels.

    Label k: stripes at k * 45 degrees. Replace this function with your own data.
    """
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, NUM_CLASSES, (count,), generator=gen)
    angle = (labels * math.pi / NUM_CLASSES).view(-1, 1, 1)
    coords = torch.arange(size, dtype=torch.float32)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    frequency = (0.8 + 0.8 * torch.rand(count, generator=gen)).view(-1, 1, 1)
    phase = (2 * math.pi * torch.rand(count, generator=gen)).view(-1, 1, 1)
    stripes = torch.sin(frequency * (x * torch.cos(angle) + y * torch.sin(angle)) + phase)
    images = stripes + noise * torch.randn(count, size, size, generator=gen)
    return images.unsqueeze(1), labels


def build_model(in_channels: int, num_classes: int) -> db.DynamicNet:
    """Two stages of midpoint-rule blocks of pre-activation layers, 8 then 16 channels."""
    layer = db.PreactDoubleLayer  # called with the channel count of each stage
    return db.DynamicNet(
        [
            db.Stage(8, 16, layer, t=[0.0, 0.5, 1.0], scheme="midpoint"),  # then 2x2 avg pool
            db.Stage(16, 16, layer, t=[0.0, 0.5, 1.0], scheme="midpoint", pool=None),
        ],
        in_channels=in_channels,
        num_classes=num_classes,
    )


def datasets(loader: bool, batch_size: int):
    """Training and validation data, as dynamicblocks TensorDatasets or torch DataLoaders."""
    images, labels = make_data(NUM_TRAIN + NUM_VAL)
    train = (images[:NUM_TRAIN], labels[:NUM_TRAIN])
    val = (images[NUM_TRAIN:], labels[NUM_TRAIN:])
    if not loader:
        return TensorDataset(*train, NUM_CLASSES), TensorDataset(*val, NUM_CLASSES)
    # drop_last: a last batch of one image would break BatchNorm in training mode.
    pairs = torch.utils.data.TensorDataset  # yields (image, label); DataLoader stacks them
    return (
        DataLoader(pairs(*train), batch_size=batch_size, shuffle=True, drop_last=True),
        DataLoader(pairs(*val), batch_size=256),
    )


class Parser(argparse.ArgumentParser):
    """Errors are one ``error: ...`` line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message}\n")


class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's layout and shows every default."""


def main(argv: list[str] | None = None) -> int:
    """Train (or continue) a run; returns the exit status (0 done, 1 diverged)."""
    parser = Parser(description=__doc__, formatter_class=Formatter)
    parser.add_argument("--epochs", type=int, default=6, help="passes over the training set")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step")
    parser.add_argument("--lr", type=float, default=0.1, help="peak learning rate (cosine)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the weights and batches")
    parser.add_argument("--out", default="runs/custom_data", help="the run folder")
    parser.add_argument("--loader", action="store_true", help="feed a torch DataLoader")
    run = parser.add_mutually_exclusive_group()
    run.add_argument("--resume", action="store_true", help="continue the run (same flags)")
    run.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    args = parser.parse_args(argv)

    try:  # TrainConfig checks every setting; augment=False: no crops or flips
        config = TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            schedule="cosine",
            augment=False,
            seed=args.seed,
            progress=False,
        )
    except ValueError as error:
        parser.error(str(error))
    if config.batch_size > NUM_TRAIN:
        parser.error(f"--batch-size {config.batch_size} exceeds the {NUM_TRAIN} training images")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out} is a file, not a folder")
    held = [name for name in RUN_FILES if (out / name).exists()]
    if held and not (args.resume or args.overwrite):
        parser.error(f"--out {out} holds a run: continue it with --resume or use --overwrite")
    if args.overwrite:
        for name in held:
            (out / name).unlink()

    train, val = datasets(args.loader, args.batch_size)
    torch.manual_seed(args.seed)  # the initial weights
    model = build_model(in_channels=1, num_classes=NUM_CLASSES)
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters; output in {out}")
    # extra is stored in the checkpoint; --resume refuses a run with other values.
    trainer = Trainer(model, config, out, extra={"loader": args.loader})
    try:
        trainer.fit(train, val, resume=args.resume)
    except (ResumeMismatchError, CheckpointError) as error:
        parser.error(f"--resume: {error}")
    except NonFiniteLossError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"error: interrupted: continue with --out {out} --resume", file=sys.stderr)
        return 130

    best = build_model(in_channels=1, num_classes=NUM_CLASSES)
    best.load_state_dict(load_checkpoint(out / "best.pt"))
    accuracy = evaluate(best, val)["acc"]
    print(f"validation accuracy of best.pt: {100 * accuracy:.2f}%")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)  # fastest for these tiny images; drop this for larger data
    sys.exit(main())
