"""A ResNet against an implicit (trapezoidal) network with fewer layers: the two-spiral problem.

    python examples/implicit_spirals.py                   # CPU, 1 thread: about 2 min
    python examples/implicit_spirals.py --seeds 3 --iterations 2000
    python examples/implicit_spirals.py --layers-resnet 5 # the ResNet on the implicit net's step

The second problem of Reshniak & Webster, "Robust learning with implicit
residual networks" (arXiv:1905.10479): classify the two interleaved spirals,
the classic two-spiral set (Lang & Witbrock 1988; the parametrisation of the
authors' own spiral example; Haber & Ruthotto, "Stable architectures for deep
neural networks" (2017), use a two-spiral problem too). Spiral 0 has the 97
points ``r_i (sin a_i, cos a_i)``, ``a_i = i pi / 16``, ``r_i = 6.5 (104 - i) /
104``, ``i = 0..96``, spiral 1 their negatives. Every other point of each spiral
(odd ``i``) is held out for validation: 98 training points (49 per class), 96
validation points (48 per class).

Both networks are ``Linear(2, width) -> block -> Linear(width, 1)`` with the
tanh layer function ``f_k(x) = tanh(W_k x + b_k)`` (one set of weights per
step), Glorot-uniform weights and zero biases, float64, trained by full-batch
Adam on the binary cross-entropy of the sigmoid of the output (a logit; the
predicted class is ``logit > 0``). The block integrates ``dx/dt = f(x)`` over
the same horizon ``T`` (``--horizon``) with the theta-method of
:class:`~dynamicblocks.ImplicitBlock`:

* the ResNet: explicit Euler (``theta = 0``), ``--layers-resnet`` steps,
  ``x <- x + h f_k(x)``, ``h = T / L``;
* the implicit network: the trapezoidal rule (``theta = 1/2``),
  ``--layers-implicit`` steps (fewer), ``y = x + h/2 [f_k(x) + f_k(y)]``
  solved by Anderson fixed-point iteration (forward) and the implicit function
  theorem (backward).

Defaults, and why: ``T = 5``; the ResNet has 20 layers (``h = 0.25``), the
implicit network 5 (``h = 1``). With ``h = 1`` the fixed-point solves take
12-15 iterations on average, and about 2% of them stop at ``--max-iter`` with
some point unconverged; in a 2-seed trial at ``T = 10`` (``h = 2``, with the
solver of version 0.1.0) they took 22-25 on average, 3-4% stopped at
``--max-iter`` and the network reached only 93-94% training accuracy. Width
10, 1000 Adam steps at lr 1e-2 (enough for both networks to fit the training
spirals on most seeds), 5 seeds, no smoothness term (a run with it is in
docs/implicit_examples.md). The whole run takes about 4 minutes on one CPU
thread (``__main__`` sets one).

Everything goes to --out (default runs/implicit_spirals): boundary.png (the
decision regions of both networks, one panel per seed, training points as
dots and validation points as crosses, coloured by class), losses.png (training
and validation loss and accuracy against iteration, every seed) and
results.json (settings, per-seed and mean final train/validation loss and
accuracy, layers, parameter counts, the implicit block's solver statistics,
the histories).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from _implicit import (  # noqa: E402
    add_common_arguments,
    plot_histories,
    run_comparison,
    summary_table,
)

POINTS_PER_SPIRAL = 97
DEFAULTS = {
    "seeds": 5,
    "iterations": 1000,
    "lr": 1e-2,
    "width": 10,
    "layers_resnet": 20,
    "layers_implicit": 5,
    "horizon": 5.0,
    "smoothness": 0.0,
    "eval_every": 10,
    "log_every": 250,
    "out": "runs/implicit_spirals",
}
CLASS_COLORS = ("tab:blue", "tab:orange")


def two_spirals() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All 194 points ``(194, 2)``, labels ``(194, 1)`` (0. / 1.) and the index ``i`` on the spiral.

    Float64; spiral 0 first, then spiral 1 (the negatives of spiral 0).
    """
    i = torch.arange(POINTS_PER_SPIRAL, dtype=torch.float64)
    angle, radius = i * math.pi / 16, 6.5 * (104 - i) / 104
    spiral = torch.stack([radius * angle.sin(), radius * angle.cos()], dim=1)
    points = torch.cat([spiral, -spiral])
    labels = torch.cat([torch.zeros(POINTS_PER_SPIRAL), torch.ones(POINTS_PER_SPIRAL)])
    return points, labels.to(torch.float64)[:, None], torch.cat([i, i]).long()


