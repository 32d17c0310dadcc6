"""Train a dynamic-block network on CIFAR-10 or CIFAR-100.

    python examples/cifar10.py --subset 512 --epochs 1          # a quick check, CPU
    python examples/cifar10.py                                  # the original DynamicBlocks run
    python examples/cifar10.py --model preact_resnet56 --schedule cosine --amp bf16 --compile
    python examples/cifar10.py --model hamiltonian --box-constraints 1 1   # Ruthotto & Haber
    torchrun --nproc_per_node 4 examples/cifar10.py --sync-bn   # 4 GPUs, DDP
    python examples/cifar10.py --out runs/x --resume            # continue an interrupted run
    python examples/cifar10.py --evaluate runs/x/best.pt        # test accuracy of a saved model

The defaults reproduce the original DynamicBlocks CIFAR-10 run: rknet (RK4,
DoubleSymLayer, t = 0..4), batch 125, 120 epochs of SGD (momentum 0.9, weight
decay 4e-4) with the step schedule, 40k/10k train/validation split. The data is
read from --data-dir (downloaded there if missing and allowed). Everything goes
to --out: checkpoint.pt (every epoch), best.pt (by validation accuracy),
log.jsonl, curves.png, config.json and, at the end, results.json with the test
accuracy of best.pt.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import torch

import dynamicblocks as db
from dynamicblocks import data
from dynamicblocks.train import (
    AMP_MODES,
    SCHEDULES,
    Distributed,
    NonFiniteLossError,
    TrainConfig,
    Trainer,
    evaluate,
)

# Arguments that define the network (stored in config.json, reused by --evaluate).
MODEL_ARGS = ("dataset", "model", "scheme", "steps", "grid", "controls")
# Ruthotto & Haber's PDE-motivated networks, by --model name.
PDE_NETS = {
    "parabolic": db.parabolic_net,
    "hamiltonian": db.hamiltonian_net,
    "second_order": db.second_order_net,
}
STATS = {
    "cifar10": (data.CIFAR10_MEAN, data.CIFAR10_STD),
    "cifar100": (data.CIFAR100_MEAN, data.CIFAR100_STD),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--dataset", default="cifar10", choices=data.DATASETS)
    add("--data-dir", default="data", help="where the CIFAR archive or folder is (default: data)")
    add(
        "--download",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="download the official archive if the data is missing (default: yes)",
    )
    add(
        "--model",
        default="rknet",
        help="rknet, preact_resnet<6n+2> (20, 32, 44, 56, 110), or one of Ruthotto & Haber's "
        f"{', '.join(PDE_NETS)}",
    )
    add(
        "--scheme",
        default=None,
        help=f"integration scheme of every block ({', '.join(db.TABLEAUS)}); default: the model's",
    )
    grid = parser.add_mutually_exclusive_group()
    grid.add_argument(
        "--steps",
        type=int,
        default=None,
        help="steps per block, uniform over the model's time interval",
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
    add("--epochs", type=int, default=120)
    add(
        "--refine-at",
        default=None,
        metavar="E1,E2,...",
        help="epochs after which every block is refined (steps halved, controls doubled), "
        "e.g. 30,50,70",
    )
    add("--batch-size", type=int, default=125, help="global batch size (split across ranks)")
    add("--lr", type=float, default=0.1)
    add("--momentum", type=float, default=0.9)
    add("--nesterov", action="store_true")
    add("--weight-decay", type=float, default=4e-4)
    add("--schedule", default="step", choices=SCHEDULES)
    add("--label-smoothing", type=float, default=0.0)
    add(
        "--box-constraints",
        type=float,
        nargs=2,
        default=None,
        metavar=("CONV", "OTHER"),
        help="clamp conv weights to [-CONV, CONV], other weights to [-OTHER, OTHER] after "
        "every step (the original code: 0.5 1.5)",
    )
    add(
        "--val-fraction",
        type=float,
        default=0.2,
        help="fraction of the training images held out for validation (default 0.2: 40k/10k)",
    )
    add(
        "--subset",
        type=int,
        default=None,
        help="use only the first N training images (and at most N test images)",
    )
    add("--no-augment", dest="augment", action="store_false", help="no random crop and flip")
    add("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    add("--amp", default="none", choices=AMP_MODES)
    add("--channels-last", action="store_true")
    add("--compile", action="store_true", help="torch.compile the model")
    add("--sync-bn", action="store_true", help="SyncBatchNorm under torchrun on CUDA")
    add("--seed", type=int, default=0)
    add("--out", default=None, help="output directory (default: runs/<dataset>_<model>_<scheme>)")
    add("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    add("--no-progress", dest="progress", action="store_false")
    add("--log-every", type=int, default=20, help="steps between progress updates")
    add(
        "--evaluate",
        default=None,
        metavar="MODEL.pt",
        help="only report the test accuracy of a saved state_dict (its folder's config.json, "
        "if any, sets the model)",
    )
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = f"runs/{args.dataset}_{args.model}_{args.scheme or 'default'}"
    return args


def _numbers(flag: str, text: str | None, kind: type = float, what: str = "numbers") -> list | None:
    """``text`` split at commas into ``kind`` values (None for None), or exit naming ``flag``."""
    if text is None:
        return None
    try:
        return [kind(v) for v in text.split(",")]
    except ValueError:
        raise SystemExit(f"{flag} must be comma-separated {what}, got {text!r}") from None


def build_model(args: argparse.Namespace, num_classes: int) -> torch.nn.Module:
    """The network that --model, --scheme, --steps or --grid, --controls and --memory ask for."""
    model = _network(args, num_classes)
    try:
        db.set_memory(model, args.memory)
    except ValueError as error:
        raise SystemExit(f"--memory {args.memory}: {error}") from None
    return model


def _network(args: argparse.Namespace, num_classes: int) -> torch.nn.Module:
    grid, controls = _numbers("--grid", args.grid), _numbers("--controls", args.controls)
    scheme = {} if args.scheme is None else {"scheme": args.scheme}
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
        if scheme and args.model != "parabolic":
            raise SystemExit(f"--scheme is not for {args.model}, whose blocks have a fixed scheme")
        if args.steps is not None:
            grid = list(db.uniform_grid(0.0, 3.0, args.steps))
        times = {} if grid is None else {"t": grid}
        if controls is not None:
            times["t_theta"] = controls
        return PDE_NETS[args.model](num_classes, **times, **scheme)
    match = re.fullmatch(r"preact_resnet(\d+)", args.model)
    if match is None:
        raise SystemExit(
            f"--model must be rknet, preact_resnet<6n+2> or one of {', '.join(PDE_NETS)}, "
            f"got {args.model!r}"
        )
    if controls is not None:
        raise SystemExit("--controls is not for preact_resnet, which keeps one control per step")
    depth = int(match.group(1))
    if args.steps is not None:
        grid = [float(k) for k in range(args.steps + 1)]
    return db.preact_resnet(depth, num_classes, t=grid, **scheme)


def load_data(args: argparse.Namespace, device: torch.device):
    arrays = data.load_cifar(args.dataset, args.data_dir, download=args.download)
    mean, std = STATS[arrays.name]

    def dataset(images, labels, limit):
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        return data.CifarDataset(images, labels, arrays.num_classes, device, mean, std)

    full = dataset(arrays.train_images, arrays.train_labels, args.subset)
    test = dataset(arrays.test_images, arrays.test_labels, args.subset)
    num_val = round(args.val_fraction * len(full))
    train, val = data.split(full, num_val, seed=args.seed) if num_val else (full, None)
    return train, val, test, arrays.num_classes


def load_model(args: argparse.Namespace, num_classes: int, state: dict) -> torch.nn.Module:
    """The model of ``args`` with ``state`` loaded, refined first as often as it was."""
    model = build_model(args, num_classes)
    db.refine_to_match_(model, state)
    model.load_state_dict(state)
    return model


def run_evaluation(args: argparse.Namespace) -> None:
    path = Path(args.evaluate)
    saved = path.parent / "config.json"
    if saved.is_file():
        stored = json.loads(saved.read_text())
        for key in MODEL_ARGS:
            setattr(args, key, stored[key])
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    _, _, test, num_classes = load_data(args, device)
    model = load_model(args, num_classes, torch.load(path, map_location="cpu", weights_only=True))
    figures = evaluate(model.to(device), test, amp=args.amp)
    print(
        f"{path}: test loss {figures['loss']:.4f}  test accuracy {100 * figures['acc']:.2f}% "
        f"on {figures['count']} images"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.evaluate is not None:
        return run_evaluation(args)
    dist = Distributed.from_env(args.device)
    try:
        train_model(args, dist)
    except (NonFiniteLossError, data.CifarNotFoundError) as error:
        raise SystemExit(f"error: {error}") from None
    finally:
        dist.close()


def train_model(args: argparse.Namespace, dist: Distributed) -> None:
    out = Path(args.out)
    settings = {key: getattr(args, key) for key in MODEL_ARGS}
    if args.resume and (out / "config.json").is_file():
        stored = json.loads((out / "config.json").read_text())
        changed = {k: (stored.get(k), v) for k, v in settings.items() if stored.get(k) != v}
        if changed:
            raise SystemExit(f"--resume with a different model than {out}/config.json: {changed}")
    config = TrainConfig(
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
        refine_at=tuple(_numbers("--refine-at", args.refine_at, int, "epochs") or ()),
    )
    torch.manual_seed(args.seed)
    train, val, test, num_classes = load_data(args, dist.device)
    model = build_model(args, num_classes)
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(vars(args), indent=2) + "\n")
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(
            f"{args.model} ({params:,} parameters) on {dist.device} x {dist.world_size}: "
            f"{len(train)} train / {len(val) if val is not None else 0} val / {len(test)} test "
            f"images; output in {out}",
            flush=True,
        )
    trainer = Trainer(model, config, out, dist, extra={"model": settings})
    trainer.fit(train, val, resume=args.resume)
    best = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
    model = load_model(args, num_classes, best).to(dist.device)
    figures = evaluate(model, test, amp=args.amp, dist=dist)
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
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        print(f"test accuracy of best.pt: {100 * figures['acc']:.2f}% on {figures['count']} images")


if __name__ == "__main__":
    sys.exit(main())
