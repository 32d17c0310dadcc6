"""Tests for dynamicblocks.train: the loop against a hand-written one, schedules, resume, DDP."""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from functools import partial
from types import SimpleNamespace

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from dynamicblocks import DoubleLayer, DoubleSymLayer, DynamicNet, Stage, rknet
from dynamicblocks.data import CIFAR10_MEAN, CIFAR10_STD, CifarDataset, TensorDataset, split
from dynamicblocks.train import (
    BoxConstraints,
    Distributed,
    NonFiniteLossError,
    TrainConfig,
    Trainer,
    atomic_save,
    epoch_generator,
    evaluate,
    load_checkpoint,
    make_scheduler,
    param_groups,
    read_log,
)

CLASSES = 4


def tiny_net(norm: str | None = "batch") -> DynamicNet:
    """Opening, one Heun block with two controls, a connective unit, a head."""
    stage = Stage(4, 6, partial(DoubleLayer, norm=norm), t=[0.0, 0.4, 1.0], scheme="heun")
    return DynamicNet([stage], in_channels=3, num_classes=CLASSES, norm=norm)


def tiny_data(n: int = 96, size: int = 12, seed: int = 0) -> CifarDataset:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, CLASSES, (n,), generator=g)
    return CifarDataset(images, labels, num_classes=CLASSES)


def quiet(**kwargs) -> TrainConfig:
    settings = {"epochs": 2, "batch_size": 16, "progress": False, "plot": False}
    return TrainConfig(**{**settings, **kwargs})


def assert_same_state(a: dict, b: dict, **tolerance) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if tolerance:
            torch.testing.assert_close(a[key], b[key], **tolerance, msg=key)
        else:
            assert torch.equal(a[key], b[key]), key


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("epochs", 0, "epochs must be a positive int"),
        ("batch_size", 2.5, "batch_size must be a positive int"),
        ("lr", 0, "lr must be > 0"),
        ("lr", -1.0, "lr must be >= 0"),
        ("momentum", 1.0, "momentum must be >= 0 and < 1.0"),
        ("weight_decay", "4e-4", "weight_decay must be a real number"),
        (
            "schedule",
            "linear",
            "schedule must be one of step, geometric, cosine, onecycle, constant",
        ),
        ("amp", "fp8", "amp must be one of none, bf16, fp16"),
        ("label_smoothing", 1.0, "label_smoothing must be >= 0 and < 1.0"),
        ("box_constraints", (0.5,), r"box_constraints must be \(conv, other\)"),
        ("box_constraints", (0.5, 0.0), "box_constraints must be positive"),
        ("seed", -1, "seed must be an int >= 0"),
        ("log_every", 0, "log_every must be a positive int"),
        ("refine_at", (0,), r"refine_at must be an int in \[1, 120\), got 0"),
        ("refine_at", (120,), r"refine_at must be an int in \[1, 120\), got 120"),
        ("refine_at", (50, 30), r"refine_at must be strictly increasing, got \(50, 30\)"),
        ("refine_at", "30", "refine_at must be a sequence of epochs, got '30'"),
    ],
)
def test_config_rejects_bad_values_naming_them(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})


def test_config_rejects_nesterov_without_momentum():
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        TrainConfig(momentum=0.0, nesterov=True)


def test_config_defaults_are_the_library_recipe():
    config = TrainConfig()
    assert (config.epochs, config.batch_size, config.lr, config.schedule) == (120, 125, 0.1, "step")
    assert (config.momentum, config.nesterov, config.weight_decay) == (0.9, False, 4e-4)
    # where the library's recipe differs from the original's (see tests/test_recipe.py)
    assert (config.weight_decay_on, config.box_constraints) == ("kernels", None)
    assert (config.best_by, config.drop_last, config.crop_padding) == ("acc", True, 4)


# ----------------------------------------------------------------------------- optimiser


