"""Preset networks, each a few lines over :class:`~dynamicblocks.DynamicNet`."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from functools import partial

import torch
from torch import nn

from ._validate import real_number
from .grid import GridLike, as_grid
from .network import DynamicNet, Stage
from .nn.init import clamped_xavier_normal_
from .nn.layers import DoubleSymLayer, PreactDoubleLayer
from .nn.norms import NormLike
from .nn.operators import ConvOperator
from .tableaus import SchemeLike

__all__ = [
    "rknet",
    "rknet_from_original",
    "preact_resnet",
    "lm_resnet",
    "imexnet",
    "parabolic_net",
    "hamiltonian_net",
    "second_order_net",
]

_RKNET_T = (0.0, 1.0, 2.0, 3.0, 4.0)
_PDE_T = (0.0, 1.0, 2.0, 3.0)
_PDE_WIDTHS = (32, 64, 112, 112)


def rknet(
    num_classes: int = 10,
    in_channels: int = 3,
    widths: Sequence[int] = (16, 32, 64, 64),
    t: GridLike = _RKNET_T,
    t_theta: GridLike | None = None,
    scheme: SchemeLike = "rk4",
) -> DynamicNet:
    """The original DynamicBlocks network for CIFAR-10 (Onken et al., 2019).

    Widths 16-32-64-64; three RK4 blocks on ``t = t_theta = [0, 1, 2, 3, 4]``
    with linearly interpolated weights; DoubleSymLayer with TvNorm (eps 1e-4)
    and ReLU; 1x1 connective convolutions with BatchNorm (eps 1e-4) and ReLU,
    average pooling by 2 between stages; the original's clamped Xavier-normal
    initialisation with zero biases. 251,866 trainable parameters for
    CIFAR-10.

    Args:
        num_classes: number of classes.
        in_channels: channels of the input images.
        widths: channels of the blocks, then the channels after the last
            connective unit (``len(widths) - 1`` stages).
        t: the state grid of every block.
        t_theta: the control times of every block (default: ``t``).
        scheme: the integration scheme of every block (the original: RK4).
    """
    t_theta = t if t_theta is None else t_theta
    batch_norm = partial(nn.BatchNorm2d, eps=1e-4)
    net = _double_sym_net(
        "dynamic", num_classes, in_channels, widths, t, t_theta, "linear", scheme, batch_norm
    )
    for module in [net.opening.conv, *(c.conv for c in net.connectives), net.classifier]:
        clamped_xavier_normal_(module.weight)
        nn.init.zeros_(module.bias)
    return net


def preact_resnet(
    depth: int,
    num_classes: int = 10,
    in_channels: int = 3,
    widths: Sequence[int] = (16, 32, 64),
    t: GridLike | None = None,
    scheme: SchemeLike = "euler",
) -> DynamicNet:
    """A pre-activation ResNet (He et al., 2016) for CIFAR as three dynamic blocks.

    Each stage is a forward-Euler block with ``h = 1`` and one control per step
    over ``n = (depth - 2) / 6`` steps of :class:`PreactDoubleLayer` (BatchNorm,
    ReLU, 3x3 convolutions): exactly ``n`` pre-activation residual units
    ``x = x + f_k(x)``. Stages are joined by 1x1 connective units
    (conv -> BatchNorm -> ReLU -> average pool by 2; the last one does not
    pool), after a 3x3 opening conv -> BatchNorm -> ReLU.

    Args:
        depth: ``6 n + 2`` for ``n >= 1`` (20, 32, 44, 56, 110, ...).
        num_classes: number of classes.
        in_channels: channels of the input images.
        widths: channels of the three stages.
        t: the state grid of every block, ``n + 1`` points (default
            ``0, 1, ..., n``, i.e. ``h = 1``); each step keeps its own control.
        scheme: the integration scheme of every block.
    """
    return _preact_net(depth, num_classes, in_channels, widths, t, "dynamic", scheme)


def _preact_net(
    depth: int,
    num_classes: int,
    in_channels: int,
    widths: Sequence[int],
    t: GridLike | None,
    block: str,
    scheme: SchemeLike | None = None,
    options: Callable[[int, int], dict] | None = None,
) -> DynamicNet:
    """Three stages of ``(depth - 2) / 6`` steps of :class:`PreactDoubleLayer`, 1x1 connectives.

    ``options(stage, steps)`` gives each stage's further block arguments.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110), got {depth!r}")
    steps = (depth - 2) // 6
    widths = tuple(widths)
    if t is None:
        t = tuple(float(k) for k in range(steps + 1))
    elif (points := len(as_grid(t))) != steps + 1:
        raise ValueError(
            f"t must have {steps + 1} points for depth {depth} ({steps} steps per block), "
            f"got {points}"
        )
    outs = widths[1:] + widths[-1:]
    stages = [
        Stage(
            width,
            out,
            PreactDoubleLayer,
            t,
            scheme,
            pool="avg" if i < len(widths) - 1 else None,
            block=block,
            options=None if options is None else options(i, steps),
        )
        for i, (width, out) in enumerate(zip(widths, outs))
    ]
    return DynamicNet(stages, in_channels, num_classes)


