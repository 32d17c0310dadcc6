"""Accuracy and time parity: the library's whole CIFAR-10 training path against plain PyTorch.

    python benchmarks/parity.py --data-dir DATA_DIR                  # both runs, then the table
    python benchmarks/parity.py --data-dir DATA_DIR --threads 2      # fixed intra-op threads
    python benchmarks/parity.py --data-dir DATA_DIR                  # again: resumes, or skips
    python benchmarks/parity.py --only table                         # re-print the table
    python benchmarks/parity.py --data-dir DATA_DIR --only baseline  # one side only
    python benchmarks/parity.py --data-dir DATA_DIR --only timing    # paired short runs
    python benchmarks/parity.py --data-dir DATA_DIR --only timing --rounds 5 --timing-subset 12800
    python benchmarks/parity.py --data-dir DATA_DIR --only timing --allocator retain

``DATA_DIR`` holds the extracted ``cifar-10-batches-py/`` (data_batch_1..5,
test_batch). One after the other, into ``--out`` (default ``runs/parity``):

(a) ``OUT/library``: the library's whole path, ``examples/cifar10.py``::

        python examples/cifar10.py --model preact_resnet20_he --data-dir DATA_DIR \\
            --epochs 15 --schedule onecycle --batch-size 128 --lr 0.1 \\
            --weight-decay 5e-4 --val-fraction 0 --seed 0 --no-download \\
            --out OUT/library --no-progress

    The library owns everything there: reading the batch files
    (``dynamicblocks.data.load_cifar``), the model
    (``preact_resnet(20, shortcut="projection")``: He et al.'s pre-activation
    ResNet-20 as three dynamic blocks with strided projection units, 272,282
    parameters), the augmentation and normalisation (``CifarDataset.batches``:
    random crop of the 4-pixel zero-padded image and horizontal flip, then
    the CIFAR-10 mean and std) and the loop (``dynamicblocks.train.Trainer``).
(b) ``OUT/baseline``: ``benchmarks/parity_baseline.py`` with the same flags,
    which owns its own reader, model, augmentation and loop in plain PyTorch
    and imports nothing of the library (see its docstring).

The recipe of both: the whole training set (50,000 images, no validation
split); ``--epochs`` (15) epochs of batch ``--batch-size`` (128), the
incomplete last batch dropped; SGD with momentum 0.9 (no Nesterov), weight
decay ``--weight-decay`` (5e-4) on kernels and linear weights only;
``OneCycleLR(max_lr=--lr, total_steps=epochs * steps_per_epoch)`` with
PyTorch's defaults (which also cycle the momentum between 0.95 and 0.85),
stepped every batch; peak lr 0.1 (He et al.'s for batch 128); cross-entropy;
a new shuffle per epoch from a seeded generator. Each side seeds its own
weights and batches from ``--seed``: the same distributions, not the same
draws, so the accuracy difference includes seed-to-seed noise (a few tenths
of a point for ResNet-20).

Reported (printed and written to ``OUT/parity.md``): per side the epochs, the
final test accuracy, the best test accuracy over the epochs (the library
evaluates the test set once, at the end, so it has none), the median and the
range of the seconds per epoch (training only) and the median images/s; then
the differences, library - baseline in accuracy points (target: at most 0.5
in size) and library / baseline in median seconds per epoch (target: within
5 %), and the 1-minute load average (``os.getloadavg``) sampled by this
driver every ``--sample-every`` seconds and at each epoch's end while each
side runs (min / median / max), kept in ``OUT/loadavg.jsonl``. Timings are
only comparable on a machine that is otherwise idle: check the load.

Paired short runs (``--only timing``): the long runs' seconds per epoch are
only as good as the machine was quiet, and two sides that ran at the same
time, or next to other work, do not compare. This mode measures the speed
anew: ``--rounds`` (3) rounds, each of which runs the two sides one after the
other, never at the same time, for one epoch on the first ``--timing-subset``
(6400) training images, with the recipe's other flags (model, batch size, lr,
weight decay, seed, threads, device), into ``OUT/timing/library`` and
``OUT/timing/baseline`` (replaced by every run: ``--overwrite``). The library
goes first in odd rounds and the baseline in even ones, so a drift of the
machine's speed weighs on both alike. Each run appends one line to
``OUT/timing.jsonl`` (round, part, seconds, images_per_s, the 1-minute load
average at its end, allocator, time); running the mode again adds further
rounds, numbered on from the last. The table then shows every complete round's
library and baseline seconds and their ratio, and the median of these ratios
as the paired comparison (target: within 5 %), once per ``--allocator``.

``--allocator retain`` runs both sides with glibc malloc's settings that keep
freed memory in the process (``MALLOC_TRIM_THRESHOLD_``,
``MALLOC_MMAP_THRESHOLD_``; see ``ALLOCATORS`` and mallopt(3)). With the
system's settings, the memory of every batch's activations is returned to the
system and faulted back in, page by page, by the next batch: a cost that
changes with the order in which a program allocates and frees and with the
state of the machine, and that moves a one-epoch time by several per cent
from run to run. With ``retain`` that cost is gone for both sides alike.

The paired runs need no matching ``settings.json`` and write nothing there; a
failed run stops the measurement, and the rounds recorded before it are kept.

Interrupted? Run the same command again. A side whose ``results.json``
records all its epochs is skipped; one with a folder is continued with
``--resume`` from its last checkpoint (both scripts resume exactly); the
load samples are appended. ``OUT/settings.json`` records the recipe, threads
and device, and a restart with other ones is refused (choose another ``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LIBRARY_SCRIPT = ROOT / "examples" / "cifar10.py"
BASELINE_SCRIPT = ROOT / "benchmarks" / "parity_baseline.py"
PARTS = ("library", "baseline")
DATA_FILES = tuple(f"data_batch_{k}" for k in range(1, 6)) + ("test_batch",)
SETTINGS, LOADAVG, TABLE = "settings.json", "loadavg.jsonl", "parity.md"
TIMING = "timing.jsonl"  # the paired short runs
# The flags that define the comparison (a restart must repeat them).
RECIPE = ("model", "epochs", "batch_size", "lr", "weight_decay", "seed", "subset")
ACCURACY_TARGET = 0.5  # points
TIME_TARGET = 0.05  # relative
# --allocator retain: glibc's malloc keeps what the process frees (no trimming of the heap
# top, no separate mappings for large blocks) instead of returning it to the system and
# faulting it back in, page by page, when the next batch allocates again (mallopt(3)).
ALLOCATORS = {
    "system": {},
    "retain": {"MALLOC_TRIM_THRESHOLD_": str(2**40), "MALLOC_MMAP_THRESHOLD_": str(2**25)},
}


class UsageError(Exception):
    """A mistake on the command line or in the run folder: one error line, exit 2."""


# --------------------------------------------------------------------------- the runs


def library_command(args: argparse.Namespace, out: Path) -> list[str]:
    command = [
        sys.executable,
        str(LIBRARY_SCRIPT),
        "--model", args.model,
        "--data-dir", str(args.data_dir),
        "--no-download",
        "--epochs", str(args.epochs),
        "--schedule", "onecycle",
        "--batch-size", str(args.batch_size),
        "--lr", repr(args.lr),
        "--weight-decay", repr(args.weight_decay),
        "--val-fraction", "0",
        "--seed", str(args.seed),
        "--out", str(out),
        "--no-progress",
    ]  # fmt: skip
    if args.subset is not None:
        command += ["--subset", str(args.subset)]
    if args.device is not None:
        command += ["--device", args.device]
    return command


def baseline_command(args: argparse.Namespace, out: Path) -> list[str]:
    command = [
        sys.executable,
        str(BASELINE_SCRIPT),
        "--data-dir", str(args.data_dir),
        "--epochs", str(args.epochs),
        "--batch-size", str(args.batch_size),
        "--lr", repr(args.lr),
        "--weight-decay", repr(args.weight_decay),
        "--seed", str(args.seed),
        "--out", str(out),
    ]  # fmt: skip
    if args.subset is not None:
        command += ["--subset", str(args.subset)]
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    if args.device is not None:
        command += ["--device", args.device]
    return command


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None if it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_log(path: Path) -> list[dict]:
    """The records of a ``log.jsonl`` (none if it is missing); a torn last line is skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return [r for r in records if isinstance(r, dict)]


