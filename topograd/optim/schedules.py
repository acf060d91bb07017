"""Learning-rate schedules (`tg.optim.schedules.CosineAnnealingLR`), from
topograd.engine.optim.schedules."""

from topograd.engine.optim.schedules import *  # noqa: F403
from topograd.engine.optim.schedules import __all__  # noqa: F401
