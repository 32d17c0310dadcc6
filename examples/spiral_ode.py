"""Learn the cubic spiral ODE from 16 samples with a weight-shared dynamic block (a Neural ODE).

    python examples/spiral_ode.py                          # CPU, about 15 s
    python examples/spiral_ode.py --scheme euler --substeps 4 --iterations 3000
    python examples/spiral_ode.py --out runs/spiral_l1 --loss l1
    python examples/spiral_ode.py --adaptive tsit5         # the notes' Tsit5, rtol 1e-7, atol 1e-9

The true dynamics are ``du/dt = A u^3`` (elementwise cube) with
``A = [[-0.1, 2], [-2, -0.1]]`` and ``u(0) = (2, 0)`` on ``t in [0, 1.5]``, the
system of torchdiffeq's ``ode_demo``. The data, the states at the 16 times
0, 0.1, ..., 1.5, is itself made with the library: the true field integrated by
a :class:`~dynamicblocks.DynamicBlock` with RK4 on a fine grid.

The model is a vector field ``u -> u^3 -> Linear(2, 50) -> tanh -> Linear(50, 2)``
inside a block with a single control time, so one set of weights is shared
over the whole interval: the block is an explicit Runge-Kutta discretisation of
``du/dt = f_theta(u)``. Its trajectory at the sample times is read with
``return_trajectory=True`` and fitted to the data by Adam (discretize, then
optimize: the gradient is that of the discrete forward pass).

With ``--adaptive tsit5`` (or ``dopri5``) the block has no grid of its own but
the interval ``[0, 1.5]``: every forward pass is an error-controlled solve
(:func:`~dynamicblocks.solve_adaptive`, tolerances ``--rtol`` and ``--atol``,
by default the notes' 1e-7 and 1e-9) in float64, read at the sample times
through the pair's dense output, and the gradient is that of the accepted
steps.

Everything goes to --out (default runs/spiral_ode): spiral.png (phase plane and
u1(t), u2(t), data against prediction) and results.json (initial and final
loss, iterations, scheme, elapsed seconds, ...).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import dynamicblocks as db  # noqa: E402

from _fit import fit, positive  # noqa: E402

A_TRUE = ((-0.1, 2.0), (-2.0, -0.1))
U0 = (2.0, 0.0)
T_END = 1.5
NUM_SAMPLES = 16  # states at t = 0, 0.1, ..., 1.5
LOSSES = {"mse": F.mse_loss, "l1": F.l1_loss}


def sample_times() -> tuple[float, ...]:
    """The 16 uniform sample times ``0, 0.1, ..., 1.5``."""
    return db.uniform_grid(0.0, T_END, NUM_SAMPLES - 1)


def true_field(u: torch.Tensor) -> torch.Tensor:
    """The true right-hand side ``A u^3`` for states ``u`` of shape ``(N, 2)``."""
    a = torch.tensor(A_TRUE, dtype=u.dtype, device=u.device)
    return (u**3) @ a.T


class TrueField(nn.Module):
    """:func:`true_field` as a parameter-free module, a layer function for a dynamic block."""

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return true_field(u)


def make_data(substeps: int = 40, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The true trajectory at :func:`sample_times`, shape ``(16, 1, 2)``.

    The true field is integrated by a dynamic block with RK4 and ``substeps``
    steps per sample interval; the sample times are points of the refined grid,
    so the samples are read off the block's trajectory exactly.
    """
    fine = db.refine_grid(sample_times(), substeps)
    block = db.DynamicBlock(TrueField(), t=fine, scheme="rk4", t_theta=(0.0,))
    u0 = torch.tensor([U0], dtype=dtype)
    with torch.no_grad():
        trajectory = block(u0, return_trajectory=True)
    return trajectory[::substeps]


class CubicField(nn.Module):
    """The learned vector field ``f(u) = W2 tanh(W1 u^3 + b1) + b2``."""

    def __init__(self, hidden: int = 50) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.Tanh(), nn.Linear(hidden, 2))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.net(u**3)


