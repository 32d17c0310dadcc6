"""Training throughput on a GPU: the library's presets against hand-written twins.

    python benchmarks/gpu.py                          # CUDA, AMP bf16 + channels_last + compile
    python benchmarks/gpu.py --device cpu --amp none --no-compile --no-channels-last \\
        --models preact_resnet8 rknet --batch-size 2 --repeats 1   # smoke test (CPU)

For ``rknet()`` and ``preact_resnet(56)``, the library network and its
hand-written twin (``handwritten.py``: plain modules, the same operations and
weights) train on a CIFAR-shaped batch under the same settings: autocast to
bfloat16, channels_last memory format, ``torch.compile(fullgraph=True)``. Before
anything is timed, their float32 outputs on that batch must agree (to
``--tolerance``, relative to the largest logit). Timed: a training step
(forward, cross-entropy, backward, SGD step); the contenders are interleaved,
each sample ends with a device synchronisation; warm-up steps compile first.

Reported: images/s of each and the ratio library / hand-written, the FLOPs of
one training step per image (``torch.utils.flop_counter``: convolutions and
matrix products, forward and backward) and the achieved fraction of the
device's dense bf16 peak (from ``--peak-tflops``, or a table of known GPUs).
"""

from __future__ import annotations

import argparse
import contextlib
import functools

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from _timing import interleaved_medians, significant
from handwritten import build_pair

PEAK_BF16_TFLOPS = {  # dense, no sparsity, from the vendors' data sheets
    "H200": 989.4,
    "H100 SXM": 989.4,
    "H100 80GB HBM3": 989.4,
    "H100 PCIe": 756.0,
    "H100": 756.0,
    "A100": 312.0,
    "L40S": 362.1,
    "A10": 125.0,
}


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    """The device's dense bf16 peak in TFLOP/s, if given or known."""
    if override is not None or device.type != "cuda":
        return override
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_TFLOPS.items():  # most specific names first
        if key in name:
            return value
    return None


@torch.no_grad()
def disagreement(library: nn.Module, hand: nn.Module, x: torch.Tensor) -> float:
    """Largest difference of the two networks' float32 logits over the largest logit."""
    a, b = library(x), hand(x)
    return ((a - b).abs().max() / b.abs().max()).item()


def train_step(model, optimizer, x, y, autocast) -> None:
    optimizer.zero_grad(set_to_none=True)
    with autocast():
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()


def flops_per_image(model: nn.Module, x, y, autocast) -> float:
    """FLOPs of one forward and backward pass of the eager ``model``, per image."""
    counter = FlopCounterMode(display=False)
    with counter:
        with autocast():
            loss = F.cross_entropy(model(x), y)
        loss.backward()
    return counter.get_total_flops() / x.shape[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["rknet", "preact_resnet56"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--amp", choices=["bf16", "none"], default="bf16")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--mode", default=None, help="torch.compile mode (default: inductor's)")
    parser.add_argument("--repeats", type=int, default=15, help="timed samples per contender")
    parser.add_argument("--min-time", type=float, default=0.5, help="seconds per sample")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest relative difference of the float32 outputs")  # fmt: skip
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's dense bf16 peak, if not in the table")  # fmt: skip
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here (use --device cpu for a dry run)")
    for name in args.models:
        try:
            build_pair(name)
        except ValueError as error:
            parser.error(f"--models: {error}")
    if args.amp == "bf16":
        autocast = functools.partial(torch.autocast, device.type, dtype=torch.bfloat16)
    else:
        autocast = contextlib.nullcontext
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    peak = peak_tflops(device, args.peak_tflops)
    torch.backends.cudnn.benchmark = True
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"{device_name}, torch {torch.__version__}, batch {args.batch_size}, amp {args.amp}, "
        f"channels_last {args.channels_last}, "
        f"{'torch.compile(fullgraph=True)' if args.compile else 'eager'}, "
        f"peak {peak if peak is not None else 'unknown'} TFLOP/s"
    )
    print(
        f"{'model':<16} {'agree':>9} {'lib img/s':>10} {'hand img/s':>11} {'ratio':>6} "
        f"{'GFLOP/img':>10} {'lib % peak':>11} {'hand % peak':>12}"
    )
    for name in args.models:
        torch.manual_seed(0)
        x = torch.randn(args.batch_size, 3, 32, 32, device=device)
        x = x.contiguous(memory_format=memory_format)
        y = torch.randint(0, 10, (args.batch_size,), device=device)
        models = [m.to(device, memory_format=memory_format) for m in build_pair(name)]
        difference = disagreement(*models, x)
        if difference > args.tolerance:
            raise SystemExit(f"{name}: the networks disagree by {difference:.1e}; not timing")
        flops = flops_per_image(models[0], x, y, autocast)
        steps = {}
        for label, model in zip(("library", "hand"), models):
            optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
            if args.compile:
                model = torch.compile(model, fullgraph=True, mode=args.mode)
            steps[label] = functools.partial(train_step, model, optimizer, x, y, autocast)
        times = interleaved_medians(
            steps, args.repeats, warmup=2, min_time=args.min_time, sync=sync
        )
        rates = {label: args.batch_size / seconds for label, seconds in times.items()}
        library_rate, hand_rate = significant(rates["library"]), significant(rates["hand"])
        cells = f"{name:<16} {difference:>9.0e} {library_rate:>10} {hand_rate:>11}"
        cells += f" {rates['library'] / rates['hand']:>6.3f} {flops / 1e9:>10.3f}"
        for label, width in (("library", 11), ("hand", 12)):
            achieved = flops * rates[label] / 1e12
            cells += f" {100 * achieved / peak:>{width}.1f}" if peak else f" {'-':>{width}}"
        print(cells, flush=True)


if __name__ == "__main__":
    main()
