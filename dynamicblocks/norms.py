"""Lives in :mod:`dynamicblocks.nn.norms`; this module keeps the old import path working."""

from .nn.norms import NormLike, TvNorm, make_norm

__all__ = ["TvNorm", "NormLike", "make_norm"]
