"""Reversible backpropagation: outputs, gradients, buffers, saved memory against the full mode."""

import copy

import pytest
import torch
from conftest import random_grid
from torch import nn

from dynamicblocks import MLP, DoubleSymLayer, uniform_grid
from dynamicblocks.hamiltonian import HamiltonianBlock, LeapfrogBlock
from dynamicblocks.reversible import leapfrog_reversible, verlet_reversible

pytestmark = pytest.mark.usefixtures("float64")

OUT_TOL = 1e-12
GRAD_TOL = 1e-10


class Affine(nn.Module):
    """f(x) = tanh(x W^T + b) from ``n_in`` to ``n_out`` features (two stream sizes)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in) / n_in**0.5)
        self.bias = nn.Parameter(torch.randn(n_out))

    def forward(self, x):
        return torch.tanh(x @ self.weight.T + self.bias)


class Matrix(nn.Module):
    """A fixed linear field f(x) = x M^T (M a buffer: no parameters)."""

    def __init__(self, matrix: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("matrix", matrix)

    def forward(self, x):
        return x @ self.matrix.T


class Zero(nn.Module):
    """f(x) = 0, not even depending on x for autograd."""

    def forward(self, x):
        return torch.zeros_like(x)


def randomize(block: nn.Module, scale: float = 0.3) -> nn.Module:
    """Perturb every parameter (so that biases initialised to zero matter)."""
    with torch.no_grad():
        for p in block.parameters():
            p.add_(scale * torch.randn_like(p))
    return block


# (field, input factory, grid, t_theta, interpolation); each field maps a state to its shape
FIELDS = {
    "sym_relu_constant": (
        lambda: DoubleSymLayer(2, norm=None),
        lambda: torch.randn(2, 2, 4, 4),
        uniform_grid(0.0, 1.0, 5),
        None,
        "constant",
    ),
    "sym_tv_linear_random_grid": (
        lambda: DoubleSymLayer(2, norm="tv", act="tanh"),
        lambda: torch.randn(2, 2, 4, 4),
        random_grid(6, 0.0, 1.5, seed=3),
        [0.1, 0.6, 1.2],
        "linear",
    ),
    "mlp_shared_random_grid": (
        lambda: MLP(3, hidden=6),
        lambda: torch.randn(5, 3),
        random_grid(7, 0.0, 2.0, seed=4),
        [0.0],
        "constant",
    ),
    "mlp_linear": (
        lambda: MLP(3, hidden=6),
        lambda: torch.randn(5, 3),
        uniform_grid(0.0, 1.0, 6),
        [0.0, 0.4, 1.0],
        "linear",
    ),
}


def weighted_sum(outputs, weights):
    return sum((o * w).sum() for o, w in zip(outputs, weights))


def gradients(outputs, inputs, weights):
    """Gradients of ``sum <outputs, weights>``; ``None`` for inputs it does not reach."""
    wanted = [x for x in inputs if x.requires_grad]
    found = iter(torch.autograd.grad(weighted_sum(outputs, weights), wanted, allow_unused=True))
    return [next(found) if x.requires_grad else None for x in inputs]


def max_difference(first, second) -> float:
    """Largest entry-wise difference; both ``None`` (or both tensors) required."""
    worst = 0.0
    for a, b in zip(first, second, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            worst = max(worst, (a - b).abs().max().item())
    return worst


def make_verlet(field: str) -> tuple[HamiltonianBlock, torch.Tensor, torch.Tensor]:
    layer, data, t, t_theta, interpolation = FIELDS[field]
    block = randomize(HamiltonianBlock(layer(), t, t_theta, interpolation).double())
    return block, data().requires_grad_(), data().requires_grad_()


def make_leapfrog(
    field: str, start: str
) -> tuple[LeapfrogBlock, torch.Tensor, torch.Tensor | None]:
    layer, data, t, t_theta, interpolation = FIELDS[field]
    block = LeapfrogBlock(
        layer(), t, t_theta, interpolation, start="rest" if start == "prev" else start
    )
    block = randomize(block.double())
    x = data().requires_grad_()
    x_prev = (x.detach() + 0.1 * torch.randn_like(x)).requires_grad_() if start == "prev" else None
    return block, x, x_prev


def compare_verlet(block, y, z, reference=None):
    """Reversible vs full outputs and gradients for (y, z) and every parameter."""
    reference = block if reference is None else reference
    inputs = [y, z, *block.parameters()]
    full = reference((y, z))
    weights = [torch.randn_like(v) for v in full]
    full_grads = gradients(full, [y, z, *reference.parameters()], weights)
    rev = verlet_reversible(block, y, z)
    rev_grads = gradients(rev, inputs, weights)
    return max_difference(full, rev), max_difference(full_grads, rev_grads)


def compare_leapfrog(block, x, x_prev, reference=None):
    reference = block if reference is None else reference
    own = [x] + ([x_prev] if x_prev is not None else [])
    full = reference(x, x_prev, return_pair=True)
    weights = [torch.randn_like(v) for v in full]
    full_grads = gradients(full, own + list(reference.parameters()), weights)
    rev = leapfrog_reversible(block, x, x_prev)
    rev_grads = gradients(rev, own + list(block.parameters()), weights)
    return max_difference(full, rev), max_difference(full_grads, rev_grads)


# ======================================================================== outputs and gradients


@pytest.mark.parametrize("field", FIELDS)
def test_verlet_matches_full_mode(field):
    block, y, z = make_verlet(field)
    out, grad = compare_verlet(block, y, z)
    assert out < OUT_TOL
    assert grad < GRAD_TOL


def test_verlet_two_fields_of_different_shapes():
    t = random_grid(5, 0.0, 1.0, seed=2)
    block = HamiltonianBlock(Affine(2, 3), t, [0.2, 0.5, 0.9], "linear", layer2=Affine(3, 2))
    y, z = torch.randn(4, 3, requires_grad=True), torch.randn(4, 2, requires_grad=True)
    out, grad = compare_verlet(block.double(), y, z)
    assert out < OUT_TOL
    assert grad < GRAD_TOL


@pytest.mark.parametrize("start", ["rest", "taylor", "prev"])
@pytest.mark.parametrize("field", FIELDS)
def test_leapfrog_matches_full_mode(field, start):
    block, x, x_prev = make_leapfrog(field, start)
    out, grad = compare_leapfrog(block, x, x_prev)
    assert out < OUT_TOL
    assert grad < GRAD_TOL


@pytest.mark.parametrize("start", ["rest", "taylor", "prev"])
def test_one_step_blocks(start):
    """One step: the leapfrog's y_{N-1} is the input itself."""
    hamiltonian = randomize(HamiltonianBlock(MLP(3, hidden=4), [0.0, 0.7]))
    y, z = torch.randn(2, 3, requires_grad=True), torch.randn(2, 3, requires_grad=True)
    assert max(compare_verlet(hamiltonian, y, z)) < GRAD_TOL
    leapfrog = randomize(LeapfrogBlock(MLP(3, hidden=4), [0.0, 0.7], start="taylor"))
    x = torch.randn(2, 3, requires_grad=True)
    x_prev = torch.randn(2, 3, requires_grad=True) if start == "prev" else None
    assert max(compare_leapfrog(leapfrog, x, x_prev)) < GRAD_TOL


