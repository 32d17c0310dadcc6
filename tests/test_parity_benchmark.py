"""Smoke tests of benchmarks/parity_baseline.py and benchmarks/parity.py on tiny fake batches.

No timing is asserted: the runs are seconds long on a few dozen random images.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cifar_archive import make_batches, write_folder

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "benchmarks" / "parity_baseline.py"
DRIVER = ROOT / "benchmarks" / "parity.py"


def load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


baseline = load("parity_baseline", BASELINE)
parity = load("parity_driver", DRIVER)

# 64 training images (4 steps of 16) and 40 test images: an epoch takes well under a second.
SMALL = ["--subset", "64", "--batch-size", "16"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """CIFAR-10 in the official pickle format: 5 x 40 training and 40 test images."""
    root = tmp_path_factory.mktemp("data")
    write_folder(root, "cifar10", make_batches("cifar10", per_batch=40), protocol="python2")
    return root


def run(script: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(script), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def test_baseline_imports_nothing_of_the_library():
    tree = ast.parse(BASELINE.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert "dynamicblocks" not in imported
    assert (
        "dynamicblocks"
        not in BASELINE.read_text(encoding="utf-8")
        .replace("``dynamicblocks``", "")
        .split('"""', 2)[2]
    )  # not even by name below the docstring


@pytest.fixture
def one_thread():
    """One intra-op thread for in-process runs (as the subprocesses' OMP_NUM_THREADS=1)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_baseline_one_epoch_then_resume_does_nothing_then_refuses(
    data_dir, tmp_path, capsys, one_thread
):
    out = tmp_path / "baseline"
    common = ["--data-dir", str(data_dir), "--out", str(out), "--epochs", "1", *SMALL]
    result = run(BASELINE, *common, "--threads", "1")  # as a script
    assert result.returncode == 0, result.stderr
    assert "preact_resnet20 (272,282 parameters) on cpu: 64 train / 40 test" in result.stdout
    assert {"checkpoint.pt", "log.jsonl", "results.json"} <= {p.name for p in out.iterdir()}
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    [record] = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    keys = {"epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "seconds"}
    assert keys | {"images_per_s"} == set(record)
    assert record["epoch"] == 1 and 0 <= record["test_acc"] <= 1
    assert math.isfinite(record["train_loss"]) and record["seconds"] >= 0
    results = json.loads((out / "results.json").read_text())
    assert results["epochs"] == 1 and results["test_acc"] == record["test_acc"]
    assert results["parameters"] == 272_282

    stamp = (out / "checkpoint.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert baseline.main([*common, "--resume"]) == 0  # in this process: no start-up time
    printed = capsys.readouterr().out
    assert "nothing to do" in printed and "epoch   1/1" not in printed
    assert (out / "checkpoint.pt").stat().st_mtime_ns == stamp

    assert baseline.main(common) == 2
    refused = capsys.readouterr().err
    assert refused.startswith("error: --out") and "--resume" in refused
    assert len(refused.strip().splitlines()) == 1
    assert (out / "checkpoint.pt").stat().st_mtime_ns == stamp


def test_baseline_resume_after_interruption_equals_an_uninterrupted_run(
    data_dir, tmp_path, one_thread
):
    common = ["--data-dir", str(data_dir), "--epochs", "2", "--subset", "32", "--batch-size", "16"]
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert baseline.main([*common, "--out", str(whole)]) == 0
    assert baseline.main([*common, "--out", str(split), "--stop-after", "1"]) == 0
    assert not (split / "results.json").exists()
    assert baseline.main([*common, "--out", str(split), "--resume"]) == 0

    def figures(out):
        records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        return [
            {k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in records
        ]

    assert len(figures(whole)) == 2 and figures(whole) == figures(split)
    a = torch.load(whole / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(split / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[key], b[key]) for key in a)

    changed = baseline.main([*common, "--out", str(split), "--resume", "--lr", "0.2"])
    assert changed == 2


def test_baseline_model_has_he_et_al_parameter_count_and_initialisation():
    torch.manual_seed(0)
    model = baseline.PreactResNet(20, 10)
    assert baseline.count_parameters(model) == baseline.PARAMETERS == 272_282
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 1 + 2 * 9 + 2  # opening, two per unit, two projections
    assert all(conv.bias is None for conv in convs)
    widest = model.stages[2][2].conv2.weight  # 64 x 64 x 3 x 3: std sqrt(2 / (9 * 64))
    assert abs(widest.std().item() / math.sqrt(2 / (9 * 64)) - 1) < 0.05
    assert torch.equal(model.fc.bias, torch.zeros(10))
    assert model.fc.weight.abs().max() <= 1 / 8  # U(-1/sqrt(64), 1/sqrt(64))


def library_name(key: str) -> str:
    """The name in the library's ``preact_resnet(20, shortcut="projection")`` of a baseline key."""
    parts = key.split(".")
    if parts[0] == "conv":
        return ".".join(["opening", *parts[1:]])
    if parts[0] == "norm":
        return ".".join(["connectives", "2", "0", *parts[1:]])
    if parts[0] == "fc":
        return ".".join(["classifier", *parts[1:]])
    stage, unit, rest = int(parts[1]), int(parts[2]), parts[3:]
    if stage == 0:
        return ".".join(["blocks", "0", "layers", str(unit), *rest])
    if unit == 0:
        return ".".join(["connectives", str(stage - 1), *rest])
    return ".".join(["blocks", str(stage), "layers", str(unit - 1), *rest])