def build_model(scheme: str = "rk4", substeps: int = 2, hidden: int = 50) -> db.DynamicBlock:
    """A shared-weight block over the sample times refined ``substeps`` times.

    The sample times are points of the block's grid: the prediction at them is
    ``block(u0, return_trajectory=True)[::substeps]``.
    """
    grid = db.refine_grid(sample_times(), substeps)
    return db.DynamicBlock(CubicField(hidden), t=grid, scheme=scheme, t_theta=(0.0,))


def build_adaptive_model(scheme: str = "tsit5", hidden: int = 50) -> db.DynamicBlock:
    """A shared-weight block on ``[0, 1.5]`` with an embedded pair, for adaptive solves."""
    return db.DynamicBlock(CubicField(hidden), t=(0.0, T_END), scheme=scheme, t_theta=(0.0,))


def predict(
    model: db.DynamicBlock, u0: torch.Tensor, tolerances: tuple[float, float] | None = None
) -> torch.Tensor:
    """The model's states at the sample times, shape ``(16, N, 2)``.

    With ``tolerances = (rtol, atol)`` an adaptive solve over the model's
    interval, read at the sample times; else the model's own grid.
    """
    if tolerances is not None:
        rtol, atol = tolerances
        return db.solve_adaptive(model, u0, rtol=rtol, atol=atol, t_eval=sample_times()).ys
    trajectory = model(u0, return_trajectory=True)
    substeps = model.num_steps // (NUM_SAMPLES - 1)
    return trajectory[::substeps]


def train(
    model: db.DynamicBlock,
    data: torch.Tensor,
    iterations: int,
    lr: float = 1e-2,
    loss: str = "mse",
    log_every: int = 100,
    tolerances: tuple[float, float] | None = None,
) -> dict:
    """Fit the model's trajectory from ``data[0]`` to ``data`` with full-batch Adam.

    ``tolerances``: ``(rtol, atol)`` of adaptive solves (see :func:`predict`).
    Returns ``initial_loss`` (before the first step), ``final_loss`` (after the
    last one) and ``history``, the ``(iteration, loss)`` pairs that were printed.
    """
    loss_fn, u0 = LOSSES[loss], data[0]
    return fit(
        lambda: loss_fn(predict(model, u0, tolerances), data),
        torch.optim.Adam(model.parameters(), lr=lr),
        iterations,
        log_every,
        metric=f"{loss} loss",
        hint="try a smaller --lr or more --substeps",
    )


