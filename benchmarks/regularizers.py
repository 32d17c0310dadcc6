"""The cost of the neural-ODE regularisers per training step, against the same step without them.

    python benchmarks/regularizers.py                    # CPU: one or two minutes
    python benchmarks/regularizers.py --threads 1        # steadier on a busy machine
    python benchmarks/regularizers.py --batch-size 2 --widths 4 8 8 --features 2 --hidden 8 \\
        --mlp-batch 8 --mlp-steps 2 --repeats 1 --warmup 0 --min-time 0  # smoke test, seconds

One training step is a forward pass, the loss, a backward pass and an Adam
step (``--lr``). Its variants, all of one network interleaved, each on its own
copy of the same initial weights:

* ``none``: the task loss only, no :func:`~dynamicblocks.ode_regularizers`
  (the baseline);
* ``kinetic``: inside ``ode_regularizers(model, kinetic=True)``, the loss plus
  ``--kinetic-weight`` times the kinetic energy (taken from the evaluations the
  solve makes anyway);
* ``kinetic+<p>probe``: inside ``ode_regularizers(model, kinetic=True,
  probes=p)`` for every ``p`` in ``--probes``, the loss plus the kinetic term
  and ``--jacobian-weight`` times Hutchinson's estimate of the Jacobian's
  Frobenius norm: ``p`` vector-Jacobian products per evaluation, made with
  ``create_graph``, so that backward differentiates them once more.

The networks (``--networks``), all with ``memory="full"``, which the
regularisers need:

* ``conv``: a CIFAR-shaped network, ``--conv`` (``rknet``: three RK4 blocks of
  four steps, or ``parabolic_net``: three forward-Euler blocks of three steps)
  with widths ``--widths``, on a batch of ``--batch-size`` random
  ``3 x 32 x 32`` images, cross-entropy loss;
* ``mlp<D>`` for every ``D`` in ``--features``: a neural ODE, one
  :class:`~dynamicblocks.DynamicBlock` with ``scheme="rk4"``, ``--mlp-steps``
  uniform steps on ``[0, 1]`` and one shared control
  (``MLP(D, --hidden, depth=2, act="tanh")``), on ``--mlp-batch`` standard
  normal states, mean squared error to a fixed random target.

Columns: ``evals``, the field evaluations of one forward pass (counted by
``ode_regularizers``); ``kinetic`` and ``jacobian``, the regularisers' values
on the first batch before any step (exact and not timed; ``-`` where a variant
does not collect them); ``ms``, the median milliseconds of a step over
``--repeats`` interleaved samples, and ``x none``, its ratio to the baseline's.
Targets: the kinetic energy adds at most 5 % to the step time (``kinetic`` at
most 1.05x ``none``), one probe at most 1.5x (``kinetic+1probe``).
"""

from __future__ import annotations

import argparse
import copy
import functools

import torch
import torch.nn.functional as F
from torch import nn

import dynamicblocks as db

from _timing import interleaved_medians, set_threads, significant

CONVS = {"rknet": db.rknet, "parabolic_net": db.parabolic_net}
# Per variant name: the largest ratio of its step time to the baseline's.
TARGETS = {"kinetic": 1.05, "kinetic+1probe": 1.5}


def variants(probes: list[int]) -> dict[str, tuple[bool, int]]:
    """Variant name -> (kinetic, probes) of ``ode_regularizers``; ``none`` has no context."""
    found = {"none": (False, 0), "kinetic": (True, 0)}
    for p in probes:
        found[f"kinetic+{p}probe{'s' if p > 1 else ''}"] = (True, p)
    return found


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn,
    x: torch.Tensor,
    y: torch.Tensor,
    kinetic: bool,
    probes: int,
    weights: tuple[float, float],
) -> None:
    """Forward, loss (with the regularisers, if any), backward and an optimiser step."""
    optimizer.zero_grad(set_to_none=True)
    if kinetic or probes:
        with db.ode_regularizers(model, kinetic=kinetic, probes=probes) as stats:
            output = model(x)
        loss = loss_fn(output, y) + stats.loss(
            kinetic=weights[0] if kinetic else 0.0, jacobian=weights[1] if probes else 0.0
        )
    else:
        loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()


def measure(model: nn.Module, kinetic: bool, probes: int, x: torch.Tensor) -> tuple:
    """Evaluations per forward pass and the regularisers' values (None if not collected)."""
    with torch.no_grad(), db.ode_regularizers(model, kinetic=kinetic, probes=probes) as stats:
        model(x)
    energy = float(stats.kinetic_energy) if kinetic else None
    jacobian = float(stats.jacobian_norm) if probes else None
    return stats.evaluations, energy, jacobian


