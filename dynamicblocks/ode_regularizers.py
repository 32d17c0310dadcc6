"""The regularisers neural-ODE papers train with: kinetic energy, Jacobian norm, STEER.

:func:`ode_regularizers` collects, while it is open, the kinetic energy and
Hutchinson's estimate of the Jacobian's Frobenius norm of every solve in a
network, integrated from the evaluations the solves make anyway
(:mod:`dynamicblocks.core.stats`); add them to the loss::

    with db.ode_regularizers(model, kinetic=True, probes=1) as stats:
        logits = model(images)
    loss = F.cross_entropy(logits, labels) + stats.loss(kinetic=0.01, jacobian=0.01)

:func:`set_steer` turns on STEER's random end time for every block of a
network (:attr:`~dynamicblocks.core.TimeBlock.steer`).

References:
    C. Finlay, J.-H. Jacobsen, L. Nurbekyan, A. M. Oberman, "How to train
    your neural ODE: the world of Jacobian and kinetic regularization",
    ICML 2020, arXiv:2002.02798.

    A. Ghosh, H. S. Behl, E. Dupont, P. H. S. Torr, V. Namboodiri, "STEER:
    simple temporal regularization for neural ODEs", NeurIPS 2020,
    arXiv:2006.10711.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from ._validate import int_in_range, one_of
from .core.block import TimeBlock
from .core.stats import PROBES, SolveStats

__all__ = [
    "PROBES",
    "SolveStats",
    "check_regularizers",
    "check_steer",
    "ode_regularizers",
    "set_steer",
]


def _blocks(module: nn.Module) -> list[tuple[str, TimeBlock]]:
    blocks = [(name, m) for name, m in module.named_modules() if isinstance(m, TimeBlock)]
    if not blocks:
        raise ValueError(f"{type(module).__name__} contains no block on a time grid")
    return blocks


def check_regularizers(module: nn.Module) -> list[tuple[str, TimeBlock]]:
    """The named blocks of ``module`` if :func:`ode_regularizers` can collect from all of them.

    Raises:
        ValueError: for a module without blocks, a block whose method does not
            pass quadrature weights, or a block whose memory mode is not ``"full"``.
        RuntimeError: if a block is already inside an ``ode_regularizers``.
    """
    blocks = _blocks(module)
    for name, block in blocks:
        if not block.method.quadrature:
            raise ValueError(
                f"block {name or '(the module)'!r} ({type(block).__name__}, "
                f"{block.method.name}) cannot integrate regularisers: only DynamicBlock, "
                "ReversibleHeunBlock and ALFBlock pass their quadrature weights"
            )
        if block.memory != "full":
            raise ValueError(
                f"block {name or '(the module)'!r} has memory={block.memory!r}; the "
                "regularisers are taken from the stages autograd stores, so they need "
                "memory='full' (dynamicblocks.set_memory(model, 'full'))"
            )
        if block._stats is not None:
            raise RuntimeError(
                f"block {name or '(the module)'!r} is already collecting regularisers"
            )
    return blocks


@contextmanager
def ode_regularizers(
    module: nn.Module, kinetic: bool = True, probes: int = 0, probe: str = "rademacher"
) -> Iterator[SolveStats]:
    """Collect the regularisers of every solve of the blocks in ``module`` while open.

    Every forward pass of a block inside the context adds to the returned
    :class:`~dynamicblocks.core.stats.SolveStats`: ``kinetic_energy``,
    ``sum_k h_k sum_i b_i ||f(x_i)||^2``, and ``jacobian_norm``, Hutchinson's
    estimate of ``sum_k h_k sum_i b_i ||df/dx (x_i)||_F^2`` from ``probes``
    vector-Jacobian products per block and pass (unbiased; its variance falls
    like ``1/probes``). Both are batch means of per-sample sums, differentiable
    when autograd is on, and summed over blocks and passes. ``evaluations``
    counts the field evaluations.

    The kinetic energy costs no extra evaluation; each probe costs one
    vector-Jacobian product per evaluation (with ``create_graph``, so backward
    differentiates it once more). The blocks must run with
    ``memory="full"``: the terms are taken from the stages autograd stores.

    Args:
        module: a network or a block.
        kinetic: collect the kinetic energy.
        probes: Hutchinson probes per block and pass (0: no Jacobian term).
        probe: ``"rademacher"`` (entries ``+-1``, the lower variance) or ``"gaussian"``.

    Raises:
        ValueError: for a bad argument, a module without blocks, a block whose
            method does not pass quadrature weights (only the explicit
            Runge-Kutta, reversible Heun and ALF blocks do), or a block whose
            memory mode is not ``"full"``.
        RuntimeError: if a block is already inside another ``ode_regularizers``.
    """
    if not isinstance(kinetic, bool):
        raise TypeError(f"kinetic must be a bool, got {type(kinetic).__name__}")
    probes = int_in_range("probes", probes, 0)
    one_of("probe", probe, PROBES)
    blocks = check_regularizers(module)
    stats = SolveStats(kinetic, probes, probe)
    try:
        for _, block in blocks:
            block._stats = stats
        yield stats
    finally:
        for _, block in blocks:
            block._stats = None


def set_steer(module: nn.Module, b: float) -> list[str]:
    """Set STEER's half-width ``b`` on every block in ``module`` (``0`` turns it off).

    In training mode each block's forward pass then integrates to an end time
    drawn from ``[T - b, T + b]`` (see :attr:`~dynamicblocks.core.TimeBlock.steer`).

    Returns:
        The names of the blocks that were set.

    Raises:
        ValueError: for a module without blocks, or a ``b`` some block refuses
            (then no block is changed).
    """
    blocks = check_steer(module, b)
    for _, block in blocks:
        block.steer = b
    return [name for name, _ in blocks]


def check_steer(module: nn.Module, b: float) -> list[tuple[str, TimeBlock]]:
    """The named blocks of ``module`` if every one accepts STEER's half-width ``b`` (none is set).

    Raises:
        ValueError: for a module without blocks, or a ``b`` some block refuses,
            naming the block.
    """
    blocks = _blocks(module)
    for name, block in blocks:
        try:
            block.check_steer(b)
        except ValueError as error:
            raise ValueError(f"block {name or '(the module)'!r}: {error}") from None
    return blocks