def is_complete(out: Path, epochs: int) -> bool:
    """Whether the run in ``out`` finished all ``epochs`` (its ``results.json`` says so)."""
    results = read_json(out / "results.json")
    return isinstance(results, dict) and results.get("epochs") == epochs


def sample_load(out: Path, part: str) -> None:
    """Append the load average now to ``OUT/loadavg.jsonl`` (nothing where there is none)."""
    try:
        load1, load5, load15 = os.getloadavg()
    except (AttributeError, OSError):  # Windows
        return
    record = {"time": time.time(), "part": part, "load1": load1, "load5": load5, "load15": load15}
    with open(out / LOADAVG, "a", encoding="utf-8") as file:
        file.write(json.dumps(record) + "\n")


def part_env(args: argparse.Namespace, part: str) -> dict[str, str]:
    """The environment of one side's run: this checkout's library, the threads, the allocator."""
    env = {**os.environ, **ALLOCATORS[args.allocator]}
    if part == "library":  # this checkout's library
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if args.threads is not None:  # the library script has no --threads: torch reads these
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
    return env


def forward(
    command: list[str],
    env: dict[str, str],
    label: str,
    on_line: Callable[[str], None] | None = None,
) -> int:
    """Run ``command``, printing its output prefixed with ``[label]``; its exit status."""
    print(f"[{label}] {' '.join(command)}", flush=True)
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    try:
        for line in process.stdout:
            print(f"[{label}] {line}", end="", flush=True)
            if on_line is not None:
                on_line(line)
        return process.wait()
    finally:
        if process.poll() is None:  # interrupted (a Ctrl-C reaches the child too)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:  # its saves are atomic: stopping it is safe
                process.terminate()
                process.wait()


