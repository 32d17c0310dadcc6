"""Shared by implicit_1d.py and implicit_spirals.py: the theta-networks, their training, reports.

A network is ``Linear(inputs, width) -> block -> Linear(width, outputs)``. The
block integrates ``dx/dt = f_k(x)``, ``f_k(x) = act(W_k x + b_k)``, over
``[0, horizon]`` on ``layers`` uniform steps (``h = horizon / layers``) with one
set of weights per step, by the theta-method of an
:class:`~dynamicblocks.ImplicitBlock`: ``theta = 0`` is explicit Euler, the
ResNet ``x <- x + h f_k(x)`` (computed directly, no solve); ``theta = 1/2`` is
the implicit trapezoidal rule ``y = x + h/2 [f_k(x) + f_k(y)]`` (Anderson
fixed-point iteration forward, implicit function theorem backward). Every
linear map is Glorot-uniform initialised with zero biases.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import dynamicblocks as db  # noqa: E402

from _fit import fit, positive  # noqa: E402

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


class ResidualLayer(nn.Module):
    """The layer function ``f(x) = act(W x + b)`` on ``width`` features."""

    def __init__(self, width: int, act: str) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)
        self.act = ACTIVATIONS[act]()

    def reset_parameters(self) -> None:
        glorot_(self.linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.linear(x))


def glorot_(linear: nn.Linear) -> None:
    """Glorot (Xavier) uniform weight, zero bias."""
    nn.init.xavier_uniform_(linear.weight)
    nn.init.zeros_(linear.bias)


class ThetaNet(nn.Module):
    """``Linear(inputs, width) -> theta-method block -> Linear(width, outputs)``."""

    def __init__(
        self,
        inputs: int,
        width: int,
        outputs: int,
        layers: int,
        horizon: float,
        theta: float,
        act: str,
        tol: float = 1e-6,
        max_iter: int = 100,
    ) -> None:
        super().__init__()
        self.theta, self.h = theta, horizon / layers
        self.lift = nn.Linear(inputs, width)
        self.block = db.ImplicitBlock(
            ResidualLayer(width, act),
            t=db.uniform_grid(0.0, horizon, layers),
            scheme="theta",
            theta=theta,
            tol=tol,
            max_iter=max_iter,
            on_failure="ignore",  # counted in the solver statistics instead
        )
        self.head = nn.Linear(width, outputs)
        glorot_(self.lift)
        glorot_(self.head)
        self.block.reset_parameters()  # every step's copy drawn independently

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.lift(x)))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def network_specs(args: argparse.Namespace) -> dict[str, dict]:
    """The two networks compared: name -> ``layers``, ``theta``, ``h``, ``label``."""
    specs = {}
    for name, layers, theta, scheme in (
        ("resnet", args.layers_resnet, 0.0, "explicit Euler"),
        ("implicit", args.layers_implicit, 0.5, "trapezoid"),
    ):
        h = args.horizon / layers
        specs[name] = {
            "layers": layers,
            "theta": theta,
            "h": h,
            "label": f"{name} ({scheme}, L={layers}, h={h:g})",
        }
    return specs


class SolverLog:
    """Accumulates an :class:`~dynamicblocks.ImplicitBlock`'s forward and backward solve records."""

    def __init__(self) -> None:
        self.records: dict[str, list[dict]] = {"forward": [], "backward": []}

    def add(self, kind: str, stats: list[dict]) -> None:
        self.records[kind].extend(stats)

    def summary(self) -> dict:
        out = {}
        for kind, records in self.records.items():
            if not records:
                out[kind] = {"solves": 0}
                continue
            iterations = [r["iterations"] for r in records]
            out[kind] = {
                "solves": len(records),
                "mean_iterations": sum(iterations) / len(iterations),
                "max_iterations": max(iterations),
                "not_converged": sum(not r["converged"] for r in records),
                "max_residual": largest(r["residual"] for r in records),
            }
        return out


