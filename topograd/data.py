"""Datasets, splits, mini-batches, preprocessing and augmentation, from topograd.engine.data."""

from topograd.engine.data import *  # noqa: F403
from topograd.engine.data import __all__  # noqa: F401
