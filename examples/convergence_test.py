"""Train with Euler, midpoint and RK4, then sweep the step size: which model learned an ODE?

    python examples/convergence_test.py                    # CPU, about 30 s
    python examples/convergence_test.py --train-steps 2    # h_train = 0.5
    python examples/convergence_test.py --train-steps 8 --out runs/convergence_h0125

This reproduces the central finding of ContinuousNet (Queiruga, Erichson,
Taylor, Mahoney, "Continuous-in-depth neural networks", arXiv:2008.02389): a
model trained with forward Euler at a large step overfits that step size, while
one trained with RK4 behaves like a discretised ODE.

The data is a time series of the damped linear oscillator ``du/dt = A u`` with
``A = [[-0.1, 2], [-2, -0.1]]``, known exactly: ``u(t) = expm(t A) u(0)``
(``torch.linalg.matrix_exp``). Initial states are drawn uniformly from the disk
of radius 2 (a training set and a separate test set) and observed at the times
``0, D, 2 D, ..., K D`` (``D = --interval``, ``K = --intervals``).

Each model is one shared-weight vector field ``f_theta = MLP(2 -> hidden -> 2,
tanh)`` inside a :class:`~dynamicblocks.DynamicBlock` over one observation
interval ``[0, D]`` with ``--train-steps`` uniform steps (``h_train = D /
train-steps``) and a single control time, so the block is an explicit
Runge-Kutta discretisation of ``du/dt = f_theta(u)``. The three models (same
initial weights) differ only in the scheme they are trained with: ``euler``,
``midpoint``, ``rk4``. They are fitted by full-batch Adam to the one-interval
pairs ``(u(k D), u((k + 1) D))`` of the training trajectories (MSE).

Then the weights are frozen and every model is re-manifested (same ``theta``,
other step counts and schemes) and rolled out over the ``K`` intervals of the
test trajectories from their true initial states. With
:func:`dynamicblocks.analysis.convergence_test` the script measures

* the error against the true trajectories as the step shrinks, in the model's
  own scheme (``convergence.png``, left) and in every other scheme
  (``cross_scheme.png``: the trained field moved into another integrator);
* the observed order of convergence of each model to its *own* ODE (reference:
  the model itself with RK4 on a fine grid; ``convergence.png``, right).

Errors are the largest absolute deviation over all test trajectories and
observation times.

With the defaults (seed 0, h_train = 0.25; torch 2.13 CPU) all three models fit
the test trajectories equally well at h_train (max error 0.051-0.055). Refined
to h_train/64, the Euler-trained model's error grows 22x to 1.14 (its lowest
error is at h_train; run with RK4 or midpoint the Euler field is off by about
1.1 at every step up to h_train), the midpoint-trained one's 9x to 0.50, and
the RK4-trained one's stays at 0.052, which the RK4 field also reaches in
midpoint (0.052) and Euler (0.064, still carrying Euler's own O(h) error). Each
model converges to its own ODE at its scheme's order (slopes 1.11, 2.00, 4.02).
Seeds 1 and 2 gave the same picture. With ``--train-steps 2`` (h_train = 0.5, a
radian of rotation per step) even the RK4 model begins to fit its step: its
error at h_train/128 is 2.4x that at h_train (0.13 against Euler's 1.44).

Everything goes to --out (default runs/convergence_test): the two PNGs and
results.json (settings, training losses, slopes, errors at ``h_train`` and at
the finest step, the cross-scheme table, the sweeps, the findings with their
measured numbers and pass/fail checks of the expected finding).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

import dynamicblocks as db  # noqa: E402
from dynamicblocks.analysis import convergence_test  # noqa: E402

from _fit import fit, positive  # noqa: E402

A_TRUE = ((-0.1, 2.0), (-2.0, -0.1))
SCHEMES = ("euler", "midpoint", "rk4")
COLORS = {"euler": "tab:red", "midpoint": "tab:green", "rk4": "tab:blue"}


# --------------------------------------------------------------------------- data


def initial_states(count: int, radius: float, generator: torch.Generator) -> torch.Tensor:
    """``count`` states drawn uniformly from the disk of ``radius``, shape ``(count, 2)``."""
    r = radius * torch.rand(count, generator=generator, dtype=torch.float64).sqrt()
    angle = 2 * math.pi * torch.rand(count, generator=generator, dtype=torch.float64)
    return torch.stack([r * angle.cos(), r * angle.sin()], dim=1)


def true_trajectories(u0: torch.Tensor, interval: float, intervals: int) -> torch.Tensor:
    """The exact states ``expm(k D A) u0`` at ``k = 0..K``, shape ``(K + 1, N, 2)``, float64."""
    a = torch.tensor(A_TRUE, dtype=torch.float64)
    times = interval * torch.arange(intervals + 1, dtype=torch.float64)
    propagators = torch.linalg.matrix_exp(times[:, None, None] * a)  # (K + 1, 2, 2)
    return torch.einsum("kij,nj->kni", propagators, u0.double())


# --------------------------------------------------------------------------- model


def build_model(
    scheme: str, interval: float, train_steps: int, hidden: int, depth: int
) -> db.DynamicBlock:
    """A shared-weight MLP field on ``train_steps`` uniform steps over ``[0, interval]``."""
    field = db.MLP(2, hidden=hidden, depth=depth, act="tanh")
    grid = db.uniform_grid(0.0, interval, train_steps)
    return db.DynamicBlock(field, t=grid, scheme=scheme, t_theta=(0.0,))


def rollout(block: torch.nn.Module, u0: torch.Tensor, intervals: int) -> torch.Tensor:
    """Apply the one-interval block ``intervals`` times: states ``(K + 1, N, 2)``."""
    states = [u0]
    for _ in range(intervals):
        states.append(block(states[-1]))
    return torch.stack(states)


def train(
    model: db.DynamicBlock,
    trajectories: torch.Tensor,
    iterations: int,
    lr: float,
    log_every: int,
    name: str,
) -> dict:
    """Fit one-interval pairs of ``trajectories`` by full-batch Adam (cosine-decayed lr).

    Returns ``initial_loss`` (before the first step), ``final_loss`` (after the
    last) and ``history``, the printed ``(iteration, loss)`` pairs.
    """
    x = trajectories[:-1].reshape(-1, 2)
    y = trajectories[1:].reshape(-1, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, iterations, lr / 100)
    return fit(
        lambda: F.mse_loss(model(x), y),
        optimizer,
        iterations,
        log_every,
        prefix=f"{name:>8}  ",
        metric="mse",
        hint="try a smaller --lr or more --train-steps",
        schedule=schedule,
    )


# --------------------------------------------------------------------------- analysis


def analyse(
    model: db.DynamicBlock,
    scheme: str,
    u0: torch.Tensor,
    truth: torch.Tensor,
    sweep_steps: list[int],
    order_steps: list[int],
) -> dict:
    """Sweep one frozen model: errors against the truth in every scheme, order to its own ODE."""
    frozen = copy.deepcopy(model).double().requires_grad_(False)
    intervals = truth.shape[0] - 1

    def evaluate(block: torch.nn.Module) -> torch.Tensor:
        return rollout(block, u0, intervals)

    against_truth = convergence_test(frozen, evaluate, SCHEMES, sweep_steps, reference=truth)
    own_ode = convergence_test(frozen, evaluate, (scheme,), order_steps)
    return {"truth": against_truth, "own": own_ode}


def _error(result, scheme: str, steps: int) -> float:
    (row,) = [r for r in result.rows if r["scheme"] == scheme and r["steps"] == steps]
    return row["error"]


def _sweep(result, scheme: str) -> list[dict]:
    return [
        {"steps": r["steps"], "h": r["h"], "error": r["error"]}
        for r in result.rows
        if r["scheme"] == scheme
    ]


def summarise(analyses: dict, train_steps: int, finest: int, interval: float) -> dict:
    """The numbers that go to results.json: per model and the cross-scheme table."""
    models, cross = {}, {}
    for trained, analysis in analyses.items():
        truth, own = analysis["truth"], analysis["own"]
        sweep = _sweep(truth, trained)
        best = min(sweep, key=lambda r: r["error"] if math.isfinite(r["error"]) else math.inf)
        models[trained] = {
            "order_to_own_ode": own.slopes[trained],
            "own_ode_sweep": _sweep(own, trained),
            "error_at_h_train": _error(truth, trained, train_steps),
            "error_at_finest_h": _error(truth, trained, finest),
            "finest_h": interval / finest,
            "best_h": best["h"],
            "best_error": best["error"],
            "sweep": sweep,
        }
        cross[trained] = {
            run: {
                "error_at_h_train": _error(truth, run, train_steps),
                "error_at_finest_h": _error(truth, run, finest),
                "sweep": _sweep(truth, run),
            }
            for run in SCHEMES
        }
    return {"models": models, "cross_scheme": cross}


def findings(summary: dict, h_train: float, finest: int, train_steps: int) -> dict:
    """One line per finding, with the numbers, and whether each expected finding showed."""
    models, cross = summary["models"], summary["cross_scheme"]
    ratio = f"{finest / train_steps:g}"
    lines = []
    for trained, m in models.items():
        growth = m["error_at_finest_h"] / m["error_at_h_train"]
        if growth > 2:
            verdict = "does not converge to the truth"
        elif growth > 1.1:
            verdict = "the error grows somewhat as h shrinks"
        else:
            verdict = "converges: the error does not grow as h shrinks"
        lines.append(
            f"{trained}-trained: error at h_train={h_train:g} {m['error_at_h_train']:.2e}, "
            f"at h_train/{ratio} {m['error_at_finest_h']:.2e} ({growth:.3g}x: {verdict}); "
            f"lowest error {m['best_error']:.2e} at h={m['best_h']:.4g}; "
            f"order of convergence to its own ODE {m['order_to_own_ode']:.2f}"
        )
    for trained in ("euler", "rk4"):
        c = cross[trained]
        parts = ", ".join(
            f"{run} {c[run]['error_at_h_train']:.2e} / {c[run]['error_at_finest_h']:.2e}"
            for run in SCHEMES
        )
        lines.append(f"{trained}-trained field run with (at h_train / at h_train/{ratio}): {parts}")
    euler, rk4 = models["euler"], models["rk4"]
    euler_in_rk4 = cross["euler"]["rk4"]["error_at_h_train"]
    rk4_elsewhere = max(cross["rk4"][run]["error_at_finest_h"] for run in SCHEMES)
    checks = {
        # Euler overfits its step: best at h_train, several times worse at the finest step.
        "euler_overfits_h_train": euler["error_at_finest_h"] > 3 * euler["error_at_h_train"],
        # RK4 behaves like an ODE: refining does not make it worse.
        "rk4_converges": rk4["error_at_finest_h"] <= 1.5 * rk4["error_at_h_train"],
        # The Euler field is poor in RK4; the RK4 field is good in every scheme at small h.
        "euler_field_poor_in_rk4": euler_in_rk4 > 3 * euler["error_at_h_train"],
        # (2x: Euler at the finest step still carries its own O(h) error.)
        "rk4_field_good_in_every_scheme": rk4_elsewhere <= 2 * rk4["error_at_h_train"],
    }
    return {"lines": lines, "checks": checks}


# --------------------------------------------------------------------------- plots


def plot_convergence(summary: dict, h_train: float, path: Path) -> None:
    """Left: error against the truth vs h (own scheme); right: error against the own ODE."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for trained, m in summary["models"].items():
        color = COLORS[trained]
        rows = [r for r in m["sweep"] if 0 < r["error"] < math.inf]
        left.loglog(
            [r["h"] for r in rows],
            [r["error"] for r in rows],
            "o-",
            color=color,
            ms=4,
            label=f"{trained}-trained, run with {trained}",
        )
        rows = [r for r in m["own_ode_sweep"] if 0 < r["error"] < math.inf]
        right.loglog(
            [r["h"] for r in rows],
            [r["error"] for r in rows],
            "o-",
            color=color,
            ms=4,
            label=f"{trained} (slope {m['order_to_own_ode']:.2f})",
        )
    for axes in (left, right):
        axes.axvline(h_train, color="gray", ls="--", lw=1, label=f"h_train = {h_train:g}")
        axes.set_xlabel("step size h")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=8)
    left.set(
        ylabel="max error against the true trajectories",
        title="error against the truth, each model in its own scheme",
    )
    right.set(
        ylabel="max error against the model's own fine RK4 solution",
        title="convergence to the model's own ODE",
    )
    right.xaxis.set_minor_formatter(NullFormatter())  # no overlapping labels
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_cross_scheme(summary: dict, h_train: float, path: Path) -> None:
    """One panel per trained field: error against the truth vs h in every scheme."""
    cross = summary["cross_scheme"]
    fig, panels = plt.subplots(1, len(cross), figsize=(5 * len(cross), 4.3), sharey=True)
    for axes, (trained, runs) in zip(panels, cross.items()):
        for run, c in runs.items():
            rows = [r for r in c["sweep"] if 0 < r["error"] < math.inf]
            axes.loglog(
                [r["h"] for r in rows],
                [r["error"] for r in rows],
                "o-",
                color=COLORS[run],
                ms=3,
                label=f"run with {run}",
            )
        axes.axvline(h_train, color="gray", ls="--", lw=1, label=f"h_train = {h_train:g}")
        axes.set(title=f"field trained with {trained}", xlabel="step size h")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=8)
    panels[0].set_ylabel("max error against the true trajectories")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(summary: dict) -> str:
    """The cross-scheme errors against the truth as aligned text."""
    lines = [
        f"{'trained':<9} {'run with':<9} {'order':>6} {'err @ h_train':>14} {'err @ finest':>13}"
    ]
    for trained, runs in summary["cross_scheme"].items():
        for run, c in runs.items():
            order = summary["models"][trained]["order_to_own_ode"] if run == trained else None
            shown = f"{order:>6.2f}" if order is not None else f"{'':>6}"
            lines.append(
                f"{trained:<9} {run:<9} {shown} {c['error_at_h_train']:>14.3e} "
                f"{c['error_at_finest_h']:>13.3e}"
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line


def _step_list(text: str) -> list[int]:
    """An argparse type: comma-separated positive integers, returned sorted without repeats."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"must be comma-separated positive integers, got {text!r}")
    return sorted(set(values))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add(
        "--interval",
        type=positive(float),
        default=1.0,
        help="time D between observations, the span of the block (default 1.0)",
    )
    add(
        "--intervals",
        type=positive(int),
        default=8,
        help="observation intervals K per trajectory (default 8: t = 0..8)",
    )
    add(
        "--train-steps",
        type=positive(int),
        default=4,
        help="steps per interval in training (default 4: h_train = D / 4)",
    )
    add(
        "--trajectories",
        type=positive(int),
        default=128,
        help="training trajectories (default 128)",
    )
    add(
        "--test-trajectories",
        type=positive(int),
        default=64,
        help="held-out trajectories the errors are measured on (default 64)",
    )
    add(
        "--radius",
        type=positive(float),
        default=2.0,
        help="initial states are uniform in the disk of this radius (default 2)",
    )
    add("--hidden", type=positive(int), default=64, help="width of the MLP field (default 64)")
    add("--depth", type=positive(int), default=2, help="linear layers of the MLP field (default 2)")
    add("--iterations", type=positive(int), default=1500, help="Adam steps (default 1500)")
    add(
        "--lr",
        type=positive(float),
        default=1e-2,
        help="initial Adam learning rate, cosine-decayed to 1/100 (default 1e-2)",
    )
    add(
        "--sweep-steps",
        type=_step_list,
        default=[1, 2, 3, 4, 6, 8, 12, 16, 32, 64, 128, 256],
        help="steps per interval swept against the truth (--train-steps is added)",
    )
    add(
        "--order-steps",
        type=_step_list,
        default=[8, 16, 32, 64],
        help="steps per interval for the order to the own ODE (at least two)",
    )
    add(
        "--threads",
        type=positive(int),
        default=1,
        help="torch CPU threads (default 1: the model is tiny, more add overhead)",
    )
    add("--seed", type=int, default=0)
    add("--log-every", type=positive(int), default=250, help="iterations between progress lines")
    add(
        "--out",
        default="runs/convergence_test",
        help="output directory (default: runs/convergence_test)",
    )
    args = parser.parse_args(argv)
    if len(args.order_steps) < 2:
        parser.error("argument --order-steps: give at least two step counts to fit a slope")
    args.sweep_steps = sorted(set(args.sweep_steps) | {args.train_steps})
    return args


def _finite_or_none(value):
    """``value`` with every non-finite float replaced by None (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    return value


def main(argv: list[str] | None = None) -> dict:
    """Run the example; return the results that are written to OUT/results.json."""
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args, out)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace, out: Path) -> dict:
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(args.seed)
    train_u0 = initial_states(args.trajectories, args.radius, generator)
    test_u0 = initial_states(args.test_trajectories, args.radius, generator)
    train_data = true_trajectories(train_u0, args.interval, args.intervals).float()
    test_truth = true_trajectories(test_u0, args.interval, args.intervals)
    h_train = args.interval / args.train_steps
    finest = max(args.sweep_steps)

    fits, analyses = {}, {}
    for scheme in SCHEMES:
        torch.manual_seed(args.seed)  # the same initial weights for every scheme
        model = build_model(scheme, args.interval, args.train_steps, args.hidden, args.depth)
        try:
            fits[scheme] = train(
                model, train_data, args.iterations, args.lr, args.log_every, scheme
            )
        except FloatingPointError as error:
            raise SystemExit(f"error: {error}") from None
        analyses[scheme] = analyse(
            model, scheme, test_u0, test_truth, args.sweep_steps, args.order_steps
        )
    summary = summarise(analyses, args.train_steps, finest, args.interval)
    found = findings(summary, h_train, finest, args.train_steps)

    plot_convergence(summary, h_train, out / "convergence.png")
    plot_cross_scheme(summary, h_train, out / "cross_scheme.png")
    elapsed = time.perf_counter() - start
    print()
    print(
        f"max error against the true test trajectories (h_train = {h_train:g}, "
        f"finest h = {args.interval / finest:.4g}); order = slope to the own ODE"
    )
    print(table(summary))
    print()
    for line in found["lines"]:
        print(line)
    print("checks: " + ", ".join(f"{k}={v}" for k, v in found["checks"].items()))
    print(f"{elapsed:.1f} s; output in {out}")

    results = {
        "settings": {
            key: value for key, value in vars(args).items() if key not in ("out", "log_every")
        },
        "h_train": h_train,
        "finest_h": args.interval / finest,
        "training": {
            scheme: {k: fit[k] for k in ("initial_loss", "final_loss")}
            for scheme, fit in fits.items()
        },
        "slopes": {s: m["order_to_own_ode"] for s, m in summary["models"].items()},
        "error_at_h_train": {s: m["error_at_h_train"] for s, m in summary["models"].items()},
        "error_at_finest_h": {s: m["error_at_finest_h"] for s, m in summary["models"].items()},
        "cross_scheme": {
            trained: {
                run: {k: c[k] for k in ("error_at_h_train", "error_at_finest_h")}
                for run, c in runs.items()
            }
            for trained, runs in summary["cross_scheme"].items()
        },
        "findings": found["lines"],
        "checks": found["checks"],
        "models": summary["models"],
        "sweeps_all_schemes": {
            trained: {run: c["sweep"] for run, c in runs.items()}
            for trained, runs in summary["cross_scheme"].items()
        },
        "elapsed_seconds": elapsed,
    }
    results = _finite_or_none(results)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
