"""Preset networks, each a few lines over :class:`~dynamicblocks.DynamicNet`."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from functools import partial

import torch
from torch import nn

from ._validate import positive_int, real_number
from .grid import GridLike, as_grid
from .network import DynamicNet, Stage
from .nn.init import clamped_xavier_normal_
from .nn.layers import DoubleLayer, DoubleSymLayer, PreactDoubleLayer
from .nn.norms import NormLike
from .nn.operators import ConvOperator
from .tableaus import SchemeLike

__all__ = [
    "rknet",
    "rknet_from_original",
    "preact_resnet",
    "PreactProjectionUnit",
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
    layer: str = "double_sym",
    layer_norm: NormLike = "tv",
) -> DynamicNet:
    """The original DynamicBlocks network for CIFAR-10 (Onken et al., 2019).

    Widths 16-32-64-64; three RK4 blocks on ``t = t_theta = [0, 1, 2, 3, 4]``
    with linearly interpolated weights; DoubleSymLayer with TvNorm (eps 1e-4)
    and ReLU; 1x1 connective convolutions with BatchNorm (eps 1e-4) and ReLU,
    average pooling by 2 between stages; the original's clamped Xavier-normal
    initialisation with zero biases. 251,866 trainable parameters for
    CIFAR-10.

    The original ``RKNet``'s other choices are arguments here: its
    ``dynamicScheme=rk1`` is ``scheme="euler"``, its ``layer=DoubleLayer`` is
    ``layer="double"`` (:class:`~dynamicblocks.DoubleLayer` with convolution
    biases, ``act(N2(K2 act(N1(K1 x))))``), its ``dynamicParams="NoNorm"`` is
    ``layer_norm=None``.

    Args:
        num_classes: number of classes.
        in_channels: channels of the input images.
        widths: channels of the blocks, then the channels after the last
            connective unit (``len(widths) - 1`` stages).
        t: the state grid of every block.
        t_theta: the control times of every block (default: ``t``).
        scheme: the integration scheme of every block (the original: RK4).
        layer: the layer function of every block: ``"double_sym"``
            (:class:`~dynamicblocks.DoubleSymLayer`, the original's default)
            or ``"double"`` (:class:`~dynamicblocks.DoubleLayer`); the
            original's class names ``"DoubleSymLayer"`` and ``"DoubleLayer"``
            are accepted too.
        layer_norm: the normalisation inside the layer function (``"tv"``:
            :class:`~dynamicblocks.TvNorm`, the original's default; ``None``;
            or any other norm of :func:`~dynamicblocks.make_norm`).

    Raises:
        ValueError: for an unknown ``layer`` (and as :class:`~dynamicblocks.Stage`).
    """
    kind = _layer_kind(layer)
    t_theta = t if t_theta is None else t_theta
    batch_norm = partial(nn.BatchNorm2d, eps=1e-4)
    field = partial(_RKNET_LAYERS[kind], norm=layer_norm, act="relu", bias=True)
    net = _double_sym_net(
        "dynamic",
        num_classes,
        in_channels,
        widths,
        t,
        t_theta,
        "linear",
        scheme,
        batch_norm,
        field=field,
    )
    for module in [net.opening.conv, *(c.conv for c in net.connectives), net.classifier]:
        clamped_xavier_normal_(module.weight)
        nn.init.zeros_(module.bias)
    if kind == "double":  # the original's DoubleLayer: clamped Xavier-normal, zero biases
        for block in net.blocks:
            for control in block.layers:
                for conv in (control.conv1, control.conv2):
                    clamped_xavier_normal_(conv.weight)
                    nn.init.zeros_(conv.bias)
    return net


_RKNET_LAYERS: dict[str, Callable[..., nn.Module]] = {
    "double_sym": DoubleSymLayer,
    "double": DoubleLayer,
}
# The names rknet's ``layer`` accepts: the library's, and the original code's class names.
_LAYER_NAMES = {
    "double_sym": "double_sym",
    "DoubleSymLayer": "double_sym",
    "double": "double",
    "DoubleLayer": "double",
}
_ORIGINAL_CLASS = {"double_sym": "DoubleSymLayer", "double": "DoubleLayer"}


def _layer_kind(layer: object) -> str:
    """``"double_sym"`` or ``"double"`` for a name :func:`rknet` accepts, else raise."""
    if not isinstance(layer, str) or layer not in _LAYER_NAMES:
        raise ValueError(
            f"layer must be one of {tuple(_LAYER_NAMES)} (the original's DoubleSymLayer "
            f"or DoubleLayer), got {layer!r}"
        )
    return _LAYER_NAMES[layer]


def preact_resnet(
    depth: int,
    num_classes: int = 10,
    in_channels: int = 3,
    widths: Sequence[int] = (16, 32, 64),
    t: GridLike | None = None,
    scheme: SchemeLike = "euler",
    shortcut: str = "connective",
) -> DynamicNet:
    """A pre-activation ResNet (He et al., 2016) for CIFAR as three dynamic blocks.

    Each stage is a forward-Euler block with ``h = 1`` and one control per step
    of :class:`PreactDoubleLayer` (BatchNorm, ReLU, 3x3 convolutions without
    biases): exactly pre-activation residual units ``x = x + f_k(x)``.

    ``shortcut`` says how the stages are joined:

    * ``"connective"`` (the default): every stage has ``n = (depth - 2) / 6``
      units; stages are joined by the library's 1x1 connective units
      (conv -> BatchNorm -> ReLU -> average pool by 2; the last one does not
      pool), after a 3x3 opening conv -> BatchNorm -> ReLU. 299,914
      parameters for ``depth=20`` and CIFAR-10.
    * ``"projection"``: He et al.'s network exactly ("Identity mappings in
      deep residual networks", ECCV 2016, CIFAR variant, with their code's
      option-B projections): a 3x3 opening conv (no bias, no norm); the first
      unit of every stage after the first is a
      :class:`~dynamicblocks.models.PreactProjectionUnit` (stride 2 in its
      first 3x3 conv, strided 1x1 projection shortcut), the stage's other
      ``n - 1`` units its dynamic block; a final BatchNorm -> ReLU, global
      average pooling and the linear classifier. He et al.'s initialisation:
      every convolution ``N(0, 2 / (k^2 out_channels))``, zero classifier
      bias. 272,282 parameters for ResNet-20 (the paper: 0.27 M), 855,578 for
      ResNet-56 (0.85 M), 1,730,522 for ResNet-110 (1.7 M), for CIFAR-10.

    Args:
        depth: ``6 n + 2`` for ``n >= 1`` (20, 32, 44, 56, 110, ...).
        num_classes: number of classes.
        in_channels: channels of the input images.
        widths: channels of the stages.
        t: the state grid of the first stage's block, ``n + 1`` points
            (default ``0, 1, ..., n``, i.e. ``h = 1``); each step keeps its own
            control. With ``shortcut="connective"`` every block has this grid;
            with ``"projection"`` the later stages' blocks have ``t[1:]`` (their
            strided unit takes the first step; for ``n = 1`` they have no block,
            an ``nn.Identity`` in its place).
        scheme: the integration scheme of every block.
        shortcut: ``"connective"`` or ``"projection"``, see above.

    Raises:
        ValueError: for a depth that is not ``6 n + 2``, a grid of the wrong
            length or an unknown ``shortcut``.
    """
    if shortcut not in _SHORTCUTS:
        raise ValueError(
            f"shortcut must be one of {_SHORTCUTS} (the library's connective units or He et "
            f"al.'s strided units with projection shortcuts), got {shortcut!r}"
        )
    if shortcut == "projection":
        return _he_preact_net(depth, num_classes, in_channels, widths, t, scheme)
    return _preact_net(depth, num_classes, in_channels, widths, t, "dynamic", scheme)


_SHORTCUTS = ("connective", "projection")


class PreactProjectionUnit(nn.Module):
    """He et al.'s pre-activation residual unit that changes the width and the resolution.

    The transition between two stages of :func:`preact_resnet` with
    ``shortcut="projection"``: not an Euler step (input and output differ in
    shape), so a plain module in the place of a connective unit::

        a = relu(BN_1(x))
        y = P a + K_2 relu(BN_2(K_1 a))

    ``K_1`` is a 3x3 convolution with ``stride``, ``K_2`` a 3x3 convolution,
    ``P`` a 1x1 convolution with ``stride`` (the projection shortcut, option
    B), all without biases. As in the code of "Identity mappings in deep
    residual networks" for the units that increase dimensions, the
    pre-activation ``a`` is shared by the residual branch and the projection.

    Args:
        in_channels: channels of the input ``(N, in_channels, H, W)``.
        out_channels: channels of the output.
        stride: stride of ``K_1`` and ``P``.

    Shape:
        ``(N, in_channels, H, W) -> (N, out_channels, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2) -> None:
        super().__init__()
        in_channels = positive_int("in_channels", in_channels)
        out_channels = positive_int("out_channels", out_channels)
        stride = positive_int("stride", stride)
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C_in, H, W) -> (N, C_out, H', W')``."""
        a = self.act(self.norm1(x))
        return self.shortcut(a) + self.conv2(self.act(self.norm2(self.conv1(a))))


def _preact_steps(depth: object, t: GridLike | None) -> tuple[int, GridLike]:
    """``n = (depth - 2) / 6`` and the grid (default ``0, 1, ..., n``), validated."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110), got {depth!r}")
    steps = (depth - 2) // 6
    if t is None:
        t = tuple(float(k) for k in range(steps + 1))
    elif (points := len(as_grid(t))) != steps + 1:
        raise ValueError(
            f"t must have {steps + 1} points for depth {depth} ({steps} steps per block), "
            f"got {points}"
        )
    return steps, t


