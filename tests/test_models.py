"""Presets against hand-written networks, and training that lowers the loss."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dynamicblocks import (
    DoubleLayer,
    DoubleSymLayer,
    DynamicNet,
    Stage,
    preact_resnet,
    rknet,
    rknet_from_original,
)


def count(net):
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def test_rknet_has_the_original_parameter_count():
    assert count(rknet()) == 251_866


# The entries of one control layer of the original's layer classes (without a norm: NoNorm).
ORIGINAL_LAYER_ENTRIES = {
    "DoubleSymLayer": ("weight", "conv.weight", "conv.bias", "convt.weight", "convt.bias"),
    "DoubleLayer": ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"),
}
ORIGINAL_NORM_ENTRIES = {
    "DoubleSymLayer": ("normLayer.weight", "normLayer.bias"),
    "DoubleLayer": ("normLayer1.weight", "normLayer1.bias", "normLayer2.weight", "normLayer2.bias"),
}


def original_state_dict(
    widths=(16, 32, 64, 64),
    n_controls=5,
    classes=10,
    seed=0,
    layer="DoubleSymLayer",
    n_states=0,
    norm=True,
):
    """A random state dict with the keys and shapes of the original RKNet.

    ``layer``: the original's layer class; ``n_states > 0`` adds the state layers
    an rk1 block registers (one per step), with values of their own: the original
    recomputes them from the controls at every forward pass. ``norm=False``: the
    original's ``dynamicParams="NoNorm"``.
    """
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.3):
        return scale * torch.randn(*shape, generator=g, dtype=torch.float64)

    def bn(prefix, c):
        return {
            f"{prefix}.weight": 1 + r(c),
            f"{prefix}.bias": r(c),
            f"{prefix}.running_mean": r(c),
            f"{prefix}.running_var": 0.5 + r(c).abs(),
            f"{prefix}.num_batches_tracked": torch.tensor(7),
        }

    def control(c):
        """One control layer's entries, as the original layer class saves them."""
        if layer == "DoubleSymLayer":
            weight = r(c, c, 3, 3, scale=0.1)
            entries = {"weight": weight, "conv.weight": weight, "convt.weight": weight}
            entries.update({"conv.bias": r(c), "convt.bias": r(c)})
        else:
            entries = {}
            for i in (1, 2):
                entries.update({f"conv{i}.weight": r(c, c, 3, 3, scale=0.1), f"conv{i}.bias": r(c)})
        if norm:
            for name in ORIGINAL_NORM_ENTRIES[layer]:
                is_scale = name.endswith("weight")  # TvNorm's scale: a buffer of ones
                entries[name] = torch.ones(c, dtype=torch.float64) if is_scale else r(c)
        return entries

    sd = {"open.conv.weight": r(widths[0], 3, 3, 3), "open.conv.bias": r(widths[0])}
    sd.update(bn("open.normLayer", widths[0]))
    for b, (c, c_out) in enumerate(zip(widths, widths[1:])):
        for k in range(n_controls):
            p = f"dynamicBlocks.{b}.controlLayers.{k}"
            sd.update({f"{p}.{n}": v for n, v in control(c).items()})
        for k in range(n_states):
            p = f"dynamicBlocks.{b}.stateLayers.{k}"
            sd.update({f"{p}.{n}": v for n, v in control(c).items()})
        sd[f"connectors.{b}.conv.weight"] = r(c_out, c, 1, 1)
        sd[f"connectors.{b}.conv.bias"] = r(c_out)
        sd.update(bn(f"connectors.{b}.normLayer", c_out))
    sd["linear.weight"] = r(classes, widths[-1])
    sd["linear.bias"] = r(classes)
    return sd


