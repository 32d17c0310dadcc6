"""Train a neural ODE with and without the RNODE regularisers and count an adaptive solver's work.

    python examples/regularized_ode.py                     # CPU, under a minute
    python examples/regularized_ode.py --iterations 2000 --kinetic 0.05 --jacobian 0.05
    python examples/regularized_ode.py --steer 0.9 --out runs/regularized_steer

What it shows. A neural ODE is trained on a fixed grid, but the function it
defines is the flow of its vector field, and what that flow costs to solve
accurately depends on the field it learned. Many fields fit the same data;
Finlay et al. (RNODE) add the kinetic energy ``int ||f||^2 dt`` and the
Jacobian's Frobenius norm ``int ||df/dx||_F^2 dt`` to the loss so that training
picks a simple one (nearly straight paths at constant speed), which an adaptive
solver then integrates in few steps, at about the same loss. STEER (Ghosh et
al.) instead draws the end time at random in every training step.

The task. Two moons, 256 noisy training points and 1024 test points in the
plane, are classified by ``x -> u(T) -> Linear(2, 2)``: a neural ODE
``du/dt = f(u)`` on ``[0, T] = [0, 1]`` in the plane itself (``f`` is
``Linear(2, 32) -> tanh -> Linear(32, 2)`` with one set of weights for all
times, a :class:`~dynamicblocks.DynamicBlock` with ``t_theta=[0.0]``, trained
with RK4 on 4 steps) moves the points until a line separates the classes.
Only the class of ``u(T)`` matters, so very different flows fit the data, and
cross-entropy keeps rewarding a flow that pushes the classes further apart:
without a regulariser the field grows fast and the paths long. This is where
the regularisers have something to choose. (On a pure regression of a flow map,
such as the end points of the cubic spiral of ``spiral_ode.py``, the data fix
the map, the true field is already a simple one, and the regularisers can
only trade accuracy for fewer steps; the effect is then far weaker.)

The configurations, all from the same seed, data, initial weights, optimiser
(full-batch Adam, ``--lr``) and number of ``--iterations``:

* ``none``: cross-entropy only;
* ``kinetic``: plus ``--kinetic`` times the kinetic energy;
* ``jacobian``: plus ``--jacobian`` times Hutchinson's estimate of the
  Jacobian norm with one Rademacher probe per training step;
* ``kinetic+jacobian``: both (RNODE);
* ``steer``: STEER with end times drawn from ``[T - b, T + b]``, ``b = --steer``.

Every trained model is then measured the same way, in float64 and in
evaluation mode (no STEER draw): the cross-entropy on the training and test
sets on its training grid; the kinetic energy and Jacobian norm on the test
set, integrated with RK4 on a grid 8 times finer, the Jacobian norm with 32
probes; and the solve of the test set with :func:`~dynamicblocks.solve_adaptive`
(``dopri5``, ``--rtol``, ``--atol``): its field evaluations (NFE), accepted
and rejected steps, and the test loss and accuracy from its end state. With the
defaults, the three regularised runs need far fewer evaluations than ``none``
at a test loss and accuracy like its own; STEER, on two moons, does not lower
the evaluations.

Everything goes to --out (default runs/regularized_ode): results.json (the
settings and one row per configuration), table.md (the table, as printed) and
trajectories.png (the paths of test points under each trained flow).

References:
    C. Finlay, J.-H. Jacobsen, L. Nurbekyan, A. M. Oberman, "How to train your
    neural ODE: the world of Jacobian and kinetic regularization", ICML 2020,
    arXiv:2002.02798.

    A. Ghosh, H. S. Behl, E. Dupont, P. H. S. Torr, V. Namboodiri, "STEER:
    simple temporal regularization for neural ODEs", NeurIPS 2020,
    arXiv:2006.10711.
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
from torch import nn  # noqa: E402

import dynamicblocks as db  # noqa: E402

from _fit import fit, positive  # noqa: E402

CONFIGURATIONS = ("none", "kinetic", "jacobian", "kinetic+jacobian", "steer")
T_END = 1.0
STEPS = 4  # RK4 steps of the training grid
HIDDEN = 32
TRAIN_POINTS, TEST_POINTS, NOISE = 256, 1024, 0.1
MEASURE_REFINE = 8  # the kinetic energy and Jacobian norm: RK4 on a grid this much finer
MEASURE_PROBES = 32  # Hutchinson probes for the measured Jacobian norm
PLOTTED_POINTS = 160


def two_moons(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points of two interleaved half circles with Gaussian noise, and their classes."""
    y = torch.randint(0, 2, (n,), generator=generator)
    a = math.pi * torch.rand(n, generator=generator)
    upper = torch.stack([a.cos(), a.sin()], 1)
    lower = torch.stack([1.0 - a.cos(), 0.5 - a.sin()], 1)
    x = torch.where(y[:, None] == 0, upper, lower)
    return x + NOISE * torch.randn(n, 2, generator=generator), y


