"""The library's block against the fixed-grid solvers of torchdiffeq and torchdyn.

    python benchmarks/ode_libraries.py                       # both sizes, ~3 min on 2 CPU cores
    python benchmarks/ode_libraries.py --sizes small --steps 2 --repeats 1   # smoke test

One vector field, a shared-weight MLP ``x -> W2 tanh(W1 x + b1) + b2``, is
integrated over the same non-uniform 20-step grid by every contender:

* ``DynamicBlock(field, t, scheme, t_theta=t[:1])`` (one control: shared weights),
  eager and under ``torch.compile(fullgraph=True)``, with inductor's default
  Python wrapper and with ``options={"cpp_wrapper": True}`` (which calls the
  kernels from C++: on tiny tensors the per-kernel Python call is the cost);
* ``torchdiffeq.odeint(func, x, t, method=...)`` (its fixed-grid solvers step on
  the given ``t``);
* ``torchdyn.core.NeuralODE(field, solver=...)`` (the same, through ``t_span``).

The schemes are matched tableau for tableau: Euler everywhere; torchdiffeq's
``rk4`` is the 3/8 rule (the library's ``rk4_38``), torchdyn's ``rk4`` the
classic one (the library's ``rk4``). Before any time counts, each pair must agree
on the final state and on every parameter gradient. Timed: forward, a scalar
loss of the final state, backward. Contenders are interleaved, in alternating
order; each repeat runs a call enough times to last ``--min-time`` seconds. The
table shows the median time per call and the ratio library / peer.

Targets (issue 4): library / torchdiffeq <= 0.7 (small) and <= 0.9 (medium)
eager, and <= 0.35 (small) for the compiled block. The compiled contenders run
in the torchdiffeq rows only (one compilation per size and scheme).
"""

from __future__ import annotations

import argparse
import functools
import importlib
from collections.abc import Callable

import torch
from torch import nn

import dynamicblocks as db

from _timing import interleaved_medians, set_threads

SIZES = {  # name: (state, hidden, batch)
    "small": (2, 50, 16),
    "medium": (64, 128, 256),
}
STEPS = 20
COMPILED = {  # column: torch.compile keyword arguments besides fullgraph=True
    "comp": {},  # inductor's default Python wrapper
    "cpp": {"options": {"cpp_wrapper": True}},
}
PEER_MODULES = {"torchdiffeq": "torchdiffeq", "torchdyn": "torchdyn.core"}
# (peer, peer's method, the library's matching tableau)
PAIRS = (
    ("torchdiffeq", "euler", "euler"),
    ("torchdiffeq", "rk4", "rk4_38"),
    ("torchdyn", "euler", "euler"),
    ("torchdyn", "rk4", "rk4"),
)


def nonuniform_grid(steps: int) -> tuple[float, ...]:
    """``t_k = (k / n)^1.5`` on [0, 1]: steps grow from 0.011 to 0.074 for n = 20."""
    return tuple((k / steps) ** 1.5 for k in range(steps + 1))


def importable(peer: str) -> bool:
    """Whether ``peer`` imports (a broken torchvision breaks torchdyn with any error)."""
    try:
        importlib.import_module(PEER_MODULES[peer])
    except Exception:
        return False
    return True


def make_field(state: int, hidden: int) -> nn.Module:
    return db.MLP(state, hidden, depth=2, act="tanh")


class TimeField(nn.Module):
    """``(t, x) -> field(x)``: the signature torchdiffeq and torchdyn call."""

    def __init__(self, field: nn.Module) -> None:
        super().__init__()
        self.field = field

    def forward(self, t: torch.Tensor, x: torch.Tensor, args: dict | None = None) -> torch.Tensor:
        return self.field(x)  # ``args``: torchdyn passes its solver arguments


def peer_solver(peer: str, method: str, field: nn.Module, grid: tuple[float, ...]) -> Callable:
    """A callable ``x -> final state`` solving with the peer library on ``grid``."""
    t = torch.tensor(grid)
    if peer == "torchdiffeq":
        from torchdiffeq import odeint

        func = TimeField(field)
        return lambda x: odeint(func, x, t, method=method)[-1]
    from torchdyn.core import NeuralODE

    node = NeuralODE(TimeField(field), solver=method, sensitivity="autograd", return_t_eval=False)
    return lambda x: node(x, t)[-1]


def forward_backward(solve: Callable, field: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One timed call: solve, reduce to a scalar, backpropagate into the field."""
    for p in field.parameters():
        p.grad = None
    out = solve(x)
    out.square().mean().backward()
    return out


def disagreement(a: Callable, b: Callable, field: nn.Module, x: torch.Tensor) -> float:
    """Largest relative difference of final states and parameter gradients."""
    results = []
    for solve in (a, b):
        out = forward_backward(solve, field, x).detach()
        results.append([out] + [p.grad.clone() for p in field.parameters()])
    return max(
        ((u - v).abs().max() / v.abs().max().clamp_min(1e-30)).item() for u, v in zip(*results)
    )


def bench_size(size: str, peers: list[str], args: argparse.Namespace) -> None:
    """Time every pair whose peer is in ``peers`` at one size and print its row."""
    state, hidden, batch = SIZES[size]
    torch.manual_seed(0)
    grid = nonuniform_grid(args.steps)
    field = make_field(state, hidden)
    x = torch.randn(batch, state)
    for peer, method, scheme in PAIRS:
        if peer not in peers:
            continue
        block = db.DynamicBlock(field, grid, scheme=scheme, t_theta=grid[:1])
        shared = block.layers[0]  # the block's own copy: every contender uses it
        peer_solve = peer_solver(peer, method, shared, grid)
        runs = {"lib": block, peer: peer_solve}
        if args.compile and peer == "torchdiffeq":
            for column, options in COMPILED.items():
                runs[column] = torch.compile(block, fullgraph=True, **options)
        worst = max(disagreement(run, peer_solve, shared, x) for run in runs.values())
        if worst > args.tolerance:
            raise SystemExit(f"{size} {peer} {method}: disagreement {worst:.1e}; not timing")
        calls = {k: functools.partial(forward_backward, run, shared, x) for k, run in runs.items()}
        times = interleaved_medians(calls, args.repeats, min_time=args.min_time)
        cells = f"{size:<7} {peer + ' ' + method:<18} {scheme:<7} {worst:>8.0e}"
        cells += f" {1e3 * times[peer]:>9.3f}"
        for column in ("lib", *COMPILED):
            if column in times:
                cells += f" {1e3 * times[column]:>9.3f} {times[column] / times[peer]:>7.3f}"
        print(cells, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--steps", type=int, default=STEPS, help="steps of the grid")
    parser.add_argument("--repeats", type=int, default=21, help="timed repeats per contender")
    parser.add_argument("--min-time", type=float, default=0.1, help="seconds per repeat")
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="skip the torch.compile(fullgraph=True) contender")  # fmt: skip
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest relative disagreement allowed before timing")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    print(
        f"{args.steps}-step non-uniform grid, forward+backward, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; times in ms per call, ratio = library / peer"
    )
    peers = [peer for peer in PEER_MODULES if importable(peer)]
    for missing in sorted(set(PEER_MODULES) - set(peers)):
        print(f"{missing} does not import here: its rows are left out")
    header = f"{'size':<7} {'peer':<18} {'scheme':<7} {'agree':>8} {'peer ms':>9}"
    for column in ("lib", *(COMPILED if args.compile else ())):
        header += f" {column + ' ms':>9} {'ratio':>7}"
    print(header, flush=True)
    for size in args.sizes:
        bench_size(size, peers, args)


if __name__ == "__main__":
    main()
