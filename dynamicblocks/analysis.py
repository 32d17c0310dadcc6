"""Does a trained model behave like an ODE? The convergence test.

Re-manifest a model (every dynamic block) with several schemes and step
counts, evaluate each, and measure how the result approaches a reference as
the step shrinks: a model that learned an ODE converges at its scheme's order;
one that overfitted its training step size does not (Queiruga et al.,
"Continuous-in-depth neural networks", arXiv:2008.02389).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ._validate import positive_int
from .manifest import dynamic_blocks, remanifest
from .tableaus import SchemeLike, get_tableau

__all__ = ["ConvergenceResult", "convergence_test", "fit_slope"]

Value = float | torch.Tensor


def fit_slope(step_sizes: Sequence[float], errors: Sequence[float]) -> float:
    """Least-squares slope of ``log(error)`` against ``log(h)`` (NaN with < 2 positive errors)."""
    points = [(math.log(h), math.log(e)) for h, e in zip(step_sizes, errors) if e > 0]
    if len(points) < 2:
        return math.nan
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return sxy / sxx


@dataclass
class ConvergenceResult:
    """The table of a convergence test.

    Attributes:
        rows: one dict per (scheme, steps): ``scheme``, ``steps``, ``h`` (the
            first block's step size), ``value`` (what ``evaluate`` returned,
            as a float when it was a scalar) and ``error`` (its distance to
            the reference).
        slopes: per scheme, the fitted slope of log(error) against log(h): the
            observed order of convergence.
        reference: the value the errors are measured against.
    """

    rows: list[dict]
    slopes: dict[str, float]
    reference: Value = field(repr=False)

    def table(self) -> str:
        """The rows and slopes as aligned text."""
        lines = [f"{'scheme':<10} {'steps':>6} {'h':>10} {'value':>12} {'error':>11}"]
        for row in self.rows:
            value = row["value"]
            shown = f"{value:>12.6g}" if isinstance(value, float) else f"{'(tensor)':>12}"
            lines.append(
                f"{row['scheme']:<10} {row['steps']:>6} {row['h']:>10.4g} {shown} "
                f"{row['error']:>11.3e}"
            )
        lines += [f"slope {scheme}: {slope:.2f}" for scheme, slope in self.slopes.items()]
        return "\n".join(lines)

    def plot(self, path: str | os.PathLike | None = None):
        """Log-log plot of error against step size, one line per scheme (needs matplotlib).

        Returns the :class:`matplotlib.figure.Figure`; saves it to ``path`` if given.
        """
        from matplotlib.figure import Figure  # no pyplot: no backend or global state

        figure = Figure(figsize=(5, 4))
        axes = figure.subplots()
        for scheme, slope in self.slopes.items():
            rows = [r for r in self.rows if r["scheme"] == scheme and r["error"] > 0]
            axes.loglog([r["h"] for r in rows], [r["error"] for r in rows], "o-",
                        label=f"{scheme} (slope {slope:.2f})")  # fmt: skip
        axes.set_xlabel("step size h")
        axes.set_ylabel("error against the reference")
        axes.legend()
        axes.grid(True, which="both", alpha=0.3)
        figure.tight_layout()
        if path is not None:
            figure.savefig(path, dpi=120)
        return figure


def _distance(value: Value, reference: Value) -> float:
    difference = torch.as_tensor(value, dtype=torch.float64) - torch.as_tensor(
        reference, dtype=torch.float64
    )
    return difference.abs().max().item()


def _plain(value: Value) -> Value:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.detach()
    return float(value)


@torch.no_grad()
def convergence_test(
    model: nn.Module,
    evaluate: Callable[[nn.Module], Value],
    schemes: Sequence[SchemeLike] = ("euler", "midpoint", "rk4"),
    steps: Sequence[int] = (1, 2, 4, 8, 16),
    reference: Value | None = None,
) -> ConvergenceResult:
    """Evaluate ``model`` re-manifested with every scheme and step count.

    Every dynamic block gets a uniform grid of ``n`` steps over its own
    interval and the scheme, keeping its trained ``theta(t)``
    (:func:`dynamicblocks.remanifest`); ``model`` itself is unchanged.

    Args:
        model: a trained network (or block).
        evaluate: maps a re-manifested model to a number or tensor, e.g. its
            outputs on fixed inputs, a test loss or an accuracy. Called under
            ``torch.no_grad()``.
        schemes: the schemes to sweep.
        steps: the step counts to sweep.
        reference: what errors are measured against (e.g. an exact
            solution). Default: the model with RK4 and twice the largest step
            count.

    Returns:
        A :class:`ConvergenceResult`; the error of a value is the largest
        absolute difference from the reference.
    """
    steps = [positive_int("steps", n) for n in steps]
    if not steps or not schemes:
        raise ValueError("give at least one scheme and one step count")
    names = [get_tableau(scheme).name for scheme in schemes]
    blocks = dynamic_blocks(model)
    if not blocks:
        raise ValueError(f"{type(model).__name__} contains no DynamicBlock")
    first = blocks[0]
    if reference is None:
        reference = evaluate(remanifest(model, steps=2 * max(steps), scheme="rk4"))
    rows = []
    for scheme, name in zip(schemes, names):
        for n in steps:
            value = evaluate(remanifest(model, steps=n, scheme=scheme))
            h = (first.t[-1] - first.t[0]) / n
            rows.append({"scheme": name, "steps": n, "h": h, "value": _plain(value),
                         "error": _distance(value, reference)})  # fmt: skip
    slopes = {}
    for name in names:
        mine = [r for r in rows if r["scheme"] == name]
        slopes[name] = fit_slope([r["h"] for r in mine], [r["error"] for r in mine])
    return ConvergenceResult(rows, slopes, _plain(reference))
