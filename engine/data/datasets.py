"""Datasets as plain arrays: the bundled ones, toy generators, CSV and NPZ files, seeded
stratified splits and mini-batches.

A `Dataset` is deliberately nothing but arrays and names: `x` holds one example per row
(images are flattened, `image_shape` says how to fold them back), `y` holds integer class
indices 0..K-1, the form `cross_entropy` expects. Loading never rescales anything: what to
subtract or divide by is a preprocessing decision fitted on the training split alone
(`engine.data.preprocess`), so it cannot happen before `split`.

>>> data = load_dataset("digits")
>>> parts = split(data, val=0.15, test=0.15, seed=0)
>>> len(parts.train) + len(parts.val) + len(parts.test) == len(data)
True
>>> for xb, yb in batches(parts.train.x, parts.train.y, 64, rng=0):
...     pass
"""

from __future__ import annotations

import difflib
import gzip
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import NamedTuple

import numpy as np
from topograd.engine.registry import Registry


class DataError(ValueError):
    """A data file or dataset request that cannot be read; the message names what and where."""


@dataclass
class Dataset:
    """Examples `x` (N, features) float64 with class indices `y` (N,) int64 and class names.

    `image_shape` (for example (1, 8, 8) for digits) says that each row of `x` is an image
    flattened in C, H, W order; `images()` folds the rows back for convolutions and
    augmentation.
    """

    x: np.ndarray
    y: np.ndarray
    name: str
    classes: list[str]
    image_shape: tuple | None = None

    def __post_init__(self):
        x = np.asarray(self.x, dtype=np.float64)
        if x.ndim == 1:
            x = x.reshape(-1, 1)
        if x.ndim != 2:
            raise ValueError(f"dataset {self.name!r}: x must be (N, features), got {x.shape}")
        y = np.asarray(self.y)
        if y.ndim != 1 or len(y) != len(x):
            raise ValueError(
                f"dataset {self.name!r}: y must be (N,) = ({len(x)},), got shape {y.shape}"
            )
        if y.size and not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"dataset {self.name!r}: labels must be integers, got {y.dtype}")
        y = y.astype(np.int64, copy=False)
        self.classes = [str(name) for name in self.classes]
        if y.size and (y.min() < 0 or y.max() >= len(self.classes)):
            raise ValueError(
                f"dataset {self.name!r}: labels must lie in 0..{len(self.classes) - 1} "
                f"(one per class name), got {y.min()}..{y.max()}"
            )
        if self.image_shape is not None:
            self.image_shape = tuple(int(size) for size in self.image_shape)
            if math.prod(self.image_shape) != x.shape[1]:
                raise ValueError(
                    f"dataset {self.name!r}: image_shape {self.image_shape} holds "
                    f"{math.prod(self.image_shape)} values, rows have {x.shape[1]}"
                )
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    @property
    def num_classes(self) -> int:
        """The number of classes K (the width of a classifier's output), present or not."""
        return len(self.classes)

    def subset(self, indices) -> Dataset:
        """The examples at `indices` (an index array or boolean mask), as a new Dataset."""
        indices = np.asarray(indices)
        return Dataset(
            self.x[indices].copy(),
            self.y[indices].copy(),
            self.name,
            list(self.classes),
            self.image_shape,
        )

    def images(self) -> np.ndarray:
        """`x` folded to (N, *image_shape), a view; ValueError for data that are not images."""
        if self.image_shape is None:
            raise ValueError(f"dataset {self.name!r} is not image-shaped (image_shape is None)")
        return self.x.reshape(len(self.x), *self.image_shape)


# --- CSV ------------------------------------------------------------------------------------
def _parse_number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _parse_csv(
    lines, source: str, label_column: int, header
) -> tuple[list, np.ndarray, np.ndarray]:
    """Rows of numbers from text lines, with 1-based line and column numbers in every error.

    Returns (header cells or [], features (N, D), labels as floats (N,)). Blank lines are
    skipped but still counted, so a reported row is the line an editor shows.
    """
    if header not in ("auto", True, False):
        raise ValueError(f"header must be 'auto', True or False, got {header!r}")
    header_cells: list[str] = []
    rows: list[list[float]] = []
    width = None
    first_data_line = None
    label_index = None
    for line_number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line:
            continue
        cells = [cell.strip() for cell in line.split(",")]
        if width is None and not header_cells:
            is_header = header is True or (
                header == "auto" and any(_parse_number(cell) is None for cell in cells)
            )
            if is_header:
                header_cells = cells
                continue
        if width is None:
            width = len(cells)
            first_data_line = line_number
            if width < 2:
                raise DataError(
                    f"{source}: row {line_number} has {width} column; need features and a label"
                )
            if not -width <= label_column < width:
                raise DataError(
                    f"{source}: label_column {label_column} is outside the {width} columns"
                )
            label_index = label_column % width
        if len(cells) != width:
            raise DataError(
                f"{source}: row {line_number} has {len(cells)} columns, expected {width} "
                f"(as in row {first_data_line})"
            )
        row = []
        for column, cell in enumerate(cells, start=1):
            value = _parse_number(cell)
            if value is None:
                what = "label" if column - 1 == label_index else "value"
                raise DataError(
                    f"{source}: row {line_number}, column {column}: {what} {cell!r} is not "
                    "a finite number"
                )
            if column - 1 == label_index and value != int(value):
                raise DataError(
                    f"{source}: row {line_number}, column {column}: label {cell!r} is not "
                    "an integer"
                )
            row.append(value)
        rows.append(row)
    if not rows:
        raise DataError(f"{source}: no data rows (the file is empty or holds only a header)")
    table = np.array(rows, dtype=np.float64)
    features = np.delete(table, label_index, axis=1)
    return header_cells, features, table[:, label_index]


