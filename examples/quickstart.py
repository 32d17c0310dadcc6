"""Quickstart: build a dynamic block and a network, then train discretize-then-optimize.

    python examples/quickstart.py                 # CPU, a few seconds
    python examples/quickstart.py --device cuda --model preact_resnet56
    python examples/quickstart.py --model preact_resnet20_he   # He et al.'s layout

Trains on a fixed synthetic CIFAR-shaped batch (no download needed) and prints
the loss as it falls.
"""

from __future__ import annotations

import argparse
import re
import sys
import time

import torch
import torch.nn.functional as F

import dynamicblocks as db


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one ``error: ...`` line on stderr (exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see --help)\n")


def build(name: str) -> torch.nn.Module:
    """The network ``--model name`` asks for.

    Raises:
        ValueError: for an unknown name or a depth that is not ``6n + 2``.
    """
    if name == "rknet":
        return db.rknet()
    match = re.fullmatch(r"preact_resnet(\d+)(_he)?", name)
    if match is None:
        raise ValueError(
            f"--model must be rknet, preact_resnet<6n+2> or preact_resnet<6n+2>_he, got {name!r}"
        )
    shortcut = "projection" if match.group(2) else "connective"
    try:
        return db.preact_resnet(int(match.group(1)), shortcut=shortcut)
    except ValueError as error:
        raise ValueError(f"--model {name}: {error}") from None


def main() -> None:
    parser = _Parser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        default="rknet",
        help="rknet, preact_resnet<6n+2> (the library's layout) or preact_resnet<6n+2>_he "
        "(He et al.'s, with projection shortcuts)",
    )
    parser.add_argument("--steps", type=int, default=20, help="optimisation steps")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)

    try:
        net = build(args.model).to(args.device)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)

    # A block on its own: RK4 on a non-uniform grid, weights shared over time.
    block = db.DynamicBlock(
        db.MLP(2, hidden=16), t=[0.0, 0.1, 0.3, 0.7, 1.0], scheme="rk4", t_theta=[0.0]
    )
    print(block)
    print("state after the block:", block(torch.tensor([[1.0, 0.0]])).tolist(), "\n")

    params = sum(p.numel() for p in net.parameters() if p.requires_grad)
    print(f"{args.model}: {params:,} trainable parameters on {args.device}")

    images = torch.randn(args.batch_size, 3, 32, 32, device=args.device)
    labels = torch.randint(0, 10, (args.batch_size,), device=args.device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(images), labels)
        loss.backward()
        optimizer.step()
        if step == 1 or step % 5 == 0 or step == args.steps:
            print(f"step {step:3d}  loss {loss.item():.4f}")
    print(f"{args.steps} steps in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
