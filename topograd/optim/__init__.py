"""Optimizers, schedules and moving averages (`tg.optim.Adam`), from topograd.engine.optim;
`topograd.optim.schedules` holds the learning-rate schedules."""

from topograd.engine.optim import *  # noqa: F403
from topograd.engine.optim import __all__  # noqa: F401
from topograd.optim import schedules  # noqa: F401  (the facade, not the engine's module)
