"""A run folder is the user's work: no overwrite, no stale file, no silent wrong result.

Each test is one case of a fault a user can meet with ``examples/cifar10.py``
or :class:`~dynamicblocks.train.Trainer`: a finished run started again, a run
killed between two saves, diverging training, a resume with other settings, a
damaged checkpoint, a stalled distributed worker, and every command-line mistake,
which must be one ``error:`` line with exit status 2, nothing written.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from cifar_archive import make_batches, write_folder
from torch import nn

from dynamicblocks import DoubleLayer, DynamicNet, Stage
from dynamicblocks.data import TensorDataset
from dynamicblocks.train import (
    CheckpointError,
    NonFiniteStateError,
    ResumeMismatchError,
    TrainConfig,
    Trainer,
    atomic_save,
    load_checkpoint,
)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "cifar10.py"
spec = importlib.util.spec_from_file_location("cifar10_cli", SCRIPT)
cifar10 = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cifar10)

TIMING = {"seconds", "images_per_s", "train_seconds", "last_images_per_s"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """CIFAR-10 with 5 x 24 training and 24 test images."""
    root = tmp_path_factory.mktemp("data")
    write_folder(root, "cifar10", make_batches("cifar10", per_batch=24))
    return root


def quick(data_dir: Path, out: Path, *more: str) -> list[str]:
    """The flags of a two-epoch run of a small network on 60 images."""
    return [
        "--data-dir", str(data_dir), "--no-download", "--subset", "60", "--val-fraction", "0.34",
        "--batch-size", "20", "--epochs", "2", "--model", "preact_resnet8", "--no-progress",
        "--out", str(out), *more,
    ]  # fmt: skip


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def without_timing(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in TIMING}


def assert_same_run(a: Path, b: Path) -> None:
    """Two run folders hold the same weights, optimiser, best model and results."""
    ca, cb = load_checkpoint(a / "checkpoint.pt"), load_checkpoint(b / "checkpoint.pt")
    assert ca["epoch"] == cb["epoch"] and ca["best_acc"] == cb["best_acc"]
    assert ca["scheduler"] == cb["scheduler"]
    for key in ("model", "best_model"):
        assert ca[key].keys() == cb[key].keys()
        assert all(torch.equal(ca[key][k], cb[key][k]) for k in ca[key]), key
    for sa, sb in zip(ca["optimizer"]["state"].values(), cb["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    ba, bb = load_checkpoint(a / "best.pt"), load_checkpoint(b / "best.pt")
    assert ba.keys() == bb.keys() and all(torch.equal(ba[k], bb[k]) for k in ba)
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    assert without_timing(ra) == without_timing(rb)


# ----------------------------------------------------------------------------- 1: overwrite


def test_a_finished_run_is_never_overwritten(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert cifar10.main(quick(data_dir, out)) == 0
    before = snapshot(out)
    capsys.readouterr()
    assert cifar10.main(quick(data_dir, out, "--lr", "0.05")) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: --out {out} holds a run (checkpoint.pt, best.pt")
    assert "--resume" in error and "--overwrite" in error and error.count("\n") == 1
    assert snapshot(out) == before

    (out / "notes.txt").write_text("mine")
    assert cifar10.main(quick(data_dir, out, "--lr", "0.05", "--overwrite")) == 0
    assert json.loads((out / "config.json").read_text())["lr"] == 0.05
    assert (out / "notes.txt").read_text() == "mine"  # only the run's own files are replaced


def test_the_default_out_is_a_new_folder_for_every_run(data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [*quick(data_dir, Path("x"))[:-2], "--epochs", "1"]  # no --out
    assert cifar10.main(argv) == 0 and cifar10.main(argv) == 0
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2 and runs[0].name.startswith("cifar10_preact_resnet8_default_")
    assert all((run / "results.json").is_file() for run in runs)


# ----------------------------------------------------------------------------- 2: stale files


def test_resume_repairs_a_stale_or_missing_best_model_and_results(data_dir, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert cifar10.main(quick(data_dir, a)) == 0
    shutil.copytree(a, b)
    assert cifar10.main(quick(data_dir, c, "--epochs", "1")) == 0
    shutil.copy(c / "best.pt", b / "best.pt")  # as if killed after checkpoint.pt, before best.pt
    (b / "results.json").unlink()
    assert cifar10.main(quick(data_dir, b, "--resume")) == 0
    assert_same_run(a, b)
    (b / "best.pt").unlink()  # never written (a full disk)
    assert cifar10.main(quick(data_dir, b, "--resume")) == 0
    assert_same_run(a, b)


def test_resume_before_the_first_checkpoint_starts_from_the_beginning(data_dir, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert cifar10.main(quick(data_dir, a)) == 0
    b.mkdir()
    (b / ".checkpoint.pt.x1y2.tmp").write_bytes(b"half a checkpoint")  # killed while saving
    assert cifar10.main(quick(data_dir, b, "--resume")) == 0
    assert_same_run(a, b)
    assert not list(b.glob(".*.tmp"))


# ----------------------------------------------------------------------------- 3: divergence


class PoisonBuffer(nn.Module):
    """Identity whose running buffer becomes infinite in epoch 2; the loss stays finite."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after, self.calls = after, 0
        self.register_buffer("running", torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.calls += 1
            if self.calls > self.after:
                self.running.fill_(float("inf"))
        return x


def tiny_net() -> nn.Module:
    stage = Stage(4, 6, DoubleLayer, t=[0.0, 0.5, 1.0], scheme="heun")
    return DynamicNet([stage], in_channels=3, num_classes=4)


def tiny_data(n: int = 64) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(
        torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)
    )