def _he_preact_net(
    depth: int,
    num_classes: int,
    in_channels: int,
    widths: Sequence[int],
    t: GridLike | None,
    scheme: SchemeLike,
) -> DynamicNet:
    """He et al.'s CIFAR pre-activation ResNet: :func:`preact_resnet` with projections."""
    steps, t = _preact_steps(depth, t)
    widths = tuple(widths)
    if not widths:
        raise ValueError("widths must have at least one entry")
    grid = as_grid(t)
    later = grid[1:] if steps > 1 else grid  # n = 1: a placeholder, replaced below
    outs = widths[1:] + widths[-1:]
    stages = [
        Stage(width, out, PreactDoubleLayer, grid if i == 0 else later, scheme, pool=None)
        for i, (width, out) in enumerate(zip(widths, outs))
    ]
    net = DynamicNet(stages, in_channels, num_classes)
    net.opening = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
    if steps == 1:  # the strided unit is the stage's only unit
        for i in range(1, len(widths)):
            net.blocks[i] = nn.Identity()
    for i, (width, out) in enumerate(zip(widths[:-1], widths[1:])):
        net.connectives[i] = PreactProjectionUnit(width, out)
    net.connectives[-1] = nn.Sequential(nn.BatchNorm2d(widths[-1]), nn.ReLU())
    for module in net.modules():  # He et al.'s initialisation
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    nn.init.zeros_(net.classifier.bias)
    return net


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
    steps, t = _preact_steps(depth, t)
    widths = tuple(widths)
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
    field: Callable[[int], nn.Module] | None = None,
) -> DynamicNet:
    """Stages of ``block`` blocks of :class:`DoubleSymLayer` (TvNorm, ReLU), 1x1 connectives.

    Average pooling by 2 after every stage but the last. With ``operator``
    every block also gets a :class:`ConvOperator` (an IMEX block's ``L``).
    ``field`` replaces the layer factory (``channels -> layer``).
    """
    layer = partial(DoubleSymLayer, norm="tv", act="relu") if field is None else field
    if operator:
        explicit = layer

        def layer(channels: int) -> tuple[nn.Module, nn.Module]:
            return explicit(channels), ConvOperator(channels)

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


