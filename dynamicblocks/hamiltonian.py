"""Reversible blocks: the Verlet (Hamiltonian) network and the leapfrog (hyperbolic) network.

Both blocks integrate a layer function on a time grid like
:class:`~dynamicblocks.DynamicBlock`, with the same weights ``theta(t)``
(one deep copy of the layer per control time ``t_theta``, piecewise constant
or linear in time, see :mod:`dynamicblocks.weights`), but with a symplectic
scheme whose steps can be undone exactly: each block has an :meth:`inverse`
that recomputes the input from the output (up to floating-point round-off), so
activations need not be stored to be recovered.

* :class:`HamiltonianBlock`: two streams ``(y, z)``, the Verlet network of
  Haber & Ruthotto (2017) and Chang et al. (2018).
* :class:`LeapfrogBlock`: the second-order (hyperbolic) network of Ruthotto &
  Haber (2018), ``y'' = F(y)`` by the leapfrog scheme.

References:
    E. Haber, L. Ruthotto, "Stable architectures for deep neural networks",
    Inverse Problems 34 (2018) 014004, arXiv:1705.03341 (2017).

    B. Chang, L. Meng, E. Haber, L. Ruthotto, D. Begert, E. Holtham,
    "Reversible architectures for arbitrarily deep residual neural
    networks", AAAI 2018, arXiv:1709.03698.

    L. Ruthotto, E. Haber, "Deep neural networks motivated by partial
    differential equations", J. Math. Imaging Vis. 62 (2020) 352-364,
    arXiv:1804.04272 (2018).

    E. Hairer, C. Lubich, G. Wanner, "Geometric Numerical Integration",
    2nd ed., Springer 2006 (symplectic Euler / Stormer-Verlet, modified
    energy).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .grid import GridLike, as_grid
from .reversible import leapfrog_reversible, verlet_reversible
from .timeblock import TimeBlock, check_module, evaluate_control, format_times
from .weights import (
    StageControl,
    check_controls_used,
    check_interpolation,
    resolve_stage_controls,
)

__all__ = ["HamiltonianBlock", "LeapfrogBlock"]

STARTS = ("rest", "taylor")
"""Initial conditions of :class:`LeapfrogBlock` when no previous state is given."""

Pair = tuple[torch.Tensor, torch.Tensor]


class _ControlledBlock(TimeBlock):
    """Grid, control times and per-step controls shared by the two blocks.

    Every step ``k`` evaluates its field(s) with the weights at the step's
    start ``t_k``: ``"constant"`` uses the control at or left of ``t_k`` (so
    one control per step, the default, is a plain stack of layers);
    ``"linear"`` blends the two controls around ``t_k`` (held constant beyond
    the first and last control time).

    Memory modes (:mod:`dynamicblocks.memory`): ``"full"``, ``"checkpoint"``
    (segments of ``ceil(sqrt(N))`` steps recomputed in backward) and
    ``"reversible"`` (states rebuilt by the inverse in backward,
    :mod:`dynamicblocks.reversible`). With
    ``return_trajectory=True`` every state is kept anyway, and ``"reversible"``
    backpropagates through them as ``"full"`` does.
    """

    memory_modes = ("full", "checkpoint", "reversible")

    def _setup(
        self, t: GridLike, t_theta: GridLike | None, interpolation: str, memory: str
    ) -> tuple[float, ...]:
        t = as_grid(t, name="t")
        t_theta = t[:-1] if t_theta is None else as_grid(t_theta, "t_theta", 1)
        check_interpolation(interpolation)
        check_controls_used(type(self).__name__, t, (0.0,), t_theta, interpolation)
        controls = tuple(c for (c,) in resolve_stage_controls(t, (0.0,), t_theta, interpolation))
        self._t, self._t_theta, self._interpolation = t, t_theta, interpolation
        self._h = tuple(right - left for left, right in zip(t, t[1:]))
        self._controls = controls
        self.memory = memory
        return t_theta

    def _mode(self, return_trajectory: bool) -> str:
        """The memory mode this forward pass runs in (``"full"`` without autograd)."""
        if not torch.is_grad_enabled():
            return "full"
        if return_trajectory and self._memory == "reversible":
            return "full"
        return self._memory

    def extra_repr(self) -> str:
        return (
            f"t={format_times(self._t)} ({self.num_steps} steps), "
            f"t_theta={format_times(self._t_theta)} ({len(self._t_theta)} controls), "
            f"interpolation={self._interpolation}"
        )


def _split(x: torch.Tensor | Pair, name: str) -> Pair:
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


class HamiltonianBlock(_ControlledBlock):
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
        check_module("layer", layer)
        layer2 = layer if layer2 is None else check_module("layer2", layer2)
        t_theta = self._setup(t, t_theta, interpolation, memory)
        self.layers1 = nn.ModuleList(copy.deepcopy(layer) for _ in t_theta)
        self.layers2 = nn.ModuleList(copy.deepcopy(layer2) for _ in t_theta)
        self._names1 = tuple(name for name, _ in layer.named_parameters())
        self._names2 = tuple(name for name, _ in layer2.named_parameters())

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
        y, z = _split(x, "x")
        mode = self._mode(return_trajectory)
        if mode == "reversible":
            y, z = verlet_reversible(self, y, z)
        else:
            f1, f2 = list(self.layers1), list(self.layers2)
            h, controls = self._h, self._controls

            def step(k: int, y: torch.Tensor, z: torch.Tensor) -> Pair:
                return self._step(y, z, h[k], controls[k], f1, f2)

            states = self._march(step, (y, z), mode == "checkpoint", return_trajectory)
            if return_trajectory:
                y = torch.stack([y, *(state[0] for state in states)])
                z = torch.stack([z, *(state[1] for state in states)])
            else:
                y, z = states[-1]
        if isinstance(x, torch.Tensor):
            return torch.cat([y, z], dim=2 if return_trajectory else 1)
        return y, z

    def control_layers(self) -> tuple[nn.ModuleList, ...]:
        """The per-control copies of ``F1`` and of ``F2``."""
        return (self.layers1, self.layers2)

    def _step(
        self,
        y: torch.Tensor,
        z: torch.Tensor,
        h: float,
        control: StageControl,
        f1: list[nn.Module],
        f2: list[nn.Module],
    ) -> Pair:
        """One Verlet step from ``(y_k, z_k)``."""
        name = type(self).__name__
        y = torch.add(y, evaluate_control(f1, self._names1, control, z, name, y.shape), alpha=h)
        z = torch.sub(z, evaluate_control(f2, self._names2, control, y, name, z.shape), alpha=h)
        return y, z

    def inverse(self, output: torch.Tensor | Pair) -> torch.Tensor | Pair:
        """The input that :meth:`forward` maps to ``output`` (same form: tensor or pair).

        Runs the steps backwards, ``z_k = z_{k+1} + h_k F2_k(y_{k+1})`` then
        ``y_k = y_{k+1} - h_k F1_k(z_k)``; exact up to round-off. Call it in
        eval mode if the fields hold BatchNorm (see the class docstring).
        """
        y, z = _split(output, "output")
        f1, f2 = list(self.layers1), list(self.layers2)
        name = type(self).__name__
        for h, control in zip(reversed(self._h), reversed(self._controls)):
            z = torch.add(z, evaluate_control(f2, self._names2, control, y, name, z.shape), alpha=h)
            y = torch.sub(y, evaluate_control(f1, self._names1, control, z, name, y.shape), alpha=h)
        if isinstance(output, torch.Tensor):
            return torch.cat([y, z], dim=1)
        return y, z


class LeapfrogBlock(_ControlledBlock):
    """Second-order (hyperbolic) block ``y'' = F(y)`` by the leapfrog scheme.

    On a uniform grid with step ``h`` this is the hyperbolic network of
    Ruthotto & Haber (2018)::

        y_{k+1} = 2 y_k - y_{k-1} + h^2 F_k(y_k),    k = 0, ..., len(t) - 2

    with ``F_k`` a copy of ``layer`` (e.g. :class:`~dynamicblocks.DoubleSymLayer`,
    ``-K^T act(N(K y + b)) - b_t``, whose minus sign makes the dynamics a
    stable wave-like equation). Any grid is accepted: with
    ``h_k = t[k+1] - t[k]`` the block uses the standard variable-step
    central difference for ``y''``::

        y_{k+1} = y_k + (h_k / h_{k-1}) (y_k - y_{k-1}) + h_k (h_k + h_{k-1}) / 2 * F_k(y_k)

    i.e. the velocity ``v_{k+1/2} = (y_{k+1} - y_k) / h_k`` is kicked by
    ``F_k(y_k)`` over the dual cell ``(h_{k-1} + h_k) / 2``. On a uniform grid
    it reduces to the formula above (up to round-off); its error is
    ``O(h^2)`` on uniform and smoothly graded grids, only ``O(max h)`` on
    grids whose steps jump. The step before the grid is taken as
    ``h_{-1} = h_0``.

    Initial condition: ``y_{-1}``, the state at ``t_0 - h_0``, is

    * ``x_prev`` if given to :meth:`forward`;
    * else, for ``start="rest"`` (default, Ruthotto & Haber):
      ``y_{-1} = y_0`` (zero velocity at ``t_0 - h_0 / 2``), so
      ``y_1 = y_0 + h_0^2 F_0(y_0)``. Read as ``y(t_0) = y_0, y'(t_0) = 0``
      this start is only first-order accurate: the scheme is second order,
      but the start gives the solution a velocity of about
      ``(h_0 / 2) F_0(y_0)`` at ``t_0``, an ``O(h)`` error that persists (for
      ``F(y) = -w^2 y``: ``y_k = y_0 cos(theta (k + 1/2)) / cos(theta / 2)``
      with ``cos(theta) = 1 - h^2 w^2 / 2``);
    * else, for ``start="taylor"``: ``y_1 = y_0 + (h_0^2 / 2) F_0(y_0)`` (the
      Taylor step of ``y'(t_0) = 0``, equivalently
      ``y_{-1} = y_0 + (h_0^2 / 2) F_0(y_0)``), second-order accurate overall.

    Inverse: the scheme is reversible in time. :meth:`forward` with
    ``return_pair=True`` returns ``(y_N, y_{N-1})``; :meth:`inverse` takes
    that pair and returns ``(y_0, y_{-1})`` by
    ``y_{k-1} = y_k - (y_{k+1} - y_k - h_k (h_k + h_{k-1}) / 2 F_k(y_k)) h_{k-1} / h_k``
    (uniform: ``y_{k-1} = 2 y_k - y_{k+1} + h^2 F_k(y_k)``), and
    ``forward(y_0, x_prev=y_{-1}, return_pair=True)`` maps it back. For
    ``start="rest"``, ``y_{-1} = y_0``; for ``"taylor"`` it is the virtual state
    above. As for :class:`HamiltonianBlock`, call ``inverse`` in eval mode if
    ``F`` holds BatchNorm.

    Weights: ``F_k`` uses ``theta(t_k)`` from the controls at ``t_theta``
    (default ``t[:-1]``), ``"constant"`` or ``"linear"`` as in
    :class:`HamiltonianBlock`.

    Args:
        layer: prototype of ``F``, a module mapping a state to the same shape;
            the block holds ``len(t_theta)`` deep copies in :attr:`layers`.
        t: the state grid, strictly increasing, at least two points.
        t_theta: control times, strictly increasing, at least one point.
        interpolation: ``"constant"`` or ``"linear"``.
        start: ``"rest"`` or ``"taylor"``, the initial condition when no
            ``x_prev`` is given.
        memory: ``"full"``, ``"checkpoint"`` or ``"reversible"`` (see
            :mod:`dynamicblocks.memory`).

    Raises:
        TypeError: if ``layer`` is not an ``nn.Module``, or a grid is not a
            sequence of real numbers.
        ValueError: for an invalid grid, interpolation, start or memory
            mode, or if a control time of ``t_theta`` outside ``[t[0], t[-1]]``
            is used by no step (each step ``k`` evaluates ``theta(t_k)``; its
            weights would never get a gradient; see
            :func:`dynamicblocks.weights.check_controls_used`), e.g.
            ``t_theta=[5, 6]`` on ``t=[0, 1]`` (6 is never used).

    Shape:
        input ``(N, *)``, output the same; ``return_pair`` gives two such
        tensors, ``return_trajectory`` ``(len(t), N, *)`` (``y_0, ..., y_N``).
    """

    def __init__(
        self,
        layer: nn.Module,
        t: GridLike,
        t_theta: GridLike | None = None,
        interpolation: str = "constant",
        start: str = "rest",
        memory: str = "full",
    ) -> None:
        super().__init__()
        check_module("layer", layer)
        if start not in STARTS:
            raise ValueError(f"start must be one of {STARTS}, got {start!r}")
        t_theta = self._setup(t, t_theta, interpolation, memory)
        self._start = start
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in t_theta)
        self._names = tuple(name for name, _ in layer.named_parameters())
        previous = (self._h[0],) + self._h[:-1]
        # (h_k / h_{k-1}, h_k (h_k + h_{k-1}) / 2) per step
        self._coefficients = tuple(
            (h / before, h * (h + before) / 2) for h, before in zip(self._h, previous)
        )

    @property
    def start(self) -> str:
        """The initial condition without ``x_prev``: ``"rest"`` or ``"taylor"``."""
        return self._start

    def forward(
        self,
        x: torch.Tensor,
        x_prev: torch.Tensor | None = None,
        *,
        return_pair: bool = False,
        return_trajectory: bool = False,
    ) -> torch.Tensor | Pair:
        """Integrate from ``t[0]`` to ``t[-1]`` starting at ``y_0 = x``.

        Args:
            x: the initial state ``y_0``, shape ``(N, *)``.
            x_prev: the state ``y_{-1}`` at ``t_0 - h_0`` (default: from
                :attr:`start`).
            return_pair: if true, return ``(y_N, y_{N-1})``, the input of
                :meth:`inverse` (and of a following block's ``x``, ``x_prev``
                when it continues on the same step size).
            return_trajectory: if true, return ``y_0, ..., y_N`` stacked as
                ``(len(t), N, *)``.

        Raises:
            ValueError: if both ``return_pair`` and ``return_trajectory`` are
                set, or if the layer returns a tensor of another shape than its
                input's, naming the block, the layer and both shapes (in every
                memory mode).
        """
        if return_pair and return_trajectory:
            raise ValueError("return_pair and return_trajectory cannot both be true")
        mode = self._mode(return_trajectory)
        if mode == "reversible":
            y, y_prev = leapfrog_reversible(self, x, x_prev)
            return (y, y_prev) if return_pair else y
        layers = list(self.layers)
        coefficients, controls = self._coefficients, self._controls

        def step(k: int, y: torch.Tensor, y_prev: torch.Tensor | None) -> Pair:
            return self._step(y, y_prev, coefficients[k], controls[k], layers), y

        states = self._march(step, (x, x_prev), mode == "checkpoint", return_trajectory)
        if return_trajectory:
            return torch.stack([x, *(state[0] for state in states)])
        y, y_prev = states[-1]
        return (y, y_prev) if return_pair else y

    def _step(
        self,
        y: torch.Tensor,
        y_prev: torch.Tensor | None,
        coefficients: tuple[float, float],
        control: StageControl,
        layers: list[nn.Module],
    ) -> torch.Tensor:
        """``y_{k+1}`` from ``y_k`` and ``y_{k-1}`` (None: the first step, by :attr:`start`)."""
        ratio, kick = coefficients
        force = evaluate_control(layers, self._names, control, y, type(self).__name__)
        if y_prev is None:
            return torch.add(y, force, alpha=(1.0 if self._start == "rest" else 0.5) * kick)
        y_next = torch.add(y, torch.sub(y, y_prev), alpha=ratio)
        return torch.add(y_next, force, alpha=kick)

    def inverse(self, y_last: torch.Tensor, y_before_last: torch.Tensor) -> Pair:
        """Recover ``(y_0, y_{-1})`` from ``(y_N, y_{N-1})`` (``forward(..., return_pair=True)``).

        Exact up to round-off; see the class docstring for the formula.
        """
        layers = list(self.layers)
        y_next, y = y_last, y_before_last
        for (ratio, kick), control in zip(reversed(self._coefficients), reversed(self._controls)):
            force = evaluate_control(layers, self._names, control, y, type(self).__name__)
            drift = torch.sub(torch.sub(y_next, y), force, alpha=kick)
            y_next, y = y, torch.sub(y, drift, alpha=1.0 / ratio)
        return y_next, y

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, start={self._start}"