def _classes_from_labels(labels: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Map integer labels to 0..K-1 in sorted order; the names keep the original labels.

    Labels already numbered 0..K-1 come back unchanged. Others (1-based, or with gaps) are
    renumbered because a classifier's outputs are indexed 0..K-1.
    """
    values, y = np.unique(labels.astype(np.int64), return_inverse=True)
    return y.astype(np.int64), [str(int(value)) for value in values]


def _read_lines(path) -> list[str]:
    """The text lines of a file path or a package resource; `.gz` files are decompressed.

    Reading whole files is fine here: a dataset is held in memory as arrays anyway.
    """
    if hasattr(path, "read_bytes"):  # a pathlib.Path or an importlib.resources Traversable
        raw = path.read_bytes()
    else:
        with open(path, "rb") as file:
            raw = file.read()
    if str(getattr(path, "name", path)).endswith(".gz"):
        raw = gzip.decompress(raw)
    return raw.decode("utf-8-sig").splitlines()


def load_csv(path, label_column: int = -1, header="auto") -> Dataset:
    """A dataset from a CSV file of numbers, one example per line, with one integer label column.

    `header="auto"` treats the first line as a header when any of its cells is not a number.
    A ragged row, a non-numeric cell or a non-integer label raises `DataError` naming the
    file, the row and the column (1-based, counting the header line), because a bad cell in
    a thousand-line file is otherwise hard to find. Labels are renumbered to 0..K-1 when
    they are not already; `classes` keeps the labels as written.
    """
    source = os.fspath(path)
    _, features, labels = _parse_csv(_read_lines(path), source, label_column, header)
    y, classes = _classes_from_labels(labels)
    return Dataset(features, y, os.path.basename(source), classes)


# --- NPZ ------------------------------------------------------------------------------------
def load_npz(path, x_key: str = "x", y_key: str = "y") -> Dataset:
    """A dataset from an `.npz` archive holding features under `x_key` and labels under `y_key`.

    `x` may be (N, features) or image-shaped (N, H, W) or (N, C, H, W); images are flattened
    and `image_shape` records their shape. An optional `classes` array names the classes.
    Pickled objects are refused (`allow_pickle=False`): an archive is data, never code.
    """
    source = os.fspath(path)
    with np.load(path, allow_pickle=False) as archive:
        for key in (x_key, y_key):
            if key not in archive.files:
                raise DataError(
                    f"{source}: no array named {key!r} (the archive holds {sorted(archive.files)})"
                )
        x = np.asarray(archive[x_key], dtype=np.float64)
        labels = np.asarray(archive[y_key])
        names = archive["classes"] if "classes" in archive.files else None
    if labels.ndim != 1 or len(labels) != len(x):
        raise DataError(
            f"{source}: {y_key!r} must be one label per example of {x_key!r}: "
            f"{x_key!r} has {len(x)} rows, {y_key!r} has shape {labels.shape}"
        )
    if labels.size and not (
        np.issubdtype(labels.dtype, np.integer)
        or (np.issubdtype(labels.dtype, np.floating) and np.all(labels == np.round(labels)))
    ):
        raise DataError(f"{source}: {y_key!r} labels must be integers, got {labels.dtype}")
    image_shape = None
    if x.ndim == 3:
        image_shape = (1, *x.shape[1:])
    elif x.ndim == 4:
        image_shape = x.shape[1:]
    elif x.ndim != 2:
        raise DataError(
            f"{source}: {x_key!r} must be (N, features), (N, H, W) or (N, C, H, W), got {x.shape}"
        )
    if names is None:
        y, classes = _classes_from_labels(labels)
    else:
        y, classes = labels.astype(np.int64), [str(name) for name in names]
        if y.size and (y.min() < 0 or y.max() >= len(classes)):
            raise DataError(
                f"{source}: {y_key!r} labels must index 'classes' (0..{len(classes) - 1}), "
                f"got {y.min()}..{y.max()}"
            )
    return Dataset(x.reshape(len(x), -1), y, os.path.basename(source), classes, image_shape)


# --- bundled datasets -------------------------------------------------------------------------
def _bundled(filename: str):
    return resources.files("topograd.engine.data").joinpath("files").joinpath(filename)


DIGIT_CLASSES = [str(digit) for digit in range(10)]


def load_digits() -> Dataset:
    """The 1797 8x8 handwritten digits (UCI, as bundled by scikit-learn), pixels 0..16 raw."""
    lines = _read_lines(_bundled("digits.csv.gz"))
    _, features, labels = _parse_csv(lines, "digits.csv.gz", -1, False)
    return Dataset(features, labels.astype(np.int64), "digits", DIGIT_CLASSES, (1, 8, 8))


def load_iris() -> Dataset:
    """Fisher's 150 iris flowers: 4 measurements in cm, 3 species (class names from the file)."""
    header, features, labels = _parse_csv(_read_lines(_bundled("iris.csv")), "iris.csv", -1, True)
    return Dataset(features, labels.astype(np.int64), "iris", header[2:])


# --- toy generators -------------------------------------------------------------------------
def _check_noise(noise: float) -> None:
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")


def _shuffled(x, y, rng, name, classes) -> Dataset:
    """Shuffle so that a slice or an unshuffled batch is not one class (scikit-learn's default)."""
    order = rng.permutation(len(y))
    return Dataset(x[order], y[order], name, classes)


def make_moons(n: int = 200, noise: float = 0.1, seed: int = 0) -> Dataset:
    """Two interleaved half circles (scikit-learn's recipe) with Gaussian noise, labels 0/1.

    Linearly inseparable but easy for a small MLP: the classic first boundary to draw.
    """
    if n < 2:
        raise ValueError(f"make_moons needs n >= 2, got {n}")
    _check_noise(noise)
    rng = np.random.default_rng(seed)
    n_top = n // 2
    top = np.linspace(0, np.pi, n_top)
    bottom = np.linspace(0, np.pi, n - n_top)
    x = np.concatenate(
        [np.c_[np.cos(top), np.sin(top)], np.c_[1 - np.cos(bottom), 0.5 - np.sin(bottom)]]
    )
    x = x + rng.normal(scale=noise, size=x.shape)
    y = np.repeat([0, 1], [n_top, n - n_top])
    return _shuffled(x, y, rng, "moons", ["top", "bottom"])


def make_circles(n: int = 200, noise: float = 0.05, factor: float = 0.5, seed: int = 0) -> Dataset:
    """A small circle (radius `factor`, label 1) inside a unit circle (label 0), scikit-learn's
    recipe: no line separates them, a squared feature or a hidden layer does."""
    if n < 2:
        raise ValueError(f"make_circles needs n >= 2, got {n}")
    if not 0 < factor < 1:
        raise ValueError(f"make_circles factor must be in (0, 1), got {factor}")
    _check_noise(noise)
    rng = np.random.default_rng(seed)
    n_outer = n // 2
    outer = np.linspace(0, 2 * np.pi, n_outer, endpoint=False)
    inner = np.linspace(0, 2 * np.pi, n - n_outer, endpoint=False)
    x = np.concatenate(
        [np.c_[np.cos(outer), np.sin(outer)], factor * np.c_[np.cos(inner), np.sin(inner)]]
    )
    x = x + rng.normal(scale=noise, size=x.shape)
    y = np.repeat([0, 1], [n_outer, n - n_outer])
    return _shuffled(x, y, rng, "circles", ["outer", "inner"])


def make_spiral(
    n_per_class: int = 100, classes: int = 3, noise: float = 0.2, seed: int = 0
) -> Dataset:
    """The cs231n spiral: arm j has r = linspace(0, 1), t = linspace(4j, 4(j+1)) + noise * randn,
    x = r [sin t, cos t]. No linear classifier gets far; a two-layer net separates the arms."""
    if n_per_class < 1 or classes < 2:
        raise ValueError(
            f"make_spiral needs n_per_class >= 1 and classes >= 2, got {n_per_class}, {classes}"
        )
    _check_noise(noise)
    rng = np.random.default_rng(seed)
    radius = np.tile(np.linspace(0.0, 1.0, n_per_class), classes)
    theta = np.concatenate(
        [np.linspace(j * 4, (j + 1) * 4, n_per_class) for j in range(classes)]
    ) + noise * rng.standard_normal(n_per_class * classes)
    x = radius[:, None] * np.c_[np.sin(theta), np.cos(theta)]
    y = np.repeat(np.arange(classes), n_per_class)
    return _shuffled(x, y, rng, "spiral", [f"arm {j}" for j in range(classes)])


BUILTIN: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
    "iris": load_iris,
    "moons": make_moons,
    "circles": make_circles,
    "spiral": make_spiral,
}
DATASETS = Registry("dataset")
"""The built-in datasets by name, for model files (`dataset moons(n=200)`)."""
for _name, _loader in BUILTIN.items():
    DATASETS.register(_name)(_loader)