def test_baseline_network_computes_the_library_network(float64):
    from dynamicblocks.models import preact_resnet

    library = preact_resnet(20, shortcut="projection")
    ours = baseline.PreactResNet(20, 10)
    with torch.no_grad():  # random statistics and affine parameters, so eval mode is no identity
        for module in library.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    source = library.state_dict()
    mapped = {key: source[library_name(key)] for key in ours.state_dict()}
    assert sorted(map(library_name, mapped)) == sorted(source)  # every entry, once
    ours.load_state_dict(mapped)
    x = torch.randn(4, 3, 32, 32)
    for training in (False, True):
        library.train(training), ours.train(training)
        with torch.no_grad():
            assert (library(x) - ours(x)).abs().max().item() <= 1e-10


def fake_run(out: Path, records: list[dict], results: dict | None) -> None:
    out.mkdir(parents=True)
    (out / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if results is not None:
        (out / "results.json").write_text(json.dumps(results))


def test_driver_table_only_formats_two_fake_runs(tmp_path):
    root = tmp_path / "parity"
    common = {"lr": 0.1, "train_loss": 1.0, "train_acc": 0.5}
    library = [
        {"epoch": e, **common, "seconds": s, "images_per_s": 50000 / s}
        for e, s in ((1, 10.5), (2, 10.0), (3, 11.0))
    ]
    fake_run(root / "library", library, {"test_acc": 0.9123, "epochs": 3})
    ours = [
        {
            "epoch": e,
            **common,
            "test_loss": 0.3,
            "test_acc": a,
            "seconds": 10.0,
            "images_per_s": 5e3,
        }
        for e, a in ((1, 0.8), (2, 0.9150), (3, 0.9100))
    ]
    fake_run(root / "baseline", ours, {"test_acc": 0.9100, "epochs": 3})
    (root / "settings.json").write_text(json.dumps({"epochs": 3, "batch_size": 128}))
    (root / "loadavg.jsonl").write_text(
        "".join(
            json.dumps({"time": t, "part": part, "load1": load, "load5": 0, "load15": 0}) + "\n"
            for t, (part, load) in enumerate(
                [("library", 1.0), ("library", 3.0), ("library", 2.0), ("baseline", 0.5)]
            )
        )
    )
    result = run(DRIVER, "--only", "table", "--out", str(root))
    assert result.returncode == 0, result.stderr
    text = (root / "parity.md").read_text()
    assert text in result.stdout
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("|")}
    library_row = [c.strip() for c in rows["library (examples/cifar10.py)"].split("|")[2:-1]]
    assert library_row == ["3/3", "91.23", "n/a", "10.50", "10.00 - 11.00", "4762"]
    baseline_row = [c.strip() for c in rows["baseline (parity_baseline.py)"].split("|")[2:-1]]
    assert baseline_row[:5] == ["3/3", "91.00", "91.50", "10.00", "10.00 - 10.00"]
    assert "| +0.23 points |" in rows["final test accuracy, library - baseline"]
    assert "| yes |" in rows["final test accuracy, library - baseline"]
    assert "| 1.050 |" in rows["median s/epoch of the long runs, library / baseline"]
    assert not [key for key in rows if key.startswith("paired")]  # no timing.jsonl
    assert "Paired short runs" not in text and "--only timing" in text
    assert "| 1.00 | 2.00 | 3.00 | 3 |" in rows["during library"]
    assert "| 0.50 | 0.50 | 0.50 | 1 |" in rows["during baseline"]
    assert "batch_size 128" in text


