"""Training: the fit loop with the lecture's checks, checkpoints, ensembles and search.

Plots (engine.train.plots) need matplotlib (`pip install topograd[plot]`) and are imported
from there, so that training itself never needs it.
"""

from topograd.engine.train.checkpoint import (
    CheckpointError,
    CheckpointInfo,
    checkpoint_info,
    load_checkpoint,
    save_checkpoint,
)
from topograd.engine.train.checks import (
    Diagnosis,
    InitialLossWarning,
    SanityResult,
    diagnose,
    evaluate,
    sanity_check,
)
from topograd.engine.train.ensemble import (
    ensemble_proba,
    predict_proba,
    snapshot_ensemble,
    train_ensemble,
    train_single,
)
from topograd.engine.train.fit import fit
from topograd.engine.train.history import History
from topograd.engine.train.search import (
    Choice,
    IntUniform,
    LogUniform,
    SearchResult,
    TrialResult,
    Uniform,
    coarse_to_fine,
    fit_objective,
    grid_search,
    random_search,
)

__all__ = [
    "CheckpointError",
    "CheckpointInfo",
    "Choice",
    "Diagnosis",
    "History",
    "InitialLossWarning",
    "IntUniform",
    "LogUniform",
    "SanityResult",
    "SearchResult",
    "TrialResult",
    "Uniform",
    "checkpoint_info",
    "coarse_to_fine",
    "diagnose",
    "ensemble_proba",
    "evaluate",
    "fit",
    "fit_objective",
    "grid_search",
    "load_checkpoint",
    "predict_proba",
    "random_search",
    "sanity_check",
    "save_checkpoint",
    "snapshot_ensemble",
    "train_ensemble",
    "train_single",
]
