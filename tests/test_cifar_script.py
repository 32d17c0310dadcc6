"""End-to-end tests of examples/cifar10.py on tiny archives in the official format."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cifar_archive import make_batches, write_folder

from dynamicblocks import (
    DynamicBlock,
    HamiltonianBlock,
    IMEXBlock,
    LeapfrogBlock,
    LMBlock,
    uniform_grid,
)
from dynamicblocks.train import Trainer, load_checkpoint, read_log

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "cifar10.py"
spec = importlib.util.spec_from_file_location("cifar10_example", SCRIPT)
cifar10 = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cifar10)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """CIFAR-10 with 5 x 120 training and 120 test images, and CIFAR-100 with 200 + 100."""
    root = tmp_path_factory.mktemp("data")
    write_folder(root, "cifar10", make_batches("cifar10", per_batch=120))
    write_folder(root, "cifar100", make_batches("cifar100", per_batch=200))
    return root


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(SCRIPT), *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_one_epoch_end_to_end_then_evaluate(data_dir, tmp_path):
    out = tmp_path / "run"
    args = ["--data-dir", str(data_dir), "--subset", "512", "--epochs", "1", "--out", str(out)]
    result = run(*args, "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "rknet (251,866 parameters) on cpu x 1: 410 train / 102 val / 120 test" in result.stdout
    files = {"checkpoint.pt", "best.pt", "log.jsonl", "curves.png", "config.json", "results.json"}
    assert files <= {p.name for p in out.iterdir()}
    [record] = read_log(out / "log.jsonl")
    assert record["epoch"] == 1 and 0 <= record["val_acc"] <= 1
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1
    best = load_checkpoint(out / "best.pt")
    assert len(best) == len(load_checkpoint(out / "checkpoint.pt")["model"])
    results = json.loads((out / "results.json").read_text())

    evaluation = run(
        "--data-dir",
        str(data_dir),
        "--subset",
        "512",
        "--evaluate",
        str(out / "best.pt"),
        cwd=tmp_path,
    )
    assert evaluation.returncode == 0, evaluation.stderr
    assert f"test accuracy {100 * results['test_acc']:.2f}% on 120 images" in evaluation.stdout


def test_script_resume_after_interruption_equals_an_uninterrupted_run(
    data_dir, tmp_path, monkeypatch
):
    common = [
        "--data-dir",
        str(data_dir),
        "--subset",
        "200",
        "--epochs",
        "2",
        "--batch-size",
        "20",
        "--model",
        "preact_resnet8",
        "--no-progress",
        "--no-download",
    ]
    assert cifar10.main([*common, "--out", str(tmp_path / "a")]) == 0

    original_end = Trainer._end_epoch

    def end_then_crash(self, record):
        original_end(self, record)
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_end_epoch", end_then_crash)
    assert cifar10.main([*common, "--out", str(tmp_path / "b")]) == 130
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["epoch"] == 1
    assert cifar10.main([*common, "--out", str(tmp_path / "b"), "--resume"]) == 0
    a, b = (load_checkpoint(tmp_path / d / "checkpoint.pt") for d in "ab")
    assert a["epoch"] == b["epoch"] == 2
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert (
        json.loads((tmp_path / "a" / "results.json").read_text())["test_acc"]
        == json.loads((tmp_path / "b" / "results.json").read_text())["test_acc"]
    )


def small_run(data_dir: Path, epochs: int) -> list[str]:
    """The flags of a run of preact_resnet8 on 100 images, 4 steps per epoch."""
    return [
        *("--data-dir", str(data_dir), "--subset", "100", "--epochs", str(epochs)),
        *("--batch-size", "25", "--model", "preact_resnet8", "--no-progress", "--no-download"),
    ]


def test_time_limit_stops_checkpointed_and_resume_finishes_the_same_run(data_dir, tmp_path, capsys):
    common = small_run(data_dir, epochs=2)
    assert cifar10.main([*common, "--out", str(tmp_path / "a")]) == 0
    # Any epoch outlasts 1e-6 minutes: the run stops after its first (each call trains one).
    assert cifar10.main([*common, "--out", str(tmp_path / "b"), "--time-limit", "1e-6"]) == 0
    out = capsys.readouterr().out
    assert "stopped after epoch 1/2 (--time-limit 1e-06 minutes)" in out
    assert f"continue with --resume --out {tmp_path / 'b'}" in out
    assert not (tmp_path / "b" / "results.json").exists()
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["epoch"] == 1
    assert cifar10.main([*common, "--out", str(tmp_path / "b"), "--resume"]) == 0
    a, b = (load_checkpoint(tmp_path / d / "checkpoint.pt") for d in "ab")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    results = [json.loads((tmp_path / d / "results.json").read_text()) for d in "ab"]
    assert results[0]["test_acc"] == results[1]["test_acc"] and results[1]["epochs"] == 2


@pytest.mark.parametrize("value", ["0", "-5", "nan", "soon"])
def test_bad_time_limit_is_one_error_line(value, capsys):
    with pytest.raises(SystemExit) as stop:
        cifar10.parse_args(["--time-limit", value])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: argument --time-limit:")


def test_resume_with_another_model_is_refused(data_dir, tmp_path, capsys):
    common = [*small_run(data_dir, epochs=1), "--out", str(tmp_path)]
    assert cifar10.main(common) == 0
    capsys.readouterr()
    assert cifar10.main([*common, "--scheme", "rk4", "--resume"]) == 2
    assert "--scheme None -> rk4" in capsys.readouterr().err


def test_cifar100_trains(data_dir, tmp_path):
    cifar10.main(
        [
            "--dataset",
            "cifar100",
            "--data-dir",
            str(data_dir),
            "--epochs",
            "1",
            "--model",
            "preact_resnet8",
            "--batch-size",
            "50",
            "--no-progress",
            "--out",
            str(tmp_path),
            "--schedule",
            "onecycle",
            "--amp",
            "bf16",
        ]
    )
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["epochs"] == 1 and 0 <= results["test_acc"] <= 1
    state = load_checkpoint(tmp_path / "best.pt")
    assert state["classifier.weight"].shape == (100, 64)


def test_missing_data_offline_says_where_to_put_it(tmp_path, capsys):
    argv = ["--data-dir", str(tmp_path / "nothing"), "--no-download", "--out", str(tmp_path / "o")]
    assert cifar10.main(argv) == 2
    error = capsys.readouterr().err
    assert "cifar-10-batches-py" in error and "run without --no-download" in error
    assert not (tmp_path / "o").exists()


def test_corrupt_batch_file_is_named(data_dir, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(data_dir / "cifar-10-batches-py", root / "cifar-10-batches-py")
    (root / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80\x02truncated")
    argv = ["--data-dir", str(root), "--no-download", "--out", str(tmp_path / "o")]
    assert cifar10.main(argv) == 2
    assert "data_batch_3" in capsys.readouterr().err and not (tmp_path / "o").exists()


def _args(*argv: str):
    return cifar10.parse_args(list(argv))


def test_model_flags_build_the_asked_for_networks():
    net = cifar10.build_model(_args(), 10)
    block = net.blocks[0]
    assert isinstance(block, DynamicBlock) and block.tableau.name == "rk4"
    assert list(block.t) == [0, 1, 2, 3, 4] and block.interpolation == "linear"

    net = cifar10.build_model(_args("--scheme", "euler", "--steps", "8"), 10)
    block = net.blocks[0]
    assert block.tableau.name == "euler" and block.num_steps == 8
    assert block.t == uniform_grid(0.0, 4.0, 8)
    assert list(block.t_theta) == [0, 1, 2, 3, 4]

    net = cifar10.build_model(_args("--grid", "0,0.5,2,4", "--controls", "0,4"), 100)
    assert list(net.blocks[1].t) == [0, 0.5, 2, 4] and list(net.blocks[1].t_theta) == [0, 4]
    assert net.classifier.out_features == 100

    net = cifar10.build_model(_args("--model", "preact_resnet20", "--scheme", "rk4"), 10)
    assert [b.num_steps for b in net.blocks] == [3, 3, 3] and net.blocks[2].tableau.name == "rk4"
    net = cifar10.build_model(_args("--model", "preact_resnet20", "--grid", "0,1,1.5,3"), 10)
    assert list(net.blocks[0].t) == [0, 1, 1.5, 3]

    net = cifar10.build_model(_args("--model", "preact_resnet20_he", "--scheme", "rk4"), 10)
    assert [b.num_steps for b in net.blocks] == [3, 2, 2] and net.blocks[2].tableau.name == "rk4"
    assert sum(p.numel() for p in net.parameters()) == 272_282  # He et al.'s 0.27 M


def test_pde_model_flags_build_ruthotto_habers_networks():
    net = cifar10.build_model(_args("--model", "parabolic"), 10)
    assert [b.tableau.name for b in net.blocks] == ["euler"] * 3
    assert list(net.blocks[0].t) == [0, 1, 2, 3]
    net = cifar10.build_model(_args("--model", "parabolic", "--scheme", "rk4", "--steps", "6"), 10)
    assert net.blocks[0].tableau.name == "rk4" and net.blocks[0].t == uniform_grid(0.0, 3.0, 6)
    net = cifar10.build_model(_args("--model", "hamiltonian", "--controls", "0"), 100)
    assert all(isinstance(b, HamiltonianBlock) and len(b.layers1) == 1 for b in net.blocks)
    net = cifar10.build_model(_args("--model", "second_order", "--grid", "0,1,3"), 10)
    assert all(isinstance(b, LeapfrogBlock) and b.num_steps == 2 for b in net.blocks)
    net = cifar10.build_model(_args("--model", "imexnet", "--scheme", "ars222"), 10)
    assert all(isinstance(b, IMEXBlock) and b.tableau.name == "ars222" for b in net.blocks)


def test_lm_resnet_flags_build_lm_resnets():
    net = cifar10.build_model(_args("--model", "lm_resnet20"), 10)
    assert all(isinstance(b, LMBlock) and b.num_steps == 3 for b in net.blocks)
    net = cifar10.build_model(_args("--model", "lm_resnet20", "--grid", "0,1,1.5,3"), 10)
    assert [list(b.t) for b in net.blocks] == [[0, 1, 1.5, 3]] * 3


def test_memory_flag_sets_every_block():
    net = cifar10.build_model(_args("--memory", "adjoint"), 10)
    assert [b.memory for b in net.blocks] == ["adjoint"] * 3
    net = cifar10.build_model(_args("--model", "preact_resnet8", "--memory", "checkpoint"), 10)
    assert [b.memory for b in net.blocks] == ["checkpoint"] * 3


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--model", "resnet18"],
            "--model must be rknet, preact_resnet<6n\\+2>, lm_resnet<6n\\+2> or one of "
            "parabolic, hamiltonian, second_order, imexnet \\(or preact_resnet<6n\\+2>_he, "
            "He et al.'s layout\\), got 'resnet18'",
        ),
        (["--model", "preact_resnet20_hee"], "--model must be rknet"),
        (["--model", "lm_resnet20_he"], "_he .*is only for preact_resnet<6n\\+2>_he"),
        (["--model", "preact_resnet21_he"], "depth must be 6n \\+ 2"),
        (
            ["--model", "preact_resnet20_he", "--steps", "4"],
            "--model preact_resnet20_he, --steps 4",
        ),
        (["--model", "rknet", "--widths", "8"], "--widths 8: "),
        (["--model", "preact_resnet21"], "depth must be 6n \\+ 2"),
        (["--model", "preact_resnet20", "--steps", "4"], "t must have 4 points for depth 20"),
        (["--model", "preact_resnet20", "--controls", "0,1"], "--controls is not for preact"),
        (["--model", "hamiltonian", "--scheme", "rk4"], "--scheme is not for hamiltonian"),
        (["--model", "second_order", "--scheme", "euler"], "--scheme is not for second_order"),
        (["--grid", "0,a,1"], "--grid must be comma-separated numbers, got '0,a,1'"),
        (["--memory", "reversible"], "--memory reversible: block 'blocks.0'.*needs an invertible"),
        (["--scheme", "rk5"], "rk5"),
        (["--model", "lm_resnet20", "--scheme", "rk4"], "--scheme is not for lm_resnet"),
        (["--model", "lm_resnet20", "--controls", "0"], "--controls is not for lm_resnet"),
        (["--model", "imexnet", "--scheme", "rk4"], "--scheme must be one of imex_euler, ars222"),
    ],
)
def test_bad_model_flags_are_named(argv, message):
    with pytest.raises(cifar10.UsageError, match=message):
        cifar10.build_model(_args(*argv), 10)


def test_torchrun_two_cpu_processes(data_dir, tmp_path):
    torchrun = shutil.which("torchrun") or pytest.skip("torchrun is not on PATH")
    out = tmp_path / "ddp"
    command = [
        torchrun,
        "--standalone",
        "--nproc_per_node",
        "2",
        str(SCRIPT),
        "--data-dir",
        str(data_dir),
        "--subset",
        "200",
        "--epochs",
        "1",
        "--batch-size",
        "40",
        "--model",
        "preact_resnet8",
        "--device",
        "cpu",
        "--no-progress",
        "--out",
        str(out),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "on cpu x 2: 160 train / 40 val / 120 test" in result.stdout
    assert json.loads((out / "results.json").read_text())["epochs"] == 1


def test_refine_at_refines_during_training_and_evaluate_loads_the_refined_model(data_dir, tmp_path):
    out = tmp_path / "refined"
    common = ["--data-dir", str(data_dir), "--subset", "256", "--model", "preact_resnet8"]
    result = run(
        *common, "--epochs", "2", "--refine-at", "1", "--batch-size", "32", "--out", str(out),
        "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    checkpoint = load_checkpoint(out / "checkpoint.pt")
    assert checkpoint["refinements"] == 1 and checkpoint["epoch"] == 2
    assert "blocks.0.layers.1.conv1.weight" in checkpoint["model"]  # two controls per block
    results = json.loads((out / "results.json").read_text())
    evaluation = run(*common, "--evaluate", str(out / "best.pt"), cwd=tmp_path)
    assert evaluation.returncode == 0, evaluation.stderr
    assert f"test accuracy {100 * results['test_acc']:.2f}%" in evaluation.stdout
    bad = run(*common, "--epochs", "2", "--refine-at", "one", "--out", str(out), cwd=tmp_path)
    assert bad.returncode != 0 and "--refine-at must be comma-separated epochs" in bad.stderr


def test_remanifest_script_reports_every_scheme_and_step_count(data_dir, tmp_path):
    out = tmp_path / "run"
    common = ["--data-dir", str(data_dir), "--subset", "256", "--no-progress"]
    result = run(*common, "--model", "preact_resnet8", "--epochs", "1", "--batch-size", "32",
                 "--out", str(out), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    script = ROOT / "examples" / "remanifest_cifar.py"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(script), str(out), "--schemes", "euler,rk4", "--steps", "1,2"]
    report = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    rows = json.loads((out / "remanifest.json").read_text())["rows"]
    assert [(r["scheme"], r["steps"]) for r in rows] == [
        ("euler", [1, 1, 1]), ("euler", [1, 1, 1]), ("euler", [2, 2, 2]),
        ("rk4", [1, 1, 1]), ("rk4", [2, 2, 2]),
    ]  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert rows[0]["accuracy"] == pytest.approx(results["test_acc"])
    assert rows[1]["accuracy"] == rows[0]["accuracy"]  # the trained manifestation again
    assert "trained" in report.stdout and "rk4" in report.stdout
    bad = subprocess.run(command[:3] + ["--schemes", "rk5"], env=env, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert bad.returncode == 2 and "unknown scheme" in bad.stderr


@pytest.mark.parametrize("model, memory", [("hamiltonian", "reversible"), ("parabolic", "adjoint")])
def test_pde_networks_train_in_the_memory_modes(data_dir, tmp_path, capsys, model, memory):
    out = tmp_path / model
    cifar10.main([
        "--data-dir", str(data_dir), "--subset", "96", "--epochs", "1", "--batch-size", "32",
        "--model", model, "--memory", memory, "--no-progress", "--out", str(out),
    ])  # fmt: skip
    assert json.loads((out / "config.json").read_text())["memory"] == memory
    results = json.loads((out / "results.json").read_text())
    assert 0 <= results["test_acc"] <= 1 and results["epochs"] == 1
    assert f"{model} (" in capsys.readouterr().out