def load_dataset(name_or_path, **options) -> Dataset:
    """A built-in dataset by name ("digits", "iris", "moons", "circles", "spiral") or a
    `.csv`, `.csv.gz` or `.npz` file; `options` go to the loader or generator.

    >>> load_dataset("moons", n=100, noise=0.2).x.shape
    (100, 2)
    """
    name = os.fspath(name_or_path)
    if name in BUILTIN:
        return BUILTIN[name](**options)
    lowered = name.lower()
    if lowered.endswith((".csv", ".csv.gz")):
        return load_csv(name, **options)
    if lowered.endswith(".npz"):
        return load_npz(name, **options)
    known = ", ".join(sorted(BUILTIN))
    hint = difflib.get_close_matches(lowered, BUILTIN, n=1)
    suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
    raise DataError(
        f"unknown dataset {name!r}: built-in names are {known}, or give a path to a "
        f".csv, .csv.gz or .npz file{suggestion}"
    )


# --- splits and batches -----------------------------------------------------------------------
class Splits(NamedTuple):
    """Training, validation and test parts of one dataset, disjoint and covering it."""

    train: Dataset
    val: Dataset
    test: Dataset


def _split_counts(n: int, val: float, test: float) -> tuple[int, int]:
    """Validation and test sizes for n examples, leaving at least one for training."""
    n_val, n_test = round(val * n), round(test * n)
    while n_val + n_test >= n and n_val + n_test > 0:
        if n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1
    return n_val, n_test


