"""Trainer: the training loop of the example scripts, with checkpoints, logs and plots."""

from __future__ import annotations

import math
import os
import time
from contextlib import AbstractContextManager, ExitStack, nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .._validate import real_number
from ..data.datasets import CifarDataset
from ..manifest import carry_optimizer_state, refine_, time_blocks
from ..ode_regularizers import check_regularizers, check_steer, ode_regularizers, set_steer
from ._atomic import remove_leftovers
from .checkpoint import CheckpointError, atomic_save, load_checkpoint, rng_state, set_rng_state
from .config import TrainConfig
from .distributed import Distributed
from .history import plot_curves, write_log
from .loader import LoaderData, as_data
from .optim import BoxConstraints, make_optimizer, make_scheduler
from .resume import ResumeMismatchError, resume_differences

__all__ = [
    "Trainer",
    "NonFiniteLossError",
    "NonFiniteStateError",
    "ResumeMismatchError",
    "evaluate",
    "epoch_generator",
]

CHECKPOINT, BEST, LOG, PLOT = "checkpoint.pt", "best.pt", "log.jsonl", "curves.png"
#: The files a :class:`Trainer` writes into its ``out_dir``.
RUN_FILES = (CHECKPOINT, BEST, LOG, PLOT)
# What a checkpoint must hold for :meth:`Trainer.fit` to resume from it.
_CHECKPOINT_KEYS = ("epoch", "model", "optimizer", "scheduler", "history", "best_acc", "rng")


class NonFiniteLossError(RuntimeError):
    """Training diverged: the loss became NaN or infinite; the last checkpoint is intact."""


class NonFiniteStateError(NonFiniteLossError):
    """A parameter or buffer became NaN or infinite; the last checkpoint is intact."""


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator that draws epoch ``epoch``'s order and augmentation.

    It depends only on ``(seed, epoch)``, so every rank, and a resumed run,
    draws the same batches.
    """
    return torch.Generator().manual_seed((seed << 20) + epoch)


def _autocast(device: torch.device, amp: str) -> AbstractContextManager:
    if amp == "none":
        return nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def _for_loss(logits: torch.Tensor) -> torch.Tensor:
    """``logits`` in at least single precision: half precision is upcast, float64 kept."""
    return logits if logits.dtype in (torch.float32, torch.float64) else logits.float()


def _prepare(images: torch.Tensor, channels_last: bool) -> torch.Tensor:
    if channels_last and images.ndim == 4:
        return images.contiguous(memory_format=torch.channels_last)
    return images


def _progress_bar(total: int, description: str) -> Any:
    """A tqdm bar that disappears when closed, or None if tqdm is not installed."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=description, leave=False)


