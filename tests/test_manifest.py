"""Re-discretisation: remanifest, refine, project, time regularisation, convergence test."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import dynamicblocks as db
from dynamicblocks import MLP, DynamicBlock, refine_grid, uniform_grid
from dynamicblocks.analysis import convergence_test, fit_slope

pytestmark = pytest.mark.usefixtures("float64")  # checks to round-off


def smooth_block(interpolation="linear", scheme="rk4", steps=4, controls=(0.0, 0.5, 1.0)):
    torch.manual_seed(0)
    block = DynamicBlock(MLP(3, 8), uniform_grid(0, 1, steps), scheme, controls, interpolation)
    block.reset_parameters()
    return block


def controls_of(block: DynamicBlock, name: str) -> torch.Tensor:
    return torch.stack([layer.get_parameter(name).detach() for layer in block.layers])


# ------------------------------------------------------------------------------- remanifest


@pytest.mark.parametrize("interpolation", ["constant", "linear"])
def test_remanifest_with_the_same_grid_and_scheme_is_the_same_function(interpolation):
    block = smooth_block(interpolation, controls=(0.0, 0.3, 0.7))
    x = torch.randn(5, 3)
    copy = block.remanifest()
    assert copy is not block and copy.layers[0] is not block.layers[0]
    assert torch.equal(copy(x), block(x))


@pytest.mark.parametrize("interpolation", ["constant", "linear"])
def test_remanifest_equals_a_block_built_on_the_new_grid_with_the_same_controls(interpolation):
    block = smooth_block(interpolation, controls=(0.0, 0.3, 0.7))
    t = (0.0, 0.1, 0.45, 0.5, 1.0)
    built = DynamicBlock(MLP(3, 8), t, "midpoint", block.t_theta, interpolation)
    built.load_state_dict(block.state_dict())
    x = torch.randn(5, 3)
    new = block.remanifest(t=t, scheme="midpoint")
    assert new.t == t and new.tableau.name == "midpoint" and block.tableau.name == "rk4"
    assert torch.equal(new(x), built(x))


def test_remanifest_network_gives_every_block_a_uniform_grid_and_leaves_the_model():
    net = db.rknet(widths=(4, 6, 8))
    steps = [b.num_steps for b in db.dynamic_blocks(net)]
    coarse = db.remanifest(net, steps=2, scheme="euler")
    assert [b.num_steps for b in db.dynamic_blocks(coarse)] == [2, 2]
    assert all(b.t == (0.0, 2.0, 4.0) and b.tableau.name == "euler" for b in coarse.blocks)
    assert [b.num_steps for b in db.dynamic_blocks(net)] == steps  # unchanged
    with pytest.raises(ValueError, match="give steps or t, not both"):
        db.remanifest(net, steps=2, t=(0, 1))
    with pytest.raises(ValueError, match="contains no DynamicBlock"):
        db.remanifest(nn.Linear(2, 2), steps=2)
    with pytest.raises(ValueError, match="steps must be a positive int, got 0"):
        db.remanifest(net, steps=0)


def test_remanifest_rejects_a_bad_grid_and_scheme():
    block = smooth_block()
    with pytest.raises(ValueError, match="t must be strictly increasing"):
        block.remanifest(t=(0.0, 0.5, 0.5, 1.0))
    with pytest.raises(ValueError, match="unknown scheme"):
        block.remanifest(scheme="rk5")


# ---------------------------------------------------------------------------------- refine


@pytest.mark.parametrize(
    ("interpolation", "controls", "refined"),
    [
        ("constant", (0.0, 0.25, 0.5, 0.75), (0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875)),
        ("linear", (0.0, 0.5, 1.0), (0.0, 0.25, 0.5, 0.75, 1.0)),
    ],
)
def test_refine_keeps_theta_exactly(interpolation, controls, refined):
    block = smooth_block(interpolation, steps=4, controls=controls)
    same_theta_fine_grid = block.remanifest(t=refine_grid(block.t))
    x = torch.randn(5, 3)
    old_layers = list(block.layers)
    sources = block.refine_()
    assert block.t == refine_grid(uniform_grid(0, 1, 4)) and block.t_theta == refined
    assert all(block.layers[2 * j] is layer for j, layer in enumerate(old_layers))
    assert len(sources) == sum(1 for _ in block.layers[1].parameters()) * (len(refined) // 2)
    # theta(t) unchanged: the refined block is the old one remanifested on the fine grid
    torch.testing.assert_close(block(x), same_theta_fine_grid(x), rtol=0, atol=1e-14)


@pytest.mark.parametrize(("scheme", "order"), [("euler", 1), ("midpoint", 2), ("rk4", 4)])
def test_refinement_changes_the_output_by_the_discretisation_error(scheme, order):
    block = smooth_block("linear", scheme, steps=2, controls=(0.0, 0.5, 1.0))
    x = torch.randn(5, 3)
    outputs = [block(x)]
    for _ in range(5):
        block.refine_()
        outputs.append(block(x))
    changes = [(b - a).abs().max().item() for a, b in zip(outputs, outputs[1:])]
    rates = [math.log2(a / b) for a, b in zip(changes, changes[1:])]
    assert abs(rates[-1] - order) < 0.2, rates


def test_refining_constant_per_step_controls_gives_one_control_per_step_again():
    block = DynamicBlock(MLP(2, 4), (0.0, 1.0, 3.0), "euler")
    block.refine_()
    assert block.t == (0.0, 0.5, 1.0, 2.0, 3.0) and block.t_theta == block.t[:-1]


def test_refined_buffers_are_copied_or_averaged():
    block = DynamicBlock(MLP(2, 4, norm="batch"), (0, 1, 2), "rk4", (0.0, 2.0), "linear")
    for value, layer in zip((1.0, 3.0), block.layers):
        layer.net[1].running_mean.fill_(value)
        layer.net[1].num_batches_tracked.fill_(int(value))
    block.refine_()
    middle = block.layers[1].net[1]
    assert torch.equal(middle.running_mean, torch.full((4,), 2.0))
    assert middle.num_batches_tracked.item() == 1  # integers: the left control's


def test_carry_optimizer_state_gives_new_parameters_their_sources_momentum():
    block = DynamicBlock(MLP(2, 4), (0, 1, 2), "rk4", (0.0, 1.0, 2.0), "linear")
    old = torch.optim.SGD(block.parameters(), lr=0.1, momentum=0.9)
    block(torch.randn(3, 2)).square().sum().backward()
    old.step()
    old.param_groups[0]["lr"] = 0.05  # as a scheduler would leave it
    momentum = {p: old.state[p]["momentum_buffer"].clone() for p in block.parameters()}
    sources = block.refine_()
    new = torch.optim.SGD(block.parameters(), lr=0.1, momentum=0.9)
    db.carry_optimizer_state(old, new, sources)
    assert new.param_groups[0]["lr"] == 0.05
    for p in block.parameters():
        buffer = new.state[p]["momentum_buffer"]
        if p in momentum:
            assert torch.equal(buffer, momentum[p])
        else:
            left, right = (momentum[q] for q in sources[p])
            assert torch.equal(buffer, (left + right) / 2)
    with pytest.raises(ValueError, match="1 and 2 parameter groups"):
        two = [{"params": list(block.parameters())[:1]}, {"params": list(block.parameters())[1:]}]
        db.carry_optimizer_state(old, torch.optim.SGD(two, lr=0.1), sources)


def test_refine_to_match_reproduces_a_refined_models_shape():
    refined = db.rknet(widths=(4, 6, 8))
    db.refine_(refined)
    db.refine_(refined)
    fresh = db.rknet(widths=(4, 6, 8))
    assert db.refine_to_match_(fresh, refined.state_dict()) == 2
    fresh.load_state_dict(refined.state_dict())
    assert db.refine_to_match_(fresh, refined.state_dict()) == 0
    other = db.remanifest(db.rknet(widths=(4, 6, 8)), steps=3)
    other_state = db.rknet(widths=(4, 6, 8), t_theta=(0.0, 2.0, 4.0)).state_dict()
    with pytest.raises(ValueError, match="cannot be reached by refining"):
        db.refine_to_match_(other, other_state)
    hamiltonian = db.hamiltonian_net(widths=(4, 8))  # no DynamicBlock: nothing to refine
    assert db.refine_to_match_(hamiltonian, hamiltonian.state_dict()) == 0


# --------------------------------------------------------------------------------- project


@pytest.mark.parametrize("interpolation", ["constant", "linear"])
def test_projection_of_a_theta_in_the_coarse_space_returns_it_exactly(interpolation):
    fine = (0.0, 0.25, 0.5, 0.75) if interpolation == "constant" else (0, 0.25, 0.5, 0.75, 1)
    coarse = (0.0, 0.5) if interpolation == "constant" else (0.0, 0.5, 1.0)
    block = smooth_block(interpolation, controls=fine)
    with torch.no_grad():  # make theta(t) lie in the coarse space
        for j in (1, 3):
            for p, left, right in zip(
                *(block.layers[i].parameters() for i in (j, j - 1, min(j + 1, len(fine) - 1)))
            ):
                p.copy_(left if interpolation == "constant" else (left + right) / 2)
    projected = block.project(coarse)
    for name, _ in block.layers[0].named_parameters():
        expected = controls_of(block, name)[::2]
        torch.testing.assert_close(controls_of(projected, name), expected, rtol=0, atol=1e-13)
    x = torch.randn(4, 3)
    torch.testing.assert_close(projected(x), block(x), rtol=0, atol=1e-13)


def test_projection_onto_constants_is_the_time_average_over_each_coarse_interval():
    # fine linear theta on [0, 1]: the L2-best constant on [a, b) is its mean there
    block = smooth_block("linear", controls=(0.0, 0.4, 1.0))
    projected = block.project((0.0, 0.4), interpolation="constant")
    for name, _ in block.layers[0].named_parameters():
        v0, v1, v2 = controls_of(block, name)
        expected = torch.stack([(v0 + v1) / 2, (v1 + v2) / 2])  # trapezoid rule, exact here
        torch.testing.assert_close(controls_of(projected, name), expected, rtol=0, atol=1e-13)
    assert projected.interpolation == "constant" and block.interpolation == "linear"


def test_constant_projection_weights_each_fine_control_by_its_duration():
    block = smooth_block("constant", controls=(0.0, 0.2, 0.5, 0.9))
    projected = block.project((0.0,))
    for name, _ in block.layers[0].named_parameters():
        values = controls_of(block, name)
        durations = torch.tensor([0.2, 0.3, 0.4, 0.1]).view(-1, *[1] * (values.dim() - 1))
        expected = (durations * values).sum(0, keepdim=True)
        torch.testing.assert_close(controls_of(projected, name), expected, rtol=0, atol=1e-13)


def test_projection_rejects_more_controls_and_controls_without_support():
    block = smooth_block("linear", controls=(0.0, 0.5, 1.0))
    with pytest.raises(ValueError, match="t_theta has 4 control times but the block has 3"):
        block.project((0.0, 0.2, 0.4, 0.6))
    with pytest.raises(ValueError, match=r"t_theta\[1\] = 2: its constant basis function is zero"):
        block.project((0.0, 2.0), interpolation="constant")
    with pytest.raises(ValueError, match="t_theta must be strictly increasing"):
        block.project((0.5, 0.0))
    with pytest.raises(ValueError, match="interpolation must be one of"):
        block.project((0.0,), interpolation="cubic")


# -------------------------------------------------------------------------- batch norm rule


def test_batch_norm_statistics_live_per_control_and_follow_the_documented_rule():
    """Constant: step k's control; linear: the nearer control of each stage (left on a tie)."""
    x = torch.randn(8, 2)
    constant = DynamicBlock(MLP(2, 4, norm="batch"), (0.0, 1.0, 2.0), "rk4", (0.0, 1.0))
    constant.train()(x)
    assert [int(m.net[1].num_batches_tracked) for m in constant.layers] == [4, 4]
    # RK4 stages at s = 0, 0.5, 0.5, 1 of the step [0, 1]
    nearer = DynamicBlock(MLP(2, 4, norm="batch"), (0.0, 1.0), "rk4", (0.0, 0.6), "linear")
    nearer.train()(x)  # s = 0.5 is nearer control 1 (at 0.6); s = 1 lies beyond it
    assert [int(m.net[1].num_batches_tracked) for m in nearer.layers] == [1, 3]
    tie = DynamicBlock(MLP(2, 4, norm="batch"), (0.0, 1.0), "rk4", (0.0, 1.0), "linear")
    tie.train()(x)  # s = 0.5 is halfway: the left control
    assert [int(m.net[1].num_batches_tracked) for m in tie.layers] == [3, 1]