def original_forward(sd, x, t_y, t_theta, training, scheme="rk4"):
    """The original RKNet's forward pass, written out from its equations.

    ``scheme``: the original's ``dynamicScheme``, ``"rk4"`` or ``"rk1"``; the
    layer class and its norm are read from the keys.
    """
    layer = "DoubleLayer" if any(".conv1." in k for k in sd) else "DoubleSymLayer"
    names = [
        n
        for n in ORIGINAL_LAYER_ENTRIES[layer] + ORIGINAL_NORM_ENTRIES[layer]
        if f"dynamicBlocks.0.controlLayers.0.{n}" in sd
    ]

    def batch_norm(z, p):
        return F.batch_norm(
            z,
            sd[p + ".running_mean"].clone(),
            sd[p + ".running_var"].clone(),
            sd[p + ".weight"],
            sd[p + ".bias"],
            training=training,
            eps=1e-4,
        )

    def interpolated(b, s):
        """Parameters of block b at time s: linear between controls, constant outside."""
        ctrl = [
            {n: sd[f"dynamicBlocks.{b}.controlLayers.{k}.{n}"] for n in names}
            for k in range(len(t_theta))
        ]
        if s <= t_theta[0]:
            return ctrl[0]
        if s >= t_theta[-1]:
            return ctrl[-1]
        j = max(i for i, v in enumerate(t_theta) if v <= s)
        w_left = (t_theta[j + 1] - s) / (t_theta[j + 1] - t_theta[j])
        w_right = (s - t_theta[j]) / (t_theta[j + 1] - t_theta[j])
        return {n: w_left * ctrl[j][n] + w_right * ctrl[j + 1][n] for n in names}

    def tv_norm(z, p, suffix=""):
        """The original's TvNorm (scale and bias ``normLayer<suffix>.*``), or none (NoNorm)."""
        if f"normLayer{suffix}.bias" not in p:
            return z
        z = z / torch.sqrt(torch.sum(z**2, dim=1, keepdim=True) + 1e-4)
        scale, bias = p[f"normLayer{suffix}.weight"], p[f"normLayer{suffix}.bias"]
        return z * scale.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)

    def double_sym(p, y):
        z = F.conv2d(y, p["conv.weight"], p["conv.bias"], padding=1)
        z = F.relu(tv_norm(z, p))
        return -F.conv_transpose2d(z, p["convt.weight"], p["convt.bias"], padding=1)

    def double(p, y):
        z = F.relu(tv_norm(F.conv2d(y, p["conv1.weight"], p["conv1.bias"], padding=1), p, "1"))
        return F.relu(tv_norm(F.conv2d(z, p["conv2.weight"], p["conv2.bias"], padding=1), p, "2"))

    f = double_sym if layer == "DoubleSymLayer" else double
    x = F.relu(
        batch_norm(
            F.conv2d(x, sd["open.conv.weight"], sd["open.conv.bias"], padding=1), "open.normLayer"
        )
    )
    n_blocks = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("dynamicBlocks"))
    for b in range(n_blocks):
        for t0, t1 in zip(t_y, t_y[1:]):
            h, mid = t1 - t0, t0 + (t1 - t0) / 2
            if scheme == "rk1":
                x = x + h * f(interpolated(b, t0), x)
                continue
            z1 = f(interpolated(b, t0), x)
            z2 = f(interpolated(b, mid), x + z1 * (h / 2))
            z3 = f(interpolated(b, mid), x + z2 * (h / 2))
            z4 = f(interpolated(b, t1), x + z3 * h)
            x = x + (h / 6) * (z1 + 2 * z2 + 2 * z3 + z4)
        x = F.conv2d(x, sd[f"connectors.{b}.conv.weight"], sd[f"connectors.{b}.conv.bias"])
        x = F.relu(batch_norm(x, f"connectors.{b}.normLayer"))
        x = F.avg_pool2d(x, 2) if b < n_blocks - 1 else F.avg_pool2d(x, x.shape[2:4])
    return F.linear(x.flatten(1), sd["linear.weight"], sd["linear.bias"])


@pytest.mark.parametrize("training", [False, True])
def test_rknet_computes_the_original_function(training):
    sd = original_state_dict()
    net = rknet_from_original(sd).double().train(training)
    assert count(net) == 251_866
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    expected = original_forward(sd, x, [0, 1, 2, 3, 4], [0, 1, 2, 3, 4], training)
    assert (net(x) - expected).abs().max() < 1e-10


def test_rknet_on_other_grids_computes_the_original_function():
    t_y, t_theta = [0.0, 0.5, 1.5, 2.0, 3.5], [0.0, 1.0, 2.5]
    sd = original_state_dict(widths=(4, 8, 6), n_controls=3, classes=5)
    net = rknet_from_original(sd, t=t_y, t_theta=t_theta).double().eval()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    expected = original_forward(sd, x, t_y, t_theta, training=False)
    assert (net(x) - expected).abs().max() < 1e-10


