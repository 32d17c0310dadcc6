"""Bad-input errors of the public constructors, and light behaviour checks of the modules."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dynamicblocks import (
    MLP,
    TABLEAUS,
    ConnectiveUnit,
    DoubleLayer,
    DoubleSymLayer,
    DynamicBlock,
    DynamicNet,
    PreactDoubleLayer,
    Stage,
    TvNorm,
    make_activation,
    make_norm,
    preact_resnet,
    rknet,
    rknet_from_original,
)
from dynamicblocks.activations import ACTIVATIONS


def _lit(value) -> str:
    """A regex matching ``repr(value)`` literally."""
    return re.escape(repr(value))


# =========================================================================== DynamicBlock errors


@pytest.mark.parametrize(
    "layer, type_name",
    [(lambda x: x, "function"), (nn.Linear, "type"), (None, "NoneType"), ("relu", "str")],
)
def test_block_layer_must_be_module(layer, type_name):
    with pytest.raises(TypeError, match=rf"^layer must be an nn\.Module, got {type_name}$"):
        DynamicBlock(layer, [0.0, 1.0])


@pytest.mark.parametrize(
    "t, pattern",
    [
        ([0.0], r"^t must have at least 2 points, got 1: \[0\.0\]"),
        ([], r"^t must have at least 2 points, got 0"),
        ([0.0, 1.0, 1.0], r"^t must be strictly increasing, but t\[2\] = 1\.0 <= t\[1\] = 1\.0"),
        ([0.0, 2.0, 1.0], r"^t must be strictly increasing, but t\[2\] = 1\.0 <= t\[1\] = 2\.0"),
        ([0.0, float("nan"), 2.0], r"^t must be finite, got nan at index 1"),
        ([0.0, float("inf")], r"^t must be finite, got inf at index 1"),
        (torch.zeros(2, 2), r"^t must be 1-D, got an array of shape \(2, 2\)"),
    ],
)
def test_block_bad_t(t, pattern):
    with pytest.raises(ValueError, match=pattern):
        DynamicBlock(nn.Linear(2, 2), t)


def test_block_non_numeric_t():
    with pytest.raises(TypeError, match=r"^t must be a 1-D sequence of real numbers, got \['a'"):
        DynamicBlock(nn.Linear(2, 2), ["a", "b"])


@pytest.mark.parametrize(
    "t_theta, pattern",
    [
        ([], r"^t_theta must have at least 1 point, got 0"),
        (
            [0.0, 2.0, 1.0],
            r"^t_theta must be strictly increasing, but t_theta\[2\] = 1\.0 <= t_theta\[1\] = 2\.0",
        ),
        (
            [0.0, 0.5, 0.5, 1.0],
            r"^t_theta must be strictly increasing, but t_theta\[2\] = 0\.5 <= t_theta\[1\] = 0\.5",
        ),
        ([0.0, float("nan")], r"^t_theta must be finite, got nan at index 1"),
        ([float("-inf"), 0.0], r"^t_theta must be finite, got -inf at index 0"),
        ([[0.0, 1.0]], r"^t_theta must be 1-D, got an array of shape \(1, 2\)"),
    ],
)
def test_block_bad_t_theta(t_theta, pattern):
    with pytest.raises(ValueError, match=pattern):
        DynamicBlock(nn.Linear(2, 2), [0.0, 1.0, 2.0], t_theta=t_theta)


@pytest.mark.parametrize("scheme", ["rk5", "dopri8", ""])
def test_block_unknown_scheme_lists_known(scheme):
    with pytest.raises(ValueError, match=rf"^unknown scheme {_lit(scheme)}") as info:
        DynamicBlock(nn.Linear(2, 2), [0.0, 1.0], scheme=scheme)
    for name in TABLEAUS:
        assert repr(name) in str(info.value)


def test_block_scheme_of_wrong_type():
    with pytest.raises(TypeError, match=r"scheme must be a name or a ButcherTableau, got int"):
        DynamicBlock(nn.Linear(2, 2), [0.0, 1.0], scheme=4)


@pytest.mark.parametrize("interpolation", ["cubic", "Linear", "", None])
def test_block_unknown_interpolation(interpolation):
    pattern = rf"interpolation must be one of \('constant', 'linear'\), got {_lit(interpolation)}"
    with pytest.raises(ValueError, match=pattern):
        DynamicBlock(nn.Linear(2, 2), [0.0, 1.0], interpolation=interpolation)


# =========================================================================== DynamicBlock behaviour


def test_block_holds_independent_copies_of_the_prototype():
    torch.manual_seed(0)
    prototype = nn.Linear(3, 3)
    block = DynamicBlock(prototype, [0.0, 0.5, 1.5, 2.0])
    assert isinstance(block.layers, nn.ModuleList)
    assert len(block.layers) == 3
    proto_params = dict(prototype.named_parameters())
    storages = {p.data_ptr() for p in prototype.parameters()}
    for layer in block.layers:
        assert isinstance(layer, nn.Linear) and layer is not prototype
        params = dict(layer.named_parameters())
        assert params.keys() == proto_params.keys()
        for name, p in params.items():
            assert torch.equal(p, proto_params[name])  # copied, not re-initialised
            assert p is not proto_params[name]
            assert p.data_ptr() not in storages  # distinct storage everywhere
            storages.add(p.data_ptr())
    # the prototype itself is not registered
    assert len(list(block.parameters())) == 3 * len(proto_params)
    assert not {id(p) for p in prototype.parameters()} & {id(p) for p in block.parameters()}

    before = [layer.weight.detach().clone() for layer in block.layers]
    proto_before = prototype.weight.detach().clone()
    with torch.no_grad():
        block.layers[1].weight.add_(1.0)
    assert torch.equal(block.layers[1].weight, before[1] + 1.0)
    assert torch.equal(block.layers[0].weight, before[0])
    assert torch.equal(block.layers[2].weight, before[2])
    assert torch.equal(prototype.weight, proto_before)


def test_block_copies_buffers_independently():
    prototype = DoubleLayer(2, norm="batch")
    block = DynamicBlock(prototype, [0.0, 1.0, 2.0])
    means = [layer.norm1.running_mean for layer in block.layers]
    assert means[0] is not means[1]
    assert means[0].data_ptr() != means[1].data_ptr()
    with torch.no_grad():
        means[0].fill_(3.0)
    assert torch.equal(means[1], torch.zeros(2))
    assert torch.equal(prototype.norm1.running_mean, torch.zeros(2))


def test_block_default_t_theta_is_t_without_last_point():
    t = [0.0, 0.1, 0.4, 1.0, 2.5]
    block = DynamicBlock(nn.Linear(2, 2), t)
    assert block.t == tuple(t)
    assert block.t_theta == (0.0, 0.1, 0.4, 1.0)
    assert len(block.layers) == 4
    assert block.num_steps == 4


@pytest.mark.parametrize("t_theta", [[0.0], (1.7,), torch.tensor([-3.0])])
def test_block_single_control_time_gives_one_layer(t_theta):
    block = DynamicBlock(nn.Linear(2, 2), [0.0, 1.0, 2.0, 3.0], scheme="rk4", t_theta=t_theta)
    assert len(block.layers) == 1
    assert block.t_theta == (float(t_theta[0]),)


def test_block_number_of_layers_follows_t_theta():
    t_theta = [0.0, 0.25, 0.5, 0.75, 1.0]
    block = DynamicBlock(nn.Linear(2, 2), [0.0, 1.0], t_theta=t_theta, interpolation="linear")
    assert len(block.layers) == 5
    assert block.t_theta == tuple(t_theta)
    assert block.interpolation == "linear"


def test_block_accepts_scheme_case_insensitively_and_tableau_objects():
    block = DynamicBlock(nn.Linear(2, 2), [0.0, 1.0], scheme="RK4_38")
    assert block.tableau is TABLEAUS["rk4_38"]
    block = DynamicBlock(nn.Linear(2, 2), [0.0, 1.0], scheme=TABLEAUS["heun"])
    assert block.tableau is TABLEAUS["heun"]


def test_block_repr_shows_grid_scheme_and_controls():
    block = DynamicBlock(
        nn.Linear(2, 2), [0.0, 0.5, 1.0], scheme="ssprk3", t_theta=[0.0, 0.25, 0.75]
    )
    text = block.extra_repr()
    assert "t=[0, 0.5, 1]" in text
    assert "2 steps" in text
    assert "ssprk3" in text
    assert "t_theta=[0, 0.25, 0.75]" in text
    assert "3 controls" in text
    assert "constant" in text
    assert text in repr(block)

    other = DynamicBlock(nn.Linear(2, 2), [0.0, 2.0], scheme="heun", t_theta=[1.0])
    assert "heun" in repr(other)
    assert "1 control" in repr(other)
    assert "ssprk3" not in repr(other)


def test_block_reset_parameters_makes_controls_differ():
    torch.manual_seed(1)
    block = DynamicBlock(nn.Linear(4, 4), [0.0, 1.0, 2.0, 3.0])
    for layer in block.layers[1:]:
        assert torch.equal(layer.weight, block.layers[0].weight)
    block.reset_parameters()
    weights = [layer.weight.detach() for layer in block.layers]
    biases = [layer.bias.detach() for layer in block.layers]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not torch.allclose(weights[i], weights[j])
            assert not torch.allclose(biases[i], biases[j])


def test_block_reset_parameters_on_double_sym_layer():
    torch.manual_seed(2)
    prototype = DoubleSymLayer(2, norm="tv")
    with torch.no_grad():
        prototype.bias.fill_(1.0)
        prototype.norm.bias.fill_(1.0)
    block = DynamicBlock(prototype, [0.0, 1.0, 2.0])
    block.reset_parameters()
    assert not torch.allclose(block.layers[0].weight, block.layers[1].weight)
    for layer in block.layers:
        assert torch.equal(layer.bias, torch.zeros(2))
        assert torch.equal(layer.norm.bias, torch.zeros(2))


# =========================================================================== ConnectiveUnit


@pytest.mark.parametrize(
    "kwargs, name, value",
    [
        ({"in_channels": 0}, "in_channels", 0),
        ({"in_channels": -2}, "in_channels", -2),
        ({"in_channels": 2.0}, "in_channels", 2.0),
        ({"in_channels": True}, "in_channels", True),
        ({"out_channels": 0}, "out_channels", 0),
        ({"out_channels": "4"}, "out_channels", "4"),
        ({"kernel_size": 0}, "kernel_size", 0),
        ({"pool_size": 0}, "pool_size", 0),
        ({"pool_size": 1.5}, "pool_size", 1.5),
    ],
)
def test_connective_bad_sizes(kwargs, name, value):
    arguments = {"in_channels": 3, "out_channels": 4, **kwargs}
    with pytest.raises(ValueError, match=rf"^{name} must be a positive int, got {_lit(value)}$"):
        ConnectiveUnit(**arguments)


@pytest.mark.parametrize("kernel_size", [2, 4])
def test_connective_even_kernel(kernel_size):
    with pytest.raises(ValueError, match=rf"^kernel_size must be odd.*, got {kernel_size}$"):
        ConnectiveUnit(3, 4, kernel_size=kernel_size)


@pytest.mark.parametrize("pool", ["mean", "AVG", "none", 2])
def test_connective_unknown_pool(pool):
    with pytest.raises(
        ValueError, match=rf"pool must be one of .*'avg'.*'max'.*, got {_lit(pool)}"
    ):
        ConnectiveUnit(3, 4, pool=pool)


@pytest.mark.parametrize(
    "pool, pool_size, size, out_size",
    [
        ("avg", 2, 8, 4),
        ("max", 2, 8, 4),
        (None, 2, 8, 8),
        ("avg", 2, 7, 3),
        ("max", 4, 8, 2),
    ],
)
@pytest.mark.parametrize("kernel_size", [1, 3])
def test_connective_output_shapes(pool, pool_size, size, out_size, kernel_size):
    unit = ConnectiveUnit(3, 5, kernel_size=kernel_size, pool=pool, pool_size=pool_size)
    out = unit(torch.randn(2, 3, size, size))
    assert out.shape == (2, 5, out_size, out_size)


@pytest.mark.parametrize("pool", ["avg", "max", None])
def test_connective_matches_hand_computation(pool):
    torch.manual_seed(3)
    unit = ConnectiveUnit(3, 4, kernel_size=3, norm=None, act="relu", pool=pool).double()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    z = F.relu(F.conv2d(x, unit.conv.weight, unit.conv.bias, padding=1))
    if pool == "avg":
        z = F.avg_pool2d(z, 2)
    elif pool == "max":
        z = F.max_pool2d(z, 2)
    torch.testing.assert_close(unit(x), z, rtol=0, atol=1e-12)


# =========================================================================== layer functions

LAYERS = [DoubleLayer, PreactDoubleLayer, DoubleSymLayer]


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("kernel_size", [2, 4])
def test_layer_even_kernel(cls, kernel_size):
    with pytest.raises(ValueError, match=rf"^kernel_size must be odd.*, got {kernel_size}$"):
        cls(4, kernel_size=kernel_size)


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("kernel_size", [0, -3, 3.0])
def test_layer_non_positive_kernel(cls, kernel_size):
    with pytest.raises(
        ValueError, match=rf"^kernel_size must be a positive int, got {kernel_size}$"
    ):
        cls(4, kernel_size=kernel_size)


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("width", [0, -1, 2.5, True])
def test_layer_bad_width(cls, width):
    with pytest.raises(ValueError, match=rf"^width must be a positive int, got {_lit(width)}$"):
        cls(4, width=width)


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("channels", [0, -1, 2.5])
def test_layer_bad_channels_with_width_given(cls, channels):
    with pytest.raises(
        ValueError, match=rf"^channels must be a positive int, got {_lit(channels)}$"
    ):
        cls(channels, width=4)


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("channels", [0, -1])
def test_layer_bad_channels_with_default_width_names_channels(cls, channels):
    # width defaults to channels, but the error is about the argument the user passed
    with pytest.raises(ValueError, match=rf"^channels must be a positive int, got {channels}$"):
        cls(channels)


@pytest.mark.parametrize("cls", LAYERS)
def test_layer_keeps_shape(cls):
    layer = cls(3, width=5, kernel_size=3)
    x = torch.randn(2, 3, 6, 7)
    assert layer(x).shape == x.shape


@pytest.mark.parametrize(
    "kwargs, name, value",
    [
        ({"depth": 0}, "depth", 0),
        ({"depth": -1}, "depth", -1),
        ({"depth": 2.0}, "depth", 2.0),
        ({"depth": True}, "depth", True),
        ({"hidden": 0}, "hidden", 0),
        ({"features": 0}, "features", 0),
    ],
)
def test_mlp_bad_sizes(kwargs, name, value):
    arguments = {"features": 4, **kwargs}
    with pytest.raises(ValueError, match=rf"^{name} must be a positive int, got {_lit(value)}$"):
        MLP(**arguments)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_mlp_shape_and_depth(depth):
    mlp = MLP(6, hidden=9, depth=depth)
    x = torch.randn(5, 6)
    assert mlp(x).shape == (5, 6)
    linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == depth
    assert linears[0].in_features == 6 and linears[-1].out_features == 6
    for m in linears[:-1]:
        assert m.out_features == 9


def test_mlp_depth_one_is_affine():
    mlp = MLP(4, depth=1).double()
    (linear,) = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    x = torch.randn(3, 4, dtype=torch.float64)
    torch.testing.assert_close(mlp(x), x @ linear.weight.T + linear.bias, rtol=0, atol=1e-12)


@pytest.mark.parametrize("norm", [None, "batch"])
def test_mlp_matches_the_written_out_formula(norm):
    mlp = MLP(3, hidden=5, depth=2, act="tanh", norm=norm).double()
    first, last = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    norms = [m for m in mlp.modules() if isinstance(m, nn.BatchNorm1d)]
    assert len(norms) == (norm is not None)
    x = torch.randn(7, 3, dtype=torch.float64)
    z = x @ first.weight.T + first.bias
    if norm is not None:
        z = (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + norms[0].eps)
    expected = torch.tanh(z) @ last.weight.T + last.bias
    torch.testing.assert_close(mlp(x), expected, rtol=0, atol=1e-12)


# =========================================================================== norms and activations


@pytest.mark.parametrize("norm", ["group", "layer", "batchnorm", 3])
def test_make_norm_unknown(norm):
    with pytest.raises(ValueError, match=rf"^unknown norm {_lit(norm)}; expected 'batch', 'tv'"):
        make_norm(norm, 4)


def test_make_norm_is_case_insensitive():
    assert isinstance(make_norm("Batch", 4), nn.BatchNorm2d)
    assert isinstance(make_norm("TV", 4), TvNorm)


def test_make_norm_known():
    assert isinstance(make_norm("batch", 4), nn.BatchNorm2d)
    assert isinstance(make_norm("batch", 4, spatial_dims=0), nn.BatchNorm1d)
    assert isinstance(make_norm("tv", 4), TvNorm)
    assert isinstance(make_norm(None, 4), nn.Identity)
    assert isinstance(make_norm("none", 4), nn.Identity)
    assert make_norm(lambda c: nn.GroupNorm(2, c), 4).num_channels == 4


@pytest.mark.parametrize("act", ["swish", "ReLu6", "", "mish"])
def test_make_activation_unknown_lists_known(act):
    with pytest.raises(ValueError, match=rf"^unknown activation {_lit(act)}") as info:
        make_activation(act)
    for name in ACTIVATIONS:
        assert repr(name) in str(info.value)
    for name in ["relu", "tanh", "gelu", "identity"]:
        assert repr(name) in str(info.value)


@pytest.mark.parametrize("act", [3, 1.5])
def test_make_activation_wrong_type(act):
    with pytest.raises(TypeError, match=rf"got {type(act).__name__}$"):
        make_activation(act)


def test_make_activation_known():
    assert isinstance(make_activation("ReLU"), nn.ReLU)
    assert isinstance(make_activation("tanh"), nn.Tanh)
    assert isinstance(make_activation(None), nn.Identity)
    module = nn.GELU()
    assert make_activation(module) is module
    assert isinstance(make_activation(nn.SiLU), nn.SiLU)


@pytest.mark.parametrize("eps", [0, 0.0, -1e-4, float("nan")])
def test_tvnorm_bad_eps(eps):
    with pytest.raises(ValueError, match=rf"^eps must be positive, got {_lit(eps)}$"):
        TvNorm(4, eps=eps)


@pytest.mark.parametrize("channels", [0, -3, 2.5, True])
def test_tvnorm_bad_channels(channels):
    with pytest.raises(
        ValueError, match=rf"^channels must be a positive int, got {_lit(channels)}$"
    ):
        TvNorm(channels)


def _tvnorm_by_hand(x, bias, eps):
    total = torch.zeros_like(x[:, :1])
    for c in range(x.shape[1]):
        total = total + x[:, c : c + 1] ** 2
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return x / torch.sqrt(total + eps) + bias.reshape(shape)


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 4, 5), (2, 3, 7)], ids=["NC", "NCHW", "NCL"])
@pytest.mark.parametrize("eps", [1e-4, 0.5])
def test_tvnorm_forward_matches_hand_computation(shape, eps):
    torch.manual_seed(4)
    norm = TvNorm(3, eps=eps).double()
    assert torch.equal(norm.bias, torch.zeros(3, dtype=torch.float64))  # zero bias at start
    with torch.no_grad():
        norm.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
    x = torch.randn(*shape, dtype=torch.float64)
    expected = _tvnorm_by_hand(x, norm.bias.detach(), eps)
    torch.testing.assert_close(norm(x), expected, rtol=0, atol=1e-13)


def test_tvnorm_default_eps_and_repr():
    norm = TvNorm(6)
    assert norm.eps == 1e-4
    assert "6" in repr(norm) and "0.0001" in repr(norm)


# =========================================================================== DoubleSymLayer


def _sym_by_hand(x, weight_conv, weight_transpose, bias, bias_t, norm_bias, eps, padding):
    z = F.conv2d(x, weight_conv, bias, padding=padding)
    z = z / torch.sqrt((z**2).sum(dim=1, keepdim=True) + eps) + norm_bias.view(1, -1, 1, 1)
    z = torch.relu(z)
    return -F.conv_transpose2d(z, weight_transpose, bias_t, padding=padding)


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
def test_double_sym_layer_matches_hand_computation(kernel_size):
    torch.manual_seed(5)
    layer = DoubleSymLayer(3, width=5, kernel_size=kernel_size, norm="tv", act="relu").double()
    with torch.no_grad():
        layer.bias.normal_()
        layer.bias_transpose.normal_()
        layer.norm.bias.normal_()
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64)
    w = layer.weight.detach()
    expected = _sym_by_hand(
        x,
        w,
        w,
        layer.bias.detach(),
        layer.bias_transpose.detach(),
        layer.norm.bias.detach(),
        layer.norm.eps,
        kernel_size // 2,
    )
    out = layer(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_double_sym_layer_has_one_shared_weight():
    layer = DoubleSymLayer(3, width=5, kernel_size=3, norm="tv")
    four_d = [(name, p) for name, p in layer.named_parameters() if p.dim() == 4]
    assert len(four_d) == 1
    name, weight = four_d[0]
    assert name == "weight" and weight is layer.weight
    assert weight.shape == (5, 3, 3, 3)
    assert layer.bias.shape == (5,)
    assert layer.bias_transpose.shape == (3,)
    total = sum(p.numel() for p in layer.parameters())
    assert total == 5 * 3 * 3 * 3 + 5 + 3 + 5  # weight, bias, bias_transpose, TvNorm bias


def test_double_sym_layer_conv_and_transpose_use_the_same_parameter():
    torch.manual_seed(6)
    layer = DoubleSymLayer(2, width=4, kernel_size=3, norm="tv", act="relu").double()
    with torch.no_grad():
        layer.bias.normal_()
        layer.bias_transpose.normal_()
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    probe = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    (layer(x) * probe).sum().backward()

    # by hand, with two separate leaves for the two uses of the weight
    w_conv = layer.weight.detach().clone().requires_grad_(True)
    w_transpose = layer.weight.detach().clone().requires_grad_(True)
    out = _sym_by_hand(
        x,
        w_conv,
        w_transpose,
        layer.bias.detach(),
        layer.bias_transpose.detach(),
        layer.norm.bias.detach(),
        layer.norm.eps,
        1,
    )
    (out * probe).sum().backward()
    # both contributions are nonzero, and the layer's weight collects their sum
    assert w_conv.grad.abs().max() > 1e-6
    assert w_transpose.grad.abs().max() > 1e-6
    torch.testing.assert_close(
        layer.weight.grad, w_conv.grad + w_transpose.grad, rtol=0, atol=1e-12
    )

    # changing the one weight changes both the conv and the transpose
    with torch.no_grad():
        layer.weight.mul_(2.0)
    w2 = layer.weight.detach()
    expected = _sym_by_hand(
        x,
        w2,
        w2,
        layer.bias.detach(),
        layer.bias_transpose.detach(),
        layer.norm.bias.detach(),
        layer.norm.eps,
        1,
    )
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-12)


def test_double_sym_layer_without_bias():
    layer = DoubleSymLayer(2, bias=False, norm=None)
    assert layer.bias is None and layer.bias_transpose is None
    assert [name for name, _ in layer.named_parameters()] == ["weight"]


# =========================================================================== DynamicNet


def _stage(width, out, **kwargs):
    return Stage(width, out, lambda c: DoubleSymLayer(c, norm="tv"), [0.0, 1.0], **kwargs)


@pytest.mark.parametrize("stages", [[], ()])
def test_net_empty_stages(stages):
    with pytest.raises(ValueError, match=r"stages must contain at least one Stage"):
        DynamicNet(stages)


def test_net_mismatched_widths_names_both():
    stages = [_stage(4, 8), _stage(8, 6), _stage(5, 6)]
    pattern = r"^stages\[2\]\.width = 5 but stages\[1\]\.out_channels = 6; they must match$"
    with pytest.raises(ValueError, match=pattern):
        DynamicNet(stages)


@pytest.mark.parametrize(
    "entry, type_name", [({"width": 4}, "dict"), ((4, 4), "tuple"), (None, "NoneType")]
)
def test_net_non_stage_entry(entry, type_name):
    with pytest.raises(TypeError, match=rf"^stages\[1\] must be a Stage, got {type_name}$"):
        DynamicNet([_stage(4, 4), entry])


@pytest.mark.parametrize(
    "kwargs, name, value",
    [({"in_channels": 0}, "in_channels", 0), ({"num_classes": -1}, "num_classes", -1)],
)
def test_net_bad_in_channels_and_classes(kwargs, name, value):
    with pytest.raises(ValueError, match=rf"^{name} must be a positive int, got {_lit(value)}$"):
        DynamicNet([_stage(4, 4)], **kwargs)


def test_net_builds_and_maps_images_to_logits():
    net = DynamicNet([_stage(4, 6), _stage(6, 8, pool=None)], in_channels=2, num_classes=3)
    assert len(net.blocks) == 2 and len(net.connectives) == 2
    assert net(torch.randn(2, 2, 8, 8)).shape == (2, 3)


# =========================================================================== presets


@pytest.mark.parametrize("depth", [21, 0, True, 2, -4, 20.0, "20", 19])
def test_preact_resnet_bad_depth(depth):
    with pytest.raises(ValueError, match=rf"^depth must be 6n \+ 2 .*, got {_lit(depth)}$"):
        preact_resnet(depth)


@pytest.mark.parametrize("depth, steps", [(8, 1), (14, 2)])
def test_preact_resnet_steps_per_stage(depth, steps):
    net = preact_resnet(depth, widths=(4, 4, 4))
    assert [len(block.layers) for block in net.blocks] == [steps] * 3
    assert all(block.t == tuple(float(k) for k in range(steps + 1)) for block in net.blocks)


@pytest.mark.parametrize("widths", [(16,), (), [8]])
def test_rknet_widths_too_short(widths):
    with pytest.raises(ValueError, match=r"^widths must have at least two entries, got "):
        rknet(widths=widths)


def test_rknet_widths_message_shows_value():
    with pytest.raises(ValueError, match=re.escape("got (16,)")):
        rknet(widths=[16])


@pytest.mark.parametrize(
    "key", ["foo.weight", "opening.conv.weight", "dynamicBlocks.0.controlLayers.0.extra"]
)
def test_rknet_from_original_unknown_key(key):
    state = {"open.conv.weight": torch.zeros(4, 3, 3, 3), key: torch.zeros(1)}
    pattern = rf"^state_dict has key {_lit(key)}, which an original RKNet does not have$"
    with pytest.raises(ValueError, match=pattern):
        rknet_from_original(state)


def test_rknet_from_original_alias_mismatch():
    weight = torch.randn(4, 4, 3, 3)
    base = "dynamicBlocks.0.controlLayers.0."
    state = {base + "weight": weight, base + "conv.weight": weight + 1.0}
    pattern = re.escape(f"state_dict[{base + 'conv.weight'!r}] should be equal to {base}weight")
    with pytest.raises(ValueError, match=pattern):
        rknet_from_original(state)


def test_rknet_from_original_tvnorm_scale_must_be_ones():
    weight = torch.randn(4, 4, 3, 3)
    base = "dynamicBlocks.0.controlLayers.0."
    state = {base + "weight": weight, base + "normLayer.weight": torch.full((4,), 2.0)}
    pattern = re.escape(f"state_dict[{base + 'normLayer.weight'!r}] should be all ones")
    with pytest.raises(ValueError, match=pattern):
        rknet_from_original(state)


def test_rknet_from_original_empty_state_dict_has_a_clear_error():
    # an empty dict holds no block weights: the error should say so, naming state_dict
    with pytest.raises(ValueError, match="state_dict"):
        rknet_from_original({})