def test_driver_table_of_a_partial_comparison_and_usage_errors(tmp_path):
    root = tmp_path / "parity"
    record = {"epoch": 1, "lr": 0.1, "train_loss": 1.0, "train_acc": 0.5, "seconds": 2.0}
    fake_run(root / "library", [{**record, "images_per_s": 100.0}], None)
    table = parity.table(root, epochs=15)
    assert "| 1/15 (running or interrupted) | n/a | n/a | 2.00 |" in table
    assert "| baseline (parity_baseline.py) | 0/15 | n/a |" in table

    missing = run(DRIVER, "--data-dir", str(tmp_path / "nowhere"), "--out", str(root))
    assert missing.returncode == 2 and missing.stderr.startswith("error: --data-dir")
    assert len(missing.stderr.strip().splitlines()) == 1


def test_driver_table_formats_the_paired_short_runs(tmp_path):
    root = tmp_path / "parity"
    root.mkdir()
    seconds = [  # round, part, seconds: two complete rounds (in either order) and half a third
        (1, "library", 10.4),
        (1, "baseline", 10.0),
        (2, "baseline", 9.0),
        (2, "library", 9.6),
        (3, "library", 11.0),
    ]
    (root / "timing.jsonl").write_text(
        "".join(
            json.dumps(
                {
                    "round": number,
                    "part": part,
                    "seconds": value,
                    "images_per_s": 6400 / value,
                    "load1": 1.0,
                    "time": 1e9 + k,
                }
            )
            + "\n"
            for k, (number, part, value) in enumerate(seconds)
        )
        + '{"round": 4, "part": "libr'  # a torn last line
    )
    text = parity.table(root)
    assert "## Paired short runs" in text
    ratios = [10.4 / 10.0, 9.6 / 9.0]
    median = (ratios[0] + ratios[1]) / 2
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("|")}
    cells = {key: [c.strip() for c in row.split("|")[2:-1]] for key, row in rows.items()}
    assert cells["1"] == ["10.40", "10.00", f"{ratios[0]:.3f}"]
    assert cells["2"] == ["9.60", "9.00", f"{ratios[1]:.3f}"]
    assert "3" not in cells  # incomplete
    assert cells["median of 2 rounds"] == ["", "", f"{median:.3f}"]
    name = "paired seconds per epoch, library / baseline (median of 2 rounds)"
    met = "yes" if abs(median - 1) <= parity.TIME_TARGET else "no"
    assert cells[name] == [f"{median:.3f}", "0.95 - 1.05", met]
    assert cells["median s/epoch of the long runs, library / baseline"][0] == "n/a"
    assert "one at a time" in text


def test_driver_paired_short_runs_end_to_end(data_dir, tmp_path):
    root = tmp_path / "parity"
    common = ["--data-dir", str(data_dir), "--out", str(root), "--only", "timing"]
    small = ["--timing-subset", "32", "--batch-size", "16", "--threads", "1"]
    result = run(DRIVER, *common, "--rounds", "2", *small)
    assert result.returncode == 0, result.stdout + result.stderr
    records = [json.loads(line) for line in (root / "timing.jsonl").read_text().splitlines()]
    assert [(r["round"], r["part"]) for r in records] == [
        (1, "library"),
        (1, "baseline"),
        (2, "baseline"),
        (2, "library"),
    ]
    for record in records:
        keys = {"round", "part", "seconds", "images_per_s", "load1", "allocator", "time"}
        assert set(record) == keys and record["allocator"] == "system"
        assert record["seconds"] >= 0 and record["images_per_s"] > 0
    assert not (root / "settings.json").exists()
    for part in ("library", "baseline"):
        assert "[timing " + part + "] " in result.stdout
        assert len((root / "timing" / part / "log.jsonl").read_text().splitlines()) == 1
    text = (root / "parity.md").read_text()
    assert "## Paired short runs" in text
    assert "| paired seconds per epoch, library / baseline (median of 2 rounds) |" in text