def test_rknet_from_original_rejects_inconsistent_aliases():
    sd = original_state_dict(widths=(4, 8), n_controls=2)
    sd["dynamicBlocks.0.controlLayers.1.conv.weight"] = torch.zeros_like(
        sd["dynamicBlocks.0.controlLayers.1.weight"]
    )
    with pytest.raises(ValueError, match="conv.weight"):
        rknet_from_original(sd)


# The non-uniform grids of test_rknet_on_other_grids_computes_the_original_function.
OTHER_T_Y, OTHER_T_THETA = [0.0, 0.5, 1.5, 2.0, 3.5], [0.0, 1.0, 2.5]


def small_original(scheme, layer, norm=True):
    """A small original RKNet's state dict on the other grids (rk1: with its state layers)."""
    n_states = len(OTHER_T_Y) - 1 if scheme == "rk1" else 0
    return original_state_dict(
        widths=(4, 8, 6),
        n_controls=len(OTHER_T_THETA),
        classes=5,
        seed=3,
        layer=layer,
        n_states=n_states,
        norm=norm,
    )


@pytest.mark.parametrize("norm", [True, False], ids=["TvNorm", "NoNorm"])
@pytest.mark.parametrize("layer", ["DoubleSymLayer", "DoubleLayer"])
@pytest.mark.parametrize("scheme", ["rk1", "rk4"])
def test_every_original_scheme_and_layer_computes_the_original_function(scheme, layer, norm):
    sd = small_original(scheme, layer, norm)
    net = rknet_from_original(sd, t=OTHER_T_Y, t_theta=OTHER_T_THETA)
    block = net.blocks[0]
    assert block.method.tableau.name == {"rk1": "euler", "rk4": "rk4"}[scheme]
    assert (
        type(block.layers[0])
        is {"DoubleSymLayer": DoubleSymLayer, "DoubleLayer": DoubleLayer}[layer]
    )
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    for training in (False, True):
        expected = original_forward(sd, x, OTHER_T_Y, OTHER_T_THETA, training, scheme)
        assert (net.train(training)(x) - expected).abs().max() < 1e-10
    # explicit arguments that agree with the keys give the same network
    expected = original_forward(sd, x, OTHER_T_Y, OTHER_T_THETA, False, scheme)
    both = rknet_from_original(sd, OTHER_T_Y, OTHER_T_THETA, scheme=scheme, layer=layer).eval()
    assert (both(x) - expected).abs().max() < 1e-10
    # the same in float32: a float32 checkpoint gives a float32 network
    sd32 = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
    net32 = rknet_from_original(sd32, t=OTHER_T_Y, t_theta=OTHER_T_THETA).eval()
    assert next(net32.parameters()).dtype == torch.float32
    assert (net32(x.float()).double() - expected).abs().max() < 1e-5


def test_original_rk1_networks_have_the_original_parameter_counts():
    # The original's defaults: RKNet(..., dynamicScheme=rk1) has the controls of rk4.
    assert count(rknet(scheme="euler")) == 251_866
    # layer=DoubleLayer: two 3x3 convolutions with biases and two TvNorm biases per control.
    per_control = sum(2 * (c * c * 9 + c) + 2 * c for c in (16, 32, 64))
    sym_per_control = sum(c * c * 9 + 3 * c for c in (16, 32, 64))
    assert count(rknet(layer="double")) == 251_866 + 5 * (per_control - sym_per_control)
    sd = {k: v.float() for k, v in original_state_dict(layer="DoubleLayer", n_states=4).items()}
    assert count(rknet_from_original(sd)) == count(rknet(layer="double"))


def test_rknet_from_original_rejects_arguments_the_keys_contradict():
    rk1 = small_original("rk1", "DoubleLayer")
    grids = {"t": OTHER_T_Y, "t_theta": OTHER_T_THETA}
    with pytest.raises(ValueError, match=r"scheme='rk4', but state_dict has rk1's state layers"):
        rknet_from_original(rk1, scheme="rk4", **grids)
    with pytest.raises(ValueError, match=r"scheme='rk1', but state_dict has no .*stateLayers"):
        rknet_from_original(small_original("rk4", "DoubleLayer"), scheme="rk1", **grids)
    with pytest.raises(ValueError, match=r"layer='DoubleSymLayer', but .* original DoubleLayer"):
        rknet_from_original(rk1, layer="DoubleSymLayer", **grids)
    with pytest.raises(ValueError, match=r"^scheme must be one of \('rk4', 'rk1', 'euler'\)"):
        rknet_from_original(rk1, scheme="heun", **grids)
    with pytest.raises(ValueError, match=r"^layer must be one of "):
        rknet_from_original(rk1, layer="PreactDoubleLayer", **grids)
    # the state layers are one per step of the original's tY
    with pytest.raises(ValueError, match=r"hold \[4, 4\] state layers, .* t has 4 points"):
        rknet_from_original(rk1, t=OTHER_T_Y[:-1], t_theta=OTHER_T_THETA)
    with pytest.raises(ValueError, match=r"hold \[3, 3\] control layers, .* t_theta has 2 points"):
        rknet_from_original(rk1, t=OTHER_T_Y, t_theta=OTHER_T_THETA[:-1])


