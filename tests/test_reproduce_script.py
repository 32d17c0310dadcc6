"""Tests of examples/reproduce_rknet.py: its command line, and its whole path on the CPU."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cifar_archive import make_batches, write_folder

from dynamicblocks.train import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "reproduce_rknet.py"


@pytest.fixture(scope="module")
def reproduce():
    sys.path.insert(0, str(SCRIPT.parent))  # the script imports examples/cifar10.py
    try:
        spec = importlib.util.spec_from_file_location("reproduce_rknet", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return module


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """CIFAR-10 in the official format: 5 x 60 training and 60 test images."""
    root = tmp_path_factory.mktemp("data")
    write_folder(root, "cifar10", make_batches("cifar10", per_batch=60))
    return root


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(SCRIPT), *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_gpu_run_is_the_original_recipe_with_the_fast_path(reproduce, tmp_path):
    args = reproduce.parse_args(["--data-dir", "D", "--out", str(tmp_path)])
    argv = reproduce.cifar10_args(args, tmp_path)
    parsed = reproduce.cifar10_main.__globals__["parse_args"](argv)  # examples/cifar10.py's
    assert (parsed.recipe, parsed.model, parsed.dataset) == ("original", "rknet", "cifar10")
    assert (parsed.amp, parsed.channels_last, parsed.compile) == ("bf16", True, True)
    assert parsed.device == "cuda" and parsed.subset is None and parsed.epochs == 120
    assert not parsed.resume and parsed.time_limit is None and parsed.download is False

    (tmp_path / "checkpoint.pt").write_bytes(b"")
    limited = reproduce.parse_args(["--out", str(tmp_path), "--time-limit", "8", "--download"])
    parsed = reproduce.cifar10_main.__globals__["parse_args"](
        reproduce.cifar10_args(limited, tmp_path)
    )
    assert parsed.resume and parsed.time_limit == 8.0 and parsed.download is True


def test_table_puts_the_accuracy_beside_the_originals(reproduce):
    results = {"test_acc": 0.8851, "epochs": 120, "train_seconds": 480.0, "last_images_per_s": 9e3}
    text = reproduce.table(results, "cuda:0", smoke=False)
    assert "| original DynamicBlocks (paper's code) | 89.08 | 120 |" in text
    assert "| this run, cuda:0 | 88.51 | 120 | 8.0 min | 9000 |" in text
    assert text.endswith("difference: -0.57 points")


def test_smoke_run_trains_reports_and_is_not_trained_again(data_dir, tmp_path):
    done = run("--smoke", "--data-dir", str(data_dir), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "runs" / "reproduce_rknet_smoke"
    config = json.loads((out / "config.json").read_text())
    assert (config["recipe"], config["model"], config["epochs"]) == ("original", "rknet", 1)
    results = json.loads((out / "results.json").read_text())
    assert f"| {100 * results['test_acc']:.2f} | 1 |" in done.stdout
    assert "| original DynamicBlocks (paper's code) | 89.08 | 120 |" in done.stdout
    table = (out / "reproduction.md").read_text()
    assert "this run (smoke check: 256 images, 1 epoch), cpu" in table
    assert "not comparable" in table and "difference" not in table
    saved = load_checkpoint(out / "checkpoint.pt")["model"]

    again = run("--smoke", "--data-dir", str(data_dir), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "holds a finished run" in again.stdout and "epoch   1/1" not in again.stdout
    assert (out / "reproduction.md").read_text() == table
    now = load_checkpoint(out / "checkpoint.pt")["model"]
    assert all(torch.equal(saved[key], now[key]) for key in saved)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where there is no CUDA")
def test_no_cuda_is_one_error_line(tmp_path):
    done = run("--data-dir", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --device cuda: CUDA is not available")
    assert not (tmp_path / "runs").exists()


def test_missing_data_and_bad_time_limit_are_one_error_line(tmp_path):
    missing = run("--smoke", "--data-dir", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and missing.stderr.startswith("error: ")
    bad = run("--smoke", "--time-limit", "-1", cwd=tmp_path)
    assert bad.returncode == 2 and "--time-limit" in bad.stderr
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: ")
