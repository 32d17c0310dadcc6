"""Adaptive solves of the library against torchdiffeq's dopri5 and torchode's dopri5 and tsit5.

    python benchmarks/adaptive.py                          # CPU: about 2 minutes
    python benchmarks/adaptive.py --batches 1 --hidden 8 --repeats 1 --min-time 0   # smoke test

Two fields, each at batch 1 and batch 256 (``--batches``), tolerances
``rtol = atol * 100 = --rtol`` over ``t`` in ``[0, --horizon]``:

* ``spiral``: the cubic field ``du/dt = A u^3`` of the neural-ODE notes,
  ``A = [[-0.1, 2.0], [-2.0, -0.1]]``, from ``u0 = (2, 0)`` (batch copies
  perturbed by 1 %);
* ``mlp``: a shared-weight MLP ``x -> W2 tanh(W1 x + b1) + b2`` of 64 states and
  ``--hidden`` hidden units, weights N(0, 1 / fan_in).

Contenders, all in float64, without gradients (one solve per call):

* ``db``: ``solve_adaptive(DynamicBlock(field, (0, T), scheme, t_theta=(0,)), x,
  rtol, atol)``, for ``dopri5`` and ``tsit5``;
* ``torchdiffeq``: ``odeint(func, x, [0, T], method="dopri5", rtol, atol)``;
* ``torchode``: ``AutoDiffAdjoint(Dopri5 | Tsit5, IntegralController(atol, rtol))``
  with ``t_start = 0`` and ``t_end = T`` per sample (torchode's steps are per
  sample, so its evaluations count differently), if torchode is installed.

Each row gives the field evaluations, the largest error against a reference
(``dopri5`` of the library at ``rtol = 1e-12``, ``atol = 1e-14``), the median time
per solve and the ratio of the library's time to the peer's. Targets: the
evaluations within 10 % of torchdiffeq's, time <= 0.8x torchdiffeq's and
<= 1.0x torchode's.
"""

from __future__ import annotations

import argparse
import importlib.util

import torch
from torch import nn

import dynamicblocks as db

from _timing import interleaved_medians, set_threads, significant


class Spiral(nn.Module):
    """du/dt = A u^3, A = [[-0.1, 2.0], [-2.0, -0.1]]."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("a", torch.tensor([[-0.1, 2.0], [-2.0, -0.1]]))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return (u**3) @ self.a


class MLP(nn.Module):
    """x -> W2 tanh(W1 x + b1) + b2."""

    def __init__(self, features: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(features, hidden), nn.Tanh(), nn.Linear(hidden, features)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Counted(nn.Module):
    """A field that counts its evaluations (of the whole batch)."""

    def __init__(self, field: nn.Module) -> None:
        super().__init__()
        self.field, self.calls = field, 0

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.field(args[-1])


def problems(args: argparse.Namespace) -> list[tuple[str, int, nn.Module, torch.Tensor]]:
    out = []
    for batch in args.batches:
        generator = torch.Generator().manual_seed(batch)
        noise = torch.randn(batch, 2, generator=generator, dtype=torch.float64)
        out.append(
            ("spiral", batch, Spiral().double(), torch.tensor([2.0, 0.0]) * (1 + 0.01 * noise))
        )
        torch.manual_seed(0)
        field = MLP(64, args.hidden).double()
        x = torch.randn(batch, 64, generator=generator, dtype=torch.float64)
        out.append(("mlp", batch, field, x))
    return out


def contenders(field: nn.Module, x: torch.Tensor, args: argparse.Namespace) -> dict:
    horizon, rtol, atol = args.horizon, args.rtol, args.rtol / 100
    counted = Counted(field)
    runs = {}
    for scheme in ("dopri5", "tsit5"):
        block = db.DynamicBlock(counted, (0.0, horizon), scheme, t_theta=(0.0,))
        runs[f"db {scheme}"] = (
            lambda block=block: db.solve_adaptive(block, x, rtol=rtol, atol=atol).y,
            block.layers[0],
        )
    if importlib.util.find_spec("torchdiffeq"):
        import torchdiffeq

        peer = Counted(field)
        span = torch.tensor([0.0, horizon], dtype=torch.float64)
        runs["torchdiffeq dopri5"] = (
            lambda peer=peer: torchdiffeq.odeint(
                peer, x, span, method="dopri5", rtol=rtol, atol=atol
            )[-1],
            peer,
        )
    if importlib.util.find_spec("torchode"):
        import torchode

        for name in ("Dopri5", "Tsit5"):
            peer = Counted(field)
            term = torchode.ODETerm(peer)
            solver = torchode.AutoDiffAdjoint(
                getattr(torchode, name)(term=term),
                torchode.IntegralController(atol=atol, rtol=rtol, term=term),
            )
            start = torch.zeros(len(x), dtype=torch.float64)
            problem = torchode.InitialValueProblem(y0=x, t_start=start, t_end=start + horizon)
            runs[f"torchode {name.lower()}"] = (
                lambda solver=solver, problem=problem: solver.solve(problem).ys[:, -1],
                peer,
            )
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--horizon", type=float, default=10.0)
    parser.add_argument("--rtol", type=float, default=1e-7)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--min-time", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    set_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; float64, no gradients")
    print(
        f"t in [0, {args.horizon}], rtol {args.rtol:g}, atol {args.rtol / 100:g}; "
        "median ms per solve"
    )
    print(
        f"{'problem':<8}{'batch':>6}  {'contender':<20}{'evals':>7}{'error':>10}{'ms':>10}"
        f"{'db dopri5 / it':>16}{'db tsit5 / it':>15}"
    )
    for name, batch, field, x in problems(args):
        with torch.no_grad():
            reference_block = db.DynamicBlock(field, (0.0, args.horizon), "dopri5", t_theta=(0.0,))
            reference = db.solve_adaptive(reference_block, x, rtol=1e-12, atol=1e-14).y
            runs = contenders(field, x, args)
            figures = {}
            for label, (run, counter) in runs.items():
                counter.calls = 0
                y = run()
                figures[label] = (counter.calls, (y - reference).abs().max().item())
            times = interleaved_medians(
                {label: run for label, (run, _) in runs.items()}, args.repeats, 1, args.min_time
            )
        for label in runs:
            evaluations, error = figures[label]
            ratios = [times[f"db {scheme}"] / times[label] for scheme in ("dopri5", "tsit5")]
            print(
                f"{name:<8}{batch:>6}  {label:<20}{evaluations:>7}{error:>10.1e}"
                f"{significant(1000 * times[label]):>10}{ratios[0]:>16.3f}{ratios[1]:>15.3f}"
            )


if __name__ == "__main__":
    main()
