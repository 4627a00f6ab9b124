"""discover -> submit -> track -> write back, one small module per step; `revert` undoes write-back.

Each step reads rows, calls one outside system, and records the outcome; running a step twice is
harmless, which is what makes a crash or a scheduler retry safe.
"""

from .context import Context
from .discover import discover
from .housekeeping import housekeeping
from .revert import revert
from .submit import submit
from .track import track
from .writeback import WRITE_BACK_STATES, write_back

__all__ = ["WRITE_BACK_STATES", "Context", "discover", "housekeeping", "revert", "submit", "track", "write_back"]
