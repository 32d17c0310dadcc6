"""The per-epoch record of a run: a JSON-lines log and PNG plots of its curves."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from ._atomic import atomic_open

__all__ = ["write_log", "read_log", "plot_curves"]


def write_log(history: Sequence[dict], path: str | os.PathLike) -> Path:
    """Write one JSON object per epoch to ``path``, replacing it atomically.

    The whole history is rewritten each time, so after a resume the log
    holds exactly the epochs the checkpoint has, with no duplicates.
    """
    path = Path(path)
    with atomic_open(path, "w") as handle:
        for record in history:
            handle.write(json.dumps(record) + "\n")
    return path


def read_log(path: str | os.PathLike) -> list[dict]:
    """The records of a JSON-lines log written by :func:`write_log`."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def plot_curves(history: Sequence[dict], path: str | os.PathLike) -> Path | None:
    """Plot loss and accuracy (training and, if logged, validation) against epoch.

    Returns the PNG's path, or None (with a warning) if matplotlib is not
    installed (``pip install matplotlib`` or the ``examples`` extra).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except Exception:  # a broken install is as good as none
        warnings.warn("matplotlib is not available: no plots written", stacklevel=2)
        return None
    epochs = [record["epoch"] for record in history]
    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for split in ("train", "val"):
        if any(f"{split}_loss" in record for record in history):
            style = {"label": split, "marker": "o", "markersize": 3}
            loss_axis.plot(epochs, [r.get(f"{split}_loss") for r in history], **style)
            acc_axis.plot(epochs, [100 * r.get(f"{split}_acc") for r in history], **style)
    loss_axis.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    acc_axis.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for axis in (loss_axis, acc_axis):
        axis.grid(alpha=0.3)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.legend()
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, dpi=120, format="png")
    plt.close(figure)
    return path
