"""The Verlet (two-stream Hamiltonian) method and :class:`HamiltonianBlock`.

References:
    E. Haber, L. Ruthotto, "Stable architectures for deep neural networks",
    Inverse Problems 34 (2018) 014004, arXiv:1705.03341 (2017).

    B. Chang, L. Meng, E. Haber, L. Ruthotto, D. Begert, E. Holtham,
    "Reversible architectures for arbitrarily deep residual neural
    networks", AAAI 2018, arXiv:1709.03698.

    E. Hairer, C. Lubich, G. Wanner, "Geometric Numerical Integration",
    2nd ed., Springer 2006 (symplectic Euler / Stormer-Verlet, modified
    energy).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from .._validate import check_tensor
from ..core.block import TimeBlock
from ..core.fields import Evaluation
from ..grid import GridLike
from ..memory.reversible import reversible_solve
from .base import Method, State

__all__ = ["Verlet", "HamiltonianBlock", "verlet_reversible", "split_pair"]

Pair = tuple[torch.Tensor, torch.Tensor]


class _Step(NamedTuple):
    h: float
    drive_y: Evaluation  # F1_k, acting on z
    drive_z: Evaluation  # F2_k, acting on y


class Verlet(Method):
    """``y += h F1(z); z -= h F2(y)``, both fields with the weights at the step's start.

    Its inverse undoes the two shears in the opposite order, evaluating the
    same fields at the same states, so :mod:`dynamicblocks.memory.reversible`
    applies.
    """

    fields = 2
    time_scalable = True

    @property
    def name(self) -> str:
        return "Verlet"

    def plan(self, t: Sequence[float], resolve: Any) -> tuple[_Step, ...]:
        return tuple(
            _Step(t_next - t_k, resolve(k, 0.0, field=0), resolve(k, 0.0, field=1))
            for k, (t_k, t_next) in enumerate(zip(t, t[1:]))
        )

    def step(self, plan: _Step, state: State, evaluate: Any) -> State:
        y, z = state
        y = torch.add(y, evaluate(plan.drive_y, z, y.shape), alpha=plan.h)
        z = torch.sub(z, evaluate(plan.drive_z, y, z.shape), alpha=plan.h)
        return y, z

    def inverse_step(self, plan: _Step, state: State, evaluate: Any) -> State:
        y, z = state
        z = torch.add(z, evaluate(plan.drive_z, y, z.shape), alpha=plan.h)
        y = torch.sub(y, evaluate(plan.drive_y, z, y.shape), alpha=plan.h)
        return y, z


def split_pair(x: torch.Tensor | Pair, name: str) -> Pair:
    """``(y, z)`` from a pair, or from the channel halves of one tensor ``(N, C, *)``."""
    if isinstance(x, torch.Tensor):
        if x.dim() < 2:
            raise ValueError(
                f"{name} must have shape (N, C, *) with channels in dim 1, "
                f"got shape {tuple(x.shape)}"
            )
        channels = x.shape[1]
        if channels % 2:
            raise ValueError(
                f"{name} must have an even number of channels to split into halves (y, z), "
                f"got {channels} channels (shape {tuple(x.shape)})"
            )
        return x[:, : channels // 2], x[:, channels // 2 :]
    if isinstance(x, (tuple, list)) and len(x) == 2 and all(isinstance(v, torch.Tensor) for v in x):
        return x[0], x[1]
    raise TypeError(f"{name} must be a tensor or a pair (y, z) of tensors, got {type(x).__name__}")


class HamiltonianBlock(TimeBlock):
    """Two-stream Verlet block: a reversible (Hamiltonian-type) network.

    The state is a pair ``(y, z)``, advanced on the grid ``t`` (non-uniform
    allowed, ``h_k = t[k+1] - t[k]``) by, for ``k = 0, ..., len(t) - 2``::

        y_{k+1} = y_k + h_k * F1_k(z_k)
        z_{k+1} = z_k - h_k * F2_k(y_{k+1})

    exactly these signs, whatever ``F1``, ``F2`` are. ``F1_k`` (a copy of
    ``layer``, held in :attr:`layers1`) acts on ``z`` and drives ``y``;
    ``F2_k`` (a copy of ``layer2``, default ``layer``, in :attr:`layers2`)
    acts on ``y`` and drives ``z``. With ``F1(z) = act(K1 z + b1)`` and
    ``F2(y) = act(K2^T y + b2)`` this is the network of Chang et al. (2018),
    ``Y_{j+1} = Y_j + h act(K_{j1} Z_j + b_{j1})``,
    ``Z_{j+1} = Z_j - h act(K_{j2}^T Y_{j+1} + b_{j2})``, the Verlet
    discretisation of ``y' = F1(z)``, ``z' = -F2(y)`` of Haber & Ruthotto
    (2017). A layer that carries its own sign, such as
    :class:`~dynamicblocks.DoubleSymLayer` (``F(x) = -K^T act(N(K x + b)) - b_t``),
    enters as it is: as ``F2`` it gives ``z_{k+1} = z_k + h_k (K^T act(...) + b_t)``.

    For a separable Hamiltonian ``H(y, z) = T(z) + V(y)`` with ``F1 = grad T``
    and ``F2 = grad V`` the scheme is the symplectic Euler method, i.e.
    Stormer-Verlet with ``z_k`` read as the momentum at the half step
    ``t_k + h_k / 2`` (uniform ``h``): it conserves a modified energy
    ``H + O(h)`` (exactly for linear fields: ``H + (h/2) z^T S y`` for
    ``H = |z|^2/2 + y^T S y/2``; up to exponentially small terms over
    exponentially long times otherwise), so ``H(y_k, z_k)`` has an ``O(h)``
    error and ``H`` at the synchronised momentum ``z_k + (h/2) F2(y_k)`` an
    ``O(h^2)`` error, both without drift (Hairer, Lubich & Wanner, 2006). For any
    ``F1``, ``F2`` each half step is a shear, so the map is volume preserving
    and :meth:`inverse` undoes it exactly::

        z_k = z_{k+1} + h_k * F2_k(y_{k+1})
        y_k = y_{k+1} - h_k * F1_k(z_k)

    Weights: both fields of step ``k`` use ``theta(t_k)`` from the controls at
    ``t_theta`` (default ``t[:-1]``: one control per step; a single control
    shares the weights across depth); ``"constant"`` takes the control at or
    left of ``t_k``, ``"linear"`` blends the two controls around ``t_k`` by
    ``torch.lerp`` of their parameters (buffers from the nearer one), as in
    :class:`~dynamicblocks.DynamicBlock`.

    Normalisation: :meth:`inverse` evaluates every field on the same input as
    :meth:`forward` did, so it is exact with ``norm=None``, ``"tv"``, or
    BatchNorm in eval mode (or in train mode on the same batch, but then each
    call updates the running statistics again). Call ``inverse`` in eval mode
    when the fields hold BatchNorm.

    Args:
        layer: prototype of ``F1`` (and of ``F2`` unless ``layer2`` is given),
            a module mapping a half state to the same shape, e.g.
            ``DoubleSymLayer(C // 2)`` for an input of ``C`` channels. The
            block holds ``len(t_theta)`` deep copies (same initial values; see
            :meth:`reset_parameters`); the prototype is not registered.
        t: the state grid, strictly increasing, at least two points.
        t_theta: control times, strictly increasing, at least one point.
            Default: ``t[:-1]``.
        interpolation: ``"constant"`` or ``"linear"``.
        layer2: prototype of ``F2`` (default: a copy of ``layer``).
        memory: ``"full"``, ``"checkpoint"`` or ``"reversible"`` (see
            :mod:`dynamicblocks.memory`).

    Raises:
        TypeError: if ``layer`` or ``layer2`` is not an ``nn.Module``, or a
            grid is not a sequence of real numbers.
        ValueError: for an invalid grid, interpolation or memory mode, or if a
            control time of ``t_theta`` outside ``[t[0], t[-1]]`` is used by
            no step (each step ``k`` evaluates ``theta(t_k)``; its weights
            would never get a gradient; see
            :func:`dynamicblocks.weights.check_controls_used`), e.g.
            ``t_theta=[5, 6]`` on ``t=[0, 1]`` (6 is never used).

    Shape:
        a tensor ``(N, C, *)`` with even ``C``, split along dim 1 into
        ``y = x[:, :C/2]`` and ``z = x[:, C/2:]``; the output is
        ``cat([y_N, z_N], dim=1)``, the same shape. Or a pair ``(y, z)``
        (any shapes that ``F1``, ``F2`` map between), returned as a pair.
        With ``return_trajectory=True`` the states at every grid point are
        stacked in a new leading dim of size ``len(t)``.
    """

    memory_modes = Verlet.memory_modes()
    field_attributes = ("layers1", "layers2")
    field_arguments = ("layer", "layer2")
    fixed_scheme = "Verlet"
    streams = 2

    def __init__(
        self,
        layer: nn.Module,
        t: GridLike,
        t_theta: GridLike | None = None,
        interpolation: str = "constant",
        layer2: nn.Module | None = None,
        memory: str = "full",
    ) -> None:
        super().__init__()
        layers = (layer, layer if layer2 is None else layer2)
        self._build(Verlet(), layers, t, t_theta, interpolation, memory)

    def forward(
        self, x: torch.Tensor | Pair, return_trajectory: bool = False
    ) -> torch.Tensor | Pair:
        """Integrate from ``t[0]`` to ``t[-1]`` starting at ``x``.

        Args:
            x: a tensor ``(N, C, *)`` (``C`` even) or a pair ``(y, z)``.
            return_trajectory: if true, return the states at every grid point
                stacked in a new leading dim (for a tensor input the halves
                are concatenated along dim 2, the channel dim of each state).

        Raises:
            ValueError: if a tensor ``x`` has an odd number of channels, or a
                field returns a tensor of another shape than the stream it is
                added to (``F1(z)`` that of ``y``, ``F2(y)`` that of ``z``; for
                a tensor ``x`` both are the half it acts on), naming the block,
                the layer and both shapes (in every memory mode).
        """
        y, z = split_pair(x, "x")
        states = self.integrate((y, z), return_trajectory)
        if return_trajectory:
            y = torch.stack([y, *(state[0] for state in states)])
            z = torch.stack([z, *(state[1] for state in states)])
        else:
            y, z = states[-1]
        if isinstance(x, torch.Tensor):
            return torch.cat([y, z], dim=2 if return_trajectory else 1)
        return y, z

    def inverse(self, output: torch.Tensor | Pair) -> torch.Tensor | Pair:
        """The input that :meth:`forward` maps to ``output`` (same form: tensor or pair).

        Runs the steps backwards, ``z_k = z_{k+1} + h_k F2_k(y_{k+1})`` then
        ``y_k = y_{k+1} - h_k F1_k(z_k)``; exact up to round-off. Call it in
        eval mode if the fields hold BatchNorm (see the class docstring).
        """
        y, z = self._inverse(split_pair(output, "output"))
        if isinstance(output, torch.Tensor):
            return torch.cat([y, z], dim=1)
        return y, z


def verlet_reversible(block: HamiltonianBlock, y: torch.Tensor, z: torch.Tensor) -> Pair:
    """``(y_N, z_N)`` of ``block`` from ``(y, z)``, back-propagated reversibly.

    The same values as the block's forward loop on the pair ``(y, z)``
    (``block((y, z))``), but autograd stores only ``(y_N, z_N)``: backward
    reconstructs ``(y_k, z_k)`` step by step with the inverse Verlet step
    ``z_k = z_{k+1} + h_k F2_k(y_{k+1})``, ``y_k = y_{k+1} - h_k F1_k(z_k)``
    and back-propagates through each step, giving gradients for ``y``, ``z``
    and every parameter of ``block``. They equal the stored-activation
    gradients up to the round-off of the reconstruction (see the module
    docstring for the requirements).

    Args:
        block: a :class:`~dynamicblocks.HamiltonianBlock` (its steps and fields
            are used; its ``forward``, which calls this function, is not).
        y: the first stream ``y_0``.
        z: the second stream ``z_0``.

    Returns:
        ``(y_N, z_N)``.

    Raises:
        TypeError: if ``block`` is not a HamiltonianBlock or ``y``, ``z`` are not tensors.
    """
    if not isinstance(block, HamiltonianBlock):
        raise TypeError(f"block must be a HamiltonianBlock, got {type(block).__name__}")
    check_tensor("y", y)
    check_tensor("z", z)
    return reversible_solve(block, (y, z))
