"""Lives in :mod:`dynamicblocks.nn.init`; this module keeps the old import path working."""

from .nn.init import clamped_xavier_normal_

__all__ = ["clamped_xavier_normal_"]