# The entries of an original RKNet outside its dynamic blocks, and the library's names for them.
_ORIGINAL_KEYS = [
    (r"open\.conv\.(weight|bias)", r"opening.conv.\1"),
    (r"open\.normLayer\.(.+)", r"opening.norm.\1"),
    (r"connectors\.(\d+)\.conv\.(weight|bias)", r"connectives.\1.conv.\2"),
    (r"connectors\.(\d+)\.normLayer\.(.+)", r"connectives.\1.norm.\2"),
    (r"linear\.(weight|bias)", r"classifier.\1"),
]
# An entry of a dynamic block: block, control or state layer, index, the layer's own entry.
_ORIGINAL_BLOCK_KEY = re.compile(r"dynamicBlocks\.(\d+)\.(controlLayers|stateLayers)\.(\d+)\.(.+)")
# Per layer kind, the original layer's entries and the library layer's names for them. None:
# the entry carries no information of its own, an alias (DoubleSymLayer's conv and transposed
# conv hold its shared ``weight``) or TvNorm's scale (a buffer of ones).
_ORIGINAL_LAYER_KEYS: dict[str, dict[str, str | None]] = {
    "double_sym": {
        "weight": "weight",
        "conv.bias": "bias",
        "convt.bias": "bias_transpose",
        "normLayer.bias": "norm.bias",
        "conv.weight": None,
        "convt.weight": None,
        "normLayer.weight": None,
    },
    "double": {
        "conv1.weight": "conv1.weight",
        "conv1.bias": "conv1.bias",
        "conv2.weight": "conv2.weight",
        "conv2.bias": "conv2.bias",
        "normLayer1.bias": "norm1.bias",
        "normLayer2.bias": "norm2.bias",
        "normLayer1.weight": None,
        "normLayer2.weight": None,
    },
}
# The library's name of the weight whose shape gives a block's width.
_ORIGINAL_WEIGHT = {"double_sym": "weight", "double": "conv1.weight"}
_ORIGINAL_BATCH_NORM = re.compile(r"normLayer\d?\.(running_mean|running_var|num_batches_tracked)")
_ORIGINAL_SCHEMES = {"rk4": "rk4", "rk1": "euler", "euler": "euler"}