# ------------------------------------------------------------------------- regularisation


def test_time_regularization_equals_the_hand_written_sums():
    block = smooth_block("linear", controls=(0.0, 0.2, 1.0))
    names = [name for name, _ in block.layers[0].named_parameters()]
    l1 = sum(
        h * (controls_of(block, n)[k + 1] - controls_of(block, n)[k]).abs().sum()
        for k, h in enumerate((0.2, 0.8))
        for n in names
    )
    l2 = sum(
        0.5 * h * (controls_of(block, n)[k + 1] - controls_of(block, n)[k]).square().sum()
        for k, h in enumerate((0.2, 0.8))
        for n in names
    )
    torch.testing.assert_close(db.time_regularization(block, "l1"), l1)
    torch.testing.assert_close(db.time_regularization(nn.Sequential(block)), l2)
    db.time_regularization(block).backward()
    assert all(p.grad is not None for p in block.parameters())
    shared = DynamicBlock(MLP(3, 8), (0.0, 1.0), t_theta=(0.0,))
    assert db.time_regularization(shared).item() == 0.0
    with pytest.raises(ValueError, match="norm must be one of"):
        db.time_regularization(block, "l3")


def test_time_regularization_covers_both_fields_of_hamiltonian_blocks_and_the_others():
    torch.manual_seed(0)
    grid, controls = (0.0, 0.5, 1.0, 2.0), (0.0, 0.5, 2.0)

    def by_hand(*lists):
        return sum(
            0.5 * h * (q - p).square().sum()
            for layers in lists
            for (a, b), h in zip(zip(layers, layers[1:]), (0.5, 1.5))
            for p, q in zip(a.parameters(), b.parameters())
        )

    ham = db.HamiltonianBlock(MLP(2, 4), grid, controls)
    leap = db.LeapfrogBlock(MLP(2, 4), grid, controls)
    implicit = db.ImplicitBlock(MLP(2, 4), grid, t_theta=controls)
    for block in (ham, leap, implicit):
        block.reset_parameters()
    torch.testing.assert_close(db.time_regularization(ham), by_hand(ham.layers1, ham.layers2))
    torch.testing.assert_close(db.time_regularization(leap), by_hand(leap.layers))
    torch.testing.assert_close(db.time_regularization(implicit), by_hand(implicit.layers))
    total = db.time_regularization(nn.Sequential(ham, leap, implicit))
    every = by_hand(ham.layers1, ham.layers2, leap.layers, implicit.layers)
    torch.testing.assert_close(total, every)