def make_data() -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Training (even ``i``: 49 per class) and validation (odd ``i``: 48 per class) sets."""
    points, labels, index = two_spirals()
    train = index % 2 == 0
    return (points[train], labels[train]), (points[~train], labels[~train])


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The fraction of points whose class ``logit > 0`` is the label."""
    return ((logits > 0).to(labels.dtype) == labels).to(torch.float64).mean().item()


def plot_boundaries(networks: dict, models: dict, train, valid, path: Path) -> None:
    """Decision regions: one row per network, one column per seed."""
    (x, y), (xv, yv) = train, valid
    columns = len(next(iter(models.values())))
    fig, axes = plt.subplots(
        len(networks), columns, figsize=(3.2 * columns + 0.5, 3.6 * len(networks)), squeeze=False
    )
    grid = torch.linspace(-8.0, 8.0, 161, dtype=torch.float64)
    gx, gy = torch.meshgrid(grid, grid, indexing="xy")
    plane = torch.stack([gx.flatten(), gy.flatten()], dim=1)
    cmap = ListedColormap(["#c6dbef", "#fdd0a2"])
    for row, (name, net) in enumerate(networks.items()):
        for seed, model in enumerate(models[name]):
            ax = axes[row, seed]
            with torch.no_grad():
                regions = (model(plane) > 0).to(torch.float64).view(gx.shape)
            ax.contourf(gx, gy, regions, levels=[-0.5, 0.5, 1.5], cmap=cmap)
            for label, color in enumerate(CLASS_COLORS):
                tr, va = y[:, 0] == label, yv[:, 0] == label
                ax.plot(x[tr, 0], x[tr, 1], "o", ms=3, color=color)
                ax.plot(xv[va, 0], xv[va, 1], "x", ms=4, color=color)
            run = net["per_seed"][seed]
            acc = run["final_valid_accuracy"]
            shown = "diverged" if acc is None else f"valid acc {acc:.3f}"
            ax.set_title(f"{name} seed {seed}: {shown}", fontsize=9)
            ax.set_aspect("equal")
            ax.set_xticks([]), ax.set_yticks([])
        axes[row, 0].set_ylabel(net["label"], fontsize=8)
    handles = [
        plt.Line2D([], [], marker="o", ls="", color="gray", label="training point"),
        plt.Line2D([], [], marker="x", ls="", color="gray", label="validation point"),
        *[
            plt.Line2D([], [], marker="s", ls="", color=c, label=f"class {k}")
            for k, c in enumerate(CLASS_COLORS)
        ],
    ]
    fig.legend(handles=handles, loc="lower center", ncols=4, fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_arguments(parser, DEFAULTS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run the example; return the results that are written to OUT/results.json."""
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    train, valid = make_data()
    networks, models = run_comparison(
        args, train, valid, F.binary_cross_entropy_with_logits, act="tanh", accuracy=accuracy
    )
    plot_boundaries(networks, models, train, valid, out / "boundary.png")
    plot_histories(networks, out / "losses.png", "BCE")
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    results = {
        "problem": "two spirals (97 points each), every other point held out",
        "settings": settings,
        "activation": "tanh",
        "loss": "binary cross-entropy with logits",
        "dtype": "float64",
        "train_points": len(train[0]),
        "valid_points": len(valid[0]),
        "networks": networks,
        "elapsed_seconds": time.perf_counter() - start,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(summary_table(networks, "BCE", accuracy=True))
    print(f"{results['elapsed_seconds']:.1f} s; output in {out}")
    return results


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
