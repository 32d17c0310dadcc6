"""A ResNet against an implicit (trapezoidal) network with fewer layers: fit sin x from 20 points.

    python examples/implicit_1d.py                        # CPU, 1 thread: about 80 s
    python examples/implicit_1d.py --seeds 10 --iterations 2000
    python examples/implicit_1d.py --layers-resnet 5      # the ResNet on the implicit net's step

The first problem of Reshniak & Webster, "Robust learning with implicit
residual networks" (arXiv:1905.10479): approximate ``sin x`` on ``[-5, 5]`` from
20 training points drawn uniformly at random (``--data-seed``, the same points
for every seed and both networks); the validation set is 1000 points on a
uniform grid of ``[-5, 5]``.

Both networks are ``Linear(1, width) -> block -> Linear(width, 1)`` with the
ReLU layer function ``f_k(x) = relu(W_k x + b_k)`` (one set of weights per step),
Glorot-uniform weights and zero biases, float64, trained by full-batch Adam on
the mean squared error. The block integrates ``dx/dt = f(x)`` over the same
horizon ``T`` (``--horizon``) with the theta-method of
:class:`~dynamicblocks.ImplicitBlock`:

* the ResNet: explicit Euler (``theta = 0``), ``--layers-resnet`` steps,
  ``x <- x + h f_k(x)``, ``h = T / L``;
* the implicit network: the trapezoidal rule (``theta = 1/2``),
  ``--layers-implicit`` steps (fewer), ``y = x + h/2 [f_k(x) + f_k(y)]``
  solved by Anderson fixed-point iteration (forward) and the implicit function
  theorem (backward).

Defaults, and why: ``T = 5``; the ResNet has 20 layers (``h = 0.25``), the
implicit network 5 (``h = 1``), so the implicit network has a quarter of the
layers and of the block's parameters. With ``h = 1`` its fixed-point solves
converge in about 7 iterations; at ``T = 20`` (``h = 4``) a quarter of them
stop at ``--max-iter`` and 4 of 5 seeds fail to fit (docs/implicit_examples.md).
Width 8, 1000 Adam steps at lr 1e-2 (the validation losses are flat after
about 300), 5 seeds, no smoothness term (``--smoothness 0``; a run with it is
in the doc).
The whole run takes about 80 s on one CPU thread (``__main__`` sets one).

Everything goes to --out (default runs/implicit_1d): fits.png (each network's
fits for every seed against ``sin x`` and the training points), losses.png
(training and validation MSE against iteration, every seed, one panel per
network) and results.json (settings, per-seed and mean final train/validation
MSE, layers, parameter counts, the implicit block's forward and backward solver
statistics, the loss histories).
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

from _fit import positive  # noqa: E402
from _implicit import (  # noqa: E402
    add_common_arguments,
    plot_histories,
    run_comparison,
    summary_table,
)

DOMAIN = (-5.0, 5.0)
DEFAULTS = {
    "seeds": 5,
    "iterations": 1000,
    "lr": 1e-2,
    "width": 8,
    "layers_resnet": 20,
    "layers_implicit": 5,
    "horizon": 5.0,
    "smoothness": 0.0,
    "eval_every": 10,
    "log_every": 250,
    "out": "runs/implicit_1d",
}
COLORS = {"resnet": "tab:red", "implicit": "tab:blue"}


def make_data(
    num_train: int = 20, num_valid: int = 1000, seed: int = 0
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """``(x, sin x)`` for training (uniform random) and validation (grid), ``(N, 1)`` float64."""
    generator = torch.Generator().manual_seed(seed)
    low, high = DOMAIN
    x = low + (high - low) * torch.rand(num_train, 1, generator=generator, dtype=torch.float64)
    x_valid = torch.linspace(low, high, num_valid, dtype=torch.float64)[:, None]
    return (x, torch.sin(x)), (x_valid, torch.sin(x_valid))


def plot_fits(networks: dict, models: dict, train, valid, path: Path) -> None:
    """One panel per network: its fit for every seed, ``sin x`` and the training points."""
    (x, y), (xv, yv) = train, valid
    fig, axes = plt.subplots(1, len(networks), figsize=(12, 4.5), sharey=True)
    for ax, (name, net) in zip(axes, networks.items()):
        ax.plot(xv[:, 0], yv[:, 0], "-", color="black", lw=2, label="sin x")
        for seed, model in enumerate(models[name]):
            with torch.no_grad():
                prediction = model(xv)[:, 0]
            label = "fits (one per seed)" if seed == 0 else None
            ax.plot(xv[:, 0], prediction, "-", color=COLORS[name], lw=1, alpha=0.7, label=label)
        ax.plot(x[:, 0], y[:, 0], "o", color="black", mfc="white", label="training points")
        ax.set(xlabel="x", title=f"{net['label']}\nmean valid MSE {fmt_mean(net)}")
        ax.legend(fontsize=8, loc="lower left")
    axes[0].set_ylabel("y")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def fmt_mean(net: dict) -> str:
    value = net["mean_valid_loss"]
    return "n/a" if value is None else f"{value:.3g}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_arguments(parser, DEFAULTS)
    parser.add_argument(
        "--train-points", type=positive(int), default=20, help="training points (default 20)"
    )
    parser.add_argument(
        "--valid-points", type=positive(int), default=1000, help="validation grid (default 1000)"
    )
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the training points")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run the example; return the results that are written to OUT/results.json."""
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    train, valid = make_data(args.train_points, args.valid_points, args.data_seed)
    networks, models = run_comparison(args, train, valid, F.mse_loss, act="relu")
    plot_fits(networks, models, train, valid, out / "fits.png")
    plot_histories(networks, out / "losses.png", "MSE")
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    results = {
        "problem": "sin x on [-5, 5]",
        "settings": settings,
        "activation": "relu",
        "loss": "mse",
        "dtype": "float64",
        "networks": networks,
        "elapsed_seconds": time.perf_counter() - start,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(summary_table(networks, "MSE"))
    print(f"{results['elapsed_seconds']:.1f} s; output in {out}")
    return results


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