def lm_resnet(
    depth: int,
    num_classes: int = 10,
    in_channels: int = 3,
    widths: Sequence[int] = (16, 32, 64),
    t: GridLike | None = None,
    death_rate: float = 0.0,
) -> DynamicNet:
    """LM-ResNet (Lu et al., 2018) for CIFAR: :func:`preact_resnet` with linear two-step blocks.

    The layout of :func:`preact_resnet` (three stages of ``n = (depth - 2) / 6``
    pre-activation units, widths 16-32-64, 1x1 connective units between
    stages), each stage an :class:`~dynamicblocks.LMBlock`::

        x_{n+1} = (1 - k_n) x_n + k_n x_{n-1} + f_n(x_n)

    with one trainable ``k_n`` per unit, drawn from ``U(-0.1, 0)``; the first
    unit of a stage is a plain residual unit (no ``x_{-1}``), as in Lu et
    al.'s network, where it is the stage's first (strided) unit. Their
    transitions between stages are strided pre-activation units with a
    projection shortcut; here they are the library's connective units, so
    the parameter count differs from theirs by those units.

    Args:
        depth: ``6 n + 2`` for ``n >= 1`` (20, 32, 44, 56, 110, ...).
        num_classes: number of classes.
        in_channels: channels of the input images.
        widths: channels of the three stages.
        t: the state grid of every block, ``n + 1`` points (default ``h = 1``).
        death_rate: stochastic depth (Lu et al.'s LM-ResNet with stochastic
            depth): the death rate grows linearly from 0 at the first unit to
            ``death_rate`` at the last unit of the network (0: off).
    """
    death_rate = real_number(
        "death_rate", death_rate, "a probability in [0, 1)", 0.0, 1.0, open_high=True
    )

    def options(stage: int, steps: int) -> dict:
        last = 3 * steps - 1
        if not death_rate or not last:
            return {}
        return {
            "death_rate": (
                death_rate * stage * steps / last,
                death_rate * (stage + 1) * steps / last,
            )
        }

    return _preact_net(depth, num_classes, in_channels, widths, t, "lm", options=options)


def _double_sym_net(
    block: str,
    num_classes: int,
    in_channels: int,
    widths: Sequence[int],
    t: GridLike,
    t_theta: GridLike | None,
    interpolation: str,
    scheme: SchemeLike | None = None,
    norm: NormLike = "batch",
    operator: bool = False,
) -> DynamicNet:
    """Stages of ``block`` blocks of :class:`DoubleSymLayer` (TvNorm, ReLU), 1x1 connectives.

    Average pooling by 2 after every stage but the last. With ``operator``
    every block also gets a :class:`ConvOperator` (an IMEX block's ``L``).
    """
    layer = partial(DoubleSymLayer, norm="tv", act="relu")
    if operator:
        field = layer

        def layer(channels: int) -> tuple[nn.Module, nn.Module]:
            return field(channels), ConvOperator(channels)

    widths = tuple(widths)
    if len(widths) < 2:
        raise ValueError(f"widths must have at least two entries, got {widths!r}")
    stages = [
        Stage(
            width=width,
            out_channels=out,
            layer=layer,
            t=t,
            scheme=scheme,
            t_theta=t_theta,
            interpolation=interpolation,
            pool="avg" if i < len(widths) - 2 else None,
            block=block,
        )
        for i, (width, out) in enumerate(zip(widths, widths[1:]))
    ]
    return DynamicNet(stages, in_channels, num_classes, norm=norm, act="relu")


