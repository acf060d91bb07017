"""Functions and losses (`import topograd.functional as F`), from topograd.engine.functional."""

from topograd.engine.functional import *  # noqa: F403
from topograd.engine.functional import __all__  # noqa: F401
