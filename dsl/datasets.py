"""Loading a data section's dataset, once per process (a search re-checks the same file for
every trial; the checker and the builder both need the arrays)."""

from __future__ import annotations

from topograd.engine.data.datasets import DATASETS, Dataset, load_dataset

_LOADED: dict[tuple, Dataset] = {}


def _key(entry) -> tuple:
    return entry.name, tuple(sorted((k, repr(v)) for k, v in entry.kwargs.items()))


def load(entry) -> Dataset:
    """The Dataset an Entry names: a built-in (DATASETS) or name "file" with a path."""
    key = _key(entry)
    if key not in _LOADED:
        if entry.name == "file":
            _LOADED[key] = load_dataset(entry.kwargs["path"])
        else:
            _LOADED[key] = DATASETS.get(entry.name)(**entry.kwargs)
    return _LOADED[key]
