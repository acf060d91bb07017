"""The fit loop, checks, checkpoints, ensembles and search, from topograd.engine.train."""

from topograd.engine.train import *  # noqa: F403
from topograd.engine.train import __all__  # noqa: F401