@pytest.mark.parametrize(
    "key",
    [
        "dynamicBlocks.0.stateLayers.1.extra",
        "dynamicBlocks.1.controlLayers.0.conv3.weight",
        "dynamicBlocks.0.controlLayer.0.conv1.weight",
    ],
)
def test_rknet_from_original_names_unknown_keys_of_every_scheme_and_layer(key):
    sd = small_original("rk1", "DoubleLayer")
    sd[key] = torch.zeros(1)
    with pytest.raises(ValueError, match=f"^state_dict has key {key!r}, which an original RKNet"):
        rknet_from_original(sd, t=OTHER_T_Y, t_theta=OTHER_T_THETA)


def test_rknet_from_original_rejects_mixed_layers_and_batch_norm():
    sd = small_original("rk4", "DoubleSymLayer")
    sd["dynamicBlocks.1.controlLayers.0.conv1.weight"] = torch.zeros(8, 8, 3, 3)
    with pytest.raises(ValueError, match="mixes the entries of two original layer classes"):
        rknet_from_original(sd, t=OTHER_T_Y, t_theta=OTHER_T_THETA)
    sd = small_original("rk1", "DoubleLayer")
    key = "dynamicBlocks.0.stateLayers.0.normLayer1.running_mean"
    sd[key] = torch.zeros(4)
    with pytest.raises(ValueError, match=f"has key {key!r}: .* BatchNorm in its layers"):
        rknet_from_original(sd, t=OTHER_T_Y, t_theta=OTHER_T_THETA)


def test_rknet_from_original_checks_double_layer_tv_scales():
    sd = small_original("rk4", "DoubleLayer")
    key = "dynamicBlocks.1.controlLayers.2.normLayer2.weight"
    sd[key] = 2 * sd[key]
    with pytest.raises(ValueError, match=f"state_dict\\[{key!r}\\] should be all ones"):
        rknet_from_original(sd, t=OTHER_T_Y, t_theta=OTHER_T_THETA)


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_preact_resnet_is_a_stack_of_preactivation_units(depth):
    net = preact_resnet(depth).eval()
    n = (depth - 2) // 6
    assert [len(block.layers) for block in net.blocks] == [n, n, n]
    x = torch.randn(2, 3, 32, 32)
    # Hand-written: the same modules, called as plain pre-activation residual units.
    y = net.opening(x)
    for block, connective in zip(net.blocks, net.connectives):
        for unit in block.layers:
            z = unit.conv1(F.relu(unit.norm1(y)))
            y = y + unit.conv2(F.relu(unit.norm2(z)))
        y = connective(y)
    expected = net.classifier(F.adaptive_avg_pool2d(y, 1).flatten(1))
    assert torch.equal(net(x), expected)


class TwinUnit(nn.Module):
    """He et al.'s pre-activation residual unit, in plain PyTorch (no library code).

    Identity shortcut, or, where the unit changes the width or strides, a
    strided 1x1 projection of the shared pre-activation.
    """

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        projects = stride != 1 or cin != cout
        self.projection = nn.Conv2d(cin, cout, 1, stride, bias=False) if projects else None

    def forward(self, x):
        a = F.relu(self.bn1(x))
        shortcut = x if self.projection is None else self.projection(a)
        return shortcut + self.conv2(F.relu(self.bn2(self.conv1(a))))