def make_data(seed: int) -> dict[str, torch.Tensor]:
    """The training and test sets, the same for every configuration of a seed."""
    generator = torch.Generator().manual_seed(seed)
    x_train, y_train = two_moons(TRAIN_POINTS, generator)
    x_test, y_test = two_moons(TEST_POINTS, generator)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


class Field(nn.Module):
    """The vector field ``f(u) = W2 tanh(W1 u + b1) + b2`` in the plane."""

    def __init__(self, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.Tanh(), nn.Linear(hidden, 2))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.net(u)


class ODEClassifier(nn.Module):
    """``x -> u(T) -> Linear(2, 2)``: a shared-weight RK4 block, then a linear readout."""

    def __init__(self, hidden: int = HIDDEN, steps: int = STEPS) -> None:
        super().__init__()
        grid = db.uniform_grid(0.0, T_END, steps)
        self.ode = db.DynamicBlock(Field(hidden), grid, scheme="rk4", t_theta=[0.0])
        self.readout = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.ode(x))


def weights(configuration: str, args: argparse.Namespace) -> tuple[float, float, float]:
    """The kinetic weight, Jacobian weight and STEER half-width of a configuration."""
    kinetic = args.kinetic if configuration in ("kinetic", "kinetic+jacobian") else 0.0
    jacobian = args.jacobian if configuration in ("jacobian", "kinetic+jacobian") else 0.0
    steer = args.steer if configuration == "steer" else 0.0
    return kinetic, jacobian, steer


def train(configuration: str, data: dict, args: argparse.Namespace) -> tuple[ODEClassifier, dict]:
    """Train one configuration from the seed's initial weights; return the model and fit."""
    kinetic, jacobian, steer = weights(configuration, args)
    torch.manual_seed(args.seed)  # the same initial weights for every configuration
    model = ODEClassifier()
    db.set_steer(model, steer)
    x, y = data["x_train"], data["y_train"]

    def loss() -> torch.Tensor:
        if not (kinetic or jacobian):
            return F.cross_entropy(model(x), y)
        with db.ode_regularizers(model, kinetic=bool(kinetic), probes=int(bool(jacobian))) as stats:
            logits = model(x)
        return F.cross_entropy(logits, y) + stats.loss(kinetic=kinetic, jacobian=jacobian)

    result = fit(
        loss,
        torch.optim.Adam(model.parameters(), lr=args.lr),
        args.iterations,
        args.log_every,
        prefix=f"{configuration:<16} ",
        metric="loss (with regularisers)",
        hint="try a smaller --lr or smaller weights",
    )
    return model, result


def measure(model: ODEClassifier, data: dict, rtol: float, atol: float) -> dict:
    """The trained model's losses, regularisers and adaptive work, in float64."""
    model = copy.deepcopy(model).double().eval()
    data = {k: v.double() if v.is_floating_point() else v for k, v in data.items()}
    x_test, y_test = data["x_test"], data["y_test"]
    fine = model.ode.remanifest(db.refine_grid(model.ode.t, MEASURE_REFINE))
    with torch.no_grad():
        train_loss = F.cross_entropy(model(data["x_train"]), data["y_train"]).item()
        test_loss = F.cross_entropy(model(x_test), y_test).item()
        solution = db.solve_adaptive(model.ode, x_test, rtol=rtol, atol=atol, scheme="dopri5")
        logits = model.readout(solution.y)
        with db.ode_regularizers(fine, kinetic=True, probes=MEASURE_PROBES) as stats:
            fine(x_test)
    return {
        "train_loss": train_loss,
        "test_loss": test_loss,
        "adaptive_test_loss": F.cross_entropy(logits, y_test).item(),
        "adaptive_test_accuracy": (logits.argmax(1) == y_test).double().mean().item(),
        "kinetic_energy": stats.kinetic_energy.item(),
        "jacobian_norm": stats.jacobian_norm.item(),
        "evaluations": solution.evaluations,
        "accepted": solution.accepted,
        "rejected": solution.rejected,
    }


COLUMNS = (
    ("configuration", "configuration", "{}"),
    ("train_loss", "train loss", "{:.3e}"),
    ("test_loss", "test loss", "{:.3e}"),
    ("adaptive_test_loss", "test loss (dopri5)", "{:.3e}"),
    ("adaptive_test_accuracy", "test accuracy (dopri5)", "{:.4f}"),
    ("kinetic_energy", "kinetic energy", "{:.3g}"),
    ("jacobian_norm", "Jacobian norm", "{:.3g}"),
    ("evaluations", "NFE (dopri5)", "{}"),
    ("accepted", "accepted", "{}"),
    ("rejected", "rejected", "{}"),
)


