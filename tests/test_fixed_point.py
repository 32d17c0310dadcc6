"""Anderson acceleration: per-sample mixing, the check cadence, host reads, validation.

Every solve is compared with something computed independently of
:func:`~dynamicblocks.fixed_point.anderson`: a direct linear solve, Newton's
method, the same sample solved alone, or a count of calls and host reads.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable

import pytest
import torch

from dynamicblocks.fixed_point import FixedPointResult, anderson

F64 = torch.float64
Map = Callable[[torch.Tensor], torch.Tensor]


def linear_problem(norms: tuple[float, ...], dim: int = 6, seed: int = 0):
    """``x = A_i x + b_i``, ``|A_i|_2 = norms[i]``: ``A``, ``b`` and the exact solution."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(len(norms), dim, dim, generator=gen, dtype=F64)
    a = a * (torch.tensor(norms, dtype=F64) / torch.linalg.matrix_norm(a, 2))[:, None, None]
    b = torch.randn(len(norms), dim, generator=gen, dtype=F64)
    exact = torch.linalg.solve(torch.eye(dim, dtype=F64) - a, b)
    return a, b, exact


def linear_map(a: torch.Tensor, b: torch.Tensor) -> Map:
    return lambda x: (a @ x.unsqueeze(2)).squeeze(2) + b


def linear(norms: tuple[float, ...], dim: int = 6) -> tuple[Map, torch.Tensor]:
    a, b, exact = linear_problem(norms, dim)
    return linear_map(a, b), exact


def tanh_map(a: torch.Tensor, b: torch.Tensor) -> Map:
    return lambda x: 0.95 * torch.tanh((a @ x.unsqueeze(2)).squeeze(2)) + b


def tanh_problem(samples: int = 4, dim: int = 8, seed: int = 0):
    """``x = 0.95 tanh(A_i x) + b_i``, symmetric ``A_i`` with eigenvalues in [0, 1] (slow plainly).

    Returns ``A``, ``b`` and the solution by Newton's method, per sample.
    """
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(samples, dim, dim, generator=gen, dtype=F64))
    a = q @ torch.diag_embed(torch.linspace(0.0, 1.0, dim, dtype=F64).expand(samples, dim)) @ q.mT
    b = 0.2 * torch.randn(samples, dim, generator=gen, dtype=F64)
    g = tanh_map(a, b)
    x = torch.zeros(samples, dim, dtype=F64)  # Newton's method on x - g(x) = 0
    for _ in range(30):
        slope = 0.95 / torch.cosh((a @ x.unsqueeze(2)).squeeze(2)) ** 2
        jacobian = torch.eye(dim, dtype=F64) - slope.unsqueeze(2) * a
        x = x - torch.linalg.solve(jacobian, x - g(x))
    return a, b, x


def nonlinear() -> tuple[Map, torch.Tensor]:
    a, b, newton = tanh_problem()
    return tanh_map(a, b), newton


def worst_relative_residual(g: Map, x: torch.Tensor) -> float:
    """``max_i |g(x)_i - x_i| / |g(x)_i|``, written out independently of the solver."""
    gx = g(x)
    rows = [((gx[i] - x[i]).norm() / gx[i].norm()).item() for i in range(x.shape[0])]
    return max(rows)