def rknet_from_original(
    state_dict: Mapping[str, torch.Tensor],
    t: GridLike = _RKNET_T,
    t_theta: GridLike | None = None,
    scheme: str | None = None,
    layer: str | None = None,
) -> DynamicNet:
    """Build :func:`rknet` holding the weights of an original DynamicBlocks ``RKNet``.

    ``state_dict`` is ``RKNet.state_dict()`` from the EmoryMLIP/DynamicBlocks
    code (keys ``open.*``, ``dynamicBlocks.*.controlLayers.*``,
    ``connectors.*``, ``linear.*``), of a network built with either
    ``dynamicScheme`` (``rk4``, the default, or ``rk1``) and either ``layer``
    (``DoubleSymLayer``, the default, or ``DoubleLayer``), with the default
    TvNorm in its layers or without a norm (``dynamicParams="NoNorm"``). The
    returned network is :func:`rknet` with the matching ``scheme``
    (``"rk4"``; ``"euler"`` for ``rk1``), ``layer`` and ``layer_norm``, and
    computes the same function as the original.

    The scheme and the layer are read from the keys: an ``rk1`` block saves
    its state layers (``dynamicBlocks.*.stateLayers.*``, one per step of the
    original's ``tY``), an ``rk4`` block none; ``DoubleSymLayer`` has the
    entries ``weight``, ``conv.*``, ``convt.*``, ``DoubleLayer`` the entries
    ``conv1.*``, ``conv2.*``. Widths and the class count are read from the
    tensors' shapes. The state layers are checked against ``t`` and otherwise
    ignored: the original recomputes them from the controls at every forward
    pass, so a saved copy may lag the controls by the last optimiser step.

    The original's ``PreactDoubleLayer`` saves the same entries as
    ``DoubleLayer`` but applies activation -> convolution -> norm, which no
    library layer does; such a state dict is not told apart from a
    ``DoubleLayer`` one, so do not convert it. Layers with BatchNorm
    (``dynamicParams="Batch"``) are not supported either: the original
    normalises every step with the running statistics of its own state layer,
    which ``rk4`` does not save and the library keeps per control, not per step.

    Args:
        state_dict: the original network's state dict.
        t: the original's state grid ``tY`` (default ``[0, 1, 2, 3, 4]``).
        t_theta: the original's control times ``tTheta`` (default: ``t``).
        scheme: the original's ``dynamicScheme``, ``"rk4"`` or ``"rk1"``
            (also ``"euler"``); default: read from the keys.
        layer: the original's layer class, ``"DoubleSymLayer"`` or
            ``"DoubleLayer"`` (also ``"double_sym"``, ``"double"``); default:
            read from the keys.

    Raises:
        ValueError: for a key the original network does not have (named in
            the message), an alias entry that disagrees with the weight it
            should alias, a ``scheme`` or ``layer`` the keys contradict,
            entries of two layer classes, BatchNorm in the layers, or grids
            that do not fit the state dict's count of controls or state layers.
    """
    converted: dict[str, torch.Tensor] = {}
    entries: list[tuple[str, int, str, int, str]] = []  # key, block, kind, index, entry
    for key, value in state_dict.items():
        match = _ORIGINAL_BLOCK_KEY.fullmatch(key)
        if match is not None:
            block, kind, index, entry = match.groups()
            entries.append((key, int(block), kind, int(index), entry))
            continue
        for pattern, replacement in _ORIGINAL_KEYS:
            if re.fullmatch(pattern, key):
                converted[re.sub(pattern, replacement, key)] = value
                break
        else:
            raise ValueError(f"state_dict has key {key!r}, which an original RKNet does not have")
    kind = _original_layer_kind(entries, layer)
    scheme = _original_scheme(entries, scheme)
    for key, block, where, index, entry in entries:
        if where == "stateLayers":
            continue  # derived from the controls (see the docstring)
        target = _ORIGINAL_LAYER_KEYS[kind][entry]
        if target is not None:
            converted[f"blocks.{block}.layers.{index}.{target}"] = state_dict[key]
            continue
        prefix = key[: -len(entry)]
        if entry.startswith("normLayer"):
            if not torch.equal(state_dict[key], torch.ones_like(state_dict[key])):
                raise ValueError(f"state_dict[{key!r}] should be all ones (TvNorm's scale)")
        elif prefix + "weight" in state_dict and not torch.equal(
            state_dict[key], state_dict[prefix + "weight"]
        ):
            raise ValueError(f"state_dict[{key!r}] should be equal to {prefix}weight")
    num_blocks = 1 + max((block for _, block, _, _, _ in entries), default=-1)
    weight = _ORIGINAL_WEIGHT.get(kind or "", "weight")
    required = [f"blocks.{b}.layers.0.{weight}" for b in range(num_blocks)]
    required += ["opening.conv.weight", "classifier.weight"]
    if kind is None or any(key not in converted for key in required):
        raise ValueError(
            "state_dict is not an original RKNet's: it lacks the entries of the opening layer, "
            "the first control layer of a dynamic block or the classifier (original keys "
            "open.conv.weight, dynamicBlocks.<b>.controlLayers.0.weight or .conv1.weight, "
            "linear.weight)"
        )
    t = as_grid(t)
    controls = _original_counts(entries, "controlLayers", num_blocks)
    theta_points = len(t if t_theta is None else as_grid(t_theta, "t_theta", 1))
    if any(count != theta_points for count in controls):
        raise ValueError(
            f"state_dict's dynamic blocks hold {controls} control layers, one per point of the "
            f"original's tTheta, but t_theta has {theta_points} points; pass the original's tTheta"
        )
    states = _original_counts(entries, "stateLayers", num_blocks)
    if scheme == "euler" and any(count != len(t) - 1 for count in states):
        raise ValueError(
            f"state_dict's rk1 blocks hold {states} state layers, one per step of the "
            f"original's tY, but t has {len(t)} points ({len(t) - 1} steps); pass the "
            "original's tY"
        )
    widths = [converted[f"blocks.{b}.layers.0.{weight}"].shape[1] for b in range(num_blocks)]
    widths.append(converted["classifier.weight"].shape[1])
    has_norm = any(entry.startswith("normLayer") for _, _, _, _, entry in entries)
    net = rknet(
        num_classes=converted["classifier.weight"].shape[0],
        in_channels=converted["opening.conv.weight"].shape[1],
        widths=widths,
        t=t,
        t_theta=t_theta,
        scheme=scheme,
        layer=kind,
        layer_norm="tv" if has_norm else None,
    )
    # Match the checkpoint's precision before copying, so float64 weights stay exact.
    net.to(converted["classifier.weight"].dtype)
    net.load_state_dict(converted)
    return net