def test_driver_refuses_a_timing_subset_below_the_batch_size(data_dir, tmp_path):
    root = tmp_path / "parity"
    result = run(
        DRIVER,
        *("--data-dir", str(data_dir), "--out", str(root), "--only", "timing"),
        *("--timing-subset", "8", "--batch-size", "16"),
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: --timing-subset 8")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not root.exists()


def test_driver_paired_rounds_continue_and_a_failed_run_stops_them(tmp_path, monkeypatch, capsys):
    root = tmp_path / "parity"
    root.mkdir()
    done = [{"round": r, "part": p, "seconds": 1.0} for r, p in ((2, "baseline"), (3, "library"))]
    (root / "timing.jsonl").write_text("".join(json.dumps(r) + "\n" for r in done))
    calls = []

    def forward(command, env, label, on_line=None):  # a run: one log record, no subprocess
        out = Path(command[command.index("--out") + 1])
        calls.append((label, out.name, command))
        if len(calls) == 4:
            return 3
        out.mkdir(parents=True, exist_ok=True)
        record = {"epoch": 1, "seconds": 2.0, "images_per_s": 16.0}
        (out / "log.jsonl").write_text(json.dumps(record) + "\n")
        return 0

    monkeypatch.setattr(parity, "forward", forward)
    args = parity.parse_args(["--out", str(root), "--only", "timing", "--rounds", "3"])
    args.data_dir = str(tmp_path)
    assert parity.run_timing(args) == 3
    error = capsys.readouterr().err
    assert error.startswith("error: the timing baseline run of round 5 stopped with status 3")
    assert [(label, name) for label, name, _ in calls] == [
        ("timing baseline", "baseline"),  # round 4 (after the recorded 3): the baseline first
        ("timing library", "library"),
        ("timing library", "library"),  # round 5: the library first
        ("timing baseline", "baseline"),  # fails: no round 6
    ]
    records = [json.loads(line) for line in (root / "timing.jsonl").read_text().splitlines()]
    assert [(r["round"], r["part"]) for r in records[2:]] == [
        (4, "baseline"),
        (4, "library"),
        (5, "library"),
    ]
    for _, _, command in calls:
        assert command[-1] == "--overwrite" and "--resume" not in command
        assert command[command.index("--epochs") + 1] == "1"
        assert command[command.index("--subset") + 1] == "6400"
    assert "--no-progress" in calls[1][2]


def test_driver_allocator_reaches_both_sides_and_the_table_keeps_it_apart(tmp_path, monkeypatch):
    root = tmp_path / "parity"
    root.mkdir()
    system = [  # a complete round recorded before --allocator existed: the system's
        {"round": 1, "part": "library", "seconds": 10.4},
        {"round": 1, "part": "baseline", "seconds": 10.0},
    ]
    (root / "timing.jsonl").write_text("".join(json.dumps(r) + "\n" for r in system))
    for key in parity.ALLOCATORS["retain"]:
        monkeypatch.delenv(key, raising=False)
    envs = []

    def forward(command, env, label, on_line=None):  # a run: one log record, no subprocess
        out = Path(command[command.index("--out") + 1])
        envs.append(env)
        out.mkdir(parents=True, exist_ok=True)
        seconds = 2.2 if out.name == "library" else 2.0
        (out / "log.jsonl").write_text(json.dumps({"epoch": 1, "seconds": seconds}) + "\n")
        return 0

    monkeypatch.setattr(parity, "forward", forward)
    common = ["--out", str(root), "--only", "timing", "--rounds", "1"]
    args = parity.parse_args([*common, "--allocator", "retain"])
    args.data_dir = str(tmp_path)
    assert parity.run_timing(args) == 0
    assert len(envs) == 2
    for env in envs:
        assert env.items() >= parity.ALLOCATORS["retain"].items()
    plain = parity.part_env(parity.parse_args(common), "baseline")
    assert not plain.keys() & parity.ALLOCATORS["retain"].keys()
    records = [json.loads(line) for line in (root / "timing.jsonl").read_text().splitlines()]
    assert [r.get("allocator") for r in records] == [None, None, "retain", "retain"]

    text = parity.table(root)
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("|")}
    cells = {key: [c.strip() for c in row.split("|")[2:-1]] for key, row in rows.items()}
    name = "paired seconds per epoch, library / baseline (median of 1 round"
    assert cells[name + ")"][0] == f"{10.4 / 10.0:.3f}"
    assert cells[name + ", --allocator retain)"][0] == f"{2.2 / 2.0:.3f}"
    assert cells["1"] == ["10.40", "10.00", f"{10.4 / 10.0:.3f}"]
    assert cells["2"] == ["2.20", "2.00", f"{2.2 / 2.0:.3f}"]
    assert "### `--allocator system`" in text and "### `--allocator retain`" in text


def test_driver_long_runs_refuse_another_allocator_than_recorded(tmp_path):
    root = tmp_path / "parity"
    root.mkdir()
    args = parity.parse_args(["--out", str(root), "--allocator", "retain"])
    old = {key: getattr(args, key) for key in (*parity.RECIPE, "threads", "device")}
    (root / "settings.json").write_text(json.dumps(old))  # begun before --allocator: system
    with pytest.raises(parity.UsageError, match="--allocator system -> retain"):
        parity.check_settings(args, root)
    parity.check_settings(parity.parse_args(["--out", str(root)]), root)
