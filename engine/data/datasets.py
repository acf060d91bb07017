"""Datasets as plain arrays: the bundled ones, toy generators, CSV and NPZ files, seeded
stratified splits and mini-batches.

A `Dataset` is deliberately nothing but arrays and names: `x` holds one example per row
(images are flattened, `image_shape` says how to fold them back), `y` holds integer class
indices 0..K-1, the form `cross_entropy` expects, or real-valued targets for a regression
(then `classes` is empty). Loading never rescales anything: what to subtract or divide by
is a preprocessing decision fitted on the training split alone (`engine.data.preprocess`),
so it cannot happen before `split`.

>>> data = load_dataset("digits")
>>> parts = split(data, val=0.15, test=0.15, seed=0)
>>> len(parts.train) + len(parts.val) + len(parts.test) == len(data)
True
>>> for xb, yb in batches(parts.train.x, parts.train.y, 64, rng=0):
...     pass
"""

from __future__ import annotations

import csv
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
    """Examples `x` (N, features) float64 with class indices `y` (N,) int64 and class names,
    or, when `classes` is empty, real-valued targets `y` (N,) float64 (a regression).

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
        self.classes = [str(name) for name in self.classes]
        if not self.classes:  # real-valued targets
            if y.size and not np.issubdtype(y.dtype, np.number):
                raise ValueError(f"dataset {self.name!r}: targets must be numbers, got {y.dtype}")
            self.x, self.y = x, y.astype(np.float64, copy=False)
            self._check_image_shape()
            return
        if y.size and not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"dataset {self.name!r}: labels must be integers, got {y.dtype}")
        y = y.astype(np.int64, copy=False)
        if y.size and (y.min() < 0 or y.max() >= len(self.classes)):
            raise ValueError(
                f"dataset {self.name!r}: labels must lie in 0..{len(self.classes) - 1} "
                f"(one per class name), got {y.min()}..{y.max()}"
            )
        self.x, self.y = x, y
        self._check_image_shape()

    def _check_image_shape(self) -> None:
        if self.image_shape is None:
            return
        self.image_shape = tuple(int(size) for size in self.image_shape)
        if math.prod(self.image_shape) != self.x.shape[1]:
            raise ValueError(
                f"dataset {self.name!r}: image_shape {self.image_shape} holds "
                f"{math.prod(self.image_shape)} values, rows have {self.x.shape[1]}"
            )

    def __len__(self) -> int:
        return len(self.y)

    @property
    def num_classes(self) -> int:
        """The number of classes K (the width of a classifier's output), present or not;
        0 for real-valued targets."""
        return len(self.classes)

    @property
    def regression(self) -> bool:
        """Whether `y` holds real-valued targets rather than class indices."""
        return not self.classes

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
TARGETS = ("class", "real")
"""How a label column is read: class labels (whole numbers or names) or real-valued targets."""

_DELIMITERS = (",", ";", "\t", "|")


def _parse_number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _check_target(target) -> None:
    if target not in TARGETS:
        raise ValueError(f"target must be 'class' or 'real', got {target!r}")


@dataclass
class _Table:
    """A CSV file's numbers: the features, and the label column as written (read later as
    classes or real targets). `lines` holds each row's 1-based line number in the file."""

    header: list[str]
    features: np.ndarray
    labels: list[str]
    lines: list[int]
    column: int  # the label column, 1-based


def _rows(lines, source: str, delimiter: str):
    """(line number, stripped cells) of each row that holds anything; blank lines and rows
    of empty fields (a spreadsheet's trailing ",,,") are skipped but still counted. Each line
    is one row: a quote left open is an error at its line, not a field running on."""
    for line_number, line in enumerate(lines, start=1):
        if '"' not in line:  # no quotes: split gives the csv module's answer, faster
            cells = line.split(delimiter)
        else:
            try:
                cells = next(csv.reader([line], delimiter=delimiter, strict=True), [])
            except csv.Error as error:
                raise DataError(f"{source}: row {line_number}: {error}") from None
        cells = [cell.strip() for cell in cells]
        if any(cells):
            yield line_number, cells


def _check_csv_options(header, delimiter) -> None:
    if header not in ("auto", True, False):
        raise ValueError(f"header must be 'auto', True or False, got {header!r}")
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise ValueError(f"delimiter must be one character, got {delimiter!r}")


def _delimiter_hint(cells: list[str], delimiter: str) -> str:
    """'; the row holds ';': is the file ;-separated?' when another usual separator shows."""
    text = delimiter.join(cells)
    for other in _DELIMITERS:
        if other != delimiter and other in text:
            shown = "\\t" if other == "\t" else other
            return f'; the row holds {shown!r}: is that the delimiter (delimiter="{shown}")?'
    return ""