def split(
    dataset: Dataset, val: float = 0.15, test: float = 0.15, seed=0, stratify: bool = True
) -> Splits:
    """Seeded random split into train/val/test; `val` and `test` are fractions of the whole.

    Stratified by default: each class is split in the same proportions, so a small class
    is not left out of validation by chance and accuracies compare across the parts.
    Each part comes out shuffled.
    """
    for label, fraction in (("val", val), ("test", test)):
        if not 0 <= fraction < 1:
            raise ValueError(f"split {label} fraction must be in [0, 1), got {fraction}")
    if val + test >= 1:
        raise ValueError(f"split val + test must be < 1 to leave training data, got {val + test}")
    if len(dataset) == 0:
        raise ValueError(f"cannot split the empty dataset {dataset.name!r}")
    rng = np.random.default_rng(seed)
    if stratify:
        groups = [np.flatnonzero(dataset.y == label) for label in np.unique(dataset.y)]
    else:
        groups = [np.arange(len(dataset))]
    parts: tuple[list, list, list] = ([], [], [])
    for group in groups:
        group = rng.permutation(group)
        n_val, n_test = _split_counts(len(group), val, test)
        parts[1].append(group[:n_val])
        parts[2].append(group[n_val : n_val + n_test])
        parts[0].append(group[n_val + n_test :])
    train, val_part, test_part = (
        dataset.subset(rng.permutation(np.concatenate(part))) for part in parts
    )
    return Splits(train, val_part, test_part)


def as_generator(rng) -> np.random.Generator:
    """A Generator from a Generator (used as is), an int seed, or None (fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def batches(
    x: np.ndarray,
    y: np.ndarray | None,
    batch_size: int,
    shuffle: bool = True,
    rng=None,
    drop_last: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """One epoch of mini-batches (xb, yb): every example exactly once (the last batch may be
    smaller unless `drop_last`).

    `rng` is a `np.random.Generator` or an int seed. Pass one Generator for the whole run to
    get a new order every epoch that is still reproducible; an int seed gives the same order
    every time it is passed.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise TypeError(f"batch_size must be an int, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if y is not None and len(y) != len(x):
        raise ValueError(f"batches: x has {len(x)} examples but y has {len(y)}")
    order = as_generator(rng).permutation(len(x)) if shuffle else None
    stop = len(x) - len(x) % batch_size if drop_last else len(x)
    return _epoch(x, y, batch_size, order, stop)


def _epoch(x, y, batch_size, order, stop):
    """The generator behind `batches`, apart so that bad arguments raise at the call."""
    for start in range(0, stop, batch_size):
        if order is None:
            index: Sequence | slice = slice(start, start + batch_size)
        else:
            index = order[start : start + batch_size]
        yield x[index], (None if y is None else y[index])
