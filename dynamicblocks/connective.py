"""Lives in :mod:`dynamicblocks.nn.connective`; this module keeps the old import path working."""

from .nn.connective import POOLS, ConnectiveUnit

__all__ = ["ConnectiveUnit", "POOLS"]
