"""`import topograd.nn.functional as F`, as PyTorch users write it: the same as tg.functional."""

from topograd.functional import *  # noqa: F403
from topograd.functional import __all__  # noqa: F401
