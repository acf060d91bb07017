"""Data augmentation for image batches (N, C, H, W), numpy only, seeded and composable.

Augmentation makes more training examples from the ones there are, by changes that keep the
label (the notes' flips, random crops and scales, color jitter, cutout, noise). It is for
training only: validation and test images are scored as they are, or, with test-time
augmentation, averaged over a fixed (not random) set of views (`test_time_views`).

Each augmentation is a callable `aug(images, rng) -> images`: it draws one random setting
per image from `rng` (a `np.random.Generator` or an int seed), returns a new float64 array
of the same shape and never modifies its input. The same seed gives the same batch.

>>> import numpy as np
>>> augment = Compose([RandomCrop(padding=1), HorizontalFlip(p=0.5)])
>>> rng = np.random.default_rng(0)
>>> augment(np.zeros((4, 1, 8, 8)), rng).shape
(4, 1, 8, 8)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from topograd.engine.data.datasets import as_generator
from topograd.engine.registry import Registry


def _images(images) -> np.ndarray:
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 4:
        raise ValueError(f"augmentation expects images (N, C, H, W), got shape {images.shape}")
    return images


class Augmentation:
    """The protocol: `aug(images, rng)` returns augmented copies; subclasses define `_apply`."""

    def __call__(self, images, rng=None) -> np.ndarray:
        return self._apply(_images(images), as_generator(rng))

    def _apply(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        settings = ", ".join(f"{key}={value!r}" for key, value in vars(self).items())
        return f"{type(self).__name__}({settings})"


class HorizontalFlip(Augmentation):
    """Mirror each image left-right with probability `p`: a digit or a cat seen in a mirror
    is still one (a vertical flip usually is not, which is why there is none here)."""

    def __init__(self, p: float = 0.5):
        if not 0 <= p <= 1:
            raise ValueError(f"HorizontalFlip p must be in [0, 1], got {p}")
        self.p = p

    def _apply(self, images, rng):
        flip = rng.random(len(images)) < self.p
        out = images.copy()
        out[flip] = images[flip, :, :, ::-1]
        return out


def _window(images: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """out[n, c, i, j] = images[n, c, rows[n, i], cols[n, j]], zero where an index is outside.

    One fancy-indexing gather for the whole batch, however many different offsets it holds.
    """
    n, c, h, w = images.shape
    inside_rows = ((rows >= 0) & (rows < h))[:, None, :, None]
    inside = inside_rows & ((cols >= 0) & (cols < w))[:, None, None, :]
    gathered = images[
        np.arange(n)[:, None, None, None],
        np.arange(c)[None, :, None, None],
        np.clip(rows, 0, h - 1)[:, None, :, None],
        np.clip(cols, 0, w - 1)[:, None, None, :],
    ]
    return np.where(inside, gathered, 0.0)


class RandomCrop(Augmentation):
    """Pad each image with `padding` zeros on every side, then crop H x W at a random offset:
    a shift of up to `padding` pixels each way, so the network does not tie a class to exact
    pixel positions."""

    def __init__(self, padding: int = 1):
        if padding < 0:
            raise ValueError(f"RandomCrop padding must be >= 0, got {padding}")
        self.padding = int(padding)

    def _apply(self, images, rng):
        n, _, h, w = images.shape
        offsets = rng.integers(0, 2 * self.padding + 1, size=(2, n)) - self.padding
        rows = np.arange(h)[None, :] + offsets[0][:, None]
        cols = np.arange(w)[None, :] + offsets[1][:, None]
        return _window(images, rows, cols)


def _source_coordinates(size: int, out_size, positions: np.ndarray) -> np.ndarray:
    """Where output pixel centres fall in the input when `size` pixels are resized to
    `out_size`: (i + 0.5) * size / out_size - 0.5 (half-pixel centres, as PyTorch's
    `interpolate(align_corners=False)` and OpenCV's `resize`)."""
    return (positions + 0.5) * (size / np.asarray(out_size, dtype=np.float64)) - 0.5


def _sample(images, ys, xs, inside_rows, inside_cols, mode: str) -> np.ndarray:
    """Interpolate images at source coordinates ys (N, Ho) and xs (N, Wo), separably.

    "nearest" takes the pixel whose centre is closest (PyTorch's "nearest-exact");
    "bilinear" weighs the two neighbours on each axis, clamping at the border (PyTorch's
    "bilinear" without antialiasing). Pixels outside the rescaled image are zero.
    """
    n, c, h, w = images.shape
    batch = np.arange(n)[:, None, None, None]
    channel = np.arange(c)[None, :, None, None]
    mask = (inside_rows[:, None, :, None] & inside_cols[:, None, None, :]).astype(np.float64)
    if mode == "nearest":
        rows = np.clip(np.floor(ys + 0.5).astype(np.int64), 0, h - 1)
        cols = np.clip(np.floor(xs + 0.5).astype(np.int64), 0, w - 1)
        return images[batch, channel, rows[:, None, :, None], cols[:, None, None, :]] * mask
    ys, xs = np.maximum(ys, 0.0), np.maximum(xs, 0.0)
    top = np.minimum(np.floor(ys).astype(np.int64), h - 1)
    left = np.minimum(np.floor(xs).astype(np.int64), w - 1)
    wy = (ys - top)[:, None, :, None]
    wx = (xs - left)[:, None, None, :]
    every_col = np.arange(w)[None, None, None, :]
    top_row = images[batch, channel, top[:, None, :, None], every_col]
    bottom_row = images[batch, channel, np.minimum(top + 1, h - 1)[:, None, :, None], every_col]
    rows_mixed = (1 - wy) * top_row + wy * bottom_row  # (N, C, Ho, W)
    every_row = np.arange(ys.shape[1])[None, None, :, None]
    left_col = rows_mixed[batch, channel, every_row, left[:, None, None, :]]
    right_col = rows_mixed[batch, channel, every_row, np.minimum(left + 1, w - 1)[:, None, None, :]]
    return ((1 - wx) * left_col + wx * right_col) * mask


INTERPOLATIONS = ("nearest", "bilinear")


def _check_mode(mode: str) -> None:
    if mode not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {mode!r}")


def resize(images, size: tuple[int, int], mode: str = "bilinear") -> np.ndarray:
    """Images (N, C, H, W) resized to `size` = (Ho, Wo) by nearest or bilinear interpolation.

    The same sampling that `RandomScaleCrop` uses, exposed so that it can be compared with
    PyTorch's `interpolate` and used to look at what the augmentation does.
    """
    _check_mode(mode)
    images = _images(images)
    n, _, h, w = images.shape
    out_h, out_w = (int(s) for s in size)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"resize size must be positive, got {size}")
    ys = np.broadcast_to(_source_coordinates(h, out_h, np.arange(out_h)), (n, out_h))
    xs = np.broadcast_to(_source_coordinates(w, out_w, np.arange(out_w)), (n, out_w))
    every = np.ones((n, max(out_h, out_w)), dtype=bool)
    return _sample(images, ys, xs, every[:, :out_h], every[:, :out_w], mode)


