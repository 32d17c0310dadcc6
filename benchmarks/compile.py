"""Speed-up of ``torch.compile(fullgraph=True)`` on a training step of the presets.

    python benchmarks/compile.py                     # rknet and preact_resnet20, ~4 min on 2 cores
    python benchmarks/compile.py --models preact_resnet8 --batch-size 4 --repeats 1   # smoke test

For each model, two copies with the same weights: one eager, one wrapped in
``torch.compile(model, fullgraph=True)``. ``fullgraph=True`` makes any graph
break an error, so a model that compiles here has none; recompilation during
the timed steps is an error too (``torch._dynamo.config.error_on_recompile``).
The first training step of the two copies must give the same loss (to
``--tolerance``, relative) before anything is timed.

Timed: a training step (forward, cross-entropy, backward, SGD step with
momentum; the optimiser stays eager) on a CIFAR-shaped batch. The contenders
are interleaved, in alternating order; the table gives the compile time (the
first step), the medians and the speed-up eager / compiled.
"""

from __future__ import annotations

import argparse
import copy
import functools
import time

import torch
import torch.nn.functional as F
from torch import nn

from _timing import interleaved_medians, set_threads
from handwritten import library_preset


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x, y) -> torch.Tensor:
    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.detach()


def bench_model(name: str, args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    eager = library_preset(name)
    compiled = torch.compile(copy.deepcopy(eager), fullgraph=True, mode=args.mode)
    x = torch.randn(args.batch_size, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch_size,))
    steps = {}
    for label, model in (("eager", eager), ("compiled", compiled)):
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        steps[label] = functools.partial(train_step, model, optimizer, x, y)
    eager_loss = steps["eager"]()
    start = time.perf_counter()
    compiled_loss = steps["compiled"]()  # compiles forward and backward
    compile_seconds = time.perf_counter() - start
    difference = ((compiled_loss - eager_loss).abs() / eager_loss.abs()).item()
    if difference > args.tolerance:
        raise SystemExit(f"{name}: compiled loss differs by {difference:.1e}; not timing")
    with torch._dynamo.config.patch(error_on_recompile=True):
        times = interleaved_medians(steps, args.repeats, warmup=args.warmup)
    eager_ms, compiled_ms = 1e3 * times["eager"], 1e3 * times["compiled"]
    print(
        f"{name:<16} {difference:>8.0e} {compile_seconds:>10.1f} {eager_ms:>9.1f} "
        f"{compiled_ms:>9.1f} {eager_ms / compiled_ms:>8.2f}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["rknet", "preact_resnet20"],
                        help="rknet and/or preact_resnet<6n+2>")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=11, help="timed steps per contender")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--mode", default=None, help="torch.compile mode (default: inductor's)")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest relative difference of the first losses")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    for name in args.models:
        try:
            library_preset(name)  # a bad name fails before any compilation
        except ValueError as error:
            parser.error(f"--models: {error}")
    set_threads(args.threads)
    print(
        f"training step, batch {args.batch_size}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, torch.compile(fullgraph=True, mode={args.mode})"
    )
    print(
        f"{'model':<16} {'loss diff':>8} {'compile s':>10} {'eager ms':>9} {'comp ms':>9} "
        f"{'speed-up':>8}"
    )
    for name in args.models:
        bench_model(name, args)


if __name__ == "__main__":
    main()