def largest(values) -> float | None:
    """The maximum, or None if any value is None or not finite (e.g. a solve gone NaN)."""
    values = list(values)
    if any(v is None or not math.isfinite(v) for v in values):
        return None
    return max(values)


def train_network(
    model: ThetaNet,
    train: tuple[torch.Tensor, torch.Tensor],
    valid: tuple[torch.Tensor, torch.Tensor],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    args: argparse.Namespace,
    prefix: str,
    accuracy: Callable[[torch.Tensor, torch.Tensor], float] | None = None,
) -> dict:
    """Full-batch Adam (``_fit.fit``) on ``train``; validation every ``args.eval_every`` steps.

    The objective is ``loss_fn + args.smoothness * db.time_regularization(model.block)``.
    Returns the final train/validation loss (and accuracy), the ``history`` of
    ``[iteration, train loss, validation loss(, train acc, validation acc)]``
    rows, the seconds, the solver statistics of the training forward and
    backward passes, and ``diverged`` (a non-finite loss stopped training; the
    final numbers are then None).
    """
    (x, y), (xv, yv) = train, valid
    log, history, calls = SolverLog(), [], [0]
    implicit = model.theta > 0

    def objective() -> torch.Tensor:
        iteration = calls[0]
        calls[0] += 1
        if implicit:  # the backward solves of the previous step
            log.add("backward", model.block.backward_stats)
        row = None
        if iteration % args.eval_every == 0 or iteration == args.iterations:
            with torch.no_grad():
                out_v = model(xv)
                row = [iteration, None, loss_fn(out_v, yv).item()]
                if accuracy is not None:
                    row += [None, accuracy(out_v, yv)]
        out = model(x)
        if implicit:
            log.add("forward", model.block.solver_stats)
        task = loss_fn(out, y)
        if row is not None:
            row[1] = task.item()
            if accuracy is not None:
                row[3] = accuracy(out.detach(), y)
            history.append(row)
        if args.smoothness > 0:
            return task + args.smoothness * db.time_regularization(model.block)
        return task

    start = time.perf_counter()
    try:
        fit(
            objective,
            torch.optim.Adam(model.parameters(), lr=args.lr),
            args.iterations,
            args.log_every,
            prefix=prefix,
            hint="try a smaller --lr or more layers",
        )
        diverged = False
    except FloatingPointError as error:
        reason = str(error).removeprefix(prefix.strip()).strip()
        print(f"{prefix}stopped: {reason}", flush=True)
        diverged = True
    seconds = time.perf_counter() - start
    last = history[-1] if history and not diverged else [None] * 5
    result = {
        "final_train_loss": last[1],
        "final_valid_loss": last[2],
        "diverged": diverged,
        "seconds": seconds,
        "history": [
            [None if isinstance(v, float) and not math.isfinite(v) else v for v in row]
            for row in history
        ],
    }
    if accuracy is not None:
        result["final_train_accuracy"], result["final_valid_accuracy"] = last[3], last[4]
    if implicit:
        result["solver"] = log.summary()
    return result


def combine_solver(summaries: list[dict]) -> dict:
    """Pool per-seed :meth:`SolverLog.summary` results into one."""
    out = {}
    for kind in ("forward", "backward"):
        parts = [s[kind] for s in summaries if s[kind]["solves"]]
        solves = sum(p["solves"] for p in parts)
        if not solves:
            out[kind] = {"solves": 0}
            continue
        out[kind] = {
            "solves": solves,
            "mean_iterations": sum(p["mean_iterations"] * p["solves"] for p in parts) / solves,
            "max_iterations": max(p["max_iterations"] for p in parts),
            "not_converged": sum(p["not_converged"] for p in parts),
            "max_residual": largest(p["max_residual"] for p in parts),
        }
    return out


