"""What may differ between an interrupted run and its resumption, and what may not."""

from __future__ import annotations

import os
from typing import Any

from .config import TrainConfig

__all__ = ["FREE_ON_RESUME", "ResumeMismatchError", "resume_differences"]

#: Settings that do not change the result and may differ on resume.
FREE_ON_RESUME = frozenset({"progress", "verbose", "log_every", "plot", "compile", "channels_last"})
# Schedules whose learning rate has run its course at the last epoch: no extension.
_FINITE_SCHEDULES = ("cosine", "onecycle")


class ResumeMismatchError(ValueError):
    """A run cannot be resumed with settings that change its result.

    Attributes:
        path: the checkpoint.
        differences: ``(setting, saved value, new value)`` for each difference.
    """

    def __init__(self, path: str | os.PathLike, differences: list[tuple[str, Any, Any]]) -> None:
        self.path, self.differences = path, list(differences)
        details = "; ".join(f"{key}: {old!r} -> {new!r}" for key, old, new in self.differences)
        super().__init__(f"cannot resume {path} with different settings ({details})")


def resume_differences(
    state: dict[str, Any], config: TrainConfig, extra: dict[str, Any]
) -> list[tuple[str, Any, Any]]:
    """The settings in which ``config`` and ``extra`` differ from checkpoint ``state``.

    Every :class:`TrainConfig` field counts but those of
    :data:`FREE_ON_RESUME`; a field missing from an older checkpoint was
    trained at its default. ``epochs`` may change to any count not below
    the epochs already done, except that a ``cosine`` or ``onecycle``
    schedule, which ends at its last epoch, cannot be extended (a ``step``
    or ``geometric`` schedule keeps its shape, restored from the checkpoint,
    and its last learning rate). Every key of the checkpoint's ``extra``
    counts (keys it lacks are not compared).

    Returns:
        ``(setting, saved value, new value)`` triples, sorted by setting;
        ``epochs`` reads ``"epochs (...)"`` with the reason.
    """
    saved = {**TrainConfig().to_dict(), **state.get("config", {})}
    current = config.to_dict()
    differences = [
        (key, saved.get(key), value)
        for key, value in current.items()
        if key not in FREE_ON_RESUME
        and key != "epochs"
        and _comparable(saved.get(key)) != _comparable(value)
    ]
    done = state.get("epoch", 0)
    if current["epochs"] < done:
        differences.append((f"epochs (below the {done} done)", saved["epochs"], current["epochs"]))
    elif current["epochs"] > saved["epochs"] and current["schedule"] in _FINITE_SCHEDULES:
        reason = f"a {current['schedule']} schedule cannot be extended"
        differences.append((f"epochs ({reason})", saved["epochs"], current["epochs"]))
    stored = state.get("extra") or {}
    differences += [
        (key, stored[key], extra.get(key))
        for key in stored
        if _comparable(stored[key]) != _comparable(extra.get(key))
    ]
    return sorted(differences, key=lambda item: item[0])


def _comparable(value: Any) -> Any:
    """Tuples and lists compare equal (JSON and ``torch.load`` give back lists)."""
    if isinstance(value, (list, tuple)):
        return tuple(_comparable(v) for v in value)
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    return value
