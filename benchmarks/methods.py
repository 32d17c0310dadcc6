"""IMEX against explicit Euler, Adams-Bashforth against RK4, and the memory of multistep blocks.

    python benchmarks/methods.py                         # CPU: about 2 minutes
    python benchmarks/methods.py --batch-size 2 --channels 4 --size 8 --features 4 --hidden 8 \\
        --mlp-batch 8 --reference-steps 256 --memory-steps 1 3 9 16 --repeats 1 --warmup 0 \\
        --min-time 0                                     # smoke test, a few seconds

Three tables, each against a baseline measured in the same run:

1. **IMEX step against an explicit Euler step of the same field.** The field
   is ``DoubleSymLayer(C)`` (``-K^T relu(BN(K x + b)) - b_t``, 3x3, batch
   norm), on CIFAR-shaped states ``(--batch-size, C, --size, --size)`` for
   every ``C`` in ``--channels``. One step of size 1 (``t = (0, 1)``) of
   ``DynamicBlock(scheme="euler")``, of ``IMEXBlock(scheme="imex_euler")``
   with ``ConvOperator(C, 3)`` (``x + h f(x)`` then one FFT solve
   ``(I + h L)^{-1}``) and of ``IMEXBlock(scheme="ars222")`` (two field
   evaluations and two solves, for information), all built from the same
   prototype layer, hence with the same field weights. ``fwd ms``: forward
   pass without gradients in eval mode; ``train ms``: forward and backward
   (``y.backward(g)`` for a fixed ``g``) in training mode. Medians of
   ``--repeats`` interleaved samples; ratios to Euler's at the same ``C``.
   Target: ``imex_euler`` at most 1.5x Euler.

2. **Adams-Bashforth against RK4 at a given accuracy.** A smooth
   shared-weight field (one control, ``t_theta = (0,)``):
   ``MLP(--features, --hidden, depth=2, act="tanh")`` with weights
   ``N(0, gain^2 / fan_in)`` and zero biases, float64, a batch of
   ``--mlp-batch`` standard normal states, integrated over
   ``[0, --horizon]`` on uniform grids. The reference is RK4 on
   ``--reference-steps`` steps (its distance to RK4 on half as many steps is
   printed). For each scheme, the smallest number of steps ``N`` whose largest
   absolute error at ``t = T`` is at most ``--tolerance`` is found by doubling
   then bisection (``N - 1`` steps miss it; ``--max-steps`` at most). The
   table gives ``N``, the field evaluations (counted by a hook), the error, the
   error with RK4's ``N`` (its ratio to RK4's error is, asymptotically, the
   ratio of the error constants) and the median time of a forward pass
   without gradients at that ``N``, all schemes interleaved, with its ratio to
   RK4's. Target: ``ab4`` at most 0.5x RK4's time.

3. **What a multistep block saves for backward.** The field and batch of table
   2, ``ab1`` to ``ab4`` with ``N`` in ``--memory-steps``, in
   ``memory="checkpoint"`` and ``"full"``: the distinct non-parameter storages
   autograd keeps after the forward pass (``saved_tensors_hooks``) and their
   bytes, also in units of the state ``x`` (``states``). Exact, not timed. A
   checkpointed segment (``ceil(sqrt(N))`` steps) keeps its input state, ``x``
   and the slopes carried (``min(k, s - 1)`` at step ``k`` for ``ab<s>``); full
   mode keeps every evaluation's input and hidden activation.
"""

from __future__ import annotations

import argparse
import copy
import functools
import math

import torch
from torch import nn

import dynamicblocks as db

from _timing import interleaved_medians, set_threads, significant

IMEX_SCHEMES = ("euler", "imex_euler", "ars222")


# ---------------------------------------------------------------- table 1: IMEX


def imex_blocks(channels: int) -> dict[str, nn.Module]:
    """One step of size 1 of each scheme, all with the same field weights."""
    layer, operator, t = db.DoubleSymLayer(channels), db.ConvOperator(channels, 3), (0.0, 1.0)
    return {
        "euler": db.DynamicBlock(layer, t, scheme="euler"),
        "imex_euler": db.IMEXBlock(layer, operator, t, scheme="imex_euler"),
        "ars222": db.IMEXBlock(layer, operator, t, scheme="ars222"),
    }