def counted(g: Map) -> tuple[Map, list[int]]:
    calls = [0]

    def wrapped(x: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return g(x)

    return wrapped, calls


@pytest.mark.parametrize("check_every", [1, 4])
@pytest.mark.parametrize("memory", [0, 1, 5])
def test_per_sample_linear_contractions_converge_to_the_direct_solution(memory, check_every):
    g, exact = linear((0.5, 0.6, 0.3))
    result = anderson(g, torch.zeros_like(exact), 1e-12, 500, memory, check_every=check_every)
    assert isinstance(result, FixedPointResult)
    assert result.converged and result.residual <= 1e-12
    assert type(result.residual) is float and type(result.iterations) is int
    torch.testing.assert_close(result.solution, exact, rtol=0, atol=1e-10)
    assert result.residual == pytest.approx(worst_relative_residual(g, result.solution), rel=1e-6)


@pytest.mark.parametrize("check_every", [1, 4])
def test_each_sample_is_mixed_on_its_own(check_every):
    """A batch of an easy and a hard problem gives what each sample gives alone."""
    a, b, exact = linear_problem((0.1, 0.95), dim=8)
    g = linear_map(a, b)
    x0 = torch.zeros_like(exact)

    def alone(i: int) -> Map:
        return linear_map(a[i : i + 1], b[i : i + 1])  # a batch of one

    # Mid-way (tol=0: nobody stops), the iterates themselves coincide. Mixing the
    # batch as one vector would couple the two trajectories and fail this.
    batch = anderson(g, x0, 0.0, 6, 5, check_every=check_every)
    for i in range(2):
        solo = anderson(alone(i), x0[i : i + 1], 0.0, 6, 5, check_every=check_every)
        torch.testing.assert_close(batch.solution[i : i + 1], solo.solution, rtol=0, atol=1e-10)
    assert not batch.converged and batch.iterations == 6

    # Converged: both reach tol; each equals its solo solve and the direct solution.
    batch = anderson(g, x0, 1e-13, 200, 5, check_every=check_every)
    assert batch.converged
    solos = [anderson(alone(i), x0[i : i + 1], 1e-13, 200, 5, check_every=check_every)
             for i in range(2)]  # fmt: skip
    for i, solo in enumerate(solos):
        assert solo.converged
        torch.testing.assert_close(batch.solution[i : i + 1], solo.solution, rtol=0, atol=1e-10)
        torch.testing.assert_close(batch.solution[i], exact[i], rtol=0, atol=1e-10)
    assert solos[0].iterations < solos[1].iterations == batch.iterations


def test_a_one_dimensional_x0_is_one_vector_like_a_batch_of_one():
    g, exact = linear((0.9,), dim=5)
    flat = anderson(lambda v: g(v.unsqueeze(0)).squeeze(0), torch.zeros(5, dtype=F64), 1e-12, 100)
    batched = anderson(g, torch.zeros(1, 5, dtype=F64), 1e-12, 100)
    assert flat.solution.shape == (5,) and flat.converged
    assert flat.iterations == batched.iterations
    torch.testing.assert_close(flat.solution, batched.solution[0], rtol=0, atol=1e-14)
    torch.testing.assert_close(flat.solution, exact[0], rtol=0, atol=1e-10)


def test_trailing_dimensions_are_flattened_per_sample():
    g, exact = linear((0.6, 0.7), dim=6)
    g_image = lambda x: g(x.reshape(2, 6)).reshape(2, 2, 3)  # noqa: E731
    result = anderson(g_image, torch.zeros(2, 2, 3, dtype=F64), 1e-12, 200)
    assert result.solution.shape == (2, 2, 3) and result.converged
    torch.testing.assert_close(result.solution.reshape(2, 6), exact, rtol=0, atol=1e-10)


def test_anderson_beats_the_plain_iteration_on_a_nonlinear_contraction():
    g, newton = nonlinear()
    x0 = torch.zeros_like(newton)
    accelerated = anderson(g, x0, 1e-10, 1000, memory=5)
    plain = anderson(g, x0, 1e-10, 1000, memory=0)
    for result in (accelerated, plain):
        assert result.converged
        torch.testing.assert_close(result.solution, newton, rtol=0, atol=1e-8)
    assert 4 * accelerated.iterations < plain.iterations


def test_a_slower_check_cadence_only_adds_frozen_evaluations():
    """Samples within tol are frozen, so checking less often gives the same solution."""
    g, _ = nonlinear()
    x0 = torch.zeros(4, 8, dtype=F64)
    every = anderson(g, x0, 1e-10, 1000, check_every=1)
    for check_every in (2, 3, 4, 7):
        sparse = anderson(g, x0, 1e-10, 1000, check_every=check_every)
        assert every.iterations <= sparse.iterations < every.iterations + check_every
        assert sparse.iterations % check_every == 0
        assert torch.equal(sparse.solution, every.solution)
        assert sparse.residual == every.residual


@pytest.mark.parametrize("check_every", [1, 3, 4])
@pytest.mark.parametrize("memory", [0, 5])
def test_iterations_count_evaluations_and_never_exceed_max_iter(memory, check_every):
    g, _ = linear((0.95, 0.9), dim=8)
    for max_iter in (1, 2, 3, 5, 7, 9):
        h, calls = counted(g)
        result = anderson(h, torch.zeros(2, 8, dtype=F64), 1e-12, max_iter, memory,
                          check_every=check_every)  # fmt: skip
        assert result.iterations == calls[0] == max_iter
        assert not result.converged and result.residual > 1e-12
        assert result.residual == pytest.approx(worst_relative_residual(g, result.solution))
    h, calls = counted(g)
    done = anderson(h, torch.zeros(2, 8, dtype=F64), 1e-12, 1000, memory, check_every=check_every)
    assert done.converged and done.iterations == calls[0] <= 1000


def test_a_fixed_point_as_initial_guess_stops_at_the_first_check():
    g, exact = linear((0.5,))
    for check_every in (1, 4):
        result = anderson(g, exact, 1e-10, 50, check_every=check_every)
        assert result.converged and result.iterations == check_every
        torch.testing.assert_close(result.solution, exact, rtol=0, atol=1e-14)


class HostReads:
    """Counts the ways a tensor's value reaches the host from Python; forbids ``linalg.solve``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        for name in ("item", "tolist", "__bool__", "__float__", "__int__", "numpy", "cpu"):
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._counting(original))

        def solve(*args, **kwargs):
            raise AssertionError("torch.linalg.solve checks for errors on the host")

        monkeypatch.setattr(torch.linalg, "solve", solve)

    def _counting(self, original):
        def method(tensor, *args, **kwargs):
            self.count += 1
            return original(tensor, *args, **kwargs)

        return method


def test_the_host_reads_the_residual_once_per_check(monkeypatch):
    """One read per ``check_every`` evaluations: ``ceil(iterations / check_every)`` in all.

    Reads happen only at a check (evaluation count a multiple of ``check_every``)
    or at ``max_iter``; so ``floor(iterations / check_every)`` checks plus at
    most one final read, which is ``ceil(iterations / check_every)``.
    """
    g, _ = nonlinear()  # evaluated before patching: Newton's reference reads nothing later
    x0 = torch.zeros(4, 8, dtype=F64)
    reads = HostReads(monkeypatch)
    counts = {}
    for check_every, max_iter in [(1, 1000), (4, 1000), (4, 14), (5, 1000)]:
        reads.count = 0
        result = anderson(g, x0, 1e-10, max_iter, check_every=check_every)
        assert reads.count == math.ceil(result.iterations / check_every)
        assert reads.count <= result.iterations // check_every + 1
        counts[check_every, max_iter] = (reads.count, result.iterations)
    reads_every, iterations_every = counts[1, 1000]
    assert reads_every == iterations_every  # check_every=1: one read per evaluation
    assert 4 * counts[4, 1000][0] <= reads_every + 4
    assert counts[4, 14] == (4, 14)  # checks at 4, 8 and 12, then the end at 14


def test_a_singular_system_falls_back_to_the_plain_step_for_that_sample_only(monkeypatch):
    g, _ = linear((0.8, 0.8), dim=4)
    x0 = torch.zeros(2, 4, dtype=F64)
    anderson_steps = anderson(g, x0, 0.0, 5, memory=3)
    plain_steps = anderson(g, x0, 0.0, 5, memory=0)
    solve_ex = torch.linalg.solve_ex

    def first_sample_singular(a, b, **kwargs):
        solution, info = solve_ex(a, b, **kwargs)
        solution = solution.clone()
        solution[0] = float("nan")  # what a failed factorisation may leave
        return solution, torch.where(torch.arange(len(info)) == 0, 1, info)

    monkeypatch.setattr(torch.linalg, "solve_ex", first_sample_singular)
    mixed = anderson(g, x0, 0.0, 5, memory=3)
    torch.testing.assert_close(mixed.solution[0], plain_steps.solution[0], rtol=0, atol=1e-14)
    torch.testing.assert_close(mixed.solution[1], anderson_steps.solution[1], rtol=0, atol=1e-14)
    assert not torch.allclose(anderson_steps.solution[0], plain_steps.solution[0])


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "4"])
def test_bad_check_every_names_itself(value):
    g, _ = linear((0.5,))
    message = re.escape(f"check_every must be a positive int, got {value!r}")
    with pytest.raises(ValueError, match=message):
        anderson(g, torch.zeros(1, 6, dtype=F64), 1e-10, 10, check_every=value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"max_iter": 0}, "max_iter must be a positive int, got 0"),
     ({"memory": -1}, "memory must be an int >= 0, got -1")],
)  # fmt: skip
def test_bad_max_iter_or_memory_names_itself(kwargs, message):
    g, _ = linear((0.5,))
    arguments = {"tol": 1e-10, "max_iter": 10, **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        anderson(g, torch.zeros(1, 6, dtype=F64), **arguments)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_no_device_synchronisation_between_checks_on_cuda():
    a, b, newton = tanh_problem()
    g = tanh_map(a.cuda(), b.cuda())
    x0 = torch.zeros_like(newton, device="cuda")
    anderson(g, x0, 1e-10, 20)  # warm-up: library loading may synchronise once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = anderson(g, x0, 1e-10, 1000, check_every=4)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert result.converged
    torch.testing.assert_close(result.solution.cpu(), newton, rtol=0, atol=1e-8)
    assert len(syncs) <= math.ceil(result.iterations / 4)


def test_on_the_cpu_the_default_checks_every_iteration():
    g, _ = nonlinear()
    x0 = torch.zeros(4, 8, dtype=F64)
    default = anderson(g, x0, 1e-10, 1000)
    every = anderson(g, x0, 1e-10, 1000, check_every=1)
    assert default.iterations == every.iterations
    assert torch.equal(default.solution, every.solution)
    assert anderson(g, x0, 1e-10, 1000, check_every=4).iterations % 4 == 0
