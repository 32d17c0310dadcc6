"""The block core: every family x every memory mode, depth operations on every family, layout."""

from __future__ import annotations

import ast
import copy
import importlib
import pathlib

import pytest
import torch
from torch import nn

import dynamicblocks as db
from dynamicblocks import MEMORY_MODES, refine_grid, uniform_grid

pytestmark = pytest.mark.usefixtures("float64")

PACKAGE = pathlib.Path(db.__file__).parent


class Tanh(nn.Module):
    """f(x) = tanh(x W^T + b), smooth, with parameters."""

    def __init__(self, n: int = 3) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n, n) / n**0.5)
        self.bias = nn.Parameter(0.3 * torch.randn(n))

    def forward(self, x):
        return torch.tanh(x @ self.weight.T + self.bias)


class Resolvent(nn.Module):
    """``(I + s L)^{-1}`` for ``L = A^T A + 0.1 I``, by a dense solve."""

    def __init__(self, n: int = 4) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.randn(n, n) / n**0.5)

    def forward(self, x, scale):
        n = self.a.shape[0]
        matrix = torch.eye(n) + scale * (self.a.T @ self.a + 0.1 * torch.eye(n))
        return torch.linalg.solve(matrix, x.T).T


def randomize(block: nn.Module) -> nn.Module:
    """Give every control its own weights (copies start equal)."""
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return block


T = (0.0, 0.3, 0.5, 0.8, 1.0)
T_THETA = (0.0, 0.45, 1.0)

# family -> (build(memory), run(block, x)); each run maps x (N, 4) to a tensor
FAMILIES = {
    "rk4": (
        lambda memory: db.DynamicBlock(Tanh(4), T, "rk4", T_THETA, "linear", memory=memory),
        lambda block, x: block(x),
    ),
    "euler": (
        lambda memory: db.DynamicBlock(Tanh(4), T, "euler", memory=memory),
        lambda block, x: block(x),
    ),
    "hamiltonian": (
        lambda memory: db.HamiltonianBlock(
            Tanh(2), T, T_THETA, "linear", layer2=Tanh(2), memory=memory
        ),
        lambda block, x: block(x),
    ),
    "leapfrog": (
        lambda memory: db.LeapfrogBlock(Tanh(4), T, T_THETA, "linear", memory=memory),
        lambda block, x: torch.cat(block(x, return_pair=True), dim=1),
    ),
    "leapfrog_prev": (
        lambda memory: db.LeapfrogBlock(Tanh(4), T, start="taylor", memory=memory),
        lambda block, x: torch.cat(block(x, 0.9 * x, return_pair=True), dim=1),
    ),
    "implicit": (
        lambda memory: _implicit(memory),
        lambda block, x: block(x),
    ),
    "ab3": (
        lambda memory: db.MultistepBlock(Tanh(4), T, "ab3", t_theta=T_THETA, memory=memory),
        lambda block, x: block(x),
    ),
    "ab4_linear": (
        lambda memory: db.MultistepBlock(
            Tanh(4), T, "ab4", "rk4_38", T_THETA, "linear", memory=memory
        ),
        lambda block, x: block(x),
    ),
    "lm": (
        lambda memory: db.LMBlock(Tanh(4), T, T_THETA, "linear", memory=memory),
        lambda block, x: torch.cat(block(x, return_pair=True), dim=1),
    ),
    "lm_prev": (
        lambda memory: db.LMBlock(Tanh(4), T, k=-0.3, memory=memory),
        lambda block, x: block(x, 0.9 * x),
    ),
    "imex_euler": (
        lambda memory: db.IMEXBlock(Tanh(4), Resolvent(), T, memory=memory),
        lambda block, x: block(x),
    ),
    "ars222": (
        lambda memory: db.IMEXBlock(
            Tanh(4), Resolvent(), T, "ars222", T_THETA, "linear", memory=memory
        ),
        lambda block, x: block(x),
    ),
}


