"""Helpers shared by the small example scripts: a positive-number argparse type, an Adam loop."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import torch


def positive(kind: type) -> Callable[[str], int | float]:
    """An argparse type: ``kind(text)`` if it is positive and finite, else a message naming it."""

    def parse(text: str) -> int | float:
        what = "a positive integer" if kind is int else "a positive number"
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not 0 < value < math.inf:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    return parse


def fit(
    loss: Callable[[], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    iterations: int,
    log_every: int,
    prefix: str = "",
    metric: str = "loss",
    hint: str = "try a smaller --lr",
    schedule: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> dict:
    """Minimise ``loss()`` for ``iterations`` optimiser steps, printing every ``log_every``.

    Returns ``initial_loss`` (before the first step), ``final_loss`` (after the
    last) and ``history``, the printed ``(iteration, loss)`` pairs.

    Raises:
        FloatingPointError: when the loss is not finite (``hint`` says what to try).
    """
    history, initial_loss = [], math.nan
    for iteration in range(iterations):
        optimizer.zero_grad(set_to_none=True)
        value = loss()
        if not math.isfinite(value.item()):
            raise FloatingPointError(
                f"{prefix.strip()} loss is {value.item()} at iteration {iteration}: {hint}"
            )
        value.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
        if iteration == 0:
            initial_loss = value.item()
        if iteration % log_every == 0:
            history.append((iteration, value.item()))
            print(f"{prefix}iteration {iteration:5d}  {metric} {value.item():.4e}", flush=True)
    with torch.no_grad():
        final_loss = loss().item()
    history.append((iterations, final_loss))
    print(f"{prefix}iteration {iterations:5d}  {metric} {final_loss:.4e}  (final)", flush=True)
    return {"initial_loss": initial_loss, "final_loss": final_loss, "history": history}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="This module is imported by spiral_ode.py, convergence_test.py, implicit_1d.py, "
        "implicit_spirals.py and vanishing_gradients.py; run one of those instead.",
    )
    parser.parse_args()
    parser.print_help()
