"""Training: the fit loop with the lecture's checks, checkpoints, ensembles and search."""