def _original_layer_kind(
    entries: Sequence[tuple[str, int, str, int, str]], layer: str | None
) -> str | None:
    """The layer kind the block entries belong to (None for none), checked against ``layer``."""
    found: dict[str, str] = {}  # kind -> its first key
    for key, _, _, _, entry in entries:
        if _ORIGINAL_BATCH_NORM.fullmatch(entry):
            raise ValueError(
                f"state_dict has key {key!r}: the original network has BatchNorm in its layers "
                "(dynamicParams='Batch'), which is not supported: the original normalises each "
                "step with the running statistics of its own state layer, which rk4 does not "
                "save and the library keeps per control, not per step"
            )
        kinds = [kind for kind, keys in _ORIGINAL_LAYER_KEYS.items() if entry in keys]
        if not kinds:
            raise ValueError(f"state_dict has key {key!r}, which an original RKNet does not have")
        found.setdefault(kinds[0], key)
    if len(found) > 1:
        raise ValueError(
            "state_dict mixes the entries of two original layer classes: "
            + " and ".join(f"{_ORIGINAL_CLASS[kind]} ({key!r})" for kind, key in found.items())
        )
    kind = next(iter(found), None)
    if layer is not None:
        wanted = _layer_kind(layer)
        if kind is not None and wanted != kind:
            raise ValueError(
                f"layer={layer!r}, but state_dict holds the entries of an original "
                f"{_ORIGINAL_CLASS[kind]} (e.g. {found[kind]!r})"
            )
    return kind