class RandomScaleCrop(Augmentation):
    """Rescale each image by a random factor in `scale`, then crop (when larger) or zero-pad
    (when smaller) back to H x W at a random offset: the notes' "random crops and scales"
    (ResNet), so that size and position stop being cues.

    The rescaled image is (round(s H), round(s W)); its output pixels are sampled directly
    from the original (`mode` "bilinear" or "nearest"), never materializing the big image.
    """

    def __init__(self, scale: tuple[float, float] = (0.9, 1.2), mode: str = "bilinear"):
        low, high = scale
        if not 0 < low <= high:
            raise ValueError(
                f"RandomScaleCrop scale must be (low, high) with 0 < low <= high, got {scale}"
            )
        _check_mode(mode)
        self.scale = (float(low), float(high))
        self.mode = mode

    def _axis(self, size: int, factors: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
        """Source coordinates (N, size) and which output pixels land inside the rescaled image."""
        scaled = np.maximum(np.round(size * factors).astype(np.int64), 1)
        slack = scaled - size  # > 0: crop a window out of it; < 0: it sits inside the output
        offsets = np.where(slack >= 0, 1, -1) * rng.integers(0, np.abs(slack) + 1)
        positions = np.arange(size)[None, :] + offsets[:, None]
        inside = (positions >= 0) & (positions < scaled[:, None])
        return _source_coordinates(size, scaled[:, None], positions), inside

    def _apply(self, images, rng):
        n, _, h, w = images.shape
        factors = rng.uniform(*self.scale, size=n)
        ys, inside_rows = self._axis(h, factors, rng)
        xs, inside_cols = self._axis(w, factors, rng)
        return _sample(images, ys, xs, inside_rows, inside_cols, self.mode)


class GaussianNoise(Augmentation):
    """Add independent N(0, std^2) noise to every value (in the images' units)."""

    def __init__(self, std: float):
        if std < 0:
            raise ValueError(f"GaussianNoise std must be >= 0, got {std}")
        self.std = std

    def _apply(self, images, rng):
        return images + rng.normal(0.0, self.std, size=images.shape)


class BrightnessContrast(Augmentation):
    """The notes' simple color jitter: random contrast and brightness per image.

    Contrast scales each image's deviations from its own mean by a factor drawn from
    [1 - contrast, 1 + contrast]; brightness then shifts the image by a fraction drawn from
    [-brightness, brightness] of its value range (max - min), which makes both settings
    unit-free: they mean the same on raw 0..16 digits as on standardized ones.
    """

    def __init__(self, brightness: float = 0.1, contrast: float = 0.1):
        if brightness < 0:
            raise ValueError(f"BrightnessContrast brightness must be >= 0, got {brightness}")
        if not 0 <= contrast <= 1:
            raise ValueError(f"BrightnessContrast contrast must be in [0, 1], got {contrast}")
        self.brightness = brightness
        self.contrast = contrast

    def _apply(self, images, rng):
        n = len(images)
        factor = rng.uniform(1 - self.contrast, 1 + self.contrast, size=n)[:, None, None, None]
        shift = rng.uniform(-self.brightness, self.brightness, size=n)[:, None, None, None]
        mean = images.mean(axis=(1, 2, 3), keepdims=True)
        value_range = np.ptp(images.reshape(n, -1), axis=1)[:, None, None, None]
        return mean + factor * (images - mean) + shift * value_range


class Cutout(Augmentation):
    """Zero a `size` x `size` square in every channel at a random centre (DeVries and Taylor,
    2017), clipped at the border: the network must use more than one part of the object.

    The centre may be anywhere in the image, so near an edge only part of the square is
    inside, as in the paper, which found that letting the patch leave the image matters.
    """

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"Cutout size must be >= 1, got {size}")
        self.size = int(size)

    def _apply(self, images, rng):
        n, _, h, w = images.shape
        centres = np.stack([rng.integers(0, h, size=n), rng.integers(0, w, size=n)])
        starts = centres - self.size // 2
        rows, cols = np.arange(h)[None, :], np.arange(w)[None, :]
        in_rows = (rows >= starts[0][:, None]) & (rows < starts[0][:, None] + self.size)
        in_cols = (cols >= starts[1][:, None]) & (cols < starts[1][:, None] + self.size)
        hole = in_rows[:, None, :, None] & in_cols[:, None, None, :]
        return np.where(hole, 0.0, images)