def test_parameterless_and_input_independent_fields():
    t = uniform_grid(0.0, 1.0, 4)
    block = HamiltonianBlock(Matrix(torch.randn(3, 3)), t, layer2=Zero())
    y, z = torch.randn(2, 3, requires_grad=True), torch.randn(2, 3, requires_grad=True)
    assert max(compare_verlet(block, y, z)) < GRAD_TOL
    leapfrog = LeapfrogBlock(Zero(), t)
    x = torch.randn(2, 3, requires_grad=True)
    assert max(compare_leapfrog(leapfrog, x, None)) < GRAD_TOL


def test_frozen_parameters_and_inputs_without_grad():
    block, _, _ = make_verlet("mlp_linear")
    for p in block.layers1.parameters():
        p.requires_grad_(False)
    y, z = torch.randn(5, 3), torch.randn(5, 3)  # only the parameters of F2 need gradients
    assert max(compare_verlet(block, y, z)) < GRAD_TOL
    leapfrog, x, _ = make_leapfrog("mlp_linear", "rest")
    leapfrog.layers[0].requires_grad_(False)
    assert max(compare_leapfrog(leapfrog, x.detach(), None)) < GRAD_TOL


def test_no_grad_inference():
    block, y, z = make_verlet("mlp_linear")
    with torch.no_grad():
        rev = verlet_reversible(block, y, z)
        full = block((y, z))
    assert all(torch.equal(a, b) and not a.requires_grad for a, b in zip(rev, full))


# ============================================================================ gradcheck


def test_gradcheck_verlet():
    block = randomize(
        HamiltonianBlock(MLP(2, hidden=3), [0.0, 0.3, 0.7, 1.0], [0.0, 1.0], "linear")
    )
    y, z = torch.randn(2, 2, requires_grad=True), torch.randn(2, 2, requires_grad=True)
    weight = block.layers2[1].net[0].weight  # perturbed in place by gradcheck: the block sees it

    def run(y, z, weight):
        return verlet_reversible(block, y, z)

    assert torch.autograd.gradcheck(run, (y, z, weight))