def _original_counts(
    entries: Sequence[tuple[str, int, str, int, str]], where: str, num_blocks: int
) -> list[int]:
    """Per block, how many ``where`` layers (``"controlLayers"`` or ``"stateLayers"``) it has."""
    counts = [0] * num_blocks
    for _, block, kind, index, _ in entries:
        if kind == where:
            counts[block] = max(counts[block], index + 1)
    return counts


def _original_scheme(entries: Sequence[tuple[str, int, str, int, str]], scheme: str | None) -> str:
    """``"euler"`` if there are rk1's state layers, else ``"rk4"``; checked against ``scheme``."""
    state_key = next((key for key, _, kind, _, _ in entries if kind == "stateLayers"), None)
    found = "rk4" if state_key is None else "euler"
    if scheme is None:
        return found
    if not isinstance(scheme, str) or scheme not in _ORIGINAL_SCHEMES:
        raise ValueError(
            f"scheme must be one of {tuple(_ORIGINAL_SCHEMES)} (the original's dynamicScheme), "
            f"got {scheme!r}"
        )
    if _ORIGINAL_SCHEMES[scheme] != found:
        if state_key is None:
            reason = (
                "state_dict has no dynamicBlocks.*.stateLayers.* entries, which an rk1 "
                "RKNet always saves (it is an rk4 network's)"
            )
        else:
            reason = f"state_dict has rk1's state layers (e.g. {state_key!r}), which rk4 has not"
        raise ValueError(f"scheme={scheme!r}, but {reason}")
    return found
