"""Work against precision of every scheme, on fixed grids and adaptively, on the cubic spiral.

    python examples/work_precision.py                      # CPU, a few seconds
    python examples/work_precision.py --out runs/work_precision

The true spiral field ``du/dt = A u^3`` of ``examples/spiral_ode.py`` is
integrated over ``[0, 1.5]`` from ``u(0) = (2, 0)`` in float64, and the error at
``t = 1.5`` against a tight reference (``dopri5`` at ``rtol = 1e-13``) is
plotted against the field evaluations it took:

* every scheme of :data:`dynamicblocks.TABLEAUS` on uniform grids of
  ``4, 8, ..., 2^--levels`` steps (the evaluations of a fixed grid: the live
  stages per step times the steps);
* every embedded pair solved adaptively (:func:`~dynamicblocks.solve_adaptive`)
  at ``rtol = atol = 1e-2, 1e-3, ...`` down to 1e-6 (``heun_euler``), 1e-8
  (``bosh3``) and 1e-10 (the fifth-order pairs).

Everything goes to --out (default runs/work_precision): work_precision.png and
results.json (every point: scheme, mode, steps or tolerance, evaluations, error).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import dynamicblocks as db  # noqa: E402

from _fit import positive  # noqa: E402

A_TRUE = ((-0.1, 2.0), (-2.0, -0.1))
T_END = 1.5


class Spiral(nn.Module):
    """``du/dt = A u^3``, counting its evaluations."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("a", torch.tensor(A_TRUE, dtype=torch.float64))
        self.calls = 0

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return (u**3) @ self.a.T


def measure(levels: int) -> list[dict]:
    """Every point of the plot: scheme, mode, setting, evaluations, error."""
    u0 = torch.tensor([[2.0, 0.0]], dtype=torch.float64)
    points = []
    with torch.no_grad():
        reference_block = db.DynamicBlock(Spiral(), (0.0, T_END), "dopri5", t_theta=(0.0,))
        reference = db.solve_adaptive(reference_block, u0, rtol=1e-13, atol=1e-13).y
        for name in db.TABLEAUS:
            for level in range(2, levels + 1):
                steps = 2**level
                block = db.DynamicBlock(
                    Spiral(), db.uniform_grid(0.0, T_END, steps), name, t_theta=(0.0,)
                )
                field = block.layers[0]
                field.calls = 0
                error = (block(u0) - reference).abs().max().item()
                points.append(
                    {"scheme": name, "mode": "fixed", "steps": steps,
                     "evaluations": field.calls, "error": error}
                )  # fmt: skip
        for name, tableau in db.TABLEAUS.items():
            if not tableau.embedded:
                continue
            block = db.DynamicBlock(Spiral(), (0.0, T_END), name, t_theta=(0.0,))
            finest = {2: 6, 3: 8}.get(tableau.order, 10)  # low orders: too many steps beyond
            for exponent in range(2, finest + 1):
                tol = 10.0**-exponent
                solution = db.solve_adaptive(block, u0, rtol=tol, atol=tol)
                points.append(
                    {"scheme": name, "mode": "adaptive", "tolerance": tol,
                     "evaluations": solution.evaluations,
                     "error": (solution.y - reference).abs().max().item()}
                )  # fmt: skip
    return points


def plot(points: list[dict], path: Path) -> None:
    """Error against evaluations: fixed grids dashed, adaptive solves solid."""
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for i, name in enumerate(db.TABLEAUS):
        color = plt.cm.tab20(i % 20)
        for mode, style in (("fixed", "--"), ("adaptive", "-o")):
            chosen = [  # diverged coarse grids are left out of the plot
                p for p in points if p["scheme"] == name and p["mode"] == mode and p["error"] < 10
            ]
            if chosen:
                label = f"{name} ({mode})" if mode == "adaptive" else name
                ax.loglog(
                    [p["evaluations"] for p in chosen],
                    [max(p["error"], 1e-16) for p in chosen],
                    style, color=color, label=label, markersize=3, linewidth=1,
                )  # fmt: skip
    ax.set(
        ylim=(1e-13, 10),
        xlabel="field evaluations",
        ylabel="error at t = 1.5",
        title="cubic spiral: work against precision (dashed: fixed grids)",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncols=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the example; return the points written to OUT/results.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--levels", type=positive(int), default=10, help="fixed grids of 4 .. 2^levels steps"
    )
    parser.add_argument("--out", default="runs/work_precision", help="output directory")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    points = measure(args.levels)
    plot(points, out / "work_precision.png")
    (out / "results.json").write_text(json.dumps(points, indent=2) + "\n")
    for point in points:
        if point["mode"] == "adaptive":
            print(
                f"{point['scheme']:<11} rtol = atol = {point['tolerance']:.0e}: "
                f"{point['evaluations']:>6} evaluations, error {point['error']:.2e}"
            )
    print(f"{len(points)} points; output in {out}")
    return points


if __name__ == "__main__":
    main()