def _label_index(label_column, header: list[str], width: int, source: str) -> int:
    """The label column's 0-based index from an index (negative counts from the end) or a
    header name."""
    if isinstance(label_column, str):
        if not header:
            raise DataError(
                f"{source}: label column {label_column!r} is a name, but the file has no header "
                "row (its first row is numbers): give the column's index instead"
            )
        if label_column not in header:
            close = difflib.get_close_matches(label_column, header, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise DataError(
                f"{source}: no column named {label_column!r} in the header "
                f"({', '.join(header)}){hint}"
            )
        return header.index(label_column)
    if isinstance(label_column, bool) or not isinstance(label_column, int | np.integer):
        raise TypeError(f"label column must be an index or a header name, got {label_column!r}")
    if not -width <= label_column < width:
        raise DataError(f"{source}: label column {label_column} is outside the {width} columns")
    return int(label_column) % width


def _parse_csv(lines, source: str, label_column=-1, header="auto", delimiter=",") -> _Table:
    """Rows of numbers from text lines, with 1-based line and column numbers in every error.

    `header="auto"` takes the first row for a header only when none of its fields is a
    number, so a typo in the first row of numbers (`0.1,O.5,1`) is reported, not dropped.
    Blank lines are skipped but still counted, so a reported row is the line an editor shows.
    """
    _check_csv_options(header, delimiter)
    header_cells: list[str] = []
    features: list[list[float]] = []
    labels: list[str] = []
    line_numbers: list[int] = []
    width = first_line = label_index = None
    for line_number, cells in _rows(lines, source, delimiter):
        if first_line is None:
            first_line = line_number
            numbers = [_parse_number(cell) is not None for cell in cells]
            if header is True or (header == "auto" and not any(numbers)):
                header_cells = cells
                width = len(cells)
                continue
        if width is None:
            width = len(cells)
        if label_index is None:
            if width < 2:
                raise DataError(
                    f"{source}: row {line_number} has {width} column; need features and a "
                    f"label{_delimiter_hint(cells, delimiter)}"
                )
            label_index = _label_index(label_column, header_cells, width, source)
        if len(cells) != width:
            raise DataError(
                f"{source}: row {line_number} has {len(cells)} columns, expected {width} "
                f"(as in row {first_line}){_delimiter_hint(cells, delimiter)}"
            )
        row = []
        for index, cell in enumerate(cells):
            if index == label_index:
                continue
            value = _parse_number(cell)
            if value is None:
                named = f" (column {header_cells[index]!r})" if header_cells else ""
                note = ""
                if line_number == first_line and header == "auto":
                    note = "; row 1 is data, not a header, because some of its fields are numbers"
                raise DataError(
                    f"{source}: row {line_number}, column {index + 1}: value {cell!r} is not "
                    f"a finite number{named}{note}"
                )
            row.append(value)
        features.append(row)
        labels.append(cells[label_index])
        line_numbers.append(line_number)
    if not features:
        raise DataError(f"{source}: no data rows (the file is empty or holds only a header)")
    table = np.array(features, dtype=np.float64)
    return _Table(header_cells, table, labels, line_numbers, label_index + 1)


def _class_labels(table: _Table, source: str) -> tuple[np.ndarray, list[str]]:
    """Class indices and names from a label column of whole numbers (renumbered 0..K-1 in
    sorted order, named as written) or of names ("cat", "dog": sorted, indexed 0..K-1)."""
    values = [_parse_number(cell) for cell in table.labels]
    first = values[0] is not None
    where = f"column {table.column}"
    for cell, value, line in zip(table.labels, values, table.lines):
        if not cell:
            raise DataError(f"{source}: row {line}, {where}: the label is empty")
        if (value is not None) != first:
            kind, other = ("not a number", "is") if first else ("a number", "is a name")
            raise DataError(
                f"{source}: row {line}, {where}: label {cell!r} is {kind}, but row "
                f"{table.lines[0]}'s label {table.labels[0]!r} {other}: class labels are all "
                "whole numbers or all names"
            )
        if value is not None and value != int(value):
            raise DataError(
                f"{source}: row {line}, {where}: label {cell!r} is not an integer: class "
                "labels are whole numbers or names (real-valued targets are read as such for "
                "a regression loss, such as mse)"
            )
    if first:
        return _classes_from_labels(np.array(values, dtype=np.float64))
    names = sorted(set(table.labels))
    index = {name: position for position, name in enumerate(names)}
    return np.array([index[cell] for cell in table.labels], dtype=np.int64), names


def _real_targets(table: _Table, source: str) -> np.ndarray:
    targets = []
    for cell, line in zip(table.labels, table.lines):
        value = _parse_number(cell)
        if value is None:
            raise DataError(
                f"{source}: row {line}, column {table.column}: target {cell!r} is not a finite "
                "number"
            )
        targets.append(value)
    return np.array(targets, dtype=np.float64)


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
    try:
        return raw.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(
            f"{os.fspath(path)}: row {line}: not UTF-8 text (byte {raw[error.start]:#04x}); "
            "save the file as UTF-8"
        ) from None


def load_csv(
    path, label_column=-1, header="auto", delimiter: str = ",", target: str = "class"
) -> Dataset:
    """A dataset from a CSV file, one example per line: numbers, and one label column.

    `label_column` is an index (negative counts from the end: -1 is the last column) or a
    name from the header row. `header="auto"` takes the first row for a header only when
    none of its fields is a number; True or False say so. `delimiter` separates the fields
    (one character; fields may be quoted).

    `target="class"`: the labels are whole numbers (renumbered 0..K-1 in sorted order when
    they are not already; `classes` keeps them as written) or names such as "cat" and
    "dog" (indexed in sorted order; `classes` holds the names). `target="real"`: the labels
    are real-valued targets (a regression; `classes` is empty).

    A ragged row, a field that is not a number or a bad label raises `DataError` naming the
    file, the row and the column (1-based, counting the header line), because a bad cell in
    a thousand-line file is otherwise hard to find.
    """
    _check_target(target)
    _check_csv_options(header, delimiter)
    source = os.fspath(path)
    table = _parse_csv(_read_lines(path), source, label_column, header, delimiter)
    name = os.path.basename(source)
    if target == "real":
        return Dataset(table.features, _real_targets(table, source), name, [])
    y, classes = _class_labels(table, source)
    return Dataset(table.features, y, name, classes)


# --- NPZ ------------------------------------------------------------------------------------
def _npz_labels(labels: np.ndarray, names, source: str, y_key: str, target: str):
    """(y, classes) from an archive's label array, as `load_npz` describes."""
    if target == "real":
        if labels.size and not (
            np.issubdtype(labels.dtype, np.number)
            and not np.issubdtype(labels.dtype, np.complexfloating)
        ):
            raise DataError(f"{source}: {y_key!r} targets must be numbers, got {labels.dtype}")
        targets = labels.astype(np.float64)
        if not np.all(np.isfinite(targets)):
            row = int(np.flatnonzero(~np.isfinite(targets))[0])
            raise DataError(f"{source}: {y_key!r} target {row} is {targets[row]}")
        return targets, []
    if labels.dtype.kind in "US":
        if names is not None:
            raise DataError(
                f"{source}: {y_key!r} holds names, so the archive needs no 'classes' array"
            )
        found, y = np.unique(labels.astype(str), return_inverse=True)
        return y.astype(np.int64), [str(name) for name in found]
    if labels.size and not (
        np.issubdtype(labels.dtype, np.integer)
        or (np.issubdtype(labels.dtype, np.floating) and np.all(labels == np.round(labels)))
    ):
        raise DataError(
            f"{source}: {y_key!r} labels must be integers or names, got {labels.dtype} (real-"
            "valued targets are read as such for a regression loss, such as mse)"
        )
    if names is None:
        return _classes_from_labels(labels)
    y, classes = labels.astype(np.int64), [str(name) for name in names]
    if y.size and (y.min() < 0 or y.max() >= len(classes)):
        raise DataError(
            f"{source}: {y_key!r} labels must index 'classes' (0..{len(classes) - 1}), "
            f"got {y.min()}..{y.max()}"
        )
    return y, classes


def load_npz(path, x_key: str = "x", y_key: str = "y", target: str = "class") -> Dataset:
    """A dataset from an `.npz` archive holding features under `x_key` and labels under `y_key`.

    `x` may be (N, features) or image-shaped (N, H, W) or (N, C, H, W); images are flattened
    and `image_shape` records their shape. With `target="class"` the labels are whole
    numbers or strings (names, indexed in sorted order), and an optional `classes` array
    names integer labels 0..K-1; with `target="real"` they are real-valued targets.
    Pickled objects are refused (`allow_pickle=False`): an archive is data, never code.
    """
    _check_target(target)
    source = os.fspath(path)
    with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as archive:
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
    image_shape = None
    if x.ndim == 3:
        image_shape = (1, *x.shape[1:])
    elif x.ndim == 4:
        image_shape = x.shape[1:]
    elif x.ndim != 2:
        raise DataError(
            f"{source}: {x_key!r} must be (N, features), (N, H, W) or (N, C, H, W), got {x.shape}"
        )
    y, classes = _npz_labels(labels, names, source, y_key, target)
    return Dataset(x.reshape(len(x), -1), y, os.path.basename(source), classes, image_shape)


# --- bundled datasets -------------------------------------------------------------------------
def _bundled(filename: str):
    return resources.files("topograd.engine.data").joinpath("files").joinpath(filename)


DIGIT_CLASSES = [str(digit) for digit in range(10)]


def load_digits() -> Dataset:
    """The 1797 8x8 handwritten digits (UCI, as bundled by scikit-learn), pixels 0..16 raw."""
    table = _parse_csv(_read_lines(_bundled("digits.csv.gz")), "digits.csv.gz", -1, False)
    labels = np.array(table.labels, dtype=np.float64).astype(np.int64)
    return Dataset(table.features, labels, "digits", DIGIT_CLASSES, (1, 8, 8))


def load_iris() -> Dataset:
    """Fisher's 150 iris flowers: 4 measurements in cm, 3 species (class names from the file)."""
    table = _parse_csv(_read_lines(_bundled("iris.csv")), "iris.csv", -1, True)
    labels = np.array(table.labels, dtype=np.float64).astype(np.int64)
    return Dataset(table.features, labels, "iris", table.header[2:])


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
    Real-valued targets (a regression) have no classes: their split is never stratified.
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
    if stratify and not dataset.regression:
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
