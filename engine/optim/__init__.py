"""Optimizers, learning-rate schedules and moving averages (PyTorch's names and semantics).

Every optimizer follows torch.optim's single-tensor update step for step; where the lecture
notes write a rule differently, the notes' form is an option (see each class's docstring).
"""

from topograd.engine.averages import EWMA, ewma_update_
from topograd.engine.optim import schedules
from topograd.engine.optim.adam import Adam, AdamW, NAdam
from topograd.engine.optim.adaptive import Adadelta, Adagrad, RMSprop
from topograd.engine.optim.lr_finder import RangeTestResult, lr_range_test, suggest_lr
from topograd.engine.optim.optimizer import Optimizer, check_range
from topograd.engine.optim.sgd import SGD
from topograd.engine.registry import Registry

OPTIMIZERS = Registry("optimizer")
"""Optimizers by name (model files write `optimizer adam(lr=1e-3)`); each takes the
parameters (or groups) first, then torch.optim's options."""
for _name, _optimizer in (
    ("sgd", SGD),
    ("adagrad", Adagrad),
    ("rmsprop", RMSprop),
    ("adadelta", Adadelta),
    ("adam", Adam),
    ("adamw", AdamW),
    ("nadam", NAdam),
):
    OPTIMIZERS.register(_name)(_optimizer)

__all__ = [
    "EWMA",
    "OPTIMIZERS",
    "SGD",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "NAdam",
    "Optimizer",
    "RMSprop",
    "RangeTestResult",
    "check_range",
    "ewma_update_",
    "lr_range_test",
    "schedules",
    "suggest_lr",
]