def table(rows: list[dict]) -> tuple[str, str]:
    """The rows as aligned text and as a markdown table."""
    header = [title for _, title, _ in COLUMNS]
    cells = [[form.format(row[key]) for key, _, form in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]

    def aligned(line: list[str]) -> str:
        first = line[0].ljust(widths[0])
        return "  ".join([first, *(cell.rjust(w) for cell, w in zip(line[1:], widths[1:]))])

    text = "\n".join([aligned(header), *(aligned(line) for line in cells)])
    rule = ["---", *("---:" for _ in header[1:])]
    markdown = "\n".join("| " + " | ".join(line) + " |" for line in [header, rule, *cells])
    return text, markdown + "\n"


def plot(models: dict[str, ODEClassifier], data: dict, rows: list[dict], path: Path) -> None:
    """The paths of test points under every trained flow (RK4 on the fine grid)."""
    x, y = data["x_test"][:PLOTTED_POINTS].double(), data["y_test"][:PLOTTED_POINTS]
    fig, axes = plt.subplots(1, len(models), figsize=(3.4 * len(models), 3.6))
    for ax, (name, model), row in zip(axes, models.items(), rows):
        block = copy.deepcopy(model.ode).double().eval()
        block.remanifest_(db.refine_grid(block.t, MEASURE_REFINE))
        with torch.no_grad():
            paths = block(x, return_trajectory=True)  # (steps + 1, N, 2)
        for label, color in ((0, "tab:blue"), (1, "tab:orange")):
            chosen = paths[:, y == label]
            ax.plot(chosen[..., 0], chosen[..., 1], "-", color=color, linewidth=0.5, alpha=0.5)
            ax.plot(chosen[0, :, 0], chosen[0, :, 1], ".", color=color, markersize=2)
            ax.plot(chosen[-1, :, 0], chosen[-1, :, 1], "o", color=color, mfc="none", markersize=3)
        ax.set_title(f"{name}\nNFE {row['evaluations']}", fontsize=9)
        ax.set_aspect("equal", adjustable="datalim")
        ax.tick_params(labelsize=7)
    fig.suptitle("paths of test points from x (dots) to u(T) (circles)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def steer_width(text: str) -> float:
    """An argparse type: STEER's half-width, a number in ``(0, T)``."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 < value < T_END:
        raise argparse.ArgumentTypeError(f"must be a number in (0, {T_END:g}), got {text!r}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--iterations", type=positive(int), default=1000, help="Adam steps (default 1000)")
    add("--lr", type=positive(float), default=1e-2, help="Adam learning rate (default 1e-2)")
    add("--kinetic", type=positive(float), default=0.01, help="kinetic energy weight (0.01)")
    add("--jacobian", type=positive(float), default=0.01, help="Jacobian norm weight (0.01)")
    add("--steer", type=steer_width, default=0.5, help="STEER half-width b in (0, 1) (0.5)")
    add("--rtol", type=positive(float), default=1e-6, help="dopri5 relative tolerance (1e-6)")
    add("--atol", type=positive(float), default=1e-6, help="dopri5 absolute tolerance (1e-6)")
    add("--seed", type=int, default=0, help="seed of the data and initial weights (0)")
    add("--threads", type=positive(int), default=1, help="torch CPU threads (default 1)")
    add("--log-every", type=positive(int), default=250, help="iterations between progress lines")
    add("--out", default="runs/regularized_ode", help="output directory (runs/regularized_ode)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run the example; return the results that are written to OUT/results.json."""
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)  # tiny tensors: one thread is the fastest
    start = time.perf_counter()
    try:
        data = make_data(args.seed)
        models, rows = {}, []
        for configuration in CONFIGURATIONS:
            began = time.perf_counter()
            model, result = train(configuration, data, args)
            row = {"configuration": configuration, **measure(model, data, args.rtol, args.atol)}
            kinetic, jacobian, steer = weights(configuration, args)
            row.update(
                kinetic_weight=kinetic,
                jacobian_weight=jacobian,
                steer=steer,
                final_objective=result["final_loss"],
                seconds=time.perf_counter() - began,
            )
            models[configuration] = model
            rows.append(row)
    except (FloatingPointError, db.StepSizeError) as error:
        raise SystemExit(f"error: {error}") from None
    finally:
        torch.set_num_threads(threads)
    text, markdown = table(rows)
    plot(models, data, rows, out / "trajectories.png")
    elapsed = time.perf_counter() - start
    results = {
        "settings": {
            "iterations": args.iterations,
            "lr": args.lr,
            "kinetic": args.kinetic,
            "jacobian": args.jacobian,
            "steer": args.steer,
            "rtol": args.rtol,
            "atol": args.atol,
            "seed": args.seed,
            "train_points": TRAIN_POINTS,
            "test_points": TEST_POINTS,
            "noise": NOISE,
            "hidden": HIDDEN,
            "t_end": T_END,
            "training_scheme": f"rk4, {STEPS} steps",
            "measure_refine": MEASURE_REFINE,
            "measure_probes": MEASURE_PROBES,
        },
        "rows": rows,
        "elapsed_seconds": elapsed,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "table.md").write_text(markdown)
    print()
    print(text)
    print(f"\n{len(rows)} configurations in {elapsed:.1f} s; output in {out}")
    return results


if __name__ == "__main__":
    main()
