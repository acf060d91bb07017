"""Weight initializers (`tg.nn.init.he`), from topograd.engine.init."""

from topograd.engine.init import *  # noqa: F403
from topograd.engine.init import __all__  # noqa: F401
