"""The gradient-testing kit for users' own test suites, from topograd.engine.testing."""

from topograd.engine.testing import *  # noqa: F403
from topograd.engine.testing import __all__  # noqa: F401
