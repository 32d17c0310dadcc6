"""Quickstart: build a dynamic block and a network, then train discretize-then-optimize.

    python examples/quickstart.py                 # CPU, a few seconds
    python examples/quickstart.py --device cuda --model preact_resnet56

Trains on a fixed synthetic CIFAR-shaped batch (no download needed) and prints
the loss as it falls.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import dynamicblocks as db


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="rknet", help="rknet or preact_resnet<depth>")
    parser.add_argument("--steps", type=int, default=20, help="optimisation steps")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)

    # A block on its own: RK4 on a non-uniform grid, weights shared over time.
    block = db.DynamicBlock(
        db.MLP(2, hidden=16), t=[0.0, 0.1, 0.3, 0.7, 1.0], scheme="rk4", t_theta=[0.0]
    )
    print(block)
    print("state after the block:", block(torch.tensor([[1.0, 0.0]])).tolist(), "\n")

    if args.model == "rknet":
        net = db.rknet()
    elif args.model.startswith("preact_resnet"):
        net = db.preact_resnet(int(args.model.removeprefix("preact_resnet")))
    else:
        parser.error(f"--model must be rknet or preact_resnet<depth>, got {args.model!r}")
    net = net.to(args.device)
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