def plot(
    model: db.DynamicBlock,
    data: torch.Tensor,
    path: Path,
    title: str = "",
    tolerances: tuple[float, float] | None = None,
) -> None:
    """Save the phase plane and ``u1(t), u2(t)``: data points against the learned ODE.

    The learned field is drawn integrated on a grid 8 times finer than the
    model's (same weights, same scheme), or read from an adaptive solve at
    121 times, with the model's own predictions at the sample times as markers.
    """
    t = torch.tensor(sample_times())
    with torch.no_grad():
        if tolerances is None:
            dense_grid = db.refine_grid(model.t, 8)
            dense = db.DynamicBlock(
                model.layers[0], t=dense_grid, scheme=model.tableau, t_theta=(0.0,)
            )
            curve = dense(data[0], return_trajectory=True)[:, 0].double()
        else:
            dense_grid = db.uniform_grid(0.0, T_END, 120)
            rtol, atol = tolerances
            solution = db.solve_adaptive(model, data[0], rtol=rtol, atol=atol, t_eval=dense_grid)
            curve = solution.ys[:, 0].double()
        at_samples = predict(model, data[0], tolerances)[:, 0].double()
    truth = data[:, 0].double()
    td = torch.tensor(dense_grid)

    fig, (phase, series) = plt.subplots(1, 2, figsize=(11, 4.5))
    phase.plot(curve[:, 0], curve[:, 1], "-", color="tab:blue", label="learned ODE")
    phase.plot(at_samples[:, 0], at_samples[:, 1], "x", color="tab:blue", label="model at samples")
    phase.plot(truth[:, 0], truth[:, 1], "o", color="black", mfc="none", label="data")
    phase.set(xlabel="$u_1$", ylabel="$u_2$", title="phase plane")
    phase.set_aspect("equal", adjustable="datalim")
    phase.legend(loc="center", fontsize=8)
    for k, color in enumerate(("tab:blue", "tab:orange")):
        series.plot(td, curve[:, k], "-", color=color, label=f"$u_{k + 1}$ learned")
        series.plot(t, truth[:, k], "o", color=color, mfc="none", label=f"$u_{k + 1}$ data")
    series.set(xlabel="t", ylabel="u", title="components over time")
    series.legend(fontsize=8, ncols=2)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--iterations", type=positive(int), default=1500, help="Adam steps (default 1500)")
    add("--lr", type=positive(float), default=1e-2, help="Adam learning rate (default 1e-2)")
    add("--scheme", default="rk4", choices=list(db.TABLEAUS), help="integration scheme")
    add(
        "--substeps",
        type=positive(int),
        default=2,
        help="model steps per sample interval (default 2: h = 0.05)",
    )
    add("--hidden", type=positive(int), default=50, help="width of the field's hidden layer")
    add("--loss", default="mse", choices=sorted(LOSSES))
    add(
        "--data-substeps",
        type=positive(int),
        default=40,
        help="RK4 steps per sample interval for the true trajectory (default 40)",
    )
    add(
        "--adaptive",
        default=None,
        choices=["tsit5", "dopri5"],
        help="solve adaptively with this embedded pair instead of on a fixed grid",
    )
    add("--rtol", type=positive(float), default=1e-7, help="adaptive: relative tolerance")
    add("--atol", type=positive(float), default=1e-9, help="adaptive: absolute tolerance")
    add("--seed", type=int, default=0)
    add("--log-every", type=positive(int), default=100, help="iterations between progress lines")
    add("--out", default="runs/spiral_ode", help="output directory (default: runs/spiral_ode)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run the example; return the results that are written to OUT/results.json."""
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    tolerances = None if args.adaptive is None else (args.rtol, args.atol)
    if tolerances is None:
        data = make_data(args.data_substeps).float()
        model = build_model(args.scheme, args.substeps, args.hidden)
    else:  # float64: tolerances of 1e-7 and 1e-9 are below float32's resolution
        data = make_data(args.data_substeps)
        model = build_adaptive_model(args.adaptive, args.hidden).double()
    print(model)
    try:
        fit = train(model, data, args.iterations, args.lr, args.loss, args.log_every, tolerances)
    except (FloatingPointError, db.StepSizeError) as error:
        raise SystemExit(f"error: {error}") from None
    train_seconds = time.perf_counter() - start
    with torch.no_grad():
        error = (predict(model, data[0], tolerances) - data).abs().max().item()
        work = None
        if tolerances is not None:
            solution = db.solve_adaptive(model, data[0], rtol=args.rtol, atol=args.atol)
            work = {
                "evaluations": solution.evaluations,
                "accepted": solution.accepted,
                "rejected": solution.rejected,
            }
    method = (
        f"{args.scheme}, {args.substeps} step(s) per sample"
        if tolerances is None
        else f"{args.adaptive}, rtol {args.rtol:g}, atol {args.atol:g}"
    )
    title = (
        f"{method}, {args.iterations} iterations: "
        f"{args.loss} loss {fit['initial_loss']:.3g} -> {fit['final_loss']:.3g}"
    )
    plot(model, data, out / "spiral.png", title, tolerances)
    results = {
        "initial_loss": fit["initial_loss"],
        "final_loss": fit["final_loss"],
        "max_abs_error": error,
        "loss": args.loss,
        "iterations": args.iterations,
        "scheme": args.scheme if tolerances is None else args.adaptive,
        "substeps": args.substeps,
        "adaptive": args.adaptive,
        "rtol": args.rtol,
        "atol": args.atol,
        "final_solve": work,
        "lr": args.lr,
        "hidden": args.hidden,
        "seed": args.seed,
        "train_seconds": train_seconds,
        "elapsed_seconds": time.perf_counter() - start,
        "history": fit["history"],
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"{args.loss} loss {fit['initial_loss']:.4g} -> {fit['final_loss']:.4g}, max |error| "
        f"{error:.3g} at the samples, {results['elapsed_seconds']:.1f} s; output in {out}"
    )
    return results


if __name__ == "__main__":
    main()