def _implicit(memory: str) -> db.ImplicitBlock:
    block = db.ImplicitBlock(Tanh(4), T, "trapezoid", t_theta=T_THETA, tol=1e-13, max_iter=200)
    block.memory = memory
    return block


def _gradients(block: nn.Module, run, x: torch.Tensor) -> list[torch.Tensor]:
    x = x.clone().requires_grad_()
    out = run(block, x)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    params = [x, *block.parameters()]
    grads = torch.autograd.grad((out * weights).sum(), params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("memory", MEMORY_MODES)
def test_every_family_and_memory_mode_gives_the_full_gradient_or_is_refused(family, memory):
    build, run = FAMILIES[family]
    torch.manual_seed(0)
    full = randomize(build("full"))
    cls = type(full)
    if memory not in cls.memory_modes:
        with pytest.raises(ValueError, match=rf"{cls.__name__}\.memory must be one of .*{memory}"):
            build(memory)
        with pytest.raises(ValueError, match=rf"{cls.__name__}\.memory .*got '{memory}'"):
            full.memory = memory
        return
    other = copy.deepcopy(full)
    other.memory = memory
    x = torch.randn(5, 4)
    expected = _gradients(full, run, x)
    got = _gradients(other, run, x)
    torch.testing.assert_close(run(other, x), run(full, x), rtol=0, atol=1e-12)
    if memory == "adjoint":  # the continuous gradient: O(h^p) off, the order is tested below
        got, expected = (
            torch.cat([g.flatten() for g in got]),
            torch.cat([e.flatten() for e in expected]),
        )
        assert (got - expected).norm() < 0.25 * expected.norm()
        return
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10)


def test_the_memory_modes_are_those_the_methods_offer():
    assert db.DynamicBlock.memory_modes == ("full", "checkpoint", "adjoint")
    assert db.HamiltonianBlock.memory_modes == ("full", "checkpoint", "reversible")
    assert db.LeapfrogBlock.memory_modes == ("full", "checkpoint", "reversible")
    assert db.ImplicitBlock.memory_modes == ("full",)
    for block in (db.MultistepBlock, db.LMBlock, db.IMEXBlock):
        assert block.memory_modes == ("full", "checkpoint")


@pytest.mark.parametrize(("scheme", "order"), [("euler", 1), ("heun", 2), ("rk4", 4)])
def test_the_adjoint_gradient_converges_to_the_discrete_one_at_the_methods_order(scheme, order):
    torch.manual_seed(1)
    layer = Tanh(4)
    x = torch.randn(3, 4)
    errors = []
    for steps in (4, 8, 16):
        full = db.DynamicBlock(layer, uniform_grid(0, 1, steps), scheme, t_theta=(0.0,))
        adjoint = copy.deepcopy(full)
        adjoint.memory = "adjoint"
        run = FAMILIES["rk4"][1]
        expected, got = _gradients(full, run, x), _gradients(adjoint, run, x)
        errors.append(max((g - e).abs().max().item() for g, e in zip(got, expected)))
    rates = [torch.log2(torch.tensor(a / b)).item() for a, b in zip(errors, errors[1:])]
    assert min(rates) > order - 0.5, (errors, rates)


# ------------------------------------------------------------ depth operations, every family


def _blocks(interpolation: str):
    t, t_theta = (0.0, 0.25, 0.5, 0.75, 1.0), (0.0, 0.5, 1.0)
    if interpolation == "constant":
        t_theta = (0.0, 0.5)
    yield db.HamiltonianBlock(Tanh(2), t, t_theta, interpolation, layer2=Tanh(2))
    yield db.LeapfrogBlock(Tanh(4), t, t_theta, interpolation, start="taylor")
    yield db.ImplicitBlock(
        Tanh(4), t, "implicit_midpoint", t_theta=t_theta, interpolation=interpolation, tol=1e-14
    )
    yield db.DynamicBlock(Tanh(4), t, "rk4", t_theta, interpolation)
    yield db.MultistepBlock(Tanh(4), t, "ab3", t_theta=t_theta, interpolation=interpolation)
    yield db.LMBlock(Tanh(4), t, t_theta, interpolation)
    yield db.IMEXBlock(Tanh(4), Resolvent(), t, "ars222", t_theta, interpolation)