class TwinPreactResNet(nn.Module):
    """He et al. (2016), "Identity mappings in deep residual networks", CIFAR: 6n + 2 layers."""

    def __init__(self, depth, num_classes=10):
        super().__init__()
        n = (depth - 2) // 6
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        units, cin = [], 16
        for stage, width in enumerate((16, 32, 64)):
            for k in range(n):
                units.append(TwinUnit(cin, width, 2 if stage > 0 and k == 0 else 1))
                cin = width
        self.units = nn.Sequential(*units)
        self.bn = nn.BatchNorm2d(64)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.relu(self.bn(self.units(self.conv(x))))
        return self.fc(x.mean(dim=(2, 3)))


def library_units(net):
    """The library network's residual units in order: transition, then the block's controls."""
    units = []
    for stage, block in enumerate(net.blocks):
        if stage > 0:
            units.append(net.connectives[stage - 1])
        units.extend(getattr(block, "layers", []))  # depth 8: no block after a transition
    return units


@pytest.mark.parametrize("depth", [8, 20])
def test_projection_preact_resnet_is_he_et_al_network(depth):
    torch.manual_seed(depth)
    twin = TwinPreactResNet(depth).double()
    with torch.no_grad():  # non-trivial BatchNorms
        for m in twin.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.normal_(1.0, 0.2)
                m.bias.normal_(0.0, 0.2)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    net = preact_resnet(depth, shortcut="projection").double()
    units = library_units(net)
    assert len(units) == len(twin.units) == 3 * ((depth - 2) // 6)
    net.opening.load_state_dict(twin.conv.state_dict())
    for unit, twin_unit in zip(units, twin.units):
        renamed = {
            k.replace("bn", "norm").replace("projection", "shortcut"): v
            for k, v in twin_unit.state_dict().items()
        }
        unit.load_state_dict(renamed)  # strict: the same tensors, of the same shapes
    net.connectives[-1][0].load_state_dict(twin.bn.state_dict())
    net.classifier.load_state_dict(twin.fc.state_dict())
    assert count(net) == count(twin)
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    assert (net.eval()(x) - twin.eval()(x)).abs().max() < 1e-12
    assert (net.train()(x) - twin.train()(x)).abs().max() < 1e-12
    # the train-mode pass updated the running statistics alike
    assert (net.eval()(x) - twin.eval()(x)).abs().max() < 1e-12


@pytest.mark.parametrize("depth, params", [(20, 272_282), (56, 855_578), (110, 1_730_522)])
def test_projection_preact_resnet_has_he_et_al_parameter_counts(depth, params):
    net = preact_resnet(depth, shortcut="projection")
    assert count(net) == count(TwinPreactResNet(depth)) == params
    # the paper's table: 0.27 M, 0.85 M, 1.7 M
    paper = {20: 0.27e6, 56: 0.85e6, 110: 1.7e6}[depth]
    assert abs(params - paper) / paper < 0.025
    n = (depth - 2) // 6
    assert [len(block.layers) for block in net.blocks] == [n, n - 1, n - 1]
    assert [block.t for block in net.blocks] == [tuple(map(float, range(n + 1)))] + [
        tuple(map(float, range(1, n + 1)))
    ] * 2
    assert count(preact_resnet(20)) == 299_914  # the default is unchanged


def test_preact_resnet_rejects_an_unknown_shortcut():
    with pytest.raises(
        ValueError, match=r"^shortcut must be one of \('connective', 'projection'\)"
    ):
        preact_resnet(20, shortcut="B")


def test_network_controls_are_initialised_independently():
    net = preact_resnet(20)
    first, second = net.blocks[0].layers[0], net.blocks[0].layers[1]
    assert not torch.equal(first.conv1.weight, second.conv1.weight)


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
        lambda p: torch.optim.Adam(p, lr=1e-2),
    ],
)
def test_training_lowers_the_loss(make_optimizer):
    torch.manual_seed(1)
    net = DynamicNet(
        [
            Stage(
                4,
                8,
                lambda c: DoubleSymLayer(c, norm="tv"),
                [0, 0.5, 1],
                "rk4",
                interpolation="linear",
            ),
            Stage(
                8,
                8,
                lambda c: DoubleSymLayer(c, norm="batch"),
                [0, 1, 2, 3],
                "heun",
                [0.0],
                pool=None,
            ),
        ],
        num_classes=5,
    )
    x, labels = torch.randn(32, 3, 8, 8), torch.randint(0, 5, (32,))
    optimizer = make_optimizer(net.parameters())
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = F.cross_entropy(net(x), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    # every control of every block received a gradient
    for block in net.blocks:
        for layer in block.layers:
            assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
