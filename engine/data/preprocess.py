"""Preprocessing from the lecture notes: mean subtraction, standardization (feature scaling),
PCA and whitening, fitted on the training split and applied unchanged to the others.

The notes' rule is the reason for the fit/transform split: "during test, we use the empirical
mean estimated on the training data". Statistics computed on validation or test data would
leak them into the model and make the held-out scores optimistic, so every step here learns
its statistics once, in `fit(x_train)`, and `transform` only applies them.

Every step takes rows of features (N, D); image batches (N, C, H, W) are accepted too and
treated as rows of C*H*W values. `state_dict()` holds the fitted statistics as plain arrays so
that a checkpoint can store them next to the weights (the constructor's arguments are the
configuration, as with PyTorch modules).

>>> import numpy as np
>>> x_train, x_val = np.random.randn(100, 5) * 3 + 1, np.random.randn(20, 5)
>>> scaler = Standardize().fit(x_train)
>>> x_train, x_val = scaler.transform(x_train), scaler.transform(x_val)
"""

from __future__ import annotations

import math

import numpy as np
from topograd.engine.registry import Registry


class NotFittedError(RuntimeError):
    """A preprocessing step was used before `fit` (or `load_state_dict`) gave it statistics."""


def _rows(x) -> np.ndarray:
    """x as float64 rows (N, D); image batches are flattened per example."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 2:
        raise ValueError(f"preprocessing expects rows of features (N, D), got shape {x.shape}")
    return x.reshape(len(x), -1)


def _sign_fixed(vectors: np.ndarray) -> np.ndarray:
    """Flip each row so that its largest-magnitude entry is positive.

    An eigenvector's sign is arbitrary; fixing it makes the projection the same across
    LAPACK builds and refits (scikit-learn's `svd_flip` does the same).
    """
    largest = np.argmax(np.abs(vectors), axis=1)
    signs = np.sign(vectors[np.arange(len(vectors)), largest])
    signs[signs == 0] = 1.0
    return vectors * signs[:, None]


def _principal_axes(centered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The eigen-decomposition of X^T X for centered X: sums of squares along each principal
    direction (descending, clipped at 0) and the directions as sign-fixed rows.

    These are X's squared singular values and right singular vectors, as an SVD of X would
    give them, up to rounding relative to the largest. The small (D, D) problem is used
    because the (N, D) SVD took 0.7 to 2 s for digits on a busy 2-core machine (threaded
    OpenBLAS waiting for cores), against under 0.01 s for this.
    """
    sums, vectors = np.linalg.eigh(centered.T @ centered)
    return np.clip(sums[::-1], 0.0, None), _sign_fixed(vectors[:, ::-1].T)


class Preprocessor:
    """The common protocol: `fit` on training data, `transform` anything, save the statistics.

    A subclass lists its fitted arrays in `_state` (stored as attributes with a trailing
    underscore) and implements `_fit(rows)` and `_transform(rows, shape)`.
    """

    _state: tuple[str, ...] = ()

    @property
    def fitted(self) -> bool:
        """Whether statistics are present (from `fit` or `load_state_dict`)."""
        return all(getattr(self, f"{name}_", None) is not None for name in self._state)

    def fit(self, x) -> Preprocessor:
        """Learn the statistics from `x`, which must be the training split only; returns self."""
        rows = _rows(x)
        if len(rows) == 0:
            raise ValueError(f"{type(self).__name__}.fit needs at least one example")
        self._fit(rows, np.shape(x))
        return self

    def transform(self, x) -> np.ndarray:
        """Apply the fitted statistics to `x` (training, validation or test data alike)."""
        self._check_fitted()
        rows = _rows(x)
        expected = self._n_features()
        if rows.shape[1] != expected:
            raise ValueError(
                f"{type(self).__name__} was fitted on {expected} features, got {rows.shape[1]} "
                f"(input shape {np.shape(x)})"
            )
        return self._transform(rows, np.shape(x))

    def fit_transform(self, x) -> np.ndarray:
        """`fit(x)` then `transform(x)`: for the training split."""
        return self.fit(x).transform(x)

    def state_dict(self) -> dict[str, np.ndarray]:
        """The fitted statistics as copies of plain arrays (names without the underscore)."""
        self._check_fitted()
        return {name: np.array(getattr(self, f"{name}_")) for name in self._state}

    def load_state_dict(self, state) -> Preprocessor:
        """Restore statistics saved by `state_dict` (exactly its keys); returns self."""
        self._check_keys(state)
        for name in self._state:
            setattr(self, f"{name}_", np.array(state[name], dtype=np.float64))
        return self

    def _keys(self) -> list[str]:
        """The keys of `state_dict`, known before fitting."""
        return list(self._state)

    def _check_keys(self, state) -> None:
        """Refuse a state dict that is not exactly ours, as PyTorch's strict loading does."""
        expected = self._keys()
        missing = [key for key in expected if key not in state]
        unexpected = [key for key in state if key not in expected]
        if missing or unexpected:
            raise KeyError(
                f"{type(self).__name__}.load_state_dict: missing {missing}, unexpected "
                f"{unexpected} (expected {expected})"
            )

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise NotFittedError(
                f"{type(self).__name__} is not fitted: call fit(x_train) first, so that its "
                "statistics come from the training split only"
            )

    def _n_features(self) -> int:
        raise NotImplementedError

    def _fit(self, rows: np.ndarray, shape: tuple) -> None:
        raise NotImplementedError

    def _transform(self, rows: np.ndarray, shape: tuple) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({'fitted' if self.fitted else 'not fitted'})"


class MeanSubtraction(Preprocessor):
    """Subtract the training mean: the notes' "center only", the usual choice for images.

    `per="feature"` subtracts the mean image (one mean per pixel, AlexNet); `per="channel"`
    subtracts one mean per channel (VGG), which needs to know where channels are: give
    `image_shape=(C, H, W)` for flat rows, or pass (N, C, H, W) batches. The output keeps
    the input's shape.
    """

    _state = ("mean",)

    def __init__(self, per: str = "feature", image_shape: tuple | None = None):
        if per not in ("feature", "channel"):
            raise ValueError(f"MeanSubtraction per must be 'feature' or 'channel', got {per!r}")
        if image_shape is not None and len(image_shape) != 3:
            raise ValueError(f"image_shape must be (C, H, W), got {image_shape}")
        self.per = per
        self.image_shape = None if image_shape is None else tuple(image_shape)
        self.mean_ = None

    def _channels(self, shape: tuple, rows: np.ndarray, channels: int) -> np.ndarray:
        """rows viewed as (N, C, H*W), so that the per-channel mean is one reduction."""
        if len(shape) > 2 and shape[1] != channels:
            raise ValueError(f"MeanSubtraction expects {channels} channels on axis 1, got {shape}")
        if len(shape) == 2:
            if self.image_shape is not None and math.prod(self.image_shape) != rows.shape[1]:
                raise ValueError(
                    f"image_shape {self.image_shape} holds {math.prod(self.image_shape)} "
                    f"values, rows have {rows.shape[1]}"
                )
            if rows.shape[1] % channels:
                raise ValueError(
                    f"rows of {rows.shape[1]} values do not split into {channels} channels"
                )
        return rows.reshape(len(rows), channels, -1)

    def _fit(self, rows, shape):
        if self.per == "feature":
            self.mean_ = rows.mean(axis=0)
            return
        if len(shape) > 2:
            channels = shape[1]
        elif self.image_shape is not None:
            channels = self.image_shape[0]
        else:
            raise ValueError(
                "MeanSubtraction(per='channel') on flat rows needs image_shape=(C, H, W) to "
                "find the channels (or pass images shaped (N, C, H, W))"
            )
        self.mean_ = self._channels(shape, rows, channels).mean(axis=(0, 2))

    def transform(self, x) -> np.ndarray:
        """Subtract the fitted mean; the output has the input's shape."""
        if self.per == "feature":
            return super().transform(x)
        self._check_fitted()
        rows = _rows(x)
        grouped = self._channels(np.shape(x), rows, self.mean_.size)
        return (grouped - self.mean_[:, None]).reshape(np.shape(x))

    def _n_features(self):
        return self.mean_.size

    def _transform(self, rows, shape):
        return (rows - self.mean_).reshape(shape)


class Standardize(Preprocessor):
    """Feature scaling (notes 004): x <- (x - m_i) / sigma_i per feature, training statistics.

    A feature whose training standard deviation is at most `eps` (a pixel that is always 0)
    is only centered, not divided: dividing by a near-zero sigma would turn any validation
    value that differs into a huge number (scikit-learn's StandardScaler does the same).
    """

    _state = ("mean", "std")

    def __init__(self, eps: float = 1e-8):
        if eps < 0:
            raise ValueError(f"Standardize eps must be >= 0, got {eps}")
        self.eps = eps
        self.mean_ = self.std_ = None

    def _fit(self, rows, shape):
        self.mean_ = rows.mean(axis=0)
        self.std_ = rows.std(axis=0)

    def _n_features(self):
        return self.mean_.size

    def _transform(self, rows, shape):
        scale = np.where(self.std_ > self.eps, self.std_, 1.0)
        return ((rows - self.mean_) / scale).reshape(shape)


class PCA(Preprocessor):
    """Project centered data onto its top principal directions (the notes' PCA).

    `components`: None keeps all of them; an int k keeps k; a float in (0, 1] keeps the
    smallest k whose explained variance reaches that fraction, at most min(N, D). The
    directions are the right singular vectors of the centered training data, each sign
    fixed so that refits agree; variances are divided by N - 1, as `np.cov` and
    scikit-learn do. Output: (N, k).
    """

    _state = ("mean", "components", "explained_variance", "explained_variance_ratio")

    def __init__(self, components: int | float | None = None):
        if isinstance(components, bool):
            raise TypeError(f"PCA components must be None, an int or a float, got {components}")
        if isinstance(components, int | np.integer) and components < 1:
            raise ValueError(f"PCA components must be >= 1, got {components}")
        if isinstance(components, float) and not 0 < components <= 1:
            raise ValueError(f"PCA variance fraction must be in (0, 1], got {components}")
        self.components = components
        self.mean_ = self.components_ = None
        self.explained_variance_ = self.explained_variance_ratio_ = None

    @property
    def n_components_(self) -> int:
        """The number of components kept (k)."""
        return len(self.components_)

    def _fit(self, rows, shape):
        self.mean_ = rows.mean(axis=0)
        sums, directions = _principal_axes(rows - self.mean_)
        rank_bound = min(rows.shape)  # beyond it X^T X only has (rounding) zeros
        variance = sums[:rank_bound] / max(len(rows) - 1, 1)
        total = variance.sum()
        ratio = variance / total if total > 0 else np.zeros_like(variance)
        if self.components is None:
            k = len(variance)
        elif isinstance(self.components, float):
            reached = np.searchsorted(np.cumsum(ratio), self.components, side="left")
            k = min(int(reached) + 1, len(variance))
        else:
            if self.components > len(variance):
                raise ValueError(
                    f"PCA components={self.components} exceeds min(N, D) = {len(variance)}"
                )
            k = self.components
        self.components_ = directions[:k]
        self.explained_variance_ = variance[:k]
        self.explained_variance_ratio_ = ratio[:k]

    def _n_features(self):
        return self.mean_.size

    def _transform(self, rows, shape):
        return (rows - self.mean_) @ self.components_.T


class Whitening(Preprocessor):
    """Decorrelate and scale to unit variance: covariance becomes (nearly) the identity.

    With Sigma = U diag(s) U^T the training covariance (divided by N, as in the notes):
    `kind="pca"` maps x to (x - mean) U diag(1 / sqrt(s + eps)) (rotated onto the principal
    axes, largest variance first); `kind="zca"` rotates back with U^T, so
    W = U diag(1 / sqrt(s + eps)) U^T is symmetric: of all whitening transforms it changes the
    data least, and ZCA-whitened images still look like images (edges enhanced). `eps` keeps
    directions of (near) zero variance from blowing up. PCA output is (N, D) rows; ZCA keeps
    the input's shape.
    """

    _state = ("mean", "matrix")

    def __init__(self, kind: str = "pca", eps: float = 1e-5):
        if kind not in ("pca", "zca"):
            raise ValueError(f"Whitening kind must be 'pca' or 'zca', got {kind!r}")
        if eps < 0:
            raise ValueError(f"Whitening eps must be >= 0, got {eps}")
        self.kind = kind
        self.eps = eps
        self.mean_ = self.matrix_ = None

    def _fit(self, rows, shape):
        self.mean_ = rows.mean(axis=0)
        sums, directions = _principal_axes(rows - self.mean_)
        variance, vectors = sums / len(rows), directions.T
        scaled = vectors / np.sqrt(variance + self.eps)
        self.matrix_ = scaled if self.kind == "pca" else scaled @ vectors.T

    def _n_features(self):
        return self.mean_.size

    def _transform(self, rows, shape):
        white = (rows - self.mean_) @ self.matrix_
        return white.reshape(shape) if self.kind == "zca" else white


class Pipeline(Preprocessor):
    """Steps applied in order, each fitted on the previous step's output of the training data.

    Its state dict prefixes each step's keys with the step's index ("0.mean", "1.std"), as
    `nn.Sequential` does, so one flat dict goes into a checkpoint.
    """

    def __init__(self, steps):
        self.steps = list(steps)
        for step in self.steps:
            if not isinstance(step, Preprocessor):
                raise TypeError(f"Pipeline steps must be preprocessors, got {step!r}")

    @property
    def fitted(self) -> bool:
        return all(step.fitted for step in self.steps)

    def fit(self, x) -> Pipeline:
        for step in self.steps[:-1]:
            x = step.fit_transform(x)
        if self.steps:
            self.steps[-1].fit(x)
        return self

    def transform(self, x) -> np.ndarray:
        for step in self.steps:
            x = step.transform(x)
        return np.asarray(x, dtype=np.float64)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {
            f"{index}.{key}": value
            for index, step in enumerate(self.steps)
            for key, value in step.state_dict().items()
        }

    def load_state_dict(self, state) -> Pipeline:
        self._check_keys(state)
        for index, step in enumerate(self.steps):
            prefix = f"{index}."
            step.load_state_dict(
                {
                    key[len(prefix) :]: value
                    for key, value in state.items()
                    if key.startswith(prefix)
                }
            )
        return self

    def _keys(self) -> list[str]:
        return [f"{index}.{key}" for index, step in enumerate(self.steps) for key in step._keys()]

    def __repr__(self) -> str:
        return f"Pipeline({self.steps!r})"


PREPROCESSORS = Registry("preprocessor")
"""Preprocessing steps by name (model files write `preprocess standardize`)."""
for _name, _class in (
    ("mean_subtraction", MeanSubtraction),
    ("standardize", Standardize),
    ("pca", PCA),
    ("whitening", Whitening),
):
    PREPROCESSORS.register(_name)(_class)
