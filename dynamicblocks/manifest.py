"""Re-discretising whole networks: other grids and schemes, refinement, optimiser state.

The functions here apply the block core's
:meth:`~dynamicblocks.core.TimeBlock.remanifest_` and
:meth:`~dynamicblocks.core.TimeBlock.refine_` to every block inside a module
(explicit, implicit, Hamiltonian and leapfrog alike), and move optimiser state
onto the parameters that refinement creates.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ._validate import positive_int
from .core.block import TimeBlock
from .grid import GridLike, uniform_grid
from .methods.runge_kutta import DynamicBlock
from .tableaus import SchemeLike

__all__ = [
    "dynamic_blocks",
    "time_blocks",
    "remanifest",
    "refine_",
    "refine_to_match_",
    "carry_optimizer_state",
]


def dynamic_blocks(module: nn.Module) -> list[DynamicBlock]:
    """The dynamic blocks inside ``module`` (itself included), in module order."""
    return [m for m in module.modules() if isinstance(m, DynamicBlock)]


def time_blocks(module: nn.Module) -> list[TimeBlock]:
    """Every block inside ``module`` (itself included), of any family, in module order."""
    return [m for m in module.modules() if isinstance(m, TimeBlock)]


def _blocks_or_error(module: nn.Module) -> list[TimeBlock]:
    blocks = time_blocks(module)
    if not blocks:
        raise ValueError(
            f"{type(module).__name__} contains no DynamicBlock (nor any other block on a time grid)"
        )
    return blocks


def remanifest(
    module: nn.Module,
    *,
    steps: int | None = None,
    t: GridLike | None = None,
    scheme: SchemeLike | None = None,
) -> nn.Module:
    """A copy of ``module`` with every block on a new grid and/or scheme.

    The weights in time ``theta(t)`` are those of the trained model (see
    :meth:`DynamicBlock.remanifest_`); ``module`` itself is left unchanged.
    Blocks of every family get the new grid; ``scheme`` applies to the
    dynamic blocks (the other families keep their method).

    Args:
        module: a network (or a single block).
        steps: give every block a uniform grid of this many steps over its own
            interval ``[t[0], t[-1]]``.
        t: give every block this grid (exclusive with ``steps``).
        scheme: the new scheme of every block (default: each keeps its own).

    Raises:
        ValueError: if ``module`` contains no block, or both ``steps`` and
            ``t`` are given.
    """
    if steps is not None and t is not None:
        raise ValueError("give steps or t, not both")
    if steps is not None:
        steps = positive_int("steps", steps)
    _blocks_or_error(module)
    copied = copy.deepcopy(module)
    for block in time_blocks(copied):
        grid = t if steps is None else uniform_grid(block.t[0], block.t[-1], steps)
        if isinstance(block, DynamicBlock):
            block.remanifest_(grid, scheme)
        else:
            block.remanifest_(grid)
    return copied


def refine_(module: nn.Module) -> dict[nn.Parameter, tuple[nn.Parameter, ...]]:
    """Refine every block in ``module`` in place (:meth:`~dynamicblocks.core.TimeBlock.refine_`).

    Blocks of every family are refined alike (a Hamiltonian block refines
    both fields), so ``theta(t)`` is unchanged.

    Returns:
        Every new parameter mapped to the parameters it was made from.
    """
    sources: dict[nn.Parameter, tuple[nn.Parameter, ...]] = {}
    for block in _blocks_or_error(module):
        sources.update(block.refine_())
    return sources


def refine_to_match_(module: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> int:
    """Refine ``module`` in place until its blocks have as many controls as ``state_dict``.

    For loading a checkpoint saved after :func:`refine_` into a freshly built
    model: count each block's controls in ``state_dict`` (keys
    ``<block>.<field>.<j>.*`` of its first field, e.g. ``layers`` or
    ``layers1``), refine every block until the counts match, and return the
    number of refinements (0 if they already match, or if ``module`` has no
    block).

    Raises:
        ValueError: if the counts cannot be reached by refinement.
    """
    blocks = {name: m for name, m in module.named_modules() if isinstance(m, TimeBlock)}

    def saved(name: str, block: TimeBlock) -> int:
        field = block.field_attributes[0]
        prefix = f"{name}.{field}." if name else f"{field}."
        return len(
            {key[len(prefix) :].split(".")[0] for key in state_dict if key.startswith(prefix)}
        )

    wanted = {name: saved(name, block) for name, block in blocks.items()}
    refinements = 0
    while any(len(block.t_theta) < wanted[name] for name, block in blocks.items()):
        refine_(module)
        refinements += 1
    found = {name: len(block.t_theta) for name, block in blocks.items()}
    if found != wanted:
        raise ValueError(
            f"the state_dict's controls per block {wanted} cannot be reached by refining "
            f"the model's {found if not refinements else 'original ones'}"
        )
    return refinements


def carry_optimizer_state(
    old: torch.optim.Optimizer,
    new: torch.optim.Optimizer,
    sources: Mapping[nn.Parameter, Sequence[nn.Parameter]],
) -> None:
    """Give ``new`` the per-parameter state of ``old`` (momentum, Adam moments, ...).

    Use after :func:`refine_` with a fresh optimiser built over the refined
    model in the usual way (so that a checkpoint of it loads into one built
    the same way). A parameter ``old`` already knew keeps its state; a new
    parameter gets the mean of its sources' floating-point state tensors (for
    a copied control: the same momentum) and the rest of its first source's
    state. Every group takes the settings (learning rate, momentum, ...) of
    the group of ``old`` at the same index, as a scheduler left them.
    """
    if len(old.param_groups) != len(new.param_groups):
        raise ValueError(
            f"the optimisers have {len(old.param_groups)} and {len(new.param_groups)} "
            "parameter groups; build the new one as the old one was built"
        )
    for old_group, new_group in zip(old.param_groups, new.param_groups):
        new_group.update((k, v) for k, v in old_group.items() if k != "params")
        for param in new_group["params"]:
            if param in old.state:
                new.state[param] = dict(old.state[param])
            elif param in sources:
                states = [old.state[p] for p in sources[param] if p in old.state]
                if states:
                    new.state[param] = _mean_state(states)


def _mean_state(states: list[dict]) -> dict:
    mean = {}
    for key, value in states[0].items():
        floating = isinstance(value, torch.Tensor) and value.is_floating_point()
        if floating and value.dim() > 0 and all(key in state for state in states):
            mean[key] = torch.stack([state[key] for state in states]).mean(0)
        else:
            mean[key] = value.clone() if isinstance(value, torch.Tensor) else value
    return mean