def forward_no_grad(block: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        block(x)


def forward_backward(block: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> None:
    block(x).backward(grad)


def imex_table(args: argparse.Namespace) -> None:
    print(
        f"1. one step (h = 1) of DoubleSymLayer(C) on ({args.batch_size}, C, {args.size}, "
        f"{args.size}) float32;\nimex: ConvOperator(C, 3), FFT solve; median ms, ratio to euler"
    )
    ratio = "x euler"
    print(f"{'channels':>8} {'scheme':<11} {'fwd ms':>9} {ratio:>8} {'train ms':>9} {ratio:>8}")
    for channels in args.channels:
        torch.manual_seed(0)
        blocks = imex_blocks(channels)
        x = torch.randn(args.batch_size, channels, args.size, args.size)
        grad = torch.randn_like(x)
        runs = {}
        for scheme, block in blocks.items():
            runs[scheme, "fwd"] = functools.partial(forward_no_grad, copy.deepcopy(block).eval(), x)
            runs[scheme, "train"] = functools.partial(forward_backward, block.train(), x, grad)
        times = interleaved_medians(runs, args.repeats, warmup=args.warmup)
        for scheme in IMEX_SCHEMES:
            cells = []
            for task in ("fwd", "train"):
                seconds, base = times[scheme, task], times["euler", task]
                cells.append(f"{significant(1e3 * seconds):>9} {seconds / base:>8.3f}")
            print(f"{channels:>8} {scheme:<11} {' '.join(cells)}")


# ----------------------------------------------------- table 2: Adams-Bashforth


def mlp_field(features: int, hidden: int, gain: float, seed: int = 0) -> db.MLP:
    """A float64 tanh MLP with ``N(0, gain^2 / fan_in)`` weights and zero biases."""
    torch.manual_seed(seed)
    field = db.MLP(features, hidden, depth=2, act="tanh").double()
    with torch.no_grad():
        for module in field.net:
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, gain / math.sqrt(module.in_features))
                nn.init.zeros_(module.bias)
    return field


def ode_block(
    field: nn.Module, scheme: str, steps: int, horizon: float, memory: str = "full"
) -> nn.Module:
    """``steps`` uniform steps of ``scheme`` over ``[0, horizon]``, one shared control."""
    t = db.uniform_grid(0.0, horizon, steps)
    if scheme in db.ADAMS_BASHFORTH:
        return db.MultistepBlock(field, t, scheme=scheme, t_theta=(0.0,), memory=memory)
    return db.DynamicBlock(field, t, scheme=scheme, t_theta=(0.0,), memory=memory)


def solve(field: nn.Module, scheme: str, steps: int, horizon: float, x: torch.Tensor):
    with torch.no_grad():
        return ode_block(field, scheme, steps, horizon)(x)


def evaluations(block: nn.Module, x: torch.Tensor) -> int:
    """Field evaluations of one forward pass, counted by hooks on the block's layers."""
    count = [0]

    def tick(*_: object) -> None:
        count[0] += 1

    handles = [layer.register_forward_pre_hook(tick) for layer in block.layers]
    with torch.no_grad():
        block(x)
    for handle in handles:
        handle.remove()
    return count[0]


def fewest_steps(error, tolerance: float, max_steps: int) -> int | None:
    """Smallest ``n`` with ``error(n) <= tolerance`` while ``error(n - 1)`` is not (or ``n = 1``).

    Doubling from 1, then bisection; ``None`` if ``max_steps`` steps are not enough.
    """
    high = 1
    while error(high) > tolerance:
        if high >= max_steps:
            return None
        high = min(2 * high, max_steps)
    low = high // 2  # fails (or is 0)
    while high - low > 1:
        middle = (low + high) // 2
        if error(middle) <= tolerance:
            high = middle
        else:
            low = middle
    return high


def multistep_table(args: argparse.Namespace) -> None:
    field = mlp_field(args.features, args.hidden, args.gain)
    torch.manual_seed(1)
    x = torch.randn(args.mlp_batch, args.features, dtype=torch.float64)
    horizon, tolerance = args.horizon, args.tolerance
    reference = solve(field, "rk4", args.reference_steps, horizon, x)
    half = solve(field, "rk4", args.reference_steps // 2, horizon, x)
    moved = float((reference - x).norm() / x.norm())
    print(
        f"2. MLP({args.features}, {args.hidden}, tanh), gain {args.gain}, batch {args.mlp_batch}, "
        f"float64, t in [0, {horizon}], |x(T) - x(0)| / |x(0)| = {moved:.2f};\n"
        f"reference: rk4, {args.reference_steps} steps (differs from "
        f"{args.reference_steps // 2} steps by {float((reference - half).abs().max()):.1e});\n"
        f"fewest steps with largest absolute error <= {tolerance:.0e}; forward without "
        f"gradients, median ms"
    )

    def error(scheme: str, steps: int) -> float:
        return float((solve(field, scheme, steps, horizon, x) - reference).abs().max())

    schemes = ["rk4", *(s for s in args.schemes if s != "rk4")]
    found = {
        s: fewest_steps(functools.partial(error, s), tolerance, args.max_steps) for s in schemes
    }
    if found["rk4"] is None:
        raise SystemExit(f"rk4 does not reach {tolerance} within {args.max_steps} steps")
    blocks = {s: ode_block(field, s, n, horizon) for s, n in found.items() if n is not None}
    runs = {s: functools.partial(forward_no_grad, block, x) for s, block in blocks.items()}
    times = interleaved_medians(runs, args.repeats, warmup=args.warmup, min_time=args.min_time)
    print(
        f"{'scheme':<7} {'steps':>6} {'evals':>6} {'error':>8} {'error at rk4 N':>14} "
        f"{'ms':>9} {'x rk4':>7}"
    )
    for scheme in schemes:
        steps = found[scheme]
        at_rk4 = error(scheme, found["rk4"])
        if steps is None:
            print(f"{scheme:<7} {'>' + str(args.max_steps):>6} {'-':>6} {'-':>8} {at_rk4:>14.1e}")
            continue
        block = blocks[scheme]
        print(
            f"{scheme:<7} {steps:>6} {evaluations(block, x):>6} {error(scheme, steps):>8.1e} "
            f"{at_rk4:>14.1e} {significant(1e3 * times[scheme]):>9} "
            f"{times[scheme] / times['rk4']:>7.3f}"
        )


# ---------------------------------------------------------------- table 3: memory


def saved_storages(block: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """Distinct non-parameter storages (count, bytes) saved for backward by ``block(x)``."""
    parameters = {p.untyped_storage().data_ptr() for p in block.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters and storage.nbytes():
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = block(x)
    assert output.requires_grad
    return len(storages), sum(storages.values())


def memory_table(args: argparse.Namespace) -> None:
    field = mlp_field(args.features, args.hidden, args.gain)
    torch.manual_seed(1)
    x = torch.randn(args.mlp_batch, args.features, dtype=torch.float64)
    state = x.numel() * x.element_size()
    print(
        f"3. saved for backward by a forward pass, field and batch of table 2;\n"
        f"x: {significant(state / 2**20)} MB; states = bytes / bytes of x"
    )
    print(
        f"{'scheme':<6} {'steps':>5} {'segments':>8} {'mode':<10} {'storages':>8} {'states':>8} "
        f"{'MB':>9}"
    )
    for scheme in db.ADAMS_BASHFORTH:
        for steps in args.memory_steps:
            segments = math.ceil(steps / (math.isqrt(steps - 1) + 1))
            for mode in ("checkpoint", "full"):
                count, nbytes = saved_storages(ode_block(field, scheme, steps, 1.0, mode), x)
                print(
                    f"{scheme:<6} {steps:>5} {segments if mode == 'checkpoint' else '-':>8} "
                    f"{mode:<10} {count:>8} {nbytes / state:>8g} {significant(nbytes / 2**20):>9}"
                )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", choices=("imex", "multistep", "memory"),
                        default=["imex", "multistep", "memory"])  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=128, help="table 1's batch")
    parser.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--size", type=int, default=32, help="table 1's image side")
    parser.add_argument("--features", type=int, default=64, help="the MLP's state dimension")
    parser.add_argument("--hidden", type=int, default=256, help="the MLP's hidden width")
    parser.add_argument("--gain", type=float, default=1.0, help="the MLP's weight scale")
    parser.add_argument("--mlp-batch", type=int, default=512)
    parser.add_argument("--horizon", type=float, default=2.0, help="T, for t in [0, T]")
    parser.add_argument("--tolerance", type=float, default=1e-6)
    parser.add_argument("--schemes", nargs="+", default=["rk4", "ab4", "ab3"])
    parser.add_argument("--reference-steps", type=int, default=4096)
    parser.add_argument("--max-steps", type=int, default=8192, help="search limit of table 2")
    parser.add_argument("--memory-steps", type=int, nargs="+", default=[4, 16, 64, 256])
    parser.add_argument("--repeats", type=int, default=15, help="interleaved samples per timing")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--min-time", type=float, default=0.1, help="seconds per sample, table 2")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if min(args.memory_steps) < 1 or args.reference_steps < 2:
        parser.error("--memory-steps must be positive and --reference-steps at least 2")
    set_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    tables = {"imex": imex_table, "multistep": multistep_table, "memory": memory_table}
    for name in args.tables:
        print()
        tables[name](args)


if __name__ == "__main__":
    main()