def run_part(args: argparse.Namespace, part: str) -> int:
    """Run (or continue, or skip) one side; its exit status."""
    root = Path(args.out)
    out = root / part
    if is_complete(out, args.epochs):
        print(f"[{part}] {out} is complete ({args.epochs} epochs): skipped", flush=True)
        return 0
    build = library_command if part == "library" else baseline_command
    command = build(args, out)
    if out.is_dir() and any(out.iterdir()):
        command.append("--resume")
    done = threading.Event()

    def sampler() -> None:
        while not done.wait(args.sample_every):
            sample_load(root, part)

    def on_line(line: str) -> None:
        if line.startswith("epoch"):
            sample_load(root, part)

    sample_load(root, part)
    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    try:
        return forward(command, part_env(args, part), part, on_line)
    finally:
        done.set()
        thread.join()


def _load1() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows
        return None


def timing_records(root: Path) -> list[dict]:
    """The records of ``OUT/timing.jsonl`` (none if it is missing)."""
    return read_log(root / TIMING)


def run_timing(args: argparse.Namespace) -> int:
    """Append ``--rounds`` rounds of paired one-epoch runs to ``OUT/timing.jsonl``; a status."""
    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    short = argparse.Namespace(**{**vars(args), "epochs": 1, "subset": args.timing_subset})
    rounds = [r.get("round") for r in timing_records(root)]
    first = max((r for r in rounds if isinstance(r, int)), default=0) + 1
    for number in range(first, first + args.rounds):
        order = PARTS if number % 2 else PARTS[::-1]  # odd rounds: library first
        for part in order:
            out = root / "timing" / part
            build = library_command if part == "library" else baseline_command
            command = [*build(short, out), "--overwrite"]
            label = f"timing {part}"
            status = forward(command, part_env(args, part), label)
            load1, now = _load1(), time.time()
            log = read_log(out / "log.jsonl")
            if status == 0 and not (
                len(log) == 1 and isinstance(log[0].get("seconds"), (int, float))
            ):
                print(f"[{label}] {out / 'log.jsonl'} holds no single epoch", flush=True)
                status = 1
            if status:
                print(
                    f"error: the timing {part} run of round {number} stopped with status "
                    f"{status} (see above); the rounds before it are kept",
                    file=sys.stderr,
                    flush=True,
                )
                return status
            seconds = log[0]["seconds"]
            rate = log[0].get("images_per_s")
            record = {
                "round": number,
                "part": part,
                "seconds": seconds,
                "images_per_s": rate if isinstance(rate, (int, float)) else None,
                "load1": load1,
                "allocator": args.allocator,
                "time": now,
            }
            with open(root / TIMING, "a", encoding="utf-8") as file:
                file.write(json.dumps(record) + "\n")
            print(f"[{label}] round {number}: {seconds:.2f} s", flush=True)
    return 0