class Compose(Augmentation):
    """Apply augmentations in order, all drawing from one generator (so one seed fixes all)."""

    def __init__(self, augmentations: Sequence[Callable]):
        self.augmentations = list(augmentations)
        for augmentation in self.augmentations:
            if not callable(augmentation):
                raise TypeError(f"Compose expects callables aug(images, rng), got {augmentation!r}")

    def _apply(self, images, rng):
        for augmentation in self.augmentations:
            images = augmentation(images, rng)
        return images


# --- test-time augmentation -------------------------------------------------------------------
def shift(images, dy: int, dx: int) -> np.ndarray:
    """The H x W window moved by (dy, dx) rows and columns: out[..., i, j] = images[..., i + dy,
    j + dx], zero outside. It is the crop that `RandomCrop` takes at that offset."""
    images = _images(images)
    n, _, h, w = images.shape
    rows = np.broadcast_to(np.arange(h) + dy, (n, h))
    cols = np.broadcast_to(np.arange(w) + dx, (n, w))
    return _window(images, rows, cols)


def test_time_views(
    images, flips: bool = True, shifts=((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))
) -> list[np.ndarray]:
    """A fixed list of views of each image: every shift in `shifts`, then each of them
    mirrored when `flips`, like the notes' "average a fixed set of crops" (ResNet's ten
    crops: corners and centre, plus flips). Fixed, not random, so scores are repeatable."""
    views = [shift(images, dy, dx) for dy, dx in shifts]
    if flips:
        views += [view[:, :, :, ::-1].copy() for view in views]
    return views


test_time_views.__test__ = False  # its name starts with "test": keep pytest from collecting it


def _as_array(values) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values
    return np.asarray(getattr(values, "data", values), dtype=np.float64)  # an engine Tensor


def average_predictions(predict_fn, images, views_fn=test_time_views) -> np.ndarray:
    """Test-time augmentation: the mean of `predict_fn`'s class probabilities over the views
    `views_fn(images)`. Probabilities, not logits, are averaged so that each view's vote
    counts equally (a very confident view does not dominate through a huge logit).

    `predict_fn(images) -> (N, K)` must return probabilities (apply softmax first).
    """
    total = None
    views = views_fn(images)
    for view in views:
        probabilities = _as_array(predict_fn(view))
        if probabilities.ndim != 2 or not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-6):
            raise ValueError(
                "average_predictions: predict_fn must return class probabilities (N, K) whose "
                "rows sum to 1; apply softmax to logits first"
            )
        total = probabilities.astype(np.float64) if total is None else total + probabilities
    if total is None:
        raise ValueError("average_predictions: views_fn returned no views")
    return total / len(views)


AUGMENTATIONS = Registry("augmentation")
"""Augmentations by name (model files write `augment crop(padding=1)`)."""
for _name, _class in (
    ("flip", HorizontalFlip),
    ("crop", RandomCrop),
    ("scale_crop", RandomScaleCrop),
    ("noise", GaussianNoise),
    ("brightness_contrast", BrightnessContrast),
    ("cutout", Cutout),
):
    AUGMENTATIONS.register(_name)(_class)