def quiet(**kwargs) -> TrainConfig:
    settings = {"epochs": 2, "batch_size": 16, "progress": False, "plot": False, "augment": False}
    return TrainConfig(**{**settings, **kwargs})


def test_a_non_finite_buffer_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(PoisonBuffer(after=64 // 16), tiny_net())
    with pytest.raises(NonFiniteStateError, match=r"epoch 2 \(0.running\).*of epoch 1 is intact"):
        Trainer(net, quiet(epochs=3), tmp_path).fit(tiny_data())
    checkpoint = load_checkpoint(tmp_path / "checkpoint.pt")
    assert checkpoint["epoch"] == 1 and torch.isfinite(checkpoint["model"]["0.running"]).all()
    best = load_checkpoint(tmp_path / "best.pt")
    assert all(torch.isfinite(v).all() for v in best.values() if v.is_floating_point())


def test_diverging_training_exits_non_zero_with_one_error_line(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert cifar10.main(quick(data_dir, out, "--lr", "100000")) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "non-finite" in err and err.count("\n") == 1
    assert "Start again with a lower --lr, --box-constraints or --amp none." in err
    assert not (out / "results.json").exists()
    if (out / "checkpoint.pt").exists():
        model = load_checkpoint(out / "checkpoint.pt")["model"]
        assert all(torch.isfinite(v).all() for v in model.values() if v.is_floating_point())


# ----------------------------------------------------------------------------- 4: resume


@pytest.mark.parametrize(
    "change, shown",
    [
        (["--subset", "48"], "--subset 60 -> 48"),
        (["--val-fraction", "0.5"], "--val-fraction 0.34 -> 0.5"),
        (["--seed", "3"], "--seed 0 -> 3"),
        (["--batch-size", "10"], "--batch-size 20 -> 10"),
        (["--schedule", "constant"], "--schedule step -> constant"),
        (["--model", "parabolic"], "--model preact_resnet8 -> parabolic"),
    ],
)
def test_resume_names_every_changed_setting(data_dir, tmp_path, capsys, change, shown):
    out = tmp_path / "run"
    assert cifar10.main(quick(data_dir, out, "--epochs", "1")) == 0
    (out / "config.json").unlink()  # the checkpoint alone must know the settings
    before = snapshot(out)
    capsys.readouterr()
    assert cifar10.main(quick(data_dir, out, "--resume", *change)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --resume: ") and shown in err and err.count("\n") == 1
    assert snapshot(out) == before


def test_resume_with_other_images_in_the_data_dir_is_refused(data_dir, tmp_path, capsys):
    out, other = tmp_path / "run", tmp_path / "other"
    assert cifar10.main(quick(data_dir, out, "--epochs", "1")) == 0
    write_folder(other, "cifar10", make_batches("cifar10", per_batch=24, seed=7))
    capsys.readouterr()
    argv = quick(data_dir, out, "--resume", "--epochs", "1")
    argv[argv.index(str(data_dir))] = str(other)
    assert cifar10.main(argv) == 2
    assert "--data-dir holds other images (fingerprint" in capsys.readouterr().err
    moved = tmp_path / "moved"  # the same images elsewhere are the same data
    shutil.copytree(data_dir, moved)
    argv[argv.index(str(other))] = str(moved)
    assert cifar10.main(argv) == 0


def test_extending_the_epochs_continues_the_run(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert cifar10.main(quick(data_dir, out, "--epochs", "1")) == 0
    assert cifar10.main(quick(data_dir, out, "--epochs", "2", "--resume")) == 0
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 2
    capsys.readouterr()
    assert cifar10.main(quick(data_dir, out, "--epochs", "1", "--resume")) == 2
    assert "--epochs 2 -> 1 (below the 2 done)" in capsys.readouterr().err


def test_a_cosine_schedule_cannot_be_extended():
    state = {"epoch": 2, "config": quiet(schedule="cosine").to_dict(), "extra": {}}
    from dynamicblocks.train.resume import resume_differences

    assert resume_differences(state, quiet(schedule="cosine", epochs=1), {}) == [
        ("epochs (below the 2 done)", 2, 1)
    ]
    assert resume_differences(state, quiet(schedule="cosine", epochs=3), {}) == [
        ("epochs (a cosine schedule cannot be extended)", 2, 3)
    ]
    assert resume_differences(state, quiet(schedule="cosine", progress=True), {}) == []


def test_trainer_resume_compares_extra(tmp_path):
    data = tiny_data()
    Trainer(tiny_net(), quiet(epochs=1), tmp_path, extra={"data": "abc"}).fit(data)
    with pytest.raises(ResumeMismatchError, match=r"data: 'abc' -> 'abd'") as caught:
        Trainer(tiny_net(), quiet(), tmp_path, extra={"data": "abd"}).fit(data, resume=True)
    assert caught.value.differences == [("data", "abc", "abd")]


# ----------------------------------------------------------------------------- 5: integrity


def flip(path: Path, tensor: torch.Tensor, count: int = 64) -> None:
    """Flip ``count`` bytes of ``tensor``'s data where it is stored in ``path``."""
    raw = bytearray(path.read_bytes())
    where = raw.find(tensor.numpy().tobytes()[:32])
    assert where >= 0, "the tensor's bytes are not stored raw in the file"
    raw[where : where + count] = bytes(b ^ 0xFF for b in raw[where : where + count])
    path.write_bytes(bytes(raw))


def test_a_flipped_byte_in_a_checkpoint_is_an_error_naming_it(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert cifar10.main(quick(data_dir, out, "--epochs", "1")) == 0
    weight = load_checkpoint(out / "checkpoint.pt")["model"]["opening.conv.weight"]
    flip(out / "checkpoint.pt", weight)
    with pytest.raises(CheckpointError, match=r"checkpoint .*checkpoint.pt is damaged"):
        load_checkpoint(out / "checkpoint.pt")
    capsys.readouterr()
    assert cifar10.main(quick(data_dir, out, "--resume")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --resume: checkpoint ") and "is damaged" in err

    flip(out / "best.pt", load_checkpoint(out / "best.pt")["opening.conv.weight"])
    assert cifar10.main([*quick(data_dir, out)[:-2], "--evaluate", str(out / "best.pt")]) == 2
    assert "best.pt is damaged" in capsys.readouterr().err


def test_a_plain_state_dict_still_loads_and_foreign_files_are_named(tmp_path):
    torch.save({"w": torch.ones(2)}, tmp_path / "plain.pt")
    assert torch.equal(load_checkpoint(tmp_path / "plain.pt")["w"], torch.ones(2))
    atomic_save({"w": torch.ones(2)}, tmp_path / "other.pt")
    with pytest.raises(
        CheckpointError, match="checkpoint.pt is not a Trainer checkpoint: it lacks"
    ):
        shutil.copy(tmp_path / "other.pt", tmp_path / "checkpoint.pt")
        Trainer(tiny_net(), quiet(), tmp_path).fit(tiny_data(), resume=True)


# ----------------------------------------------------------------------------- 10: stalled rank


def test_a_stalled_rank_makes_the_others_fail_instead_of_waiting(tmp_path):
    torchrun = shutil.which("torchrun") or pytest.skip("torchrun is not on PATH")
    script = tmp_path / "stall.py"
    script.write_text(
        textwrap.dedent(
            """
            import time, torch
            from dynamicblocks.train import Distributed
            dist = Distributed.from_env("cpu", timeout=3)
            if dist.rank == 1:
                time.sleep(600)  # stalled: never joins the collective
            dist.all_reduce_sum(torch.ones(1))
            """
        )
    )
    command = [torchrun, "--standalone", "--nproc_per_node", "2", str(script)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode != 0
    assert "timed out" in result.stderr.lower() or "timeout" in result.stderr.lower()


def test_the_process_group_timeout_is_checked():
    from dynamicblocks.train import Distributed

    with pytest.raises(ValueError, match="timeout must be a positive number of seconds, got 0"):
        Distributed.from_env("cpu", timeout=0)


# ----------------------------------------------------------------------------- 11: mistakes


BAD = [
    (["--epochs", "-1"], "--epochs: must be an integer >= 1, got '-1'"),
    (["--batch-size", "0"], "--batch-size: must be an integer >= 1, got '0'"),
    (["--lr", "-1"], "--lr: must be a number > 0, got '-1'"),
    (["--lr", "inf"], "--lr: must be a number > 0, got 'inf'"),
    (["--momentum", "1"], "--momentum: must be a number >= 0 and < 1, got '1'"),
    (["--val-fraction", "nan"], "--val-fraction: must be a number >= 0 and < 1, got 'nan'"),
    (["--subset", "-5"], "--subset: must be an integer >= 1, got '-5'"),
    (["--scheme", "foo"], "--scheme must be one of euler, midpoint"),
    (["--grid", "0,2,1"], "--grid 0,2,1: t must be strictly increasing"),
    (["--grid", "0,nan,1"], "--grid must be comma-separated finite numbers"),
    (["--controls", "0,4,10"], "--controls 0,4,10: DynamicBlock: t_theta"),
    (["--model", "preact_resnet21"], "--model preact_resnet21: depth must be 6n + 2"),
    (
        ["--model", "resnet18"],
        "--model must be rknet, preact_resnet<6n+2>, lm_resnet<6n+2> or one of",
    ),
    (["--device", "foo"], "--device must be cpu, cuda, cuda:N, ..., got 'foo'"),
    (["--refine-at", "1", "--epochs", "1"], "--refine-at needs --epochs 2 or more"),
    (["--refine-at", "5", "--epochs", "3"], "--refine-at epochs must each lie in 1..2"),
    (["--refine-at", "a"], "--refine-at must be comma-separated epochs, got 'a'"),
    (["--nesterov", "--momentum", "0"], "--nesterov=True needs momentum > 0"),
    (["--memory", "reversible"], "--memory reversible: block 'blocks.0'"),
    (["--resume", "--overwrite"], "argument --overwrite: not allowed with argument --resume"),
    (["--steps", "2", "--grid", "0,1"], "argument --grid: not allowed with argument --steps"),
    (["--batch-size", "200"], "--batch-size 200 exceeds the 48 training images"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
]
if not torch.cuda.is_available():
    BAD.append((["--device", "cuda"], "--device cuda: CUDA is not available here"))


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_a_mistake_is_one_error_line_with_status_2_and_writes_nothing(
    data_dir, tmp_path, capsys, argv, message
):
    out = tmp_path / "run"
    flags = [
        "--data-dir", str(data_dir), "--no-download", "--subset", "60", "--epochs", "2",
        "--no-progress", "--out", str(out), *argv,
    ]  # fmt: skip
    try:
        status = cifar10.main(flags)
    except SystemExit as exit_:  # argparse's own checks
        status = exit_.code
    captured = capsys.readouterr()
    assert status == 2
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
    assert message in captured.err
    assert "Traceback" not in captured.err + captured.out
    assert not out.exists()


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda run: None, "--evaluate {model}: no such file"),
        (lambda run: run.joinpath("best.pt").write_bytes(b"junk"), "cannot read checkpoint"),
        (lambda run: run.joinpath("config.json").write_text("{"), "cannot read {run}/config.json"),
        (lambda run: run.joinpath("config.json").write_text("{}"), "config.json lacks dataset"),
        (
            lambda run: run.joinpath("config.json").write_text(
                json.dumps(
                    dict.fromkeys(cifar10.MODEL_ARGS)
                    | {"dataset": "cifar10", "model": "preact_resnet8"}
                )  # fmt: skip
            ),
            "does not fit --model preact_resnet8",
        ),
    ],
)
def test_evaluate_checks_the_model_file_before_reading_data(tmp_path, capsys, setup, message):
    run = tmp_path / "run"
    run.mkdir()
    atomic_save(cifar10.build_model(cifar10.parse_args([]), 10).state_dict(), run / "best.pt")
    if "no such file" in message:
        (run / "best.pt").unlink()
    setup(run)
    capsys.readouterr()
    model = run / "best.pt"
    argv = ["--data-dir", str(tmp_path / "no-data"), "--no-download", "--evaluate", str(model)]
    assert cifar10.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert message.format(model=model, run=run) in err
    assert "not found" not in err  # the data was never looked for


def test_command_line_mistakes_in_a_fresh_process_print_no_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for argv in (["--epochs", "-1"], ["--scheme", "foo"], ["--evaluate", "missing.pt"]):
        command = [sys.executable, str(SCRIPT), "--data-dir", str(tmp_path), *argv]
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- 12: output


def test_help_shows_every_default(capsys):
    with pytest.raises(SystemExit):
        cifar10.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("(default: 120)", "(default: 0.1)", "(default: 0.9)", "(default: 125)"):
        assert shown in text


def test_no_progress_keeps_one_line_per_epoch_and_evaluate_reports(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert cifar10.main(quick(data_dir, out)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines if line.startswith("epoch")] == ["1/2", "2/2"]
    assert cifar10.main([*quick(data_dir, out)[:-2], "--evaluate", str(out / "best.pt")]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"reading cifar10 from {data_dir}") and "test accuracy" in printed


def test_the_examples_helper_module_explains_itself():
    helper = ROOT / "examples" / "_fit.py"
    result = subprocess.run(
        [sys.executable, str(helper), "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "run one of those instead" in " ".join(result.stdout.split())


def test_the_remanifest_script_names_a_damaged_run(tmp_path):
    (tmp_path / "config.json").write_text("{")
    atomic_save({}, tmp_path / "best.pt")
    script = ROOT / "examples" / "remanifest_cifar.py"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(script), str(tmp_path)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: cannot read the run {tmp_path}: ")