@pytest.mark.parametrize("interpolation", ["constant", "linear"])
def test_refine_keeps_theta_on_every_family(interpolation):
    torch.manual_seed(2)
    x = torch.randn(3, 4)
    for block in _blocks(interpolation):
        randomize(block)
        # theta(t) unchanged: the refined block equals the old one put on the refined grid
        expected = block.remanifest(refine_grid(block.t))(x)
        controls = len(block.t_theta)
        sources = block.refine_()
        assert block.t == refine_grid((0.0, 0.25, 0.5, 0.75, 1.0))
        assert all(len(layers) == len(block.t_theta) for layers in block.control_layers())
        new = len(block.t_theta) - controls
        per_control = sum(len(list(layers[0].parameters())) for layers in block.control_layers())
        assert len(sources) == new * per_control
        torch.testing.assert_close(block(x), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("interpolation", ["constant", "linear"])
def test_remanifest_on_the_same_grid_is_the_same_function_on_every_family(interpolation):
    torch.manual_seed(3)
    x = torch.randn(3, 4)
    for block in _blocks(interpolation):
        randomize(block)
        assert torch.equal(block.remanifest(block.t)(x), block(x))
        assert torch.equal(block.remanifest(t=block.t)(x), block(x))
        coarse = block.remanifest((0.0, 0.5, 1.0))
        assert coarse.num_steps == 2 and block.num_steps == 4


def test_a_dynamic_block_remanifests_with_a_positional_scheme():
    torch.manual_seed(8)
    block = db.DynamicBlock(Tanh(4), (0.0, 1.0, 2.0), "euler")
    x = torch.randn(2, 4)
    grid = (0.0, 0.5, 1.0, 1.5, 2.0)
    built = db.DynamicBlock(Tanh(4), grid, "rk4", t_theta=(0.0, 1.0))
    built.load_state_dict(block.state_dict())
    assert torch.equal(block.remanifest(grid, "rk4")(x), built(x))


def test_project_returns_a_theta_in_the_coarse_space_exactly_on_every_family():
    torch.manual_seed(4)
    x = torch.randn(3, 4)
    for block in _blocks("linear"):
        randomize(block)
        # make theta(t) linear in t: the middle control is the mean of the outer two
        with torch.no_grad():
            for layers in block.control_layers():
                for p0, p1, p2 in zip(*(layer.parameters() for layer in layers)):
                    p1.copy_(0.5 * (p0 + p2))
        projected = block.project((0.0, 1.0))
        assert len(projected.t_theta) == 2
        torch.testing.assert_close(projected(x), block(x), rtol=0, atol=1e-12)
        for old, new in zip(block.control_layers(), projected.control_layers()):
            for name, p in new[1].named_parameters():
                torch.testing.assert_close(p, old[2].get_parameter(name), rtol=0, atol=1e-12)


def test_a_hamiltonian_network_refines_during_training_with_its_optimizer_state():
    torch.manual_seed(5)
    net = db.hamiltonian_net(widths=(4, 8))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(2, 3, 8, 8)
    net(x).square().sum().backward()
    optimizer.step()
    before = sum(len(b.t_theta) for b in db.time_blocks(net))
    sources = db.refine_(net)
    assert sum(len(b.t_theta) for b in db.time_blocks(net)) == 2 * before
    new = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    db.carry_optimizer_state(optimizer, new, sources)
    for param, (source,) in sources.items():
        assert torch.equal(
            new.state[param]["momentum_buffer"], optimizer.state[source]["momentum_buffer"]
        )
    fresh = db.hamiltonian_net(widths=(4, 8))
    assert db.refine_to_match_(fresh, net.state_dict()) == 1
    fresh.load_state_dict(net.state_dict())
    assert db.time_regularization(net) > 0


# -------------------------------------------------------------------------------- layout


def _module_imports() -> dict[str, set[str]]:
    """``dynamicblocks`` module -> the package modules it imports anywhere in its body.

    Imports inside functions and under ``if TYPE_CHECKING:`` count too: a cycle
    hidden in a function is still a cycle.
    """
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                candidates = [target] + [f"{target}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "dynamicblocks"
            ):
                candidates = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for candidate in candidates:
                parts = candidate.split(".")
                for i in range(2, len(parts) + 1):  # a module imports its packages' __init__
                    edges.add(".".join(parts[:i]))
        graph[name] = edges
    return {name: {e for e in edges if e in graph and e != name} for name, edges in graph.items()}


def test_the_package_has_no_import_cycles():
    graph = _module_imports()
    # a package's __init__ importing its own submodules is how packages work, not a cycle
    graph = {n: {e for e in edges if not n.startswith(e + ".")} for n, edges in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


OLD_PATHS = {
    "dynamicblocks.block": ["DynamicBlock"],
    "dynamicblocks.hamiltonian": ["HamiltonianBlock", "LeapfrogBlock", "STARTS"],
    "dynamicblocks.implicit": [
        "ImplicitBlock",
        "IMPLICIT_SCHEMES",
        "ConvergenceWarning",
        "ConvergenceError",
    ],  # fmt: skip
    "dynamicblocks.reversible": ["verlet_reversible", "leapfrog_reversible"],
    "dynamicblocks.adjoint": ["adjoint_integrate"],
    "dynamicblocks.memory": ["MEMORY_MODES", "set_memory"],
    "dynamicblocks.timeblock": [
        "TimeBlock",
        "blend_parameters",
        "evaluate_control",
        "check_module",
        "format_times",
    ],  # fmt: skip
    "dynamicblocks.fixed_point": ["anderson", "FixedPointResult"],
}


@pytest.mark.parametrize("module", sorted(OLD_PATHS))
def test_every_public_name_stays_importable_from_its_old_module(module):
    loaded = importlib.import_module(module)
    for name in OLD_PATHS[module]:
        value = getattr(loaded, name)
        if hasattr(db, name):
            assert value is getattr(db, name)


def test_the_old_adjoint_entry_point_equals_the_block():
    torch.manual_seed(6)
    from dynamicblocks.adjoint import adjoint_integrate

    block = db.DynamicBlock(Tanh(4), T, "rk4", memory="adjoint")
    x = torch.randn(2, 4, requires_grad=True)
    for trajectory in (False, True):
        out = adjoint_integrate(block, x, trajectory)
        assert torch.equal(out, block(x, return_trajectory=trajectory))
        (grad,) = torch.autograd.grad(out.sum(), x)
        (expected,) = torch.autograd.grad(block(x, return_trajectory=trajectory).sum(), x)
        assert torch.equal(grad, expected)


def test_evaluate_control_of_the_old_base_module_blends_two_controls():
    from dynamicblocks.timeblock import evaluate_control
    from dynamicblocks.weights import StageControl

    torch.manual_seed(7)
    layers = [Tanh(3), Tanh(3)]
    x = torch.randn(2, 3)
    names = tuple(name for name, _ in layers[0].named_parameters())
    got = evaluate_control(layers, names, StageControl(0, 1, 0.25), x, "Block")
    weight = torch.lerp(layers[0].weight, layers[1].weight, 0.25)
    bias = torch.lerp(layers[0].bias, layers[1].bias, 0.25)
    torch.testing.assert_close(got, torch.tanh(x @ weight.T + bias), rtol=0, atol=1e-15)
    assert torch.equal(evaluate_control(layers, names, StageControl(1), x), layers[1](x))
