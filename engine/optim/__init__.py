"""Optimizers, learning-rate schedules and moving averages (PyTorch's names and semantics)."""

from engine.averages import EWMA, ewma_update_
from engine.optim.optimizer import Optimizer, check_range

__all__ = ["EWMA", "Optimizer", "check_range", "ewma_update_"]