def test_weight_decay_skips_biases_and_norm_parameters():
    net = rknet()
    decay, no_decay = (group["params"] for group in param_groups(net, 4e-4))
    named = {id(p): name for name, p in net.named_parameters()}
    assert all(p.ndim >= 2 for p in decay) and all(p.ndim < 2 for p in no_decay)
    assert not any("norm" in named[id(p)] or "bias" in named[id(p)] for p in decay)
    assert len(decay) + len(no_decay) == len(list(net.parameters()))


def _lrs_per_epoch(config: TrainConfig, steps_per_epoch: int) -> list[float]:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=config.lr)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch)
    lrs = []
    for _ in range(config.epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        for _ in range(steps_per_epoch):
            optimizer.step()
            scheduler.step()
    return lrs


def test_step_schedule_is_the_originals_60_20_20_20():
    lrs = _lrs_per_epoch(TrainConfig(), steps_per_epoch=3)
    expected = [0.1] * 60 + [0.01] * 20 + [0.001] * 20 + [0.0001] * 20
    torch.testing.assert_close(torch.tensor(lrs), torch.tensor(expected))


def test_step_schedule_of_one_epoch_keeps_the_learning_rate():
    assert _lrs_per_epoch(TrainConfig(epochs=1), 5) == [0.1]


def test_cosine_and_onecycle_schedules():
    config = TrainConfig(epochs=10, schedule="cosine", lr=0.2)
    lrs = _lrs_per_epoch(config, steps_per_epoch=4)
    expected = [0.1 * (1 + math.cos(math.pi * e / 10)) for e in range(10)]
    torch.testing.assert_close(torch.tensor(lrs), torch.tensor(expected))
    lrs = _lrs_per_epoch(TrainConfig(epochs=10, schedule="onecycle", lr=0.2), 4)
    assert max(lrs) <= 0.2 and lrs[0] < 0.02 and lrs.index(max(lrs)) in (2, 3)


def test_box_constraints_clamp_kernels_and_weights_but_not_free_biases():
    net = rknet()
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(7.0)
    BoxConstraints(0.5, 1.5)(net)
    block = net.blocks[0].layers[0]
    for p in (block.weight, block.bias, net.opening.conv.bias):
        assert p.max() == 0.5
    assert net.classifier.weight.max() == 1.5 and net.opening.norm.weight.max() == 1.5
    assert net.classifier.bias.max() == 7.0 and block.norm.bias.max() == 7.0
    assert block.bias_transpose.max() == 7.0  # the original left convt.bias free


# ----------------------------------------------------------------------------- the loop


def test_trainer_equals_a_hand_written_sgd_loop():
    torch.manual_seed(1)
    net, data = tiny_net(), tiny_data()
    reference = copy.deepcopy(net)
    config = quiet(lr=0.05, weight_decay=1e-3, schedule="constant", augment=False)
    Trainer(net, config).fit(data)

    decay = [p for p in reference.parameters() if p.ndim >= 2]
    rest = [p for p in reference.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": 1e-3}, {"params": rest, "weight_decay": 0.0}]
    optimizer = torch.optim.SGD(groups, lr=0.05, momentum=0.9)
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    reference.train()
    for epoch in range(2):
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(epoch))
        for batch in order.split(16):
            images = (data.images[batch].float() / 255 - mean) / std
            loss = F.cross_entropy(reference(images), data.labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    assert_same_state(net.state_dict(), reference.state_dict(), rtol=1e-5, atol=1e-6)


def test_history_log_best_model_and_plot(tmp_path):
    train, val = split(tiny_data(), 32)
    history = Trainer(tiny_net(), quiet(epochs=3, plot=True), tmp_path).fit(train, val)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert read_log(tmp_path / "log.jsonl") == json.loads(json.dumps(history))
    for record in history:
        assert 0 <= record["val_acc"] <= 1 and math.isfinite(record["images_per_s"])
        assert record["images_per_s"] >= 0  # a timing: never asserted to be positive
        assert math.isfinite(record["train_loss"])
    best = load_checkpoint(tmp_path / "best.pt")
    assert isinstance(best, dict) and best.keys() == tiny_net().state_dict().keys()
    checkpoint = load_checkpoint(tmp_path / "checkpoint.pt")
    assert checkpoint["epoch"] == 3 and checkpoint["best_acc"] == max(r["val_acc"] for r in history)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_best_model_is_the_one_with_the_best_validation_accuracy(tmp_path):
    train, val = split(tiny_data(), 32)
    net = tiny_net()
    Trainer(net, quiet(epochs=3, lr=0.2), tmp_path).fit(train, val)
    best = tiny_net()
    best.load_state_dict(load_checkpoint(tmp_path / "best.pt"))
    accuracy = evaluate(best, val)["acc"]
    assert accuracy == load_checkpoint(tmp_path / "checkpoint.pt")["best_acc"]


def test_best_model_by_validation_loss(tmp_path):
    train, val = split(tiny_data(), 32)
    trainer = Trainer(tiny_net(), quiet(epochs=3, lr=0.2, best_by="loss"), tmp_path)
    history = trainer.fit(train, val)
    best_epoch = min(history, key=lambda r: r["val_loss"])
    assert trainer.best_loss == best_epoch["val_loss"] and trainer.best_acc == best_epoch["val_acc"]
    best = tiny_net()
    best.load_state_dict(load_checkpoint(tmp_path / "best.pt"))
    assert evaluate(best, val)["loss"] == pytest.approx(best_epoch["val_loss"], rel=1e-6)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["best_loss"] == best_epoch["val_loss"]


class GradModeProbe(nn.Module):
    """Wraps a model and records, per call, whether autograd was recording."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.grad_enabled = model, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.grad_enabled.append(torch.is_grad_enabled())
        return self.model(x)


def test_evaluate_builds_no_autograd_graph_and_matches_a_hand_written_loop():
    # With a graph, every batch's activations stay alive through the running sums
    # until the end: memory grows with the size of the evaluated set.
    data = tiny_data()
    probe = GradModeProbe(tiny_net()).train()
    figures = evaluate(probe, data, batch_size=16)
    assert probe.grad_enabled == [False] * math.ceil(len(data) / 16)
    assert torch.is_grad_enabled() and probe.training
    probe.model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for images, labels in data.batches(16, shuffle=False):
            logits = probe.model(images)
            loss += F.cross_entropy(logits, labels, reduction="sum").item()
            correct += (logits.argmax(1) == labels).sum().item()
    assert figures["count"] == len(data) and figures["acc"] == correct / len(data)
    assert figures["loss"] == pytest.approx(loss / len(data), rel=1e-6)


class Recording(CifarDataset):
    """A CifarDataset that records the arguments of every ``batches`` call."""

    calls: list = []

    def batches(self, batch_size, **kwargs):
        Recording.calls.append({"batch_size": batch_size, **kwargs})
        return super().batches(batch_size, **kwargs)


def test_drop_last_and_crop_padding_reach_the_batches():
    data = tiny_data(40)
    train = Recording(data.images, data.labels, CLASSES)
    Recording.calls = []
    trainer = Trainer(tiny_net(), quiet(epochs=1, drop_last=False, crop_padding=2))
    trainer.fit(train)
    [call] = Recording.calls
    assert (call["drop_last"], call["padding"], call["augment"]) == (False, 2, True)
    assert trainer.scheduler.last_epoch == 3  # 16 + 16 + 8 images
    Recording.calls = []
    trainer = Trainer(tiny_net(), quiet(epochs=1))
    trainer.fit(train)
    assert Recording.calls[0]["padding"] == 4 and trainer.scheduler.last_epoch == 2


def test_a_float64_model_trains_in_float64_to_round_off():
    torch.manual_seed(2)
    net = tiny_net().double()
    reference = copy.deepcopy(net)
    data = tiny_data(32)
    inputs = data.images.double() / 255
    config = quiet(epochs=1, lr=0.5, schedule="constant", augment=False, weight_decay=0.0)
    Trainer(net, config).fit(TensorDataset(inputs, data.labels))

    optimizer = torch.optim.SGD(reference.parameters(), lr=0.5, momentum=0.9)
    reference.train()
    order = torch.randperm(32, generator=epoch_generator(0, 0))
    for batch in order.split(16):
        loss = F.cross_entropy(reference(inputs[batch]), data.labels[batch])
        assert loss.dtype == torch.float64
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert_same_state(net.state_dict(), reference.state_dict(), rtol=0, atol=1e-13)


class Interrupt(nn.Module):
    """Wraps a network; the ``after``-th training forward raises (or returns NaN)."""

    def __init__(self, net: nn.Module, after: int, nan: bool = False) -> None:
        super().__init__()
        self.net, self.after, self.nan, self.calls = net, after, nan, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.calls += 1
            if self.calls >= self.after:
                if not self.nan:
                    raise KeyboardInterrupt
                return self.net(x) * float("nan")
        return self.net(x)


def test_resume_after_an_interruption_equals_an_uninterrupted_run(tmp_path):
    train, val = split(tiny_data(), 32)
    config = quiet(epochs=3, lr=0.1, nesterov=True, label_smoothing=0.1, box_constraints=(1, 2))
    torch.manual_seed(3)
    uninterrupted = Interrupt(tiny_net(), after=10**9)
    Trainer(uninterrupted, config, tmp_path / "a").fit(train, val)

    torch.manual_seed(3)
    steps_per_epoch = len(train) // 16
    interrupted = Interrupt(tiny_net(), after=steps_per_epoch + 2)  # in the middle of epoch 2
    with pytest.raises(KeyboardInterrupt):
        Trainer(interrupted, config, tmp_path / "b").fit(train, val)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["epoch"] == 1

    torch.manual_seed(99)  # a fresh process: other initial weights, other global RNG
    resumed = Interrupt(tiny_net(), after=10**9)
    trainer = Trainer(resumed, config, tmp_path / "b")
    history = trainer.fit(train, val, resume=True)
    assert_same_state(resumed.state_dict(), uninterrupted.state_dict())
    a, b = (load_checkpoint(tmp_path / d / "checkpoint.pt") for d in "ab")
    assert_same_state(a["model"], b["model"])
    for key in ("scheduler", "best_acc", "epoch"):
        assert a[key] == b[key]
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert len(read_log(tmp_path / "b" / "log.jsonl")) == 3
    assert [r["val_acc"] for r in history] == [r["val_acc"] for r in a["history"]]


class EpochClock:
    """A stand-in for ``time.perf_counter`` in the trainer: each epoch takes ``seconds``.

    Each reading also moves it on by a microsecond, so no duration is zero.
    """

    def __init__(self, monkeypatch, seconds: float) -> None:
        self.now, self.seconds = 0.0, seconds
        end_epoch = Trainer._end_epoch

        def timed_end_epoch(trainer, record):
            self.now += self.seconds
            end_epoch(trainer, record)

        monkeypatch.setattr(Trainer, "_end_epoch", timed_end_epoch)
        clock = SimpleNamespace(perf_counter=self.read)  # the trainer's module only
        monkeypatch.setattr("dynamicblocks.train.trainer.time", clock)

    def read(self) -> float:
        self.now += 1e-6
        return self.now


def test_time_limit_stops_after_a_saved_epoch_and_resume_finishes_the_run(tmp_path, monkeypatch):
    train, val = split(tiny_data(), 32)
    config = quiet(epochs=5, lr=0.1)
    torch.manual_seed(3)
    uninterrupted = Trainer(tiny_net(), config, tmp_path / "a")
    uninterrupted.fit(train, val)
    assert uninterrupted.finished

    EpochClock(monkeypatch, seconds=10.0)
    torch.manual_seed(3)
    first = Trainer(tiny_net(), config, tmp_path / "b")
    history = first.fit(train, val, time_limit=35.0)  # 10 + 10 + 10, then a 4th would end at 40
    assert [r["epoch"] for r in history] == [1, 2, 3] and not first.finished
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["epoch"] == 3
    second = Trainer(tiny_net(), config, tmp_path / "b")
    second.fit(train, val, resume=True, time_limit=0.5)  # at least one epoch per call
    assert second.epoch == 4 and not second.finished
    last = Trainer(tiny_net(), config, tmp_path / "b")
    last.fit(train, val, resume=True, time_limit=1e9)
    assert last.finished
    assert_same_state(last.model.state_dict(), uninterrupted.model.state_dict())
    assert [r["val_acc"] for r in last.history] == [r["val_acc"] for r in uninterrupted.history]


@pytest.mark.parametrize("limit", [0, -1.0, math.nan, "60", True])
def test_time_limit_must_be_a_positive_number(limit):
    with pytest.raises(ValueError, match=r"time_limit must be a positive number of seconds, got"):
        Trainer(tiny_net(), quiet(epochs=1)).fit(tiny_data(48), time_limit=limit)


def test_resume_refuses_other_settings_and_starts_afresh_without_a_checkpoint(tmp_path):
    data = tiny_data(48)
    Trainer(tiny_net(), quiet(epochs=1), tmp_path).fit(data)
    with pytest.raises(ValueError, match=r"different settings \(lr: 0.1 -> 0.2\)"):
        Trainer(tiny_net(), quiet(epochs=1, lr=0.2), tmp_path).fit(data, resume=True)
    Trainer(tiny_net(), quiet(epochs=1, log_every=3), tmp_path).fit(data, resume=True)

    torch.manual_seed(5)
    fresh = Trainer(tiny_net(), quiet(epochs=1), tmp_path / "a")
    fresh.fit(data)
    torch.manual_seed(5)
    resumed = Trainer(tiny_net(), quiet(epochs=1), tmp_path / "empty")
    resumed.fit(data, resume=True)  # killed before its first checkpoint: nothing to load
    assert_same_state(fresh.model.state_dict(), resumed.model.state_dict())
    with pytest.raises(ValueError, match="resume=True needs an out_dir"):
        Trainer(tiny_net(), quiet(epochs=1)).fit(data, resume=True)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    data = tiny_data(64)
    net = Interrupt(tiny_net(), after=64 // 16 + 2, nan=True)  # NaN in epoch 2
    with pytest.raises(NonFiniteLossError, match=r"non-finite in epoch 2.*of epoch 1 is intact"):
        Trainer(net, quiet(epochs=3), tmp_path).fit(data)
    checkpoint = load_checkpoint(tmp_path / "checkpoint.pt")
    assert checkpoint["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in checkpoint["model"].values())
    assert len(read_log(tmp_path / "log.jsonl")) == 1


def test_trainer_rejects_a_batch_larger_than_the_data_and_uneven_sharding():
    with pytest.raises(ValueError, match="batch_size 16 exceeds the training set of 10"):
        Trainer(tiny_net(), quiet()).fit(tiny_data(10))
    dist = Distributed(rank=0, world_size=3)
    with pytest.raises(ValueError, match="divisible by the number of processes 3, got 16"):
        Trainer(tiny_net(), quiet(), dist=dist)
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        Trainer(tiny_net(), {"epochs": 1})


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_trains_close_to_float32(tmp_path, amp):
    data = tiny_data(64)
    torch.manual_seed(0)
    full, half = tiny_net(), tiny_net()
    half.load_state_dict(full.state_dict())
    Trainer(full, quiet(epochs=1, lr=0.02)).fit(data)
    history = Trainer(half, quiet(epochs=1, lr=0.02, amp=amp), tmp_path).fit(data)
    assert math.isfinite(history[0]["train_loss"])
    assert_same_state(half.state_dict(), full.state_dict(), rtol=0.05, atol=0.02)
    scaler = load_checkpoint(tmp_path / "checkpoint.pt")["scaler"]
    assert ("scale" in scaler) == (amp == "fp16")


def test_channels_last_gives_the_same_training():
    data = tiny_data(64)
    torch.manual_seed(0)
    a, b = tiny_net(), tiny_net()
    b.load_state_dict(a.state_dict())
    Trainer(a, quiet(epochs=1)).fit(data)
    Trainer(b, quiet(epochs=1, channels_last=True)).fit(data)
    assert b.opening.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert_same_state(a.state_dict(), b.state_dict(), rtol=1e-4, atol=1e-5)


def test_compiled_training_matches_eager():
    data = tiny_data(32)
    torch.manual_seed(0)
    a, b = tiny_net(norm=None), tiny_net(norm=None)
    b.load_state_dict(a.state_dict())
    Trainer(a, quiet(epochs=1)).fit(data)
    Trainer(b, quiet(epochs=1, compile=True)).fit(data)
    assert_same_state(a.state_dict(), b.state_dict(), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- checkpoints


def test_atomic_save_leaves_the_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    atomic_save({"epoch": 1, "w": torch.ones(3)}, path)

    def broken_save(obj, handle):
        handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"epoch": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_a_process_killed_while_saving_leaves_a_loadable_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    script = textwrap.dedent(
        """
        import sys, torch
        from dynamicblocks.train import atomic_save
        weights = torch.arange(4_000_000, dtype=torch.float32)
        step = 0
        while True:
            atomic_save({"step": step, "weights": weights + step}, sys.argv[1])
            if step == 0:
                print("saved", flush=True)
            step += 1
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline().strip() == b"saved"
        time.sleep(0.5)  # the child is now saving continuously: kill it mid-write
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    checkpoint = load_checkpoint(path)
    weights = torch.arange(4_000_000, dtype=torch.float32) + checkpoint["step"]
    assert torch.equal(checkpoint["weights"], weights)


def test_load_checkpoint_names_a_missing_or_corrupt_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*nothing.pt"):
        load_checkpoint(tmp_path / "nothing.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="cannot read checkpoint .*bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")


# ----------------------------------------------------------------------------- distributed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
    )
    torch.set_num_threads(1)
    dist = Distributed.from_env("cpu")
    train, val = split(tiny_data(), 32)
    torch.manual_seed(rank)  # DDP broadcasts rank 0's weights: the others must not matter
    net = tiny_net(norm="tv")
    if rank == 0:
        torch.manual_seed(0)
        net = tiny_net(norm="tv")
    Trainer(net, quiet(epochs=2, batch_size=16), out, dist).fit(train, val)
    dist.close()


def _single_worker(rank: int, out: str) -> None:
    """The reference of the DDP test: the same run in one process, also with one thread."""
    torch.set_num_threads(1)
    train, val = split(tiny_data(), 32)
    torch.manual_seed(0)
    Trainer(tiny_net(norm="tv"), quiet(epochs=2, batch_size=16), out).fit(train, val)


def test_two_gloo_processes_equal_one_process_on_the_same_global_batch(tmp_path):
    # Both sides run in fresh processes with one thread each, so that neither depends on
    # what earlier tests did to this process.
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path / "ddp")), nprocs=2)
    mp.spawn(_single_worker, args=(str(tmp_path / "one"),), nprocs=1)
    one, ddp = (load_checkpoint(tmp_path / d / "checkpoint.pt") for d in ("one", "ddp"))
    # Gradients are averaged in another order (per rank, then across ranks): float32 round-off.
    assert_same_state(ddp["model"], one["model"], rtol=1e-5, atol=1e-6)
    for a, b in zip(ddp["history"], one["history"]):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
            assert a[key] == pytest.approx(b[key], rel=1e-5), key