def parabolic_net(
    num_classes: int = 10,
    in_channels: int = 3,
    widths: Sequence[int] = _PDE_WIDTHS,
    t: GridLike = _PDE_T,
    t_theta: GridLike | None = None,
    interpolation: str = "constant",
    scheme: SchemeLike = "euler",
) -> DynamicNet:
    """The parabolic CNN of Ruthotto & Haber: ``y' = -K^T relu(N(K y))``, forward Euler.

    The symmetric layer makes the dynamics a nonlinear diffusion: the paper's
    parabolic network (88.5 % CIFAR-10 test accuracy in its Table 1, about
    0.50 M weights). 503,514 parameters here for CIFAR-10.

    Architecture (L. Ruthotto, E. Haber, "Deep neural networks motivated by
    partial differential equations", J. Math. Imaging Vis. 62 (2020) 352-364,
    arXiv:1804.04272, and their Meganet.m experiments): a 3x3 opening conv ->
    BatchNorm -> ReLU to ``widths[0]`` channels; per stage a block of three
    steps of ``h = 1`` (``t = 0, 1, 2, 3``, one set of weights per step) of
    the symmetric layer :class:`DoubleSymLayer` ``-K^T relu(tv(K y + b)) - b_t``
    (3x3 kernels, TvNorm); 1x1 connective conv -> BatchNorm -> ReLU with
    average pooling by 2 between stages; global average pooling and a
    linear classifier. Widths 32-64-112-112 (three stages).

    Args:
        num_classes: number of classes.
        in_channels: channels of the input images.
        widths: channels of the blocks, then the channels after the last
            connective unit (``len(widths) - 1`` stages).
        t: the state grid of every block.
        t_theta: control times of every block (default: one per step).
        interpolation: ``"constant"`` or ``"linear"`` weights in time.
        scheme: the explicit scheme of every block (the paper: forward Euler).
    """
    return _double_sym_net(
        "dynamic", num_classes, in_channels, widths, t, t_theta, interpolation, scheme
    )


def hamiltonian_net(
    num_classes: int = 10,
    in_channels: int = 3,
    widths: Sequence[int] = _PDE_WIDTHS,
    t: GridLike = _PDE_T,
    t_theta: GridLike | None = None,
    interpolation: str = "constant",
) -> DynamicNet:
    """The Hamiltonian CNN of Ruthotto & Haber: two streams, Verlet steps.

    Each block is a :class:`~dynamicblocks.HamiltonianBlock` on the channel
    halves ``(y, z)`` with two symmetric layers of half the width per step,
    ``y' = -K_1^T relu(N(K_1 z))``, ``z' = K_2^T relu(N(K_2 y))`` (the paper's
    Hamiltonian network, 89.3 % CIFAR-10 test accuracy with about 0.26 M
    weights). 265,050 parameters here for CIFAR-10. Meganet.m updates the
    second half first; here the first half ``y`` is updated first, the same
    scheme with the halves' roles exchanged.

    Arguments and the rest of the architecture as :func:`parabolic_net`
    (without ``scheme``); every width must be even.
    """
    return _double_sym_net(
        "hamiltonian", num_classes, in_channels, widths, t, t_theta, interpolation
    )


def second_order_net(
    num_classes: int = 10,
    in_channels: int = 3,
    widths: Sequence[int] = _PDE_WIDTHS,
    t: GridLike = _PDE_T,
    t_theta: GridLike | None = None,
    interpolation: str = "constant",
) -> DynamicNet:
    """The second-order (hyperbolic) CNN of Ruthotto & Haber: ``y'' = -K^T relu(N(K y))``.

    Each block is a :class:`~dynamicblocks.LeapfrogBlock` started at rest
    (``y_{-1} = y_0``, as Meganet.m's ``LeapFrogNN``): a wave-like equation,
    the paper's second-order network (89.2 % CIFAR-10 test accuracy, about
    0.50 M weights). 503,514 parameters here for CIFAR-10.

    Arguments and the rest of the architecture as :func:`parabolic_net`
    (without ``scheme``).
    """
    return _double_sym_net("leapfrog", num_classes, in_channels, widths, t, t_theta, interpolation)


def imexnet(
    num_classes: int = 10,
    in_channels: int = 3,
    widths: Sequence[int] = _PDE_WIDTHS,
    t: GridLike = _PDE_T,
    t_theta: GridLike | None = None,
    interpolation: str = "constant",
    scheme: str = "imex_euler",
) -> DynamicNet:
    """IMEXnet (Haber, Lensink, Treister & Ruthotto, 2019) in the Ruthotto-Haber CIFAR layout.

    Each block is an :class:`~dynamicblocks.IMEXBlock`
    ``y' = -K^T relu(N(K y)) - L y`` with the symmetric layer of
    :func:`parabolic_net` explicit and a learnable depthwise 3x3
    :class:`~dynamicblocks.ConvOperator` ``L = K_L^T K_L`` per step implicit,
    solved exactly by FFT (periodic boundaries)::

        y_{k+1} = (I + h L_k)^{-1} (y_k + h f_k(y_k))

    The rest of the architecture is :func:`parabolic_net`'s (widths
    32-64-112-112, three steps of ``h = 1`` per stage, 1x1 connective units,
    average pooling between stages), so the two differ only by the implicit
    term. 509,130 parameters for CIFAR-10. The IMEXnet paper's experiments are
    semantic segmentation; for classification this preset takes the CIFAR
    layout of Ruthotto & Haber's networks (two of its authors).

    Args:
        num_classes, in_channels, widths, t, t_theta, interpolation: as
            :func:`parabolic_net`.
        scheme: ``"imex_euler"`` (IMEXnet) or another key of
            :data:`~dynamicblocks.IMEX_SCHEMES`.
    """
    return _double_sym_net(
        "imex",
        num_classes,
        in_channels,
        widths,
        t,
        t_theta,
        interpolation,
        scheme,
        operator=True,
    )


