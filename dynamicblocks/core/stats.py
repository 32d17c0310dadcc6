"""Regularisers integrated along a solve from the evaluations it makes anyway.

While :func:`~dynamicblocks.ode_regularizers` is open, a block's forward pass
evaluates its fields through :class:`RecordingFields`, which adds each
evaluation's share to a :class:`SolveStats`. A method that supports this passes
every evaluation its weight in a quadrature of the solve (``weight=h b_i`` for
stage ``i`` of a Runge-Kutta step, see
:attr:`~dynamicblocks.methods.base.Method.quadrature`), so the sums below
integrate over ``[t_0, t_N]`` with the method's own rule and no extra
evaluation of the field:

* kinetic energy ``sum_k h_k sum_i b_i ||f_i||^2``;
* the Jacobian's Frobenius norm ``sum_k h_k sum_i b_i ||df/dx (x_i)||_F^2``,
  estimated by Hutchinson's ``||eps^T J||^2`` with ``E[eps eps^T] = I``: one
  vector-Jacobian product per probe ``eps``, the probes drawn once per block
  and forward pass (as in FFJORD and RNODE), Rademacher or Gaussian.

Both are per sample (the squared norms sum over every dimension but the
first) and averaged over the batch.

Reference:
    C. Finlay, J.-H. Jacobsen, L. Nurbekyan, A. M. Oberman, "How to train your
    neural ODE: the world of Jacobian and kinetic regularization", ICML 2020,
    arXiv:2002.02798.
"""

from __future__ import annotations

import torch

from .fields import Evaluation, Fields

__all__ = ["PROBES", "SolveStats", "RecordingFields"]

PROBES = ("rademacher", "gaussian")
"""The distributions of Hutchinson's probes."""


def _mean_square(value: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """``weight`` times ``||value[n]||^2`` (all but the first dimension), averaged over ``n``."""
    flat = value.reshape(-1)
    return torch.dot(flat, flat) * (weight / value.shape[0])  # one reduction, one scale


def _total(terms: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(terms).sum() if terms else torch.zeros(())


class SolveStats:
    """The regularisers of every solve made while :func:`~dynamicblocks.ode_regularizers` is open.

    Attributes:
        kinetic: whether the kinetic energy is collected.
        probes: Hutchinson probes per block and pass (0: no Jacobian term).
        probe: their distribution, ``"rademacher"`` or ``"gaussian"``.
        evaluations: the field evaluations made so far (over all blocks).
    """

    def __init__(self, kinetic: bool, probes: int, probe: str) -> None:
        self.kinetic, self.probes, self.probe = kinetic, probes, probe
        self.evaluations = 0
        self._kinetic: list[torch.Tensor] = []
        self._jacobian: list[torch.Tensor] = []

    @property
    def kinetic_energy(self) -> torch.Tensor:
        """``sum_k h_k sum_i b_i ||f_i||^2`` summed over the solves, batch-averaged (or 0)."""
        return _total(self._kinetic)

    @property
    def jacobian_norm(self) -> torch.Tensor:
        """Hutchinson's estimate of ``sum_k h_k sum_i b_i ||J_i||_F^2``, batch-averaged (or 0)."""
        return _total(self._jacobian)

    def loss(self, kinetic: float = 0.0, jacobian: float = 0.0) -> torch.Tensor:
        """``kinetic * kinetic_energy + jacobian * jacobian_norm``, a term to add to a loss."""
        terms = []
        if kinetic:
            terms.append(kinetic * self.kinetic_energy)
        if jacobian:
            terms.append(jacobian * self.jacobian_norm)
        return _total(terms)

    def recording(self, fields: Fields) -> RecordingFields:
        """``fields`` for one pass of one block, adding to these statistics."""
        return RecordingFields(fields, self)


class RecordingFields:
    """A block's :class:`~dynamicblocks.core.fields.Fields` that integrates the regularisers."""

    def __init__(self, fields: Fields, stats: SolveStats) -> None:
        self._fields, self._stats = fields, stats
        self._probes: dict[torch.Size, list[torch.Tensor]] = {}

    def _draw(self, like: torch.Tensor) -> list[torch.Tensor]:
        probes = self._probes.get(like.shape)
        if probes is None:
            probes = self._probes[like.shape] = [
                torch.randn_like(like)
                if self._stats.probe == "gaussian"
                else torch.empty_like(like).bernoulli_(0.5).mul_(2.0).sub_(1.0)
                for _ in range(self._stats.probes)
            ]
        return probes

    def __call__(
        self,
        evaluation: Evaluation,
        x: torch.Tensor,
        shape: torch.Size | None = None,
        args: tuple = (),
        weight: float = 0.0,
    ) -> torch.Tensor:
        stats = self._stats
        stats.evaluations += 1
        if weight == 0.0 or not (stats.kinetic or stats.probes):
            return self._fields(evaluation, x, shape, args)
        if not stats.probes:
            f = self._fields(evaluation, x, shape, args)
            stats._kinetic.append(_mean_square(f, weight))
            return f
        graph = torch.is_grad_enabled()  # keep the terms differentiable when training
        with torch.enable_grad():
            leaf = x if x.requires_grad else x.detach().requires_grad_()
            f = self._fields(evaluation, leaf, shape, args)
            squares = []
            for probe in self._draw(f):
                (product,) = torch.autograd.grad(
                    f, leaf, probe, create_graph=graph, retain_graph=True, allow_unused=True
                )
                if product is not None:  # None: f does not depend on x
                    squares.append(_mean_square(product))
        if not graph:  # values only, as the pass itself
            f, squares = f.detach(), [square.detach() for square in squares]
        if squares:
            stats._jacobian.append(torch.stack(squares).mean() * weight)
        if stats.kinetic:
            stats._kinetic.append(_mean_square(f, weight))
        return f
