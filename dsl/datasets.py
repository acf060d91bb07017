"""A data section's dataset: the options of a data file, loading once per process (a search
re-checks the same file for every trial; the checker and the builder both need the arrays),
and what a checkpoint records about the data so that `eval` can refuse weights trained on
other data.

A data file is `dataset "houses.csv"` (every option at its default) or
`dataset file("houses.csv", label="price", delimiter=";", header=true)`; an archive is
`dataset file("images.npz", x="images", y="labels")`. Whether the label column holds class
labels or real-valued targets is the loss's decision (REGRESSION_LOSSES), so the checker
adds `target` to the Entry's options.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
from topograd.engine.data.datasets import DATASETS, DataError, Dataset, load_dataset
from topograd.engine.registry import Registry

REGRESSION_LOSSES = ("mse",)
"""Losses whose targets are real numbers: a data file's label column is read as such."""

CSV_OPTIONS = ("label", "delimiter", "header")
NPZ_OPTIONS = ("x", "y")
_ENGINE_NAMES = {"label": "label_column", "x": "x_key", "y": "y_key"}


def file(path: str, label=None, delimiter: str = ",", header=None, x: str = "x", y: str = "y"):
    """Signature of `dataset file(...)`: a `.csv`, `.csv.gz` or `.npz` file with its options."""


FILES = Registry("dataset")
"""`file`, for binding a data file's options like any registered name's."""
FILES.register("file")(file)


def _is_label(value) -> bool:
    return isinstance(value, int | str) and not isinstance(value, bool) and value != ""


_RULES = {
    "label": (_is_label, "label is a column index (0 the first, -1 the last) or a header name"),
    "delimiter": (
        lambda value: isinstance(value, str) and len(value) == 1,
        'delimiter is one character in quotes (";", "\\t")',
    ),
    "header": (
        lambda value: isinstance(value, bool),
        "header is true or false (leave it out to detect it)",
    ),
    "x": (lambda value: isinstance(value, str) and value, "x is an array's name in quotes"),
    "y": (lambda value: isinstance(value, str) and value, "y is an array's name in quotes"),
}


def file_problems(path: str, options: dict) -> list[tuple[str | None, str]]:
    """(option or None for the path, message) for each option that does not fit the file."""
    lowered = path.lower()
    if not lowered.endswith((".csv", ".csv.gz", ".npz")):
        return [(None, f"a data file is a .csv, .csv.gz or .npz file, got {path!r}")]
    npz = lowered.endswith(".npz")
    kind, own = ("an .npz archive", NPZ_OPTIONS) if npz else ("a CSV file", CSV_OPTIONS)
    problems = []
    for key, value in options.items():
        fits, rule = _RULES[key]
        if key not in own:
            listed = ", ".join(f"{name}=" for name in own)
            problems.append((key, f"{key}= is not an option of {kind} (its options: {listed})"))
        elif not fits(value):
            problems.append((key, f"{rule}, got {_shown(value)}"))
    return problems


def _shown(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(getattr(value, "name", value))


# --- loading -------------------------------------------------------------------------------------
_LOADED: dict[tuple, Dataset] = {}


def _key(entry) -> tuple:
    stamp = None
    if entry.name == "file":
        try:
            status = os.stat(entry.kwargs["path"])
            stamp = (status.st_mtime_ns, status.st_size)  # an edited file is read again
        except OSError:
            stamp = None
    return entry.name, tuple(sorted((k, repr(v)) for k, v in entry.kwargs.items())), stamp


def load(entry) -> Dataset:
    """The Dataset an Entry names: a built-in (DATASETS) or name "file" with a path and the
    file's options; a file read for a classifier must hold at least two classes."""
    key = _key(entry)
    if key not in _LOADED:
        if entry.name == "file":
            _LOADED[key] = _load_file(dict(entry.kwargs))
        else:
            _LOADED[key] = DATASETS.get(entry.name)(**entry.kwargs)
    return _LOADED[key]


def _load_file(options: dict) -> Dataset:
    path = options.pop("path")
    if options.get("header") is None:
        options.pop("header", None)
    try:
        dataset = load_dataset(path, **{_ENGINE_NAMES.get(k, k): v for k, v in options.items()})
    except FileNotFoundError:
        raise DataError(f"no such file: {path}") from None
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror or error}") from None
    present = np.unique(dataset.y) if not dataset.regression else ()
    if not dataset.regression and len(present) < 2:
        name = dataset.classes[int(present[0])] if len(present) else "none"
        raise DataError(
            f"{path}: every example has class {name!r}: a classifier needs at least two "
            "classes (real-valued targets are read as such for a regression loss, such as mse)"
        )
    return dataset


