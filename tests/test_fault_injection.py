"""Fault injection: examples/cifar10.py SIGKILLed at every write and at random, then resumed.

Every file of a run folder goes through ``dynamicblocks.train._atomic.atomic_open``
(a temporary file, ``fsync``, ``os.replace``). A child process running
``cifar10.main`` is killed at write number k of an uninterrupted run, at one
of three points: during it (the temporary file truncated to half at its
``fsync``), just before its ``os.replace`` and just after it; and a few
times at random moments. ``--resume`` (repeated after random kills until a
run exits 0) must then leave a folder equal to the uninterrupted run's:
``checkpoint.pt`` (weights, best weights, optimiser, scheduler, RNG states,
history), ``best.pt``, ``log.jsonl``, ``curves.png``, ``results.json`` and
``config.json``, up to the timing fields, and no temporary files.

The children fork from one forkserver that imported torch (and everything a
run needs, see ``_fault_child.PRELOAD``) but ran no tensor op, so a child
starts in milliseconds rather than seconds.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import sys
from dataclasses import dataclass
from multiprocessing import forkserver
from pathlib import Path
from typing import Any

import _fault_child
import pytest
import torch
from _fault_child import POINTS, read_trace
from cifar_archive import make_batches, write_folder

from dynamicblocks.train import load_checkpoint, read_log

pytestmark = pytest.mark.skipif(
    sys.platform == "win32" or "forkserver" not in multiprocessing.get_all_start_methods(),
    reason="needs POSIX signals and the forkserver start method",
)

# 40 training images in 2 batches, 20 validation images (so best.pt is chosen), 20 test
# images, 2 epochs (the step schedule lowers the learning rate after the first).
FLAGS = (
    "--model",
    "preact_resnet8",
    "--subset",
    "60",
    "--val-fraction",
    "0.34",
    "--batch-size",
    "20",
    "--epochs",
    "2",
    "--no-progress",
    "--no-download",
)
# The writes of an uninterrupted run, in order: config.json when it starts, checkpoint.pt
# then the files derived from it after each epoch, the plot and the test results at the end.
WRITES = (
    "config.json",
    *("checkpoint.pt", "best.pt", "log.jsonl") * 2,
    "curves.png",
    "results.json",
)
# Fields that measure time and so differ between any two runs.
TIMING = ("seconds", "images_per_s")
RESULTS_TIMING = ("train_seconds", "last_images_per_s")
# Seconds before a child that neither ended nor was killed counts as hung.
HANG = 300
# Random kills at most per run: then an unhooked --resume must finish it.
MAX_RANDOM_KILLS = 4


@dataclass
class Child:
    """How a child process ended, the events of its trace and its log."""

    exitcode: int | None
    events: list[dict[str, Any]]
    log: Path

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.is_file() else ""
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


@dataclass
class Reference:
    """The uninterrupted run: its folder, the files it wrote in order, its duration."""

    folder: Path
    writes: list[str]
    seconds: float


@pytest.fixture(scope="module")
def context() -> Any:
    """A forkserver context whose server has imported what a run needs; stopped afterwards."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(_fault_child.PRELOAD))
    yield ctx
    stop = getattr(forkserver._forkserver, "_stop", None)  # private: absent on some Pythons
    if stop is not None:
        stop()  # otherwise it exits with this process


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Fake CIFAR-10 with 5 x 20 training and 20 test images."""
    root = tmp_path_factory.mktemp("data")
    write_folder(root, "cifar10", make_batches("cifar10"))
    return root


def argv(data_dir: Path, out: Path, *extra: str) -> list[str]:
    return [*FLAGS, "--data-dir", str(data_dir), "--out", str(out), *extra]


def spawn(context: Any, args: list[str], stem: Path, **options: Any) -> Child:
    """Run ``cifar10.main(args)`` in a child (see ``_fault_child.run`` for ``options``)."""
    log, trace = stem.with_suffix(".log"), stem.with_suffix(".trace")
    process = context.Process(
        target=_fault_child.run, args=(args, str(log), str(trace)), kwargs=options
    )
    process.start()
    process.join(HANG)
    if process.is_alive():
        process.kill()
        process.join()
        pytest.fail(
            f"{stem.name}: still running after {HANG} s; log:\n{Child(None, [], log).tail()}"
        )
    return Child(process.exitcode, read_trace(trace), log)


def written(events: list[dict[str, Any]]) -> list[str]:
    """The files a hooked child finished writing, in order."""
    return [event["name"] for event in events if "write" in event]


@pytest.fixture(scope="module")
def reference(context, data_dir, tmp_path_factory) -> Reference:
    """The uninterrupted run, in a child with the hook counting its writes."""
    root = tmp_path_factory.mktemp("reference")
    child = spawn(context, argv(data_dir, root / "run"), root / "child", hook=True)
    assert child.exitcode == 0, f"the uninterrupted run failed:\n{child.tail()}"
    assert child.events[-1]["status"] == 0
    return Reference(root / "run", written(child.events), child.events[-1]["seconds"])


# --------------------------------------------------------------------------- comparisons


def untimed(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k not in TIMING} for record in records]


def assert_same(actual: Any, expected: Any, where: str) -> None:
    """``actual`` equals ``expected``: tensors by ``torch.equal`` (and dtype), recursively."""
    if torch.is_tensor(expected):
        assert torch.is_tensor(actual), f"{where}: {type(actual).__name__}, not a tensor"
        assert actual.dtype == expected.dtype, f"{where}: dtype {actual.dtype} != {expected.dtype}"
        assert torch.equal(actual, expected), f"{where}: tensors differ"
    elif isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: {type(actual).__name__}, not a dict"
        assert list(actual) == list(expected), f"{where}: keys {list(actual)} != {list(expected)}"
        for key in expected:
            assert_same(actual[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert type(actual) is type(expected), f"{where}: {type(actual)} != {type(expected)}"
        assert len(actual) == len(expected), f"{where}: {len(actual)} != {len(expected)} items"
        for index, (a, e) in enumerate(zip(actual, expected)):
            assert_same(a, e, f"{where}[{index}]")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def read_json(path: Path, *drop: str) -> dict:
    return {k: v for k, v in json.loads(path.read_text(encoding="utf-8")).items() if k not in drop}


def assert_same_run(folder: Path, reference: Path, where: str) -> None:
    """The run in ``folder`` is the reference run, up to timings and the run's own flags."""
    expected = load_checkpoint(reference / "checkpoint.pt")
    actual = load_checkpoint(folder / "checkpoint.pt")
    for state in (expected, actual):
        state["history"] = untimed(state["history"])
        # Python's generator, unseeded by the script and unused by training, is reseeded
        # from the OS in every forked child; torch's, which draws the weights, is compared
        del state["rng"]["python"]
    for key in ("epoch", "best_acc", "refinements", "scheduler", "model", "best_model"):
        assert_same(actual[key], expected[key], f"{where}: checkpoint.pt[{key!r}]")
    assert_same(actual, expected, f"{where}: checkpoint.pt")  # optimizer, RNG, history, ...
    assert_same(
        load_checkpoint(folder / "best.pt"),
        load_checkpoint(reference / "best.pt"),
        f"{where}: best.pt",
    )
    assert_same(
        read_json(folder / "results.json", *RESULTS_TIMING),
        read_json(reference / "results.json", *RESULTS_TIMING),
        f"{where}: results.json",
    )
    assert_same(
        untimed(read_log(folder / "log.jsonl")),
        untimed(read_log(reference / "log.jsonl")),
        f"{where}: log.jsonl",
    )
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert config["out"] == str(folder), f"{where}: config.json names --out {config['out']}"
    assert_same(
        read_json(folder / "config.json", "resume", "out"),
        read_json(reference / "config.json", "resume", "out"),
        f"{where}: config.json",
    )
    assert (folder / "curves.png").read_bytes() == (reference / "curves.png").read_bytes(), (
        f"{where}: curves.png differs"
    )
    names = sorted(path.name for path in folder.iterdir())
    leftovers = [name for name in names if name.startswith(".") and name.endswith(".tmp")]
    assert not leftovers, f"{where}: temporary files left in the run folder: {leftovers}"
    assert names == sorted(path.name for path in reference.iterdir()), f"{where}: {names}"