@pytest.mark.parametrize("start", ["taylor", "prev"])
def test_gradcheck_leapfrog(start):
    t = [0.0, 0.2, 0.5, 0.6, 1.0]
    block = LeapfrogBlock(MLP(2, hidden=3), t, [0.0, 1.0], "linear", start="taylor")
    block = randomize(block)
    x = torch.randn(2, 2, requires_grad=True)
    x_prev = torch.randn(2, 2, requires_grad=True)
    weight = block.layers[0].net[2].bias

    if start == "prev":
        assert torch.autograd.gradcheck(
            lambda x, p, w: leapfrog_reversible(block, x, p), (x, x_prev, weight)
        )
    else:
        assert torch.autograd.gradcheck(lambda x, w: leapfrog_reversible(block, x), (x, weight))


# ============================================================================ BatchNorm


def buffers_equal(first: nn.Module, second: nn.Module) -> bool:
    pairs = zip(first.named_buffers(), second.named_buffers(), strict=True)
    return all(n == m and torch.equal(a, b) for (n, a), (m, b) in pairs)


def batchnorm_blocks(kind: str, steps: int = 4):
    t = random_grid(steps, 0.0, 1.0, seed=1)
    layer = DoubleSymLayer(2, norm="batch", act="tanh")
    if kind == "verlet":
        block = HamiltonianBlock(layer, t, [0.0, 0.5], "linear")
    else:
        block = LeapfrogBlock(layer, t, [0.0, 0.5], "linear", start="taylor")
    block = randomize(block.double())
    return block, copy.deepcopy(block)


def run_pair(kind, block, reference, x, switch_to_eval=False):
    """Outputs and gradients of x and the parameters: reversible (block) vs full (reference)."""
    x_rev, x_full = x.clone().requires_grad_(), x.clone().requires_grad_()
    if kind == "verlet":
        rev = verlet_reversible(block, x_rev[:, :2], x_rev[:, 2:])
        full = reference((x_full[:, :2], x_full[:, 2:]))
    else:
        rev = leapfrog_reversible(block, x_rev, None)
        full = reference(x_full, return_pair=True)
    if switch_to_eval:  # the backward recomputation must still use the training mode of forward
        block.eval()
        reference.eval()
    weights = [torch.randn_like(v) for v in full]
    rev_grads = gradients(rev, [x_rev, *block.parameters()], weights)
    full_grads = gradients(full, [x_full, *reference.parameters()], weights)
    return max_difference(full, rev), max_difference(full_grads, rev_grads)


@pytest.mark.parametrize("switch_to_eval", [False, True])
@pytest.mark.parametrize("kind", ["verlet", "leapfrog"])
def test_batchnorm_in_train_mode(kind, switch_to_eval):
    block, reference = batchnorm_blocks(kind)
    channels = 4 if kind == "verlet" else 2
    x = torch.randn(6, channels, 4, 4)
    out, grad = run_pair(kind, block, reference, x, switch_to_eval)
    assert out < OUT_TOL
    assert grad < GRAD_TOL
    assert buffers_equal(block, reference)  # running statistics moved once per forward
    tracked = [int(b) for n, b in block.named_buffers() if n.endswith("num_batches_tracked")]
    assert tracked and all(count > 0 for count in tracked)
    assert all(not m.training for m in block.modules()) == switch_to_eval  # modes restored


@pytest.mark.parametrize("kind", ["verlet", "leapfrog"])
def test_batchnorm_in_eval_mode(kind):
    block, reference = batchnorm_blocks(kind)
    channels = 4 if kind == "verlet" else 2
    block(torch.randn(6, channels, 4, 4))  # train mode: the running statistics move
    reference.load_state_dict(block.state_dict())
    block.eval()
    reference.eval()
    out, grad = run_pair(kind, block, reference, torch.randn(6, channels, 4, 4))
    assert out < OUT_TOL
    assert grad < GRAD_TOL
    assert buffers_equal(block, reference)


# ============================================================================ double use