# ------------------------------------------------------------------------ convergence test


def test_convergence_test_slopes_match_the_schemes_orders_on_an_analytic_field():
    a = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]])
    field = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        field.weight.copy_(a)
    block = DynamicBlock(field, (0.0, 1.0), "euler", t_theta=(0.0,))
    x0 = torch.tensor([[2.0, 0.0]])
    exact = x0 @ torch.linalg.matrix_exp(a).T
    result = convergence_test(block, lambda m: m(x0), ("euler", "midpoint", "rk4"),
                              (8, 16, 32, 64), reference=exact)  # fmt: skip
    for scheme, order in (("euler", 1), ("midpoint", 2), ("rk4", 4)):
        assert abs(result.slopes[scheme] - order) < 0.2, result.table()
    assert len(result.rows) == 12 and result.rows[0]["h"] == 1 / 8
    assert "slope rk4: 4.0" in result.table()


def test_convergence_test_default_reference_plot_and_bad_arguments(tmp_path):
    net = db.rknet(widths=(4, 6, 8)).eval()
    x = torch.randn(2, 3, 8, 8)
    result = convergence_test(net, lambda m: m(x), ("euler", "rk4"), (1, 2, 4))
    assert result.slopes["rk4"] > result.slopes["euler"] > 0
    result.plot(tmp_path / "convergence.png")
    assert (tmp_path / "convergence.png").stat().st_size > 0
    with pytest.raises(ValueError, match="contains no DynamicBlock"):
        convergence_test(nn.Linear(2, 2), lambda m: 0.0)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        convergence_test(net, lambda m: 0.0, steps=(0,))


def test_fit_slope():
    assert fit_slope([1, 0.5, 0.25], [3.0, 0.75, 0.1875]) == pytest.approx(2.0)
    assert math.isnan(fit_slope([1, 0.5], [0.0, 0.0]))
