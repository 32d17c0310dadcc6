"""Cost of a training step against the number of steps per dynamic block.

    python benchmarks/depth_scaling.py                 # 1..64 steps, Euler and RK4, ~2 min
    python benchmarks/depth_scaling.py --steps 1 2 --batch-size 2 --repeats 1   # smoke test

The network is ``preact_resnet(6n + 2, scheme=...)``: three dynamic blocks of
``n`` steps each (one weight set per step) joined by connective units, for
``n`` in ``--steps``. For each scheme and ``n``:

* **time**: median seconds of a training step (forward, cross-entropy,
  backward, SGD step) on a CIFAR-shaped batch, every configuration
  interleaved with the others;
* **saved MB**: bytes of the activations autograd keeps for the backward pass
  (unique storages packed by ``torch.autograd.graph.saved_tensors_hooks``,
  parameters excluded): exact, independent of the allocator;
* **peak MB**: the growth of the process's peak resident set (``VmHWM``, reset
  through ``/proc/self/clear_refs``) over one training step, gradients
  included, with glibc's mmap threshold pinned (after the timings) so that
  freed tensors go back to the system. Linux only; ``-`` elsewhere.

Linear growth means a constant cost per step: the table shows each quantity
divided by ``n``, and a least-squares line ``a + b n`` (fixed cost ``a``, cost per
step ``b``) with its coefficient of determination R^2.
"""

from __future__ import annotations

import argparse
import functools

import torch
import torch.nn.functional as F
from torch import nn

import dynamicblocks as db

from _probe import peak_rss_growth_mb, pin_mmap_threshold, saved_activation_mb
from _timing import interleaved_medians, set_threads


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x, y) -> None:
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    optimizer.step()


def fit_line(ns: list[int], values: list[float]) -> tuple[float, float, float]:
    """Least squares ``a + b n``; returns ``(a, b, R^2)``."""
    design = torch.tensor([[1.0, n] for n in ns], dtype=torch.float64)
    target = torch.tensor(values, dtype=torch.float64)
    a, b = torch.linalg.lstsq(design, target.unsqueeze(1)).solution.squeeze(1).tolist()
    residual = sum((a + b * n - v) ** 2 for n, v in zip(ns, values))
    spread = float(((target - target.mean()) ** 2).sum())
    return a, b, 1 - residual / spread if spread > 0 else 1.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument("--schemes", nargs="+", default=["euler", "rk4"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if min(args.steps) < 1 or len(args.steps) < 2:
        parser.error(f"--steps needs at least two positive counts, got {args.steps}")
    set_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch_size,))
    optimizers, steps = {}, {}
    for scheme in args.schemes:
        for n in args.steps:
            model = db.preact_resnet(6 * n + 2, scheme=scheme)
            optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
            optimizers[scheme, n] = optimizer
            steps[scheme, n] = functools.partial(train_step, model, optimizer, x, y)
    # the warm-up creates gradients and momentum buffers before the memory passes
    times = interleaved_medians(steps, args.repeats, warmup=max(args.warmup, 1))
    pinned = pin_mmap_threshold()  # after the timings: mmap for every tensor costs time
    memory = {}
    for key, step in steps.items():
        saved = saved_activation_mb(step.args[0], step)
        optimizers[key].zero_grad(set_to_none=True)
        memory[key] = (saved, peak_rss_growth_mb(step))
    print(
        f"preact_resnet(6n+2), batch {args.batch_size}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; peak RSS "
        f"{'with mmap threshold pinned' if pinned else 'with the default allocator'}"
    )
    print(
        f"{'scheme':<7} {'n':>3} {'time s':>8} {'ms/n':>7} {'saved MB':>9} {'MB/n':>6} "
        f"{'peak MB':>8} {'MB/n':>6}"
    )
    for scheme in args.schemes:
        for n in args.steps:
            saved, peak = memory[scheme, n]
            seconds = times[scheme, n]
            peak_cells = "-" if peak is None else f"{peak:>8.1f} {peak / n:>6.2f}"
            print(
                f"{scheme:<7} {n:>3} {seconds:>8.3f} {1e3 * seconds / n:>7.1f} {saved:>9.1f} "
                f"{saved / n:>6.2f} {peak_cells:>8}"
            )
        columns = {"time s": [times[scheme, n] for n in args.steps]}
        columns["saved MB"] = [memory[scheme, n][0] for n in args.steps]
        if memory[scheme, args.steps[0]][1] is not None:
            columns["peak MB"] = [memory[scheme, n][1] for n in args.steps]
        for label, values in columns.items():
            a, b, r_squared = fit_line(args.steps, values)
            print(f"{scheme:<7} fit {label:<8} = {a:.4g} + {b:.4g} n, R^2 = {r_squared:.5f}")


if __name__ == "__main__":
    main()
