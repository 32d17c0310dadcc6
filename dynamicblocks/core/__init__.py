"""The block core: grid, controls, fields, plan, loop and memory dispatch shared by every block.

See :mod:`dynamicblocks.core.block` for what the core owns and
:mod:`dynamicblocks.methods.base` for what a method supplies.
"""

from .block import TimeBlock
from .fields import Evaluation, Fields, Slot
from .resolver import Resolver

__all__ = ["TimeBlock", "Evaluation", "Fields", "Slot", "Resolver"]
