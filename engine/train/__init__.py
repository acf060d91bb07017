"""Training: the fit loop with the lecture's checks, checkpoints, ensembles and search.

Plots (engine.train.plots) need matplotlib (`pip install topograd[plot]`) and are imported
from there, so that training itself never needs it.
"""

from engine.train.checkpoint import (
    CheckpointError,
    CheckpointInfo,
    checkpoint_info,
    load_checkpoint,
    save_checkpoint,
)
from engine.train.checks import (
    Diagnosis,
    InitialLossWarning,
    SanityResult,
    diagnose,
    evaluate,
    sanity_check,
)
from engine.train.fit import fit
from engine.train.history import History

__all__ = [
    "CheckpointError",
    "CheckpointInfo",
    "Diagnosis",
    "History",
    "InitialLossWarning",
    "SanityResult",
    "checkpoint_info",
    "diagnose",
    "evaluate",
    "fit",
    "load_checkpoint",
    "sanity_check",
    "save_checkpoint",
]