def run_comparison(
    args: argparse.Namespace,
    train: tuple[torch.Tensor, torch.Tensor],
    valid: tuple[torch.Tensor, torch.Tensor],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    act: str,
    accuracy: Callable[[torch.Tensor, torch.Tensor], float] | None = None,
) -> tuple[dict, dict[str, list[ThetaNet]]]:
    """Train both networks of :func:`network_specs` from seeds ``0 .. args.seeds - 1``.

    Data and models are float64. Returns the per-network results (settings,
    parameter count, ``per_seed`` results of :func:`train_network`, means,
    pooled solver statistics of the implicit network) and the trained models.
    """
    inputs, outputs = train[0].shape[1], train[1].shape[1]
    networks, models = {}, {}
    for name, spec in network_specs(args).items():
        runs, models[name] = [], []
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            model = ThetaNet(
                inputs,
                args.width,
                outputs,
                spec["layers"],
                args.horizon,
                spec["theta"],
                act,
                args.tol,
                args.max_iter,
            ).double()
            prefix = f"{name:>8} seed {seed}  "
            result = train_network(model, train, valid, loss_fn, args, prefix, accuracy)
            runs.append({"seed": seed, **result})
            models[name].append(model)
        entry = {**spec, "parameters": count_parameters(models[name][0]), "per_seed": runs}
        keys = ["final_train_loss", "final_valid_loss"]
        if accuracy is not None:
            keys += ["final_train_accuracy", "final_valid_accuracy"]
        for key in keys:
            entry["mean_" + key.removeprefix("final_")] = mean([r[key] for r in runs])
        entry["diverged_seeds"] = [r["seed"] for r in runs if r["diverged"]]
        entry["seconds"] = sum(r["seconds"] for r in runs)
        if spec["theta"] > 0:
            entry["solver"] = combine_solver([r["solver"] for r in runs])
        networks[name] = entry
    return networks, models


def summary_table(networks: dict, metric: str, accuracy: bool = False) -> str:
    """Per-seed and mean final numbers of both networks, one row each."""
    header = ["network", "seed", "L", "h", "params", f"train {metric}", f"valid {metric}"]
    if accuracy:
        header += ["train acc", "valid acc"]
    header += ["seconds", "fwd it/solve", "bwd it/solve", "unconverged"]
    rows = [header]
    for name, net in networks.items():
        for run in [*net["per_seed"], None]:
            source = (
                run
                if run is not None
                else {
                    "final_" + k.removeprefix("mean_"): v
                    for k, v in net.items()
                    if k.startswith("mean_")
                }
            )
            row = [
                name,
                "mean" if run is None else str(run["seed"]),
                str(net["layers"]),
                f"{net['h']:g}",
                str(net["parameters"]),
                fmt(source["final_train_loss"]),
                fmt(source["final_valid_loss"]),
            ]
            if accuracy:
                row += [
                    fmt(source["final_train_accuracy"], ".3f"),
                    fmt(source["final_valid_accuracy"], ".3f"),
                ]
            seconds = net["seconds"] / len(net["per_seed"]) if run is None else run["seconds"]
            row.append(f"{seconds:.1f}")
            solver = (net if run is None else run).get("solver")
            if solver is None:
                row += ["-", "-", "-"]
            else:
                fwd, bwd = solver["forward"], solver["backward"]
                row += [
                    f"{fwd.get('mean_iterations', 0):.1f} (max {fwd.get('max_iterations', 0)})",
                    f"{bwd.get('mean_iterations', 0):.1f} (max {bwd.get('max_iterations', 0)})",
                    f"{fwd.get('not_converged', 0)}+{bwd.get('not_converged', 0)}",
                ]
            rows.append(row)
    return format_table(rows)


