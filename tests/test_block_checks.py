"""The blocks' input checks: layers that change the state's shape, and unused control times."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import dynamicblocks as db
from dynamicblocks import (
    TABLEAUS,
    ButcherTableau,
    DynamicBlock,
    HamiltonianBlock,
    ImplicitBlock,
    LeapfrogBlock,
    Stage,
)
from dynamicblocks.weights import unused_controls

GRID = (0.0, 0.5, 1.0)

LINEAR_4_TO_1 = "Linear(in_features=4, out_features=1, bias=True)"


def _shape_message(block: str, layer: str, state: tuple, output: str) -> str:
    """A regex for the whole shape error of ``block``."""
    return re.escape(
        f"{block}: the layer {layer} maps a state of shape {state} to {output}; "
        "a layer function must return a tensor of its input's shape"
    )


class Total(nn.Module):
    """Returns a scalar: the sum of its input."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x.sum()


class Number(nn.Module):
    """Returns a Python float, not a tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> float:
        return 1.0


def _run(block: nn.Module, x: torch.Tensor) -> None:
    """Forward (with autograd, so every memory mode takes its own path) and backward."""
    out = block(x)
    if isinstance(out, tuple):
        out = out[0]
    out.square().sum().backward()


# ============================================================ 1. a layer that changes the shape


@pytest.mark.parametrize("memory", DynamicBlock.memory_modes)
@pytest.mark.parametrize("interpolation", ["constant", "linear"])
@pytest.mark.parametrize("scheme", sorted(TABLEAUS))
def test_dynamic_block_rejects_a_layer_that_changes_the_shape(scheme, interpolation, memory):
    t_theta = (0.0, 1.0) if interpolation == "linear" else None  # linear: blended stages too
    block = DynamicBlock(nn.Linear(4, 1), GRID, scheme, t_theta, interpolation, memory=memory)
    with pytest.raises(
        ValueError, match=_shape_message("DynamicBlock", LINEAR_4_TO_1, (8, 4), "shape (8, 1)")
    ):
        _run(block, torch.randn(8, 4))


@pytest.mark.parametrize("memory", DynamicBlock.memory_modes)
def test_dynamic_block_rejects_a_layer_returning_a_scalar_or_a_bigger_state(memory):
    block = DynamicBlock(Total(), GRID, "rk4", memory=memory)
    with pytest.raises(
        ValueError, match=_shape_message("DynamicBlock", "Total()", (3, 2), "shape ()")
    ):
        _run(block, torch.randn(3, 2))
    wider = DynamicBlock(nn.Linear(2, 5), GRID, "heun", memory=memory)
    with pytest.raises(ValueError, match=r"DynamicBlock: .* \(3, 2\) to shape \(3, 5\)"):
        _run(wider, torch.randn(3, 2))


def test_the_message_names_a_multi_line_layer_by_its_class_and_a_non_tensor_by_its_type():
    layer = nn.Sequential(nn.Linear(4, 3), nn.Tanh())
    with pytest.raises(
        ValueError, match=_shape_message("DynamicBlock", "Sequential(...)", (8, 4), "shape (8, 3)")
    ):
        DynamicBlock(layer, GRID)(torch.randn(8, 4))
    with pytest.raises(ValueError, match=re.escape("(8, 4) to a float, not a tensor")):
        DynamicBlock(Number(), GRID)(torch.randn(8, 4))


@pytest.mark.parametrize(
    ("scheme", "theta"),
    [("backward_euler", None), ("trapezoid", None), ("implicit_midpoint", None), ("theta", 0.0)],
)
@pytest.mark.parametrize("interpolation", ["constant", "linear"])
def test_implicit_block_rejects_a_layer_that_changes_the_shape(scheme, theta, interpolation):
    block = ImplicitBlock(nn.Linear(4, 1), GRID, scheme, theta, interpolation=interpolation)
    with pytest.raises(
        ValueError, match=_shape_message("ImplicitBlock", LINEAR_4_TO_1, (8, 4), "shape (8, 1)")
    ):
        _run(block, torch.randn(8, 4))


@pytest.mark.parametrize("memory", HamiltonianBlock.memory_modes)
@pytest.mark.parametrize("interpolation", ["constant", "linear"])
def test_hamiltonian_block_checks_the_half_its_layer_acts_on(memory, interpolation):
    # a state of 4 channels: each field acts on (and must return) a half of 2 channels
    block = HamiltonianBlock(nn.Linear(2, 1), GRID, interpolation=interpolation, memory=memory)
    layer = "Linear(in_features=2, out_features=1, bias=True)"
    with pytest.raises(
        ValueError, match=_shape_message("HamiltonianBlock", layer, (8, 2), "shape (8, 1)")
    ):
        _run(block, torch.randn(8, 4))
    with pytest.raises(ValueError, match=r"HamiltonianBlock: .* \(8, 2\) to shape \(8, 1\)"):
        block.inverse(torch.randn(8, 4))


@pytest.mark.parametrize("memory", HamiltonianBlock.memory_modes)
def test_hamiltonian_block_on_a_pair_checks_each_field_against_the_stream_it_drives(memory):
    y, z = torch.randn(5, 3), torch.randn(5, 2)
    good = HamiltonianBlock(nn.Linear(2, 3), GRID, layer2=nn.Linear(3, 2), memory=memory)
    _run(good, (y, z))
    bad = HamiltonianBlock(nn.Linear(2, 2), GRID, layer2=nn.Linear(3, 2), memory=memory)
    expected = re.escape(
        "HamiltonianBlock: the layer Linear(in_features=2, out_features=2, bias=True) maps a "
        "state of shape (5, 2) to shape (5, 2); it must return a tensor of shape (5, 3), "
        "the shape of the state its output is added to"
    )
    with pytest.raises(ValueError, match=expected):
        _run(bad, (y, z))


@pytest.mark.parametrize("memory", LeapfrogBlock.memory_modes)
@pytest.mark.parametrize("interpolation", ["constant", "linear"])
def test_leapfrog_block_rejects_a_layer_that_changes_the_shape(memory, interpolation):
    block = LeapfrogBlock(nn.Linear(4, 1), GRID, interpolation=interpolation, memory=memory)
    with pytest.raises(
        ValueError, match=_shape_message("LeapfrogBlock", LINEAR_4_TO_1, (8, 4), "shape (8, 1)")
    ):
        _run(block, torch.randn(8, 4))
    with pytest.raises(ValueError, match=r"LeapfrogBlock: .* \(8, 4\) to shape \(8, 1\)"):
        block.inverse(torch.randn(8, 4), torch.randn(8, 4))


def _families(layer: nn.Module):
    yield from (DynamicBlock(layer, GRID, scheme, memory=memory)
                for scheme in TABLEAUS for memory in DynamicBlock.memory_modes)  # fmt: skip
    yield from (ImplicitBlock(layer, GRID, scheme, tol=1e-4)
                for scheme in ("backward_euler", "trapezoid", "implicit_midpoint"))  # fmt: skip
    yield from (LeapfrogBlock(layer, GRID, memory=memory) for memory in LeapfrogBlock.memory_modes)


def test_a_layer_that_keeps_the_shape_still_runs_in_every_block_and_mode():
    x = torch.randn(3, 4)
    for block in _families(nn.Linear(4, 4)):
        _run(block, x)
        assert all(p.grad is not None for p in block.parameters()), block
    for memory in HamiltonianBlock.memory_modes:
        block = HamiltonianBlock(nn.Linear(2, 2), GRID, memory=memory)
        _run(block, x)
        assert all(p.grad is not None for p in block.parameters())
        torch.testing.assert_close(block.inverse(block(x)), x)


# ========================================================== 2. control times that no stage uses


def _build(family: str, t, t_theta, interpolation: str = "constant", **kwargs) -> nn.Module:
    if family == "dynamic":
        return DynamicBlock(nn.Linear(2, 2), t, kwargs.pop("scheme", "euler"), t_theta,
                            interpolation, **kwargs)  # fmt: skip
    if family == "implicit":
        return ImplicitBlock(nn.Linear(2, 2), t, t_theta=t_theta, interpolation=interpolation,
                             **kwargs)  # fmt: skip
    block_type = HamiltonianBlock if family == "hamiltonian" else LeapfrogBlock
    return block_type(nn.Linear(2, 2), t, t_theta, interpolation, **kwargs)


FAMILIES = ("dynamic", "implicit", "hamiltonian", "leapfrog")
NAMES = {"dynamic": "DynamicBlock", "implicit": "ImplicitBlock",
         "hamiltonian": "HamiltonianBlock", "leapfrog": "LeapfrogBlock"}  # fmt: skip


@pytest.mark.parametrize("interpolation", ["constant", "linear"])
@pytest.mark.parametrize("family", FAMILIES)
def test_control_times_beyond_the_grid_that_no_stage_uses_are_rejected(family, interpolation):
    expected = (
        rf"{NAMES[family]}: t_theta = \[5, 6\] has control time \[6\] \(index 1\) outside the "
        r"grid's range \[0, 1\] that no stage uses, so its weights would never get a gradient"
    )
    with pytest.raises(ValueError, match=expected):
        _build(family, (0.0, 1.0), (5.0, 6.0), interpolation)


@pytest.mark.parametrize("family", FAMILIES)
def test_control_times_partly_outside_the_grid_are_rejected(family):
    with pytest.raises(
        ValueError, match=r"t_theta = \[0, 0.5, 3\] has control time \[3\] \(index 2\)"
    ):
        _build(family, (0.0, 1.0, 2.0), (0.0, 0.5, 3.0))
    with pytest.raises(
        ValueError, match=r"control times \[-2, 4\] \(indexes 0, 3\) outside .* \[0, 2\]"
    ):
        _build(family, (0.0, 1.0, 2.0), (-2.0, 0.0, 2.0, 4.0), "linear")


def test_the_message_says_where_the_stages_evaluate_theta_and_what_is_expected():
    with pytest.raises(ValueError) as info:
        DynamicBlock(nn.Linear(2, 2), (0.0, 1.0), "rk4", (0.0, 1.0, 3.0), "linear")
    message = str(info.value)
    assert "control time [3] (index 2)" in message
    assert "the stages evaluate theta(t) at [0, 0.5, 1]" in message
    assert "expected control times in [0, 1], or outside it only where a stage uses them" in message


def test_a_stage_whose_value_is_never_used_does_not_count():
    # c = (0, 1) with b = (1, 0): the stage at t_k + h reaches nothing
    dead = ButcherTableau("euler_dead_stage", 1, (0.0, 1.0), ((), (1.0,)), (1.0, 0.0))
    with pytest.raises(ValueError, match=r"control time \[2\]"):
        DynamicBlock(nn.Linear(2, 2), (0.0, 1.0), dead, (0.0, 2.0), "linear")
    DynamicBlock(nn.Linear(2, 2), (0.0, 1.0), "heun", (0.0, 2.0), "linear")  # its stage at 1 blends
    # the implicit schemes: theta = 0 evaluates only at t_k, backward Euler only at t_{k+1}
    with pytest.raises(ValueError, match=r"ImplicitBlock: .* control time \[2\]"):
        ImplicitBlock(nn.Linear(2, 2), (0.0, 1.0), "theta", 0.0, (0.0, 2.0), "linear")
    with pytest.raises(ValueError, match=r"ImplicitBlock: .* control time \[-1\]"):
        ImplicitBlock(nn.Linear(2, 2), (0.0, 1.0), t_theta=(-1.0, 0.0), interpolation="linear")
    ImplicitBlock(
        nn.Linear(2, 2), (0.0, 1.0), "trapezoid", t_theta=(0.0, 2.0), interpolation="linear"
    )


@pytest.mark.parametrize("interpolation", ["constant", "linear"])
@pytest.mark.parametrize("family", FAMILIES)
def test_legal_control_times_construct(family, interpolation):
    t = (0.0, 0.5, 1.0, 2.0)
    for t_theta in (None, t, t[:-1], (0.0,), (1.0,), (0.0, 2.0), (0.3, 0.7, 1.9)):
        _build(family, t, t_theta, interpolation)
    # outside the grid, but used: the first control before t[0], a linear neighbour of a stage
    _build(family, t, (-1.0, 1.0), interpolation)
    _build(family, t, (5.0,), interpolation)
    if interpolation == "linear":  # a stage at 1 (or 2) blends the controls at 0.8 and 3
        _build(family, t, (0.0, 0.8, 3.0), interpolation)


@pytest.mark.parametrize("interpolation", ["constant", "linear"])
@pytest.mark.parametrize("scheme", sorted(TABLEAUS))
def test_endpoints_construct_with_every_scheme(scheme, interpolation):
    DynamicBlock(nn.Linear(2, 2), GRID, scheme, GRID, interpolation)


def test_controls_inside_the_grid_are_accepted_even_where_no_stage_uses_them():
    # theta(t) is defined on the interval: a coarse grid may be refined or remanifested later
    block = DynamicBlock(nn.Linear(2, 2), (0.0, 1.0), "euler", (0.0, 0.25, 0.5, 0.75))
    assert unused_controls(block.t, (0.0,), block.t_theta, "constant") == (1, 2, 3)
    block.remanifest_(db.uniform_grid(0, 1, 4))
    assert unused_controls(block.t, (0.0,), block.t_theta, "constant") == ()


@pytest.mark.parametrize("interpolation", ["constant", "linear"])
def test_refined_and_projected_controls_construct(interpolation):
    t_theta = (0.0, 0.5, 1.0) if interpolation == "linear" else None
    block = DynamicBlock(nn.Linear(2, 2), db.uniform_grid(0, 1, 2), "rk4", t_theta, interpolation)
    for _ in range(2):
        block.refine_()
    rebuilt = DynamicBlock(nn.Linear(2, 2), block.t, "rk4", block.t_theta, interpolation)
    assert rebuilt.t_theta == block.t_theta
    block.project((0.0, 0.5))
    # theta at 2 has support on [0, 1] (so a projection is defined), but the one Euler
    # step evaluates theta only at 0
    coarse = DynamicBlock(nn.Linear(2, 2), (0.0, 1.0), "euler", (0.0, 0.5), interpolation)
    with pytest.raises(
        ValueError, match=r"DynamicBlock: t_theta = \[0, 2\] has control time \[2\]"
    ):
        coarse.project((0.0, 2.0), interpolation="linear")


def test_network_stages_and_presets():
    stage = Stage(4, 4, lambda c: db.MLP(c), (0.0, 1.0), t_theta=(5.0, 6.0), pool=None)
    with pytest.raises(
        ValueError, match=r"DynamicBlock: t_theta = \[5, 6\] has control time \[6\]"
    ):
        stage.build_block()
    for block in ("implicit", "hamiltonian", "leapfrog"):
        with pytest.raises(ValueError, match=rf"{NAMES[block]}: t_theta = \[5, 6\]"):
            Stage(
                4, 4, lambda c: db.MLP(c), (0.0, 1.0), t_theta=(5.0, 6.0), block=block
            ).build_block()
    db.rknet(widths=(2, 2, 2), scheme="euler")  # t_theta = t: the control at t[-1] is inside
    db.rknet(widths=(2, 2, 2), t=(0.0, 1.0), t_theta=(0.0, 2.0))
    with pytest.raises(ValueError, match=r"control time \[9\]"):
        db.rknet(widths=(2, 2, 2), t=(0.0, 1.0), t_theta=(0.0, 1.0, 9.0))
