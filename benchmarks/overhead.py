"""Abstraction overhead: the library's preact_resnet(depth) against a hand-written one.

    python benchmarks/overhead.py                    # ResNet-56, batch 128, CPU
    python benchmarks/overhead.py --depth 20 --batch-size 32 --repeats 3   # seconds

Both networks do the same operations in the same order with the same weights
(checked before anything is timed): a 3x3 opening conv -> BatchNorm -> ReLU,
three stages of pre-activation units ``x + K2 relu(BN2(K1 relu(BN1 x)))`` joined
by 1x1 conv -> BatchNorm -> ReLU -> average pool, global average pool, linear.
The hand-written one (``handwritten.PreactResNet``) is plain ``nn.Module``s with
a Python loop over units.

Timed: a training step (forward, cross-entropy, backward, SGD step) and
inference (eval mode, no grad) on a CIFAR-shaped batch. The contenders are
interleaved, their order alternating between repeats; the table shows medians
and the ratio library / hand-written (target: <= 1.03 for both).
"""

from __future__ import annotations

import argparse
import functools

import torch
import torch.nn.functional as F
from torch import nn

import dynamicblocks as db

from _timing import interleaved_medians, set_threads
from handwritten import PreactResNet, same_weights


def check_agreement(library: nn.Module, hand: nn.Module, x: torch.Tensor) -> float:
    """Largest difference of the outputs in train and eval mode (must be ~0)."""
    worst = 0.0
    for training in (True, False):
        library.train(training), hand.train(training)
        with torch.no_grad():
            a, b = library(x), hand(x)
        worst = max(worst, (a - b).abs().max().item())
    return worst


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x, y) -> None:
    model.train()
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    optimizer.step()


@torch.no_grad()
def inference(model: nn.Module, x) -> None:
    model.eval()
    model(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=56)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per contender")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    set_threads(args.threads)
    torch.manual_seed(0)
    library = db.preact_resnet(args.depth)
    hand = PreactResNet(args.depth)
    same_weights(library, hand)
    x = torch.randn(args.batch_size, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch_size,))
    difference = check_agreement(library, hand, x)
    if difference > 1e-5:
        raise SystemExit(f"the networks disagree by {difference:.2e}: not timing them")
    contenders = {"library": library, "hand-written": hand}
    optimizers = {k: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9) for k, m in
                  contenders.items()}  # fmt: skip
    tasks = {
        "train step": lambda k: train_step(contenders[k], optimizers[k], x, y),
        "inference": lambda k: inference(contenders[k], x),
    }
    print(
        f"preact_resnet({args.depth}), batch {args.batch_size}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; outputs agree to {difference:.1e}"
    )
    print(f"{'task':<12} {'library ms':>11} {'hand ms':>9} {'ratio':>7}")
    for task, run in tasks.items():
        calls = {name: functools.partial(run, name) for name in contenders}
        times = interleaved_medians(calls, args.repeats, warmup=args.warmup)
        lib, ref = (1e3 * times[k] for k in contenders)
        print(f"{task:<12} {lib:>11.1f} {ref:>9.1f} {lib / ref:>7.3f}")


if __name__ == "__main__":
    main()