@pytest.mark.parametrize("norm", [None, "batch"])
def test_verlet_used_twice(norm):
    t = random_grid(4, 0.0, 1.0, seed=6)
    block = randomize(HamiltonianBlock(DoubleSymLayer(2, norm=norm, act="tanh"), t).double())
    reference = copy.deepcopy(block)
    y, z = torch.randn(3, 2, 4, 4, requires_grad=True), torch.randn(3, 2, 4, 4, requires_grad=True)
    middle = reference((y, z))
    full = (*reference(middle), middle[0])  # the intermediate state is used too
    rev_middle = verlet_reversible(block, y, z)
    rev = (*verlet_reversible(block, *rev_middle), rev_middle[0])
    weights = [torch.randn_like(v) for v in full]
    full_grads = gradients(full, [y, z, *reference.parameters()], weights)
    rev_grads = gradients(rev, [y, z, *block.parameters()], weights)
    assert max_difference(full, rev) < OUT_TOL
    assert max_difference(full_grads, rev_grads) < GRAD_TOL
    assert buffers_equal(block, reference)


@pytest.mark.parametrize("start", ["rest", "taylor"])
def test_leapfrog_used_twice(start):
    block, x, _ = make_leapfrog("sym_tv_linear_random_grid", start)
    full = block(*block(x, return_pair=True), return_pair=True)
    rev = leapfrog_reversible(block, *leapfrog_reversible(block, x))
    weights = [torch.randn_like(v) for v in full]
    inputs = [x, *block.parameters()]
    assert max_difference(full, rev) < OUT_TOL
    assert (
        max_difference(gradients(full, inputs, weights), gradients(rev, inputs, weights)) < GRAD_TOL
    )


# ============================================================================ memory


def saved_bytes(function) -> int:
    """Bytes of the tensors autograd saves for backward while ``function()`` runs."""
    total = 0

    def pack(tensor):
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        function()
    return total


@pytest.mark.parametrize("kind", ["verlet", "leapfrog"])
def test_saved_memory_does_not_grow_with_steps(kind):
    def measure(steps: int, reversible: bool) -> int:
        torch.manual_seed(0)
        t = uniform_grid(0.0, 1.0, steps)
        x = torch.randn(4, 2, 6, 6, requires_grad=True)
        layer = DoubleSymLayer(2, norm="tv", act="tanh")
        if kind == "verlet":  # one shared control: the parameters do not grow either
            block = HamiltonianBlock(layer, t, [0.0]).double()
            run = verlet_reversible if reversible else lambda b, y, z: b((y, z))
            return saved_bytes(lambda: run(block, x, x.clone()))
        block = LeapfrogBlock(layer, t, [0.0]).double()
        run = leapfrog_reversible if reversible else lambda b, y: b(y, return_pair=True)
        return saved_bytes(lambda: run(block, x))

    state = 4 * 2 * 6 * 6 * 8
    assert measure(2, True) == measure(32, True) == 2 * state  # the output pair only
    full = {steps: measure(steps, False) for steps in (2, 3, 32)}
    per_step = full[3] - full[2]
    assert per_step > state
    assert full[32] == full[2] + 30 * per_step  # linear in the number of steps


# ============================================================================ errors


def test_bad_arguments_raise():
    hamiltonian = HamiltonianBlock(MLP(2), [0.0, 1.0])
    leapfrog = LeapfrogBlock(MLP(2), [0.0, 1.0])
    x = torch.randn(3, 2)
    with pytest.raises(TypeError, match="HamiltonianBlock"):
        verlet_reversible(leapfrog, x, x)
    with pytest.raises(TypeError, match="LeapfrogBlock"):
        leapfrog_reversible(hamiltonian, x)
    with pytest.raises(TypeError, match="z must be a torch.Tensor"):
        verlet_reversible(hamiltonian, x, [1.0, 2.0])
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        leapfrog_reversible(leapfrog, x.numpy())
    with pytest.raises(TypeError, match="x_prev must be a torch.Tensor"):
        leapfrog_reversible(leapfrog, x, 0.0)
    with pytest.raises(ValueError, match="x_prev must have the shape of x"):
        leapfrog_reversible(leapfrog, x, x[:1])


def test_parameter_changed_before_backward_raises():
    block = HamiltonianBlock(MLP(2), [0.0, 0.5, 1.0])
    y, z = verlet_reversible(block, torch.randn(3, 2, requires_grad=True), torch.randn(3, 2))
    with torch.no_grad():
        block.layers1[0].net[0].weight.add_(1.0)  # as an optimizer step would
    with pytest.raises(RuntimeError, match="modified in place"):
        (y.sum() + z.sum()).backward()


def test_output_changed_before_backward_and_create_graph_raise():
    block = LeapfrogBlock(MLP(2), [0.0, 0.5, 1.0])
    x = torch.randn(3, 2, requires_grad=True)
    y, _ = leapfrog_reversible(block, x)
    y.mul_(2.0)
    with pytest.raises(RuntimeError, match="inplace"):
        y.sum().backward()
    y, y_prev = leapfrog_reversible(block, x)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(y.sum(), x, create_graph=True)