_ORIGINAL_KEYS = [
    (r"open\.conv\.(weight|bias)", r"opening.conv.\1"),
    (r"open\.normLayer\.(.+)", r"opening.norm.\1"),
    (r"dynamicBlocks\.(\d+)\.controlLayers\.(\d+)\.weight", r"blocks.\1.layers.\2.weight"),
    (r"dynamicBlocks\.(\d+)\.controlLayers\.(\d+)\.conv\.bias", r"blocks.\1.layers.\2.bias"),
    (
        r"dynamicBlocks\.(\d+)\.controlLayers\.(\d+)\.convt\.bias",
        r"blocks.\1.layers.\2.bias_transpose",
    ),
    (
        r"dynamicBlocks\.(\d+)\.controlLayers\.(\d+)\.normLayer\.bias",
        r"blocks.\1.layers.\2.norm.bias",
    ),
    (r"connectors\.(\d+)\.conv\.(weight|bias)", r"connectives.\1.conv.\2"),
    (r"connectors\.(\d+)\.normLayer\.(.+)", r"connectives.\1.norm.\2"),
    (r"linear\.(weight|bias)", r"classifier.\1"),
]
# Entries of the original that carry no information of their own: the conv and
# transposed conv alias the layer's shared weight; TvNorm's scale is a buffer of ones.
_ORIGINAL_ALIASES = re.compile(
    r"dynamicBlocks\.\d+\.controlLayers\.\d+\.(conv\.weight|convt\.weight|normLayer\.weight)"
)


def rknet_from_original(
    state_dict: Mapping[str, torch.Tensor],
    t: GridLike = _RKNET_T,
    t_theta: GridLike | None = None,
) -> DynamicNet:
    """Build :func:`rknet` holding the weights of an original DynamicBlocks ``RKNet``.

    ``state_dict`` is ``RKNet.state_dict()`` from the EmoryMLIP/DynamicBlocks
    code (keys ``open.*``, ``dynamicBlocks.*.controlLayers.*``,
    ``connectors.*``, ``linear.*``). Widths and the class count are read from
    the tensors' shapes; pass the grids the original network used if they were
    not the default ``[0, 1, 2, 3, 4]``. The returned network computes the same
    function as the original.

    Raises:
        ValueError: for a key the original network does not have, or an alias
            entry that disagrees with the weight it should alias.
    """
    converted = {}
    for key, value in state_dict.items():
        if _ORIGINAL_ALIASES.fullmatch(key):
            continue
        for pattern, replacement in _ORIGINAL_KEYS:
            if re.fullmatch(pattern, key):
                converted[re.sub(pattern, replacement, key)] = value
                break
        else:
            raise ValueError(f"state_dict has key {key!r}, which an original RKNet does not have")
    for key, value in state_dict.items():
        match = _ORIGINAL_ALIASES.fullmatch(key)
        if match is None:
            continue
        prefix = key[: -len(match.group(1))]
        expected = (
            torch.ones_like(value)
            if match.group(1) == "normLayer.weight"
            else state_dict[prefix + "weight"]
        )
        if not torch.equal(value, expected):
            raise ValueError(
                f"state_dict[{key!r}] should be "
                + (
                    "all ones"
                    if match.group(1) == "normLayer.weight"
                    else f"equal to {prefix}weight"
                )
            )
    required = ("opening.conv.weight", "blocks.0.layers.0.weight", "classifier.weight")
    missing = [key for key in required if key not in converted]
    if missing:
        raise ValueError(
            f"state_dict is not an original RKNet's: it lacks the entries for {missing} "
            "(original keys open.conv.weight, dynamicBlocks.0.controlLayers.0.weight, "
            "linear.weight)"
        )
    num_blocks = 1 + max(int(k.split(".")[1]) for k in converted if k.startswith("blocks."))
    widths = [converted[f"blocks.{b}.layers.0.weight"].shape[1] for b in range(num_blocks)]
    widths.append(converted["classifier.weight"].shape[1])
    net = rknet(
        num_classes=converted["classifier.weight"].shape[0],
        in_channels=converted["opening.conv.weight"].shape[1],
        widths=widths,
        t=as_grid(t),
        t_theta=t_theta,
    )
    # Match the checkpoint's precision before copying, so float64 weights stay exact.
    net.to(converted["classifier.weight"].dtype)
    net.load_state_dict(converted)
    return net
