"""Timing shared by the benchmarks: interleaved contenders, medians."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

import torch


def significant(value: float, digits: int = 3) -> str:
    """``value`` in fixed point with at least ``digits`` significant digits.

    Large values keep all their integer digits (``12345``), small ones get as
    many decimals as they need (``45.6``, ``0.00123``), so that no positive
    figure prints as ``0``.
    """
    if value == 0 or not math.isfinite(value):
        return f"{value:.0f}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"


def set_threads(threads: int | None) -> None:
    """Use ``threads`` intra-op threads (if given) and no background compile workers."""
    if threads:
        torch.set_num_threads(threads)
    torch._inductor.config.compile_threads = 1  # idle workers would compete with the timings


def calls_per_sample(run: Callable[[], object], min_time: float, sync: Callable | None) -> int:
    """How many calls of ``run`` last about ``min_time`` seconds (at least 1)."""
    if min_time <= 0:
        return 1
    start, n = time.perf_counter(), 0
    while n < 2 or time.perf_counter() - start < min_time / 4:
        run()
        n += 1
        if sync is not None:
            sync()
    return max(1, round(n * min_time / (time.perf_counter() - start)))


def interleaved_medians(
    runs: dict,
    repeats: int,
    warmup: int = 1,
    min_time: float = 0.0,
    sync: Callable[[], object] | None = None,
) -> dict:
    """Median seconds per call of each contender.

    Every contender is called ``warmup`` times first (untimed). Then, ``repeats``
    times, each contender takes one sample in turn, the order alternating
    between repeats so that neither always runs first; a sample times enough
    consecutive calls to last about ``min_time`` seconds (one call when 0).
    ``runs`` maps any hashable label to a callable; ``sync`` (e.g.
    ``torch.cuda.synchronize``) ends every sample, so that the clock stops
    after the device has finished.
    """
    for run in runs.values():
        for _ in range(warmup):
            run()
    if sync is not None:
        sync()
    counts = {name: calls_per_sample(run, min_time, sync) for name, run in runs.items()}
    samples: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else names[::-1]:
            run, n = runs[name], counts[name]
            start = time.perf_counter()
            for _ in range(n):
                run()
            if sync is not None:
                sync()
            samples[name].append((time.perf_counter() - start) / n)
    return {name: statistics.median(values) for name, values in samples.items()}
