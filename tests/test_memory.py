"""Memory modes of DynamicBlock: checkpoint equals full, adjoint converges to it, set_memory."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

import dynamicblocks as db

pytestmark = pytest.mark.usefixtures("float64")


def _block(scheme="rk4", steps=4, interpolation="constant", t_theta=None, **layer_kwargs):
    layer = db.DoubleSymLayer(3, **layer_kwargs)
    block = db.DynamicBlock(layer, db.uniform_grid(0, 1, steps), scheme, t_theta, interpolation)
    block.reset_parameters()
    return block


def _gradients(block: nn.Module, x: torch.Tensor, trajectory: bool = False) -> list[torch.Tensor]:
    """d(sum of squares of the output)/d(x and every parameter); zeros for unused ones."""
    inputs = [x, *block.parameters()]
    out = block(x, return_trajectory=trajectory) if trajectory else block(x)
    grads = torch.autograd.grad((out**2).sum(), inputs, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(inputs, grads)]


def _relative(grads: list[torch.Tensor], reference: list[torch.Tensor]) -> float:
    num = sum(((g - r) ** 2).sum() for g, r in zip(grads, reference))
    return math.sqrt(num / sum((r**2).sum() for r in reference))


def _saved_bytes(run) -> int:
    """Bytes of the distinct storages autograd saves for backward while ``run()`` runs."""
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run()
    return sum(storages.values())


@pytest.mark.parametrize("scheme", ["euler", "rk4"])
@pytest.mark.parametrize("interpolation, t_theta", [("constant", None), ("linear", (0, 0.5, 1))])
def test_checkpoint_equals_full_with_batchnorm_in_training(scheme, interpolation, t_theta):
    full = _block(scheme, 4, interpolation, t_theta, norm="batch")
    checkpointed = copy.deepcopy(full)
    checkpointed.memory = "checkpoint"
    x = torch.randn(4, 3, 5, 5, requires_grad=True)
    reference, grads = _gradients(full, x), _gradients(checkpointed, x)
    for g, r in zip(grads, reference):
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12)
    # the recomputation's second update of the running statistics is undone
    for b, r in zip(checkpointed.buffers(), full.buffers()):
        assert torch.equal(b, r)


def test_checkpoint_replays_the_random_numbers_of_dropout():
    field = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.5), nn.Tanh(), nn.Linear(16, 4))
    full = db.DynamicBlock(field, db.uniform_grid(0, 1, 3), "midpoint")
    checkpointed = copy.deepcopy(full)
    checkpointed.memory = "checkpoint"
    x = torch.randn(8, 4, requires_grad=True)
    torch.manual_seed(3)
    reference = _gradients(full, x)
    torch.manual_seed(3)
    grads = _gradients(checkpointed, x)
    for g, r in zip(grads, reference):
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12)


def test_checkpoint_stores_a_state_per_sqrt_n_segment_and_adjoint_nothing_per_step():
    """Full grows by every stage's activations, checkpoint by one state per segment of
    ceil(sqrt(n)) steps, adjoint not at all."""
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    state = x.numel() * x.element_size()
    saved = {}
    for mode in ("full", "checkpoint", "adjoint"):
        for steps in (1, 4, 10, 16, 64):
            block = _block("rk4", steps, norm=None)
            block.memory = mode
            saved[mode, steps] = _saved_bytes(lambda b=block: b(x))
    segments = {1: 1, 4: 2, 10: 3, 16: 4, 64: 8}  # ceil(n / ceil(sqrt(n)))
    for steps, count in segments.items():
        assert saved["checkpoint", steps] - saved["checkpoint", 1] == (count - 1) * state
        assert saved["adjoint", steps] == saved["adjoint", 1]
    per_step = (saved["full", 64] - saved["full", 1]) / 63
    assert per_step > 8 * state  # per stage: the conv input and the relu output


def test_checkpoint_segments_keep_a_trajectory_and_its_gradients():
    full = _block("midpoint", 10, "linear", (0, 0.5, 1), norm="tv")
    checkpointed = copy.deepcopy(full)
    checkpointed.memory = "checkpoint"
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    reference, grads = _gradients(full, x, True), _gradients(checkpointed, x, True)
    for g, r in zip(grads, reference):
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("scheme, order", [("euler", 1), ("midpoint", 2), ("rk4", 4)])
@pytest.mark.parametrize("interpolation", ["constant", "linear"])
def test_adjoint_gradients_converge_to_full_at_the_schemes_order(scheme, order, interpolation):
    base = db.DynamicBlock(
        db.DoubleSymLayer(3, norm=None, act="tanh"), (0, 1), scheme, (0, 0.5, 1), interpolation
    )
    base.reset_parameters()
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    errors = []
    for steps in (4, 8, 16):
        full = base.remanifest(db.uniform_grid(0, 1, steps))
        adjoint = copy.deepcopy(full)
        adjoint.memory = "adjoint"
        errors.append(_relative(_gradients(adjoint, x), _gradients(full, x)))
    rate = math.log2(errors[-2] / errors[-1])
    assert abs(rate - order) < 0.35, (errors, rate)


@pytest.mark.parametrize(
    "ours, theirs", [("euler", "euler"), ("midpoint", "midpoint"), ("rk4_38", "rk4")]
)
@pytest.mark.parametrize("trajectory", [False, True])
def test_adjoint_equals_torchdiffeq_odeint_adjoint_on_a_shared_weight_field(
    ours, theirs, trajectory
):
    from torchdiffeq import odeint_adjoint

    block = db.DynamicBlock(
        db.DoubleSymLayer(3, norm="tv", act="tanh"), db.uniform_grid(0, 1.5, 6), ours, (0.0,)
    )
    block.memory = "adjoint"
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    grads = _gradients(block, x, trajectory)

    class Field(nn.Module):
        def __init__(self, layer):
            super().__init__()
            self.layer = layer

        def forward(self, t, y):
            return self.layer(y)

    field = Field(block.layers[0])
    times = torch.tensor(block.t) if trajectory else torch.tensor([0.0, 1.5])
    options = {"step_size": 0.25}
    out = odeint_adjoint(field, x, times, method=theirs, options=options, adjoint_options=options)
    out = out if trajectory else out[-1]
    reference = torch.autograd.grad((out**2).sum(), [x, *field.parameters()])
    for g, r in zip(grads, reference):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


def test_euler_adjoint_and_discrete_gradients_for_a_linear_field():
    """For f_k(x) = W_k x the Jacobian is state-free: input gradients agree exactly, the
    weight gradients (which see the states) by O(h)."""
    torch.manual_seed(0)
    base = db.DynamicBlock(nn.Linear(3, 3, bias=False), (0, 1), "euler", (0, 0.5))
    base.reset_parameters()
    x = torch.randn(5, 3, requires_grad=True)
    weight_errors = []
    for steps in (8, 16, 32):
        full = base.remanifest(db.uniform_grid(0, 1, steps))
        adjoint = copy.deepcopy(full)
        adjoint.memory = "adjoint"
        grads, reference = _gradients(adjoint, x), _gradients(full, x)
        torch.testing.assert_close(grads[0], reference[0], rtol=1e-13, atol=1e-13)
        weight_errors.append(_relative(grads[1:], reference[1:]))
    rates = [math.log2(a / b) for a, b in zip(weight_errors, weight_errors[1:])]
    assert all(abs(rate - 1) < 0.1 for rate in rates), (weight_errors, rates)


def test_adjoint_leaves_the_running_statistics_as_the_forward_pass_left_them():
    full = _block("rk4", 3, norm="batch")
    adjoint = copy.deepcopy(full)
    adjoint.memory = "adjoint"
    x = torch.randn(4, 3, 5, 5, requires_grad=True)
    _gradients(full, x)
    grads = _gradients(adjoint, x)
    for b, r in zip(adjoint.buffers(), full.buffers()):
        assert torch.equal(b, r)
    assert all(torch.isfinite(g).all() for g in grads)


def test_modes_compute_the_same_outputs_and_skip_their_machinery_without_grad():
    block = _block("rk4", 3, "linear", (0, 1), norm="tv")
    x = torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        reference = block(x, return_trajectory=True)
        for mode in ("checkpoint", "adjoint"):
            block.memory = mode
            assert torch.equal(block(x, return_trajectory=True), reference)
    for mode in ("checkpoint", "adjoint"):
        block.memory = mode
        assert torch.equal(block(x.requires_grad_()).detach(), reference[-1])


def test_set_memory_sets_every_block_of_a_network_and_checkpoint_keeps_its_gradients():
    torch.manual_seed(0)
    net = db.rknet(widths=(4, 6, 6))
    x = torch.randn(2, 3, 8, 8)
    reference = torch.autograd.grad(net(x).square().sum(), list(net.parameters()))
    assert db.set_memory(net, "checkpoint") == ["blocks.0", "blocks.1"]
    assert [b.memory for b in net.blocks] == ["checkpoint"] * 2
    grads = torch.autograd.grad(net(x).square().sum(), list(net.parameters()))
    for g, r in zip(grads, reference):
        torch.testing.assert_close(g, r, rtol=1e-11, atol=1e-12)
    remanifested = db.remanifest(net, steps=2)
    assert [b.memory for b in remanifested.blocks] == ["checkpoint"] * 2


def test_bad_memory_modes_are_named_and_change_nothing():
    with pytest.raises(
        ValueError,
        match=r"DynamicBlock\.memory must be one of \('full', 'checkpoint', "
        r"'adjoint'\), got 'everything'",
    ):
        db.DynamicBlock(nn.Linear(2, 2), (0, 1), memory="everything")
    net = db.rknet(widths=(4, 6))
    with pytest.raises(
        ValueError, match="block 'blocks.0'.*got 'reversible'.*needs an invertible block"
    ):
        db.set_memory(net, "reversible")
    assert net.blocks[0].memory == "full"
    with pytest.raises(ValueError, match="mode must be one of"):
        db.set_memory(net, "none")
    with pytest.raises(ValueError, match="Linear contains no block"):
        db.set_memory(nn.Linear(2, 2), "checkpoint")
    implicit = db.ImplicitBlock(nn.Linear(2, 2), (0, 1))
    with pytest.raises(
        ValueError,
        match=r"block '\(the module\)': ImplicitBlock\.memory must be one of "
        r"\('full',\), got 'checkpoint'",
    ):
        db.set_memory(implicit, "checkpoint")


def _invertible(kind: str, memory: str = "full", norm: str | None = "batch") -> nn.Module:
    grid, layer = (0.0, 0.3, 0.5, 1.0), db.DoubleSymLayer(2, norm=norm)
    if kind == "hamiltonian":
        block = db.HamiltonianBlock(layer, grid, (0.0, 1.0), "linear", memory=memory)
    else:
        block = db.LeapfrogBlock(layer, grid, start="taylor", memory=memory)
    block.reset_parameters()
    return block


@pytest.mark.parametrize("kind", ["hamiltonian", "leapfrog"])
@pytest.mark.parametrize("mode", ["checkpoint", "reversible"])
def test_invertible_blocks_give_full_gradients_and_buffers_in_every_mode(kind, mode):
    torch.manual_seed(0)
    full = _invertible(kind)
    other = copy.deepcopy(full)
    other.memory = mode
    x = torch.randn(3, 4 if kind == "hamiltonian" else 2, 5, 5, requires_grad=True)
    reference, grads = _gradients(full, x), _gradients(other, x)
    for g, r in zip(grads, reference):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)
    for b, r in zip(other.buffers(), full.buffers()):
        torch.testing.assert_close(b, r, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["hamiltonian", "leapfrog"])
def test_reversible_saves_only_the_output_and_checkpoint_one_state_a_step(kind):
    channels = 4 if kind == "hamiltonian" else 2
    x = torch.randn(2, channels, 5, 5, requires_grad=True)
    state = x.numel() * x.element_size()
    saved = {}
    cls = db.HamiltonianBlock if kind == "hamiltonian" else db.LeapfrogBlock
    for mode in ("full", "checkpoint", "reversible"):
        for steps in (2, 10):
            block = cls(db.DoubleSymLayer(2, norm=None), db.uniform_grid(0, 1, steps), memory=mode)
            saved[mode, steps] = _saved_bytes(lambda b=block: b(x))
    assert saved["reversible", 10] == saved["reversible", 2]
    per_step = {m: (saved[m, 10] - saved[m, 2]) / 8 for m in ("full", "checkpoint")}
    assert per_step["checkpoint"] <= state  # the step's input (y, z), or y_k and y_{k-1}
    assert per_step["full"] > 2 * per_step["checkpoint"]


def test_reversible_falls_back_to_stored_states_for_a_trajectory():
    block = _invertible("hamiltonian", "reversible", norm="tv")
    full = copy.deepcopy(block)
    full.memory = "full"
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    grads = _gradients(block, x, trajectory=True)
    for g, r in zip(grads, _gradients(full, x, trajectory=True)):
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12)


def test_hamiltonian_net_trains_reversibly_with_the_gradients_of_full():
    torch.manual_seed(0)
    net = db.hamiltonian_net(widths=(4, 8, 8), t=(0.0, 0.5, 1.0))
    x = torch.randn(2, 3, 8, 8)
    reference = torch.autograd.grad(net(x).square().sum(), list(net.parameters()))
    assert db.set_memory(net, "reversible") == ["blocks.0", "blocks.1"]
    grads = torch.autograd.grad(net(x).square().sum(), list(net.parameters()))
    for g, r in zip(grads, reference):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-11)
    with pytest.raises(
        ValueError, match="HamiltonianBlock.memory must be one of .*, got 'adjoint'"
    ):
        db.set_memory(net, "adjoint")


@pytest.mark.parametrize("kind", ["hamiltonian", "leapfrog"])
def test_checkpointed_invertible_blocks_keep_trajectories(kind):
    full = _invertible(kind, norm="tv")
    checkpointed = copy.deepcopy(full)
    checkpointed.memory = "checkpoint"
    x = torch.randn(2, 4 if kind == "hamiltonian" else 2, 5, 5, requires_grad=True)
    reference, grads = _gradients(full, x, True), _gradients(checkpointed, x, True)
    for g, r in zip(grads, reference):
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12)