# --------------------------------------------------------------------------- the table


def _median_range(values: list[float]) -> tuple[float, float, float] | None:
    return (statistics.median(values), min(values), max(values)) if values else None


def summarise(out: Path) -> dict[str, Any]:
    """One side's figures from its folder (what exists of them)."""
    log = read_log(out / "log.jsonl")
    results = read_json(out / "results.json") or {}
    seconds = [r["seconds"] for r in log if isinstance(r.get("seconds"), (int, float))]
    rates = [r["images_per_s"] for r in log if isinstance(r.get("images_per_s"), (int, float))]
    tests = [r["test_acc"] for r in log if isinstance(r.get("test_acc"), (int, float))]
    final = results.get("test_acc")
    if final is None and log and "test_acc" in log[-1]:
        final = log[-1]["test_acc"]
    return {
        "epochs": len(log),
        "finished": bool(results),
        "final_acc": final,
        "best_acc": max(tests) if tests else None,
        "seconds": _median_range(seconds),
        "images_per_s": statistics.median(rates) if rates else None,
    }


def load_figures(root: Path) -> dict[str, tuple[float, float, float, int]]:
    """Per side: min, median, max of the 1-minute load average, and the sample count."""
    samples: dict[str, list[float]] = {}
    for record in read_log(root / LOADAVG):
        if isinstance(record.get("load1"), (int, float)):
            samples.setdefault(record.get("part"), []).append(record["load1"])
    return {
        part: (min(values), statistics.median(values), max(values), len(values))
        for part, values in samples.items()
    }


def paired_rounds(root: Path, allocator: str = "system") -> list[tuple[int, float, float]]:
    """The complete rounds of ``OUT/timing.jsonl`` measured with ``allocator``: round,
    library and baseline seconds."""
    seconds: dict[int, dict[str, float]] = {}
    for record in timing_records(root):
        if record.get("allocator", "system") != allocator:  # none: before --allocator existed
            continue
        number, part, value = record.get("round"), record.get("part"), record.get("seconds")
        if isinstance(number, int) and part in PARTS and isinstance(value, (int, float)):
            seconds.setdefault(number, {})[part] = value  # a repeated record: the last
    return [
        (number, pair["library"], pair["baseline"])
        for number, pair in sorted(seconds.items())
        if len(pair) == 2 and pair["baseline"] > 0
    ]