def plot_histories(networks: dict, path: Path, metric: str) -> None:
    """Loss (and accuracy, if recorded) against iteration: train solid, valid dashed, every seed.

    One column per network; rows: the loss (log scale), then the accuracy.
    """
    with_accuracy = any(
        len(row) > 3
        for net in networks.values()
        for run in net["per_seed"]
        for row in run["history"]
    )
    nrows = 2 if with_accuracy else 1
    fig, axes = plt.subplots(
        nrows, len(networks), figsize=(12, 4.2 * nrows), sharey="row", squeeze=False
    )
    for column, net in enumerate(networks.values()):
        for run in net["per_seed"]:
            rows = [r for r in run["history"] if None not in r]
            if not rows:
                continue
            it, color = [r[0] for r in rows], f"C{run['seed'] % 10}"
            for row_index, (train, valid, plot) in enumerate(((1, 2, "semilogy"), (3, 4, "plot"))):
                if row_index >= nrows:
                    break
                ax = axes[row_index, column]
                getattr(ax, plot)(
                    it, [r[train] for r in rows], "-", color=color, label=f"seed {run['seed']}"
                )
                getattr(ax, plot)(it, [r[valid] for r in rows], "--", color=color)
        axes[0, column].set_title(f"{net['label']}\ntrain (solid), validation (dashed)")
        axes[-1, column].set_xlabel("iteration")
        axes[0, column].legend(fontsize=8)
    axes[0, 0].set_ylabel(metric)
    if with_accuracy:
        axes[1, 0].set_ylabel("accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def mean(values: list) -> float | None:
    """The mean of the values that are not None (None if there are none)."""
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def add_common_arguments(parser: argparse.ArgumentParser, defaults: dict) -> None:
    """The flags both scripts share; ``defaults`` maps flag dests to default values."""
    add = parser.add_argument
    d = defaults
    add(
        "--seeds",
        type=positive(int),
        default=d["seeds"],
        help=f"number of initialisation seeds 0..SEEDS-1 (default {d['seeds']})",
    )
    add(
        "--iterations",
        type=positive(int),
        default=d["iterations"],
        help=f"full-batch Adam steps (default {d['iterations']})",
    )
    add(
        "--lr",
        type=positive(float),
        default=d["lr"],
        help=f"Adam learning rate (default {d['lr']:g})",
    )
    add(
        "--width",
        type=positive(int),
        default=d["width"],
        help=f"hidden features of the block (default {d['width']})",
    )
    add(
        "--layers-resnet",
        type=positive(int),
        default=d["layers_resnet"],
        help=f"ResNet (explicit Euler) steps (default {d['layers_resnet']})",
    )
    add(
        "--layers-implicit",
        type=positive(int),
        default=d["layers_implicit"],
        help=f"trapezoidal network steps (default {d['layers_implicit']})",
    )
    add(
        "--horizon",
        type=positive(float),
        default=d["horizon"],
        help=f"time horizon T of both blocks, h = T / layers (default {d['horizon']:g})",
    )
    add(
        "--smoothness",
        type=nonnegative,
        default=d["smoothness"],
        help="weight of the smoothness-in-depth term sum_k h 1/2 |theta_k+1 - theta_k|^2 "
        f"(default {d['smoothness']:g})",
    )
    add(
        "--tol",
        type=positive(float),
        default=1e-6,
        help="relative tolerance of the implicit solves (default 1e-6)",
    )
    add(
        "--max-iter",
        type=positive(int),
        default=100,
        help="most fixed-point iterations per implicit solve (default 100)",
    )
    add(
        "--eval-every",
        type=positive(int),
        default=d["eval_every"],
        help=f"iterations between validation evaluations (default {d['eval_every']})",
    )
    add(
        "--log-every",
        type=positive(int),
        default=d["log_every"],
        help=f"iterations between progress lines (default {d['log_every']})",
    )
    add("--out", default=d["out"], help=f"output directory (default: {d['out']})")


def nonnegative(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a non-negative number, got {text!r}") from None
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a non-negative number, got {text!r}")
    return value


def format_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows)


def fmt(value: float | None, spec: str = ".3e") -> str:
    return "diverged" if value is None else format(value, spec)
