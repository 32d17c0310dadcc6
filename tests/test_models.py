"""Presets against hand-written networks, and training that lowers the loss."""

import pytest
import torch
import torch.nn.functional as F

from dynamicblocks import (
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


def original_state_dict(widths=(16, 32, 64, 64), n_controls=5, classes=10, seed=0):
    """A random state dict with the keys and shapes of the original RKNet."""
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

    sd = {"open.conv.weight": r(widths[0], 3, 3, 3), "open.conv.bias": r(widths[0])}
    sd.update(bn("open.normLayer", widths[0]))
    for b, (c, c_out) in enumerate(zip(widths, widths[1:])):
        for k in range(n_controls):
            p = f"dynamicBlocks.{b}.controlLayers.{k}"
            weight = r(c, c, 3, 3, scale=0.1)
            sd.update(
                {
                    f"{p}.weight": weight,
                    f"{p}.conv.weight": weight,
                    f"{p}.convt.weight": weight,
                    f"{p}.conv.bias": r(c),
                    f"{p}.convt.bias": r(c),
                    f"{p}.normLayer.weight": torch.ones(c, dtype=torch.float64),
                    f"{p}.normLayer.bias": r(c),
                }
            )
        sd[f"connectors.{b}.conv.weight"] = r(c_out, c, 1, 1)
        sd[f"connectors.{b}.conv.bias"] = r(c_out)
        sd.update(bn(f"connectors.{b}.normLayer", c_out))
    sd["linear.weight"] = r(classes, widths[-1])
    sd["linear.bias"] = r(classes)
    return sd


def original_forward(sd, x, t_y, t_theta, training):
    """The original RKNet's forward pass, written out from its equations."""

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
        names = ("weight", "conv.bias", "convt.bias", "normLayer.bias")
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

    def double_sym(p, y):
        z = F.conv2d(y, p["weight"], p["conv.bias"], padding=1)
        z = z / torch.sqrt(torch.sum(z**2, dim=1, keepdim=True) + 1e-4)
        z = F.relu(z + p["normLayer.bias"].view(1, -1, 1, 1))
        return -F.conv_transpose2d(z, p["weight"], p["convt.bias"], padding=1)

    x = F.relu(
        batch_norm(
            F.conv2d(x, sd["open.conv.weight"], sd["open.conv.bias"], padding=1), "open.normLayer"
        )
    )
    n_blocks = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("dynamicBlocks"))
    for b in range(n_blocks):
        for t0, t1 in zip(t_y, t_y[1:]):
            h, mid = t1 - t0, t0 + (t1 - t0) / 2
            z1 = double_sym(interpolated(b, t0), x)
            z2 = double_sym(interpolated(b, mid), x + z1 * (h / 2))
            z3 = double_sym(interpolated(b, mid), x + z2 * (h / 2))
            z4 = double_sym(interpolated(b, t1), x + z3 * h)
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