def check_model(model: nn.Module, config: TrainConfig) -> None:
    """Check that ``model`` can train with ``config``'s regularisers and STEER.

    Raises:
        ValueError: starting with the setting's name (``"kinetic_energy: ..."``,
            ``"steer: ..."``), if a block cannot integrate the regularisers (its
            method, or a memory mode other than ``"full"``) or refuses STEER's
            half-width.
    """
    checks = []
    if config.kinetic_energy or config.jacobian_norm:
        name = "kinetic_energy" if config.kinetic_energy else "jacobian_norm"
        checks.append((name, lambda: check_regularizers(model)))
    if config.steer:
        checks.append(("steer", lambda: check_steer(model, config.steer)))
    for name, check in checks:
        try:
            check()
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Any,
    batch_size: int = 500,
    *,
    amp: str = "none",
    channels_last: bool = False,
    dist: Distributed | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Mean cross-entropy loss and accuracy of ``model`` (in eval mode) on ``dataset``.

    ``dataset`` is a :class:`~dynamicblocks.data.CifarDataset`, a
    :class:`~dynamicblocks.data.TensorDataset` or a
    :class:`~torch.utils.data.DataLoader` of ``(inputs, labels)``. Under
    ``torchrun`` pass ``dist``: each rank evaluates every ``world_size``-th
    image of a dataset (a DataLoader must already give each rank its own
    shard) and the sums are reduced, so every rank returns the figures for
    the whole dataset. The model's train/eval mode is restored afterwards.
    ``progress`` shows a tqdm bar (on rank 0).

    Returns:
        ``{"loss": ..., "acc": ..., "count": ...}`` with ``acc`` in ``[0, 1]``.
    """
    if isinstance(dataset, torch.utils.data.DataLoader):
        first = next(model.parameters(), None)
        dataset = LoaderData(dataset, first.device if first is not None else "cpu")
    dist = dist or Distributed(device=dataset.device)
    if dist.enabled and not isinstance(dataset, LoaderData):
        dataset = dataset.subset(range(dist.rank, len(dataset), dist.world_size))
    bar = None
    if progress and dist.is_main:
        bar = _progress_bar(math.ceil(len(dataset) / batch_size), "evaluating")
    was_training = model.training
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=dataset.device)
    for images, labels in dataset.batches(batch_size, shuffle=False):
        with _autocast(dataset.device, amp):
            logits = model(_prepare(images, channels_last))
        loss = F.cross_entropy(_for_loss(logits), labels, reduction="sum")
        correct = (logits.argmax(1) == labels).sum().double()
        totals += torch.stack([loss.double(), correct, totals.new_tensor(len(labels))])
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    model.train(was_training)
    loss_sum, correct, count = dist.all_reduce_sum(totals).tolist()
    count = max(count, 1.0)
    return {"loss": loss_sum / count, "acc": correct / count, "count": int(count)}


class Trainer:
    """Trains a classifier with SGD and writes checkpoints, a log and plots to ``out_dir``.

    Files in ``out_dir`` (written by rank 0, each atomically):

    - ``checkpoint.pt``: after every epoch: model, optimiser, scheduler,
      gradient scaler, epoch, history, the best model and its accuracy, RNG
      states and ``extra`` (what the caller passed, e.g. the model's
      settings), with a checksum. It is the one record of the run: every
      other file is derived from it, and :meth:`fit` with ``resume=True``
      continues from it exactly (and rewrites the others).
    - ``best.pt``: the model's ``state_dict`` with the best validation
      accuracy so far (``config.best_by="acc"``, the first of equals) or the
      lowest validation loss (``"loss"``); the latest model if there is no
      validation set. Load it with :func:`~dynamicblocks.train.load_checkpoint`.
    - ``log.jsonl``: one JSON object per epoch (``epoch``, ``lr``,
      ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``, ``seconds``,
      ``images_per_s``).
    - ``curves.png``: loss and accuracy against epoch, written at the end.

    After every epoch, before anything is saved, every floating-point
    parameter and buffer is checked to be finite (one host sync per epoch).

    Args:
        model: the network; moved to ``dist.device``.
        config: the run's settings.
        out_dir: where the files go (None: write nothing; resuming is then
            impossible).
        dist: the process group (default: a single process on the model's
            device; see :meth:`Distributed.from_env`).
        extra: JSON-like data stored in every checkpoint under ``"extra"``;
            on resume, every key stored must be equal to the one passed.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        out_dir: str | os.PathLike | None = None,
        dist: Distributed | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        if dist is None:
            first = next(model.parameters(), None)
            dist = Distributed(device=first.device if first is not None else torch.device("cpu"))
        if config.batch_size % dist.world_size:
            raise ValueError(
                f"batch_size must be divisible by the number of processes {dist.world_size}, "
                f"got {config.batch_size}"
            )
        self.config, self.dist, self.extra = config, dist, dict(extra or {})
        self.out_dir = None if out_dir is None else Path(out_dir)
        device = dist.device
        model = model.to(device)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if config.sync_batchnorm and dist.enabled and device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        if config.refine_at and not time_blocks(model):
            raise ValueError(
                f"refine_at={config.refine_at} but {type(model).__name__} has no DynamicBlock "
                "(nor any other block on a time grid)"
            )
        check_model(model, config)
        if config.steer:
            set_steer(model, config.steer)
        self._regularized = bool(config.kinetic_energy or config.jacobian_norm)
        self.model = model
        self._wrap()
        self.optimizer = make_optimizer(model, config)
        self.scaler = torch.amp.GradScaler(device.type, enabled=config.amp == "fp16")
        self.box = BoxConstraints(*config.box_constraints) if config.box_constraints else None
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self._steps_per_epoch = 0
        self.refinements = 0
        self.epoch = 0
        self.history: list[dict] = []
        #: The validation accuracy and loss of the best model so far (of ``best.pt``).
        self.best_acc = -math.inf
        self.best_loss = math.inf
        #: The ``state_dict`` (on the CPU) of the best model so far, as in ``best.pt``.
        self.best_state: dict[str, torch.Tensor] | None = None

    def _wrap(self) -> None:
        """(Re)build the DDP and compile wrappers around :attr:`model`."""
        wrapped: nn.Module = self.model
        if self.dist.enabled:
            device = self.dist.device
            wrapped = DistributedDataParallel(
                self.model, device_ids=[device] if device.type == "cuda" else None
            )
        compile_ = self.config.compile
        self._train_model = torch.compile(wrapped) if compile_ else wrapped
        self._eval_model = torch.compile(self.model) if compile_ else self.model

    def _refine(self) -> None:
        """Refine every dynamic block; the optimiser, schedule and wrappers follow."""
        sources = refine_(self.model)
        optimizer = make_optimizer(self.model, self.config)
        scheduler = make_scheduler(optimizer, self.config, self._steps_per_epoch)
        scheduler.load_state_dict(self.scheduler.state_dict())
        carry_optimizer_state(self.optimizer, optimizer, sources)  # after: it sets the lr
        self.optimizer, self.scheduler = optimizer, scheduler
        self._wrap()
        self.refinements += 1

    def _refine_if_due(self) -> None:
        refine_at = self.config.refine_at
        while self.refinements < len(refine_at) and self.epoch >= refine_at[self.refinements]:
            self._refine()
            if self.config.verbose and self.dist.is_main:
                steps = [block.num_steps for block in time_blocks(self.model)]
                print(f"after epoch {self.epoch}: refined, steps per block {steps}", flush=True)

    @property
    def device(self) -> torch.device:
        """The device this process trains on."""
        return self.dist.device

    def _path(self, name: str) -> Path | None:
        return None if self.out_dir is None else self.out_dir / name

    def fit(
        self,
        train: Any,
        val: Any = None,
        resume: bool = False,
        time_limit: float | None = None,
    ) -> list[dict]:
        """Train for ``config.epochs`` epochs (minus those already done if resuming).

        Leftover temporary files of an interrupted save in ``out_dir`` are
        removed first.

        Args:
            train: the training set: a :class:`~dynamicblocks.data.CifarDataset`
                or :class:`~dynamicblocks.data.TensorDataset` (moved to the
                training device once, batched by ``config``), or a
                :class:`~torch.utils.data.DataLoader` of ``(inputs, labels)``
                used as it is (its batch size, order and transforms;
                ``config.batch_size``, ``augment``, ``crop_padding`` and
                ``drop_last`` do not apply). ``crop_padding`` applies to a
                ``CifarDataset`` only; a ``TensorDataset`` augments with its
                own ``transform``.
            val: the validation set that picks ``best.pt`` (optional), of
                the same kinds.
            resume: continue from ``out_dir/checkpoint.pt`` if it exists
                (from the start if it does not yet), and rewrite ``best.pt``
                and ``log.jsonl`` from it.
            time_limit: seconds this call may take (``None``: no limit). After
                each epoch, once its checkpoint is saved, training stops if
                another epoch as long as the longest of this call (training,
                validation and saving) would end past the limit; at least one
                epoch is trained. :attr:`finished` then is false, and a later
                ``fit(..., resume=True)`` continues exactly where it stopped.

        Returns:
            The history: one record per epoch, as in ``log.jsonl``.

        Raises:
            NonFiniteLossError: when the loss becomes NaN or infinite, and
                :class:`NonFiniteStateError` (a subclass) when a parameter or
                buffer does; the last checkpoint (of the last good epoch) is
                left intact.
            ResumeMismatchError: (a ValueError) if the checkpoint's settings
                or ``extra`` differ from this run's (see
                :func:`~dynamicblocks.train.resume.resume_differences`).
            CheckpointError: if the checkpoint is damaged or not a trainer's.
            ValueError: if ``resume`` without an ``out_dir``, the training
                set is smaller than one batch, or ``time_limit`` is not a
                positive number.
        """
        config, dist = self.config, self.dist
        if time_limit is not None:
            time_limit = real_number(
                "time_limit", time_limit, "a positive number of seconds", 0, open_low=True
            )
        train = as_data(train, self.device)
        val = None if val is None else as_data(val, self.device)
        per_rank_batch = config.batch_size // dist.world_size
        steps_per_epoch = self._num_batches(train)
        if steps_per_epoch == 0:
            raise ValueError(
                f"batch_size {config.batch_size} exceeds the training set of {len(train)} images"
            )
        self._steps_per_epoch = steps_per_epoch
        self.scheduler = make_scheduler(self.optimizer, config, steps_per_epoch)
        if dist.is_main and self.out_dir is not None:
            remove_leftovers(self.out_dir, RUN_FILES)
        if resume:
            self._resume()
        began, longest = time.perf_counter(), 0.0
        while self.epoch < config.epochs:
            if longest and time_limit is not None:
                if self._out_of_time(time.perf_counter() - began, longest, time_limit):
                    break
            epoch_began = time.perf_counter()
            self._refine_if_due()
            record = self._train_epoch(train, steps_per_epoch)
            if val is not None:
                figures = evaluate(
                    self._eval_model,
                    val,
                    max(per_rank_batch, 250),
                    amp=config.amp,
                    channels_last=config.channels_last,
                    dist=dist,
                )
                record.update(val_loss=figures["loss"], val_acc=figures["acc"])
            self._end_epoch(record)
            longest = max(longest, time.perf_counter() - epoch_began)
        if dist.is_main and config.plot and self.out_dir is not None and self.history:
            plot_curves(self.history, self._path(PLOT))
        return self.history

    @property
    def finished(self) -> bool:
        """Whether all ``config.epochs`` epochs are trained (false after a ``time_limit`` stop)."""
        return self.epoch >= self.config.epochs

    def _out_of_time(self, elapsed: float, longest: float, limit: float) -> bool:
        """Whether one more epoch of ``longest`` seconds would end past ``limit`` (rank 0 says)."""
        stop = self.dist.broadcast_object(elapsed + longest > limit)
        if stop and self.config.verbose and self.dist.is_main:
            print(
                f"time limit: stopping after epoch {self.epoch}/{self.config.epochs} "
                f"({elapsed:.0f} s of {limit:.0f} s used, the longest epoch took {longest:.0f} s); "
                "resuming continues from its checkpoint",
                flush=True,
            )
        return stop

    def _num_batches(self, train: Any) -> int:
        if isinstance(train, LoaderData):
            return train.num_batches()
        return len(train.index_batches(**self._epoch_batches(0)))

    def _epoch_batches(self, epoch: int) -> dict[str, Any]:
        """This rank's batching of epoch ``epoch``: the arguments of a dataset's ``batches``."""
        return {
            "batch_size": self.config.batch_size // self.dist.world_size,
            "generator": epoch_generator(self.config.seed, epoch),
            "drop_last": self.config.drop_last,
            "rank": self.dist.rank,
            "world_size": self.dist.world_size,
        }

    def _train_epoch(self, train: Any, steps: int) -> dict:
        config = self.config
        if isinstance(train, LoaderData):
            batches = train.epoch(self.epoch)
        else:
            padding = {"padding": config.crop_padding} if isinstance(train, CifarDataset) else {}
            batches = train.batches(
                **self._epoch_batches(self.epoch), augment=config.augment, **padding
            )
        lr = self.optimizer.param_groups[0]["lr"]
        bar = None
        if config.progress and self.dist.is_main:
            bar = _progress_bar(steps, f"epoch {self.epoch + 1}/{config.epochs}")
        self.model.train()
        local = torch.zeros(3, dtype=torch.float64, device=self.device)
        start = time.perf_counter()
        totals = local.clone()
        for step, (images, labels) in enumerate(batches, 1):
            local += self._train_step(images, labels)
            if step % config.log_every == 0 or step == steps:
                totals = self._check(local, step)
                if bar is not None:
                    bar.update(step - bar.n)
                    bar.set_postfix(self._postfix(totals, time.perf_counter() - start))
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - start
        loss_sum, correct, count = totals.tolist()
        return {
            "epoch": self.epoch + 1,
            "lr": lr,
            "train_loss": loss_sum / count,
            "train_acc": correct / count,
            "seconds": seconds,
            "images_per_s": count / seconds,
        }

    def _train_step(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        config = self.config
        with ExitStack() as stack:
            if self._regularized:
                probes = config.probes if config.jacobian_norm else 0
                kinetic = bool(config.kinetic_energy)
                stats = stack.enter_context(ode_regularizers(self.model, kinetic, probes))
            with _autocast(self.device, config.amp):
                logits = self._train_model(_prepare(images, config.channels_last))
        loss = F.cross_entropy(_for_loss(logits), labels, label_smoothing=config.label_smoothing)
        total = loss
        if self._regularized:  # reported: the task's loss alone
            total = loss + stats.loss(config.kinetic_energy, config.jacobian_norm)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.box is not None:
            self.box(self.model)
        count = torch.full((), len(labels), dtype=torch.float64, device=labels.device)
        correct = (logits.detach().argmax(1) == labels).sum().double()
        return torch.stack([loss.detach().double() * count, correct, count])

    def _kept(self) -> str:
        """What a divergence leaves on disk, for its message."""
        where = self._path(CHECKPOINT)
        if where is not None and where.exists():
            return f"the checkpoint {where} of epoch {self.epoch} is intact"
        return "no checkpoint had been written"

    def _check(self, local: torch.Tensor, step: int) -> torch.Tensor:
        totals = self.dist.all_reduce_sum(local.clone())
        if not math.isfinite(totals[0].item()):
            raise NonFiniteLossError(
                f"training loss became non-finite in epoch {self.epoch + 1} (by step {step}); "
                f"stopping: {self._kept()}. Try a lower lr, box_constraints or amp='none'."
            )
        return totals

    def _check_state(self) -> None:
        """Raise :class:`NonFiniteStateError` if a parameter or buffer is not finite (any rank)."""
        named = [
            (name, tensor)
            for name, tensor in (*self.model.named_parameters(), *self.model.named_buffers())
            if tensor.is_floating_point() or tensor.is_complex()
        ]
        if not named:
            return
        finite = torch.stack([torch.isfinite(tensor).all() for _, tensor in named])
        bad = self.dist.all_reduce_sum((~finite).sum().double().reshape(1))
        if bad.item() == 0:
            return
        names = [name for (name, _), ok in zip(named, finite.tolist()) if not ok]
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise NonFiniteStateError(
            f"parameters or buffers became non-finite in epoch {self.epoch + 1} "
            f"({shown or 'on another rank'}); stopping: {self._kept()}. "
            f"Try a lower lr, box_constraints or amp='none'."
        )

    def _postfix(self, totals: torch.Tensor, seconds: float) -> dict[str, str]:
        loss_sum, correct, count = totals.tolist()
        return {
            "loss": f"{loss_sum / count:.3f}",
            "acc": f"{100 * correct / count:.1f}%",
            "img/s": f"{count / max(seconds, 1e-9):.0f}",
        }

    def _end_epoch(self, record: dict) -> None:
        """Check the state, then save the checkpoint, then the files derived from it."""
        self._check_state()
        self.epoch += 1
        self.history.append(record)
        has_val = "val_acc" in record
        if not has_val or self._is_better(record):
            if has_val:
                self.best_acc, self.best_loss = record["val_acc"], record["val_loss"]
            self.best_state = {
                key: value.detach().to("cpu", copy=True)
                for key, value in self.model.state_dict().items()
            }
        if self.dist.is_main:
            if self.out_dir is not None:
                atomic_save(self.state_dict(), self._path(CHECKPOINT))
                self._write_derived()
            if self.config.verbose:
                print(_summary(record, self.config.epochs), flush=True)
        self.dist.barrier()

    def _is_better(self, record: dict) -> bool:
        """Whether the epoch of ``record`` beats the best model by ``config.best_by``."""
        if self.config.best_by == "loss":
            return record["val_loss"] < self.best_loss
        return record["val_acc"] > self.best_acc

    def _write_derived(self) -> None:
        """Write ``best.pt`` and ``log.jsonl`` from the state (as of the last checkpoint)."""
        if self.best_state is not None:
            atomic_save(self.best_state, self._path(BEST))
        write_log(self.history, self._path(LOG))

    def state_dict(self) -> dict[str, Any]:
        """Everything :meth:`fit` needs to continue exactly where it stopped."""
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "history": list(self.history),
            "best_acc": self.best_acc,
            "best_loss": self.best_loss,
            "best_model": self.best_state,
            "rng": rng_state(),
            "config": self.config.to_dict(),
            "refinements": self.refinements,
            "extra": self.extra,
        }

    def _resume(self) -> None:
        path = self._path(CHECKPOINT)
        if path is None:
            raise ValueError("resume=True needs an out_dir to resume from, got out_dir=None")
        if not path.is_file():
            if self.config.verbose and self.dist.is_main:
                print(f"no checkpoint in {self.out_dir} yet: starting from epoch 1", flush=True)
            return
        state = load_checkpoint(path, map_location=self.device)
        missing = [
            key for key in _CHECKPOINT_KEYS if not isinstance(state, dict) or key not in state
        ]
        if missing:
            raise CheckpointError(
                f"{path} is not a Trainer checkpoint: it lacks {', '.join(map(repr, missing))}"
            )
        differences = resume_differences(state, self.config, self.extra)
        if differences:
            raise ResumeMismatchError(path, differences)
        for _ in range(state.get("refinements", 0)):  # the checkpoint's shape of the model
            self._refine()
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as error:
            raise CheckpointError(f"{path} holds another model: {error}") from error
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.history = state["epoch"], list(state["history"])
        self.best_acc = state["best_acc"]
        self.best_loss = state.get("best_loss", math.inf)  # older checkpoints: acc only
        best = state.get("best_model")
        self.best_state = None if best is None else {k: v.cpu() for k, v in best.items()}
        set_rng_state(state["rng"])
        if self.dist.is_main:  # a run killed between two saves: bring the rest up to date
            self._write_derived()


def _summary(record: dict, epochs: int) -> str:
    text = (
        f"epoch {record['epoch']:>3}/{epochs}  lr {record['lr']:.2e}  "
        f"train loss {record['train_loss']:.4f} acc {100 * record['train_acc']:.2f}%"
    )
    if "val_acc" in record:
        text += f"  val loss {record['val_loss']:.4f} acc {100 * record['val_acc']:.2f}%"
    return text + f"  {record['seconds']:.1f} s  {record['images_per_s']:.0f} img/s"
