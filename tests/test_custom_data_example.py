"""Tests of examples/custom_data.py (a run, its files, --resume, the run-folder guard) and
of the snippets of docs/custom_data.md, which run as written."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dynamicblocks.train import RUN_FILES, load_checkpoint, read_log

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "custom_data.py"
PAGE = ROOT / "docs" / "custom_data.md"
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
spec = importlib.util.spec_from_file_location("custom_data_example", SCRIPT)
example = importlib.util.module_from_spec(spec)
spec.loader.exec_module(example)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model runs fastest on one thread
    yield
    torch.set_num_threads(threads)


def run(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPT), *args]
    return subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300)


def accuracy(stdout: str) -> float:
    """The final validation accuracy the script prints, as a fraction."""
    match = re.search(r"^validation accuracy of best\.pt: (\d+\.\d+)%$", stdout, re.M)
    assert match, stdout
    return float(match.group(1)) / 100


def test_a_run_writes_its_files_resumes_and_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    first = run("--epochs", "2", "--out", str(out))
    assert first.returncode == 0, first.stderr
    assert all((out / name).is_file() for name in RUN_FILES)
    assert re.search(r"^epoch +1/2 .* val loss", first.stdout, re.M), first.stdout
    assert re.search(r"^epoch +2/2 .* val loss", first.stdout, re.M), first.stdout
    acc = accuracy(first.stdout)
    # Four classes, chance is 0.25; seeds 0-7 gave 0.72-0.87 after two epochs (both paths).
    assert 0.5 < acc <= 1.0
    assert [record["epoch"] for record in read_log(out / "log.jsonl")] == [1, 2]
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 2
    best = load_checkpoint(out / "best.pt")
    assert all(torch.is_tensor(value) for value in best.values())
    best_val = max(record["val_acc"] for record in read_log(out / "log.jsonl"))
    assert best_val == pytest.approx(acc, abs=5e-5)  # printed to 0.01 %

    assert example.main(["--epochs", "2", "--out", str(out), "--resume"]) == 0
    resumed = capsys.readouterr().out
    assert "epoch " not in resumed  # nothing left to train
    assert accuracy(resumed) == acc

    checkpoint = (out / "checkpoint.pt").read_bytes()
    with pytest.raises(SystemExit) as raised:  # again, without --resume
        example.main(["--epochs", "2", "--out", str(out)])
    assert raised.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: --out {out} holds a run: continue it with --resume or use --overwrite"
    ]
    assert (out / "checkpoint.pt").read_bytes() == checkpoint


def test_the_dataloader_path_trains_and_a_switch_of_path_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert example.main(["--loader", "--epochs", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert all((out / name).is_file() for name in RUN_FILES)
    assert 0.5 < accuracy(printed) <= 1.0
    assert len(read_log(out / "log.jsonl")) == 2

    with pytest.raises(SystemExit) as raised:
        example.main(["--epochs", "2", "--out", str(out), "--resume"])  # without --loader
    assert raised.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: --resume: ") and "loader: True -> False" in line

    assert example.main(["--epochs", "2", "--out", str(out), "--overwrite"]) == 0
    assert load_checkpoint(out / "checkpoint.pt")["extra"] == {"loader": False}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs", "0"], "error: epochs must be a positive int"),
        (["--lr", "-1"], "error: lr must be >= 0"),
        (["--batch-size", "5000"], "error: --batch-size 5000 exceeds the 1024 training images"),
        (["--resume", "--overwrite"], "error: argument --overwrite: not allowed with"),
    ],
)
def test_bad_flags_print_one_error_line_and_exit_2(argv, message, tmp_path, capsys):
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as raised:
        example.main([*argv, "--out", str(out)])
    assert raised.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(message)
    assert not out.exists()


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit) as raised:
        example.main(["--help"])
    assert raised.value.code == 0
    printed = capsys.readouterr().out
    assert "--epochs EPOCHS" in printed and "(default: 6)" in printed
    assert "(default: runs/custom_data)" in printed


def test_the_snippets_of_the_page_run_in_order(tmp_path, monkeypatch):
    """As tests/test_docs.py runs the other pages' snippets (these take a few seconds)."""
    snippets = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    assert len(snippets) >= 5
    monkeypatch.chdir(tmp_path)  # the snippets write runs/...
    namespace: dict = {}
    for snippet in snippets:
        exec(compile(snippet, str(PAGE), "exec"), namespace)
    assert all((tmp_path / "runs" / "my_data" / name).is_file() for name in RUN_FILES)
    assert all((tmp_path / "runs" / "my_loader" / name).is_file() for name in RUN_FILES)