def _rounds(rounds: list) -> str:
    return f"{len(rounds)} round{'' if len(rounds) == 1 else 's'}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def table(root: Path, epochs: int | None = None) -> str:
    """The side-by-side comparison of ``root/library`` and ``root/baseline``, as Markdown."""
    settings = read_json(root / SETTINGS) or {}
    epochs = epochs or settings.get("epochs")
    sides = {part: summarise(root / part) for part in PARTS}
    names = {
        "library": "library (examples/cifar10.py)",
        "baseline": "baseline (parity_baseline.py)",
    }
    recipe = ", ".join(f"{key} {settings[key]}" for key in RECIPE if key in settings)
    lines = [
        "# Parity: dynamicblocks against plain PyTorch, CIFAR-10",
        "",
        f"Recipe: {recipe or 'unknown (no settings.json)'}; threads "
        f"{settings.get('threads') or 'default'}; {os.cpu_count()} CPUs here.",
        "",
        "| run | epochs | final test acc (%) | best test acc (%) | median s/epoch "
        "| range s/epoch | median images/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for part, side in sides.items():
        done = f"{side['epochs']}" + (f"/{epochs}" if epochs else "")
        if side["epochs"] and not side["finished"]:
            done += " (running or interrupted)"
        seconds = side["seconds"]
        median = "n/a" if seconds is None else f"{seconds[0]:.2f}"
        spread = "n/a" if seconds is None else f"{seconds[1]:.2f} - {seconds[2]:.2f}"
        rate = "n/a" if side["images_per_s"] is None else f"{side['images_per_s']:.0f}"
        lines.append(
            f"| {names[part]} | {done} | {_pct(side['final_acc'])} | {_pct(side['best_acc'])} "
            f"| {median} | {spread} | {rate} |"
        )
    library, baseline = sides["library"], sides["baseline"]
    lines += ["", "| comparison | value | target | met |", "|---|---|---|---|"]
    if library["final_acc"] is not None and baseline["final_acc"] is not None:
        diff = 100 * (library["final_acc"] - baseline["final_acc"])
        met = "yes" if abs(diff) <= ACCURACY_TARGET else "no"
        lines.append(
            f"| final test accuracy, library - baseline | {diff:+.2f} points "
            f"| within +-{ACCURACY_TARGET} points | {met} |"
        )
    else:
        lines.append("| final test accuracy, library - baseline | n/a | within +-0.5 points | - |")
    span = f"{1 - TIME_TARGET:.2f} - {1 + TIME_TARGET:.2f}"
    long_runs = "median s/epoch of the long runs, library / baseline"
    if library["seconds"] is not None and baseline["seconds"] is not None:
        ratio = library["seconds"][0] / baseline["seconds"][0]
        met = "yes" if abs(ratio - 1) <= TIME_TARGET else "no"
        lines.append(f"| {long_runs} | {ratio:.3f} | {span} | {met} |")
    else:
        lines.append(f"| {long_runs} | n/a | {span} | - |")
    paired = {name: paired_rounds(root, name) for name in ALLOCATORS}
    paired = {name: rounds for name, rounds in paired.items() if rounds}
    for name, rounds in paired.items():
        ratio = statistics.median(lib / base for _, lib, base in rounds)
        met = "yes" if abs(ratio - 1) <= TIME_TARGET else "no"
        lines.append(
            f"| paired seconds per epoch, library / baseline (median of {_rounds(rounds)}"
            f"{'' if name == 'system' else f', --allocator {name}'}) "
            f"| {ratio:.3f} | {span} | {met} |"
        )
    loads = load_figures(root)
    lines += [
        "",
        "| load average (1 min) | min | median | max | samples |",
        "|---|---|---|---|---|",
    ]
    for part in PARTS:
        if part in loads:
            low, mid, high, count = loads[part]
            lines.append(f"| during {part} | {low:.2f} | {mid:.2f} | {high:.2f} | {count} |")
        else:
            lines.append(f"| during {part} | n/a | n/a | n/a | 0 |")
    if paired:
        lines += [
            "",
            "## Paired short runs",
            "",
            "One epoch of each side on the first --timing-subset training images, one run at "
            "a time (`--only timing`), in alternating order.",
        ]
    for name, rounds in paired.items():
        ratios = [lib / base for _, lib, base in rounds]
        lines += [
            "",
            f"### `--allocator {name}`",
            "",
            "| round | library s | baseline s | library / baseline |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {number} | {lib:.2f} | {base:.2f} | {lib / base:.3f} |"
            for number, lib, base in rounds
        ]
        lines.append(f"| median of {_rounds(rounds)} | | | {statistics.median(ratios):.3f} |")
    lines += [
        "",
        "The library evaluates the test set once, after its last epoch (so it has no best "
        "test accuracy); the baseline after every epoch. Seconds are training time only.",
    ]
    if paired:
        lines.append(
            "The paired short runs ran one at a time, alternating which side went first "
            "from round to round, so both sides saw the same machine: they are the speed "
            "comparison to trust when the long runs shared the machine."
        )
    else:
        lines.append(
            "No paired short runs yet: `--only timing` measures the speed of the two sides "
            "one at a time, which the long runs' seconds cannot when they shared the machine."
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- command line


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one ``error: ...`` line on stderr (exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see --help)\n")


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's layout and shows every default."""


def _number(kind: type, low: float, closed: bool = True):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not (math.isfinite(value) and (value >= low if closed else value > low)):
            bound = f"{'>=' if closed else '>'} {low:g}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text!r}")
        return value

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = _Parser(description=__doc__, formatter_class=_Formatter)
    add = parser.add_argument
    add("--data-dir", default="data", help="the folder holding cifar-10-batches-py/")
    add("--out", default="runs/parity", help="the comparison's folder")
    add("--epochs", type=_number(int, 1), default=15, help="epochs of each run")
    add("--batch-size", type=_number(int, 1), default=128, help="images per step")
    add("--lr", type=_number(float, 0, closed=False), default=0.1, help="peak lr (OneCycleLR)")
    add("--weight-decay", type=_number(float, 0), default=5e-4, help="on kernels only")
    add("--seed", type=_number(int, 0), default=0, help="of both runs")
    add("--subset", type=_number(int, 1), default=None, help="first N train and test images")
    add("--threads", type=_number(int, 1), default=None, help="intra-op threads of both runs")
    add("--device", default=None, help="passed to both runs; None: cuda if available")
    add(
        "--model",
        default="preact_resnet20_he",
        help="the library's --model (He et al.'s ResNet-20 with projection shortcuts)",
    )
    add(
        "--sample-every",
        type=_number(float, 0, closed=False),
        default=60.0,
        help="seconds between load-average samples",
    )
    add(
        "--only",
        choices=(*PARTS, "timing", "table"),
        default=None,
        help="run one side, the paired short runs (timing) or re-print the table; "
        "None: both long runs, then the table",
    )
    add(
        "--rounds",
        type=_number(int, 1),
        default=3,
        help="--only timing: rounds of paired short runs to add",
    )
    add(
        "--timing-subset",
        type=_number(int, 1),
        default=6400,
        help="--only timing: first N training images of each short run (>= --batch-size)",
    )
    add(
        "--allocator",
        choices=tuple(ALLOCATORS),
        default="system",
        help="glibc malloc's settings for both sides: the system's, or 'retain' (sets "
        + ", ".join(f"{key}={value}" for key, value in ALLOCATORS["retain"].items())
        + ": freed memory is kept for the next batch instead of returned and faulted in again)",
    )
    return parser.parse_args(argv)


def check_settings(args: argparse.Namespace, root: Path) -> None:
    """Record the recipe in ``settings.json``, or refuse one that differs from the recorded."""
    wanted = {key: getattr(args, key) for key in (*RECIPE, "threads", "device", "allocator")}
    path = root / SETTINGS
    stored = read_json(path)
    if isinstance(stored, dict):
        stored.setdefault("allocator", "system")  # a comparison begun before --allocator
        changed = [
            f"--{key.replace('_', '-')} {stored.get(key)} -> {wanted[key]}"
            for key in wanted
            if stored.get(key) != wanted[key]
        ]
        if changed:
            raise UsageError(
                f"--out {root} holds a comparison with other settings ({'; '.join(changed)}): "
                "repeat them or choose another --out"
            )
        return
    root.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{SETTINGS}.tmp")
    temporary.write_text(json.dumps(wanted, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # a SIGTERM stops the run in progress as a Ctrl-C does


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
    root = Path(args.out).resolve()
    args.out = str(root)
    try:
        if args.only == "timing" and args.timing_subset < args.batch_size:
            raise UsageError(
                f"--timing-subset {args.timing_subset} is smaller than --batch-size "
                f"{args.batch_size}: a short run would have no complete batch"
            )
        if args.only != "table":
            data = Path(args.data_dir).expanduser().resolve()
            missing = [f for f in DATA_FILES if not (data / "cifar-10-batches-py" / f).is_file()]
            if missing:
                raise UsageError(
                    f"--data-dir {args.data_dir}: {data / 'cifar-10-batches-py'} lacks "
                    f"{', '.join(missing)} (extract cifar-10-python.tar.gz there)"
                )
            args.data_dir = str(data)
            if args.only == "timing":
                status = run_timing(args)
                if status:
                    return status
            else:
                check_settings(args, root)
            for part in PARTS:
                if args.only in (None, part):
                    status = run_part(args, part)
                    if status:
                        print(
                            f"error: the {part} run stopped with status {status} (see above); "
                            "run this command again to continue",
                            file=sys.stderr,
                            flush=True,
                        )
                        return status
        elif not root.is_dir():
            raise UsageError(f"--out {root}: no such folder")
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        if args.only == "timing":  # the complete runs are recorded; new rounds follow them
            print("error: interrupted: the recorded runs are kept", file=sys.stderr)
        else:
            print("error: interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    text = table(root, args.epochs if args.only not in ("timing", "table") else None)
    print(text, end="", flush=True)
    temporary = root / f".{TABLE}.tmp"
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, root / TABLE)
    print(f"written to {root / TABLE}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