def test_distributed_from_env_is_a_single_process_without_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    dist = Distributed.from_env("cpu")
    assert (dist.rank, dist.world_size, dist.enabled, dist.is_main) == (0, 1, False, True)
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE must be an int, got 'two'"):
        Distributed.from_env("cpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match=r"RANK must lie in \[0, WORLD_SIZE=2\), got 2"):
        Distributed.from_env("cpu")


def test_doublesym_network_trains_under_box_constraints():
    stage = Stage(4, 4, partial(DoubleSymLayer, norm="tv"), t=[0.0, 1.0], scheme="rk4")
    net = DynamicNet([stage], num_classes=CLASSES)
    Trainer(net, quiet(epochs=1, box_constraints=(0.5, 1.5))).fit(tiny_data(32))
    assert net.blocks[0].layers[0].weight.abs().max() <= 0.5


# ------------------------------------------------------------------------------- refinement


def test_refinement_at_an_epoch_refines_the_blocks_and_survives_a_resume(tmp_path):
    """Refine after epoch 1; an interruption in epoch 3 resumes to the same end state."""
    train, val = split(tiny_data(), 32)
    config = quiet(epochs=3, refine_at=(1,))
    torch.manual_seed(3)
    uninterrupted = Interrupt(tiny_net(), after=10**9)
    Trainer(uninterrupted, config, tmp_path / "a").fit(train, val)
    (block,) = uninterrupted.net.blocks
    assert block.t == (0.0, 0.2, 0.4, 0.7, 1.0) and block.t_theta == block.t[:-1]
    assert load_checkpoint(tmp_path / "a" / "checkpoint.pt")["refinements"] == 1

    torch.manual_seed(3)
    steps_per_epoch = len(train) // 16
    interrupted = Interrupt(tiny_net(), after=2 * steps_per_epoch + 2)  # in epoch 3
    with pytest.raises(KeyboardInterrupt):
        Trainer(interrupted, config, tmp_path / "b").fit(train, val)
    saved = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert saved["epoch"] == 2 and saved["refinements"] == 1

    torch.manual_seed(99)
    resumed = Interrupt(tiny_net(), after=10**9)  # unrefined: resuming refines it first
    Trainer(resumed, config, tmp_path / "b").fit(train, val, resume=True)
    assert_same_state(resumed.state_dict(), uninterrupted.state_dict())
    a, b = (load_checkpoint(tmp_path / d / "checkpoint.pt") for d in "ab")
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert a["scheduler"] == b["scheduler"]


def test_refinement_keeps_the_learning_rate_and_momentum_of_the_running_optimizer():
    train = tiny_data()
    config = quiet(epochs=2, refine_at=(1,), schedule="cosine")
    torch.manual_seed(0)
    trainer = Trainer(tiny_net(), config)
    seen = {}

    def refine_and_look() -> None:
        old = trainer.optimizer
        momentum = {p: old.state[p]["momentum_buffer"].clone() for p in old.state}
        lr = old.param_groups[0]["lr"]
        Trainer._refine(trainer)
        seen.update(lr=(lr, trainer.optimizer.param_groups[0]["lr"]), momentum=momentum)

    trainer._refine = refine_and_look
    trainer.fit(train)
    before, after = seen["lr"]
    assert after == before < config.lr  # the cosine schedule's value, not the initial lr
    new_state = trainer.optimizer.state
    assert all(p in new_state for p in seen["momentum"])  # the surviving parameters' momentum
    assert len(new_state) == sum(1 for p in trainer.model.parameters())


def test_refine_at_needs_dynamic_blocks():
    with pytest.raises(ValueError, match="refine_at=\\(1,\\) but Sequential has no DynamicBlock"):
        Trainer(nn.Sequential(nn.Flatten(), nn.LazyLinear(4)), quiet(refine_at=(1,)))


def test_a_checkpoint_from_before_a_setting_existed_resumes_at_its_default(tmp_path):
    train = tiny_data()
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):  # in epoch 2
        Trainer(Interrupt(tiny_net(), after=len(train) // 16 + 1), quiet(), tmp_path).fit(train)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    del state["config"]["refine_at"], state["refinements"]
    atomic_save(state, tmp_path / "checkpoint.pt")
    history = Trainer(Interrupt(tiny_net(), after=10**9), quiet(), tmp_path).fit(train, resume=True)
    assert [r["epoch"] for r in history] == [1, 2]
