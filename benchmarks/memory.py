"""Peak training memory and step time of the memory modes against the steps per block.

    python benchmarks/memory.py                          # CPU: 1..128 steps, tens of minutes
    python benchmarks/memory.py --steps 1 2 --batch-size 2 --repeats 1 --widths 4 8  # smoke
    python benchmarks/memory.py --device cuda            # GPU: torch.cuda.max_memory_allocated
    python benchmarks/memory.py --families reversible_heun alf --steps 16 64 --threads 1

Four networks (``--families``, all by default) of Ruthotto & Haber's layout
(widths ``--widths``), with ``n`` steps per block on ``t = [0, 3]`` for every
``n`` in ``--steps``:

* ``parabolic``: ``parabolic_net`` (forward-Euler
  :class:`~dynamicblocks.DynamicBlock`\\ s) in the modes ``full``,
  ``checkpoint`` and ``adjoint``;
* ``hamiltonian``: ``hamiltonian_net`` (Verlet
  :class:`~dynamicblocks.HamiltonianBlock`\\ s) in ``full``, ``checkpoint``
  and ``reversible``;
* ``reversible_heun`` and ``alf``: ``parabolic_net``'s network (the same
  stages, layers, widths and connective units) with its blocks replaced by
  :class:`~dynamicblocks.ReversibleHeunBlock`\\ s or
  :class:`~dynamicblocks.ALFBlock`\\ s (``Stage(block="reversible_heun")``,
  ``Stage(block="alf")``) of the same field, in ``full``, ``checkpoint`` and
  ``reversible``.

For every configuration, one training step (forward, cross-entropy, backward)
on a CIFAR-shaped batch:

* **peak MB**: the memory the step needs above what was allocated before it
  (model, gradients, input). On CPU the growth of the process's peak resident
  set (``VmHWM``, reset through ``/proc/self/clear_refs``, glibc's mmap
  threshold pinned so that freed tensors go back to the system); on CUDA
  ``torch.cuda.max_memory_allocated`` minus ``memory_allocated`` before. It
  includes transients: the recomputation of checkpointing, the adjoint or
  reversible backward sweep.
* **saved MB**: the bytes autograd keeps for backward at the end of the
  forward pass (distinct storages packed by ``saved_tensors_hooks``,
  parameters excluded): exact, allocator-independent, no transients.
* **blocks MB**: the peak minus the peak of the same network with its blocks
  replaced by identities (opening, connective units and classifier only, the
  same in every mode): the memory the blocks' activations need, which is what
  the memory modes act on.
* **time s**: median seconds of the step over ``--repeats`` samples, the
  modes of one network and ``n`` interleaved; all times are taken before the
  memory is measured, with the allocator as it is (the pinned mmap threshold
  would make every step about twice as slow).

Each mode's time, peak and blocks' peak are also shown as a ratio to the
``full`` mode of the same network at the same ``n``. The targets are at 64
steps per block (``--target-steps``), for every network: the blocks'
activation memory of ``checkpoint`` at most 25 % and of ``adjoint`` and
``reversible`` at most 10 % of ``full``'s, the time of ``checkpoint`` and
``reversible`` at most 1.6x ``full``'s. A summary after the table gives these
ratios and whether each target is met.
"""

from __future__ import annotations

import argparse
import functools
import gc
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

import dynamicblocks as db
from dynamicblocks.models import _double_sym_net

from _probe import peak_rss_growth_mb, pin_mmap_threshold, saved_activation_mb
from _timing import interleaved_medians, set_threads


def parabolic_layout(
    block: str, widths: Sequence[int], t: db.grid.GridLike = (0.0, 1.0, 2.0, 3.0)
) -> db.DynamicNet:
    """``parabolic_net``'s network with ``block`` blocks (``Stage(block=...)``) of its field.

    The same stages as :func:`~dynamicblocks.parabolic_net`: per stage a block of
    ``DoubleSymLayer(width, norm="tv", act="relu")`` on ``t``, then a 1x1
    connective unit (BatchNorm, ReLU) with average pooling by 2 but after the
    last stage; a 3x3 opening, global average pooling and a linear classifier.
    """
    return _double_sym_net(block, 10, 3, widths, t, None, "constant")


FAMILIES = {
    "parabolic": (db.parabolic_net, ("full", "checkpoint", "adjoint")),
    "hamiltonian": (db.hamiltonian_net, ("full", "checkpoint", "reversible")),
    "reversible_heun": (
        functools.partial(parabolic_layout, "reversible_heun"),
        ("full", "checkpoint", "reversible"),
    ),
    "alf": (functools.partial(parabolic_layout, "alf"), ("full", "checkpoint", "reversible")),
}
# Per mode: the largest ratios to full's blocks' memory and time (None: no target).
TARGETS = {"checkpoint": (0.25, 1.6), "adjoint": (0.10, None), "reversible": (0.10, 1.6)}


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """Forward, cross-entropy and backward (gradients accumulate; no optimiser step)."""
    F.cross_entropy(model(x), y).backward()


def without_blocks(model: db.DynamicNet) -> db.DynamicNet:
    """``model`` with every block replaced by an identity (in place)."""
    for i in range(len(model.blocks)):
        model.blocks[i] = nn.Identity()
    return model


