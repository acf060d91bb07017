"""Which optimizer of the model language has which torch.optim counterpart: one table that
the translation (optim.py) and the script writer (export.py) both read. It imports no torch,
so `topograd export` runs without PyTorch installed."""

from __future__ import annotations

OPTIMIZER_TABLE = {
    "sgd": ("SGD", ("lr", "momentum", "dampening", "weight_decay", "nesterov")),
    "adam": ("Adam", ("lr", "betas", "eps", "weight_decay", "amsgrad", "decoupled_weight_decay")),
    "adamw": ("AdamW", ("lr", "betas", "eps", "weight_decay", "amsgrad")),
    "nadam": (
        "NAdam",
        ("lr", "betas", "eps", "weight_decay", "momentum_decay", "decoupled_weight_decay"),
    ),
    "rmsprop": ("RMSprop", ("lr", "alpha", "eps", "weight_decay", "momentum", "centered")),
    "adagrad": ("Adagrad", ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps")),
    "adadelta": ("Adadelta", ("lr", "rho", "eps", "weight_decay")),
}
"""Model-file name -> (torch.optim class, the hyperparameters both have). The engine's defaults
are torch's (tests/dsl/torch_backend/test_export.py holds them to it)."""

_ADAM_ONLY = (
    ("bias_correction", True, "torch.optim.Adam always divides by 1 - beta^t"),
    ("eps_inside_sqrt", False, "torch.optim.Adam adds eps outside the square root"),
)
TORCH_LACKS = {
    "sgd": (
        ("momentum_form", "torch", "torch.optim.SGD's buffer starts at the first gradient"),
        ("nesterov_form", "torch", "torch.optim.SGD takes the gradient at W, not W + m * v"),
    ),
    "adam": _ADAM_ONLY,
    "adamw": (
        *_ADAM_ONLY,
        ("decoupled_weight_decay", True, "torch.optim.AdamW always decouples the decay"),
    ),
    "rmsprop": (("eps_inside_sqrt", False, "torch.optim.RMSprop adds eps outside the root"),),
}
"""The engine's own options (the notes' variants) that torch lacks: (option, the one value
torch's update equals, what torch does)."""