# --- what a checkpoint records -------------------------------------------------------------------
def content_hash(dataset: Dataset) -> str:
    """sha256 of the examples as loaded (features, labels or targets, class names, image
    shape): the same numbers give the same hash however the file is laid out."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(dataset.x, dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(dataset.y).tobytes())
    digest.update(repr((dataset.y.dtype.str, dataset.classes, dataset.image_shape)).encode())
    return digest.hexdigest()


def entry_text(entry) -> str:
    """An Entry as a model file writes it: `moons(n=200)`, `file("a.csv", label="y")`."""
    options = dict(entry.kwargs)
    arguments = [_value_text(options.pop("path"))] if entry.name == "file" else []
    options.pop("target", None)
    arguments += [f"{key}={_value_text(value)}" for key, value in options.items()]
    return f"{entry.name}({', '.join(arguments)})" if arguments else entry.name


def _value_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_value_text(item) for item in value) + ")"
    if value is None:
        return "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def data_record(data, pipeline=None) -> dict:
    """What a checkpoint keeps about the data section `data` (a DataSpec): the dataset (name,
    options, content hash), the split, the preprocessing and its fitted statistics."""
    dataset = load(data.dataset)
    options = {k: v for k, v in data.dataset.kwargs.items() if k != "path"}
    path = data.dataset.kwargs.get("path")
    return {
        "dataset": data.dataset.name,
        "options": options,
        "path": None if path is None else os.path.abspath(path),
        "text": entry_text(data.dataset),
        "examples": len(dataset),
        "sha256": content_hash(dataset),
        "classes": list(dataset.classes),
        "val": data.val,
        "test": data.test,
        "split_seed": data.split_seed,
        "stratify": data.stratify,
        "preprocess": [entry_text(entry) for entry in data.preprocess],
        "statistics": pipeline.state_dict() if pipeline is not None else {},
    }


def record_differences(saved: dict, current: dict) -> list[str]:
    """How the data a checkpoint was trained on differs from `current` (both `data_record`s),
    one phrase each, naming the model file's value and then the checkpoint's."""
    differences = []
    saved_options = dict(saved.get("options", {}))
    current_options = dict(current["options"])
    targets = saved_options.pop("target", None), current_options.pop("target", None)
    if (saved.get("dataset"), saved_options) != (current["dataset"], current_options):
        differences.append(f"dataset {current['text']} (the checkpoint's: {saved.get('text')})")
    elif targets[0] != targets[1]:
        read = {"real": "real-valued targets", "class": "class labels"}
        differences.append(
            f"labels read as {read.get(targets[1])} (the checkpoint's: {read.get(targets[0])})"
        )
    elif saved.get("sha256") != current["sha256"]:
        now = f"{current['examples']} examples, sha256 {current['sha256'][:12]}"
        then = f"{saved.get('examples')} examples, sha256 {str(saved.get('sha256'))[:12]}"
        if saved.get("path") != current["path"]:
            differences.append(
                f"dataset {current['path']}: {now} (the checkpoint's: {saved.get('path')}: {then})"
            )
        else:
            what = current["path"] or current["text"]
            differences.append(f"the examples of {what} changed: {now} (the checkpoint's: {then})")
    for key in ("val", "test", "split_seed", "stratify"):
        if saved.get(key) != current[key]:
            now, then = _value_text(current[key]), _value_text(saved.get(key))
            differences.append(f"{key} {now} (the checkpoint's: {then})")
    if list(saved.get("preprocess", [])) != current["preprocess"]:
        differences.append(
            f"preprocess {', '.join(current['preprocess']) or 'none'} (the checkpoint's: "
            f"{', '.join(saved.get('preprocess', [])) or 'none'})"
        )
    return differences