def cuda_peak_mb(run, device: torch.device) -> float:
    """Peak CUDA memory allocated during ``run()`` above the allocation before it."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    run()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128])
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 64, 112, 112])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per configuration")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--target-steps", type=int, default=64, help="steps of the summary")
    args = parser.parse_args(argv)
    if min(args.steps) < 1:
        parser.error(f"--steps must be positive, got {args.steps}")
    if len(args.widths) < 2 or any(w < 2 or w % 2 for w in args.widths):
        parser.error(f"--widths needs at least two even widths, got {args.widths}")
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    set_threads(args.threads)
    sync = functools.partial(torch.cuda.synchronize, device) if cuda else None
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    header = (
        f"batch {args.batch_size}, widths {args.widths}, {device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; peak = "
    )
    results: dict[tuple[str, int, str], tuple[float, float, float | None]] = {}
    baselines: dict[str, float | None] = {}

    def peak_mb(run) -> float | None:
        gc.collect()
        return cuda_peak_mb(run, device) if cuda else peak_rss_growth_mb(run)

    def build_model(family: str, n: int, mode: str) -> nn.Module:
        torch.manual_seed(0)
        model = FAMILIES[family][0](widths=args.widths, t=db.uniform_grid(0.0, 3.0, n))
        db.set_memory(model, mode)
        return model.to(device)

    # 1. the times, every configuration of one network and n interleaved, with the
    # allocator as it is: all of them before the mmap threshold is pinned (below),
    # which would make every step about twice as slow on CPU
    times: dict[tuple[str, int], dict[str, float]] = {}
    for family in args.families:
        for n in args.steps:
            runs = {
                mode: functools.partial(train_step, build_model(family, n, mode), x, y)
                for mode in FAMILIES[family][1]
            }
            times[family, n] = interleaved_medians(runs, args.repeats, warmup=1, sync=sync)
            del runs
            gc.collect()
    # 2. the memory, one model at a time; on CPU freed tensors go back to the system now
    pinned = not cuda and pin_mmap_threshold()
    for family in args.families:
        build, modes = FAMILIES[family]
        for n in args.steps:
            for mode in modes:
                model = build_model(family, n, mode)
                for parameter in model.parameters():  # as after the timed steps
                    parameter.grad = torch.zeros_like(parameter)
                # the forward pass only: a backward's recomputations would be counted too
                saved = saved_activation_mb(model, lambda m=model: F.cross_entropy(m(x), y))
                peak = peak_mb(functools.partial(train_step, model, x, y))
                results[family, n, mode] = (times[family, n][mode], saved, peak)
                del model
        base = without_blocks(build(widths=args.widths)).to(device)
        train_step(base, x, y)  # gradients exist, as for the measured models
        baselines[family] = peak_mb(functools.partial(train_step, base, x, y))
    probe = "torch.cuda.max_memory_allocated" if cuda else "peak RSS growth (VmHWM)"
    if not cuda:
        probe += ", mmap threshold pinned" if pinned else ", default allocator"
    print(header + probe)
    for family in args.families:
        base = baselines[family]
        print(f"{family}: peak without the blocks {'-' if base is None else f'{base:.1f}'} MB")
    print(
        f"{'network':<15} {'n':>4} {'mode':<11} {'time s':>8} {'x full':>7} {'saved MB':>9} "
        f"{'peak MB':>9} {'x full':>7} {'blocks MB':>10} {'x full':>7}"
    )
    for family in args.families:
        base = baselines[family]
        for n in args.steps:
            full_time, _, full_peak = results[family, n, "full"]
            for mode in FAMILIES[family][1]:
                seconds, saved, peak = results[family, n, mode]
                if peak is None or full_peak is None or base is None:
                    peak_cells = f"{'-':>9} {'-':>7} {'-':>10} {'-':>7}"
                else:
                    blocks, full_blocks = peak - base, full_peak - base
                    peak_cells = (
                        f"{peak:>9.1f} {peak / full_peak:>7.3f} {blocks:>10.1f} "
                        f"{blocks / full_blocks:>7.3f}"
                    )
                print(
                    f"{family:<15} {n:>4} {mode:<11} {seconds:>8.3f} {seconds / full_time:>7.3f} "
                    f"{saved:>9.1f} {peak_cells}"
                )

    summary(args, results, baselines)


def summary(args: argparse.Namespace, results: dict, baselines: dict) -> None:
    """The targets' ratios at ``--target-steps`` and whether each is met."""
    n = args.target_steps
    if n not in args.steps:
        print(f"targets: at {n} steps per block, which --steps does not include")
        return
    print(f"targets at {n} steps per block (ratios to the same network's full):")
    for family in args.families:
        base = baselines[family]
        full_time, _, full_peak = results[family, n, "full"]
        for mode in FAMILIES[family][1]:
            if mode not in TARGETS:
                continue
            memory_target, time_target = TARGETS[mode]
            seconds, _, peak = results[family, n, mode]
            cells = []
            if peak is None or full_peak is None or base is None:
                cells.append(f"blocks MB - (target <= {memory_target:.2f}) not measured")
            else:
                ratio = (peak - base) / (full_peak - base)
                met = "met" if ratio <= memory_target else "MISSED"
                cells.append(f"blocks MB {ratio:.3f} (target <= {memory_target:.2f}) {met}")
            if time_target is not None:
                ratio = seconds / full_time
                met = "met" if ratio <= time_target else "MISSED"
                cells.append(f"time {ratio:.3f} (target <= {time_target:.2f}) {met}")
            print(f"  {family:<15} {mode:<11} " + "; ".join(cells))


if __name__ == "__main__":
    main()