def assert_intact(folder: Path, where: str) -> None:
    """Every run file a killed child left is complete: checkpoints load, JSON parses."""
    for name in ("checkpoint.pt", "best.pt"):
        if (folder / name).exists():
            load_checkpoint(folder / name)  # raises CheckpointError if partial
    for name in ("config.json", "results.json"):
        if (folder / name).exists():
            read_json(folder / name)
    if (folder / "log.jsonl").exists():
        read_log(folder / "log.jsonl")
    if (folder / "curves.png").exists():
        assert (folder / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", where


# --------------------------------------------------------------------------- tests


def test_reference_run_writes_each_file_in_order_and_picks_an_earlier_best(reference):
    assert reference.writes == list(WRITES)
    state = load_checkpoint(reference.folder / "checkpoint.pt")
    assert state["epoch"] == 2 and len(state["history"]) == 2
    # epoch 2 does not beat epoch 1 on validation, so best.pt is not the last model
    # and a resume must carry the best model over rather than take the current one
    assert state["best_acc"] == state["history"][0]["val_acc"] >= state["history"][1]["val_acc"]
    assert any(not torch.equal(state["model"][k], v) for k, v in state["best_model"].items())
    # the learning rate changes between the epochs, so the scheduler's state matters
    assert state["history"][0]["lr"] != state["history"][1]["lr"]
    assert sorted(p.name for p in reference.folder.iterdir()) == sorted(set(WRITES))


@pytest.mark.parametrize(
    ("k", "point"),
    [(k, point) for k in range(1, len(WRITES) + 1) for point in POINTS],
    ids=[f"{k}-{name}-{point}" for k, name in enumerate(WRITES, 1) for point in POINTS],
)
def test_kill_at_a_write_then_resume_equals_the_uninterrupted_run(
    context, data_dir, reference, tmp_path, k, point
):
    name = WRITES[k - 1]
    where = f"killed {point} write {k} ({name})"
    out = tmp_path / "run"
    killed = spawn(context, argv(data_dir, out), tmp_path / "killed", kill=(k, point))
    assert killed.exitcode == -9, f"{where}: not reached, exit {killed.exitcode}\n{killed.tail()}"
    assert killed.events[-1] == {"killed": k, "point": point, "name": name}, where
    done = k if point == "after" else k - 1
    assert written(killed.events) == list(WRITES[:done]), where
    temporary = sorted(out.glob(f".{name}.*.tmp"))
    if point == "after":
        assert not temporary, f"{where}: {temporary}"
    else:
        assert len(temporary) == 1, f"{where}: {temporary}"
    assert_intact(out, where)

    resumed = spawn(context, argv(data_dir, out, "--resume"), tmp_path / "resumed")
    assert resumed.exitcode == 0, f"{where}: --resume exit {resumed.exitcode}\n{resumed.tail()}"
    assert_same_run(out, reference.folder, where)


@pytest.mark.parametrize("seed", range(3))
def test_kills_at_random_moments_then_resume_equals_the_uninterrupted_run(
    context, data_dir, reference, tmp_path, seed
):
    rng = random.Random(seed)
    out = tmp_path / "run"
    story = []
    for attempt in range(MAX_RANDOM_KILLS):
        delay = rng.uniform(0.0, reference.seconds)
        flags = argv(data_dir, out, *(["--resume"] if attempt else []))
        child = spawn(context, flags, tmp_path / f"attempt{attempt}", delay=delay)
        story.append(f"attempt {attempt}: kill after {delay:.2f} s, exit {child.exitcode}")
        where = f"seed {seed}, " + "; ".join(story)
        assert child.exitcode in (0, -9), f"{where}\n{child.tail()}"
        if child.exitcode == 0:
            break
        if out.exists():
            assert_intact(out, where)
    else:
        child = spawn(context, argv(data_dir, out, "--resume"), tmp_path / "last")
        story.append(f"unhooked --resume: exit {child.exitcode}")
        where = f"seed {seed}, " + "; ".join(story)
        assert child.exitcode == 0, f"{where}\n{child.tail()}"
    assert_same_run(out, reference.folder, where)