def conv_problem(args: argparse.Namespace):
    torch.manual_seed(0)
    model = CONVS[args.conv](widths=args.widths)
    x = torch.randn(args.batch_size, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch_size,))
    return model, F.cross_entropy, x, y


def mlp_problem(args: argparse.Namespace, features: int):
    torch.manual_seed(0)
    field = db.MLP(features, args.hidden, depth=2, act="tanh")
    t = db.uniform_grid(0.0, 1.0, args.mlp_steps)
    model = db.DynamicBlock(field, t, scheme="rk4", t_theta=(0.0,), memory="full")
    x = torch.randn(args.mlp_batch, features)
    y = torch.randn(args.mlp_batch, features)
    return model, F.mse_loss, x, y


def cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3e}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", choices=("conv", "mlp"), default=["conv", "mlp"])
    parser.add_argument("--conv", choices=tuple(CONVS), default="rknet")
    parser.add_argument("--widths", type=int, nargs="+", default=[8, 16, 32, 32])
    parser.add_argument("--batch-size", type=int, default=16, help="the conv network's batch")
    parser.add_argument("--features", type=int, nargs="+", default=[2, 64], help="MLP states")
    parser.add_argument("--hidden", type=int, default=128, help="the MLP's hidden width")
    parser.add_argument("--mlp-batch", type=int, default=256)
    parser.add_argument("--mlp-steps", type=int, default=8, help="RK4 steps on [0, 1]")
    parser.add_argument("--probes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--kinetic-weight", type=float, default=0.01)
    parser.add_argument("--jacobian-weight", type=float, default=0.01)
    parser.add_argument("--lr", type=float, default=1e-4, help="Adam's learning rate")
    parser.add_argument("--repeats", type=int, default=15, help="interleaved samples per variant")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds per sample")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if min(args.probes) < 1 or args.mlp_steps < 1:
        parser.error("--probes and --mlp-steps must be positive")
    if len(args.widths) < 2:
        parser.error(f"--widths needs at least two widths, got {args.widths}")
    set_threads(args.threads)
    weights = (args.kinetic_weight, args.jacobian_weight)
    kinds = variants(args.probes)
    problems = {}
    if "conv" in args.networks:
        problems[args.conv] = functools.partial(conv_problem, args)
    if "mlp" in args.networks:
        for features in args.features:
            problems[f"mlp{features}"] = functools.partial(mlp_problem, args, features)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; one step = forward, "
        f"loss, backward, Adam (lr {args.lr});\nweights: kinetic {args.kinetic_weight}, "
        f"jacobian {args.jacobian_weight}; {args.conv} widths {args.widths}, batch "
        f"{args.batch_size}; MLP hidden {args.hidden}, tanh, rk4, {args.mlp_steps} steps, "
        f"batch {args.mlp_batch}; median ms of {args.repeats} interleaved samples"
    )
    print(
        f"{'network':<14} {'variant':<16} {'evals':>6} {'kinetic':>10} {'jacobian':>10} "
        f"{'ms':>9} {'x none':>7} {'target':>7} {'met':>4}"
    )
    verdicts = []
    for name, problem in problems.items():
        prototype, loss_fn, x, y = problem()
        runs, values = {}, {}
        for kind, (kinetic, probes) in kinds.items():
            model = copy.deepcopy(prototype).train()
            values[kind] = measure(model, kinetic, probes, x)
            optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
            runs[kind] = functools.partial(
                train_step, model, optimizer, loss_fn, x, y, kinetic, probes, weights
            )
        times = interleaved_medians(runs, args.repeats, warmup=args.warmup, min_time=args.min_time)
        for kind in kinds:
            evaluations, energy, jacobian = values[kind]
            ratio = times[kind] / times["none"]
            target = TARGETS.get(kind)
            if target is None:
                target_cells = f"{'-':>7} {'-':>4}"
            else:
                met = "yes" if ratio <= target else "no"
                target_cells = f"{target:>7.2f} {met:>4}"
                verdicts.append(f"{name} {kind}: {ratio:.3f}x none (target <= {target}) {met}")
            print(
                f"{name:<14} {kind:<16} {evaluations:>6} {cell(energy):>10} {cell(jacobian):>10} "
                f"{significant(1e3 * times[kind]):>9} {ratio:>7.3f} {target_cells}"
            )
    if verdicts:
        print("targets (step time against none's):")
        for verdict in verdicts:
            print("  " + verdict)


if __name__ == "__main__":
    main()
