"""Augmentations against what each one means, checked another way: a flip is numpy's
mirror, a crop is a window of `np.pad`'s padded image, a 2x nearest rescale is `np.kron`,
bilinear and nearest resizing equal PyTorch's `interpolate`, cutout's hole is a square, and
noise has the asked standard deviation. Every augmentation keeps shapes, leaves its input
alone and is reproducible from its seed."""

from __future__ import annotations

import numpy as np
import pytest
from topograd.engine.data.augment import (
    BrightnessContrast,
    Compose,
    Cutout,
    GaussianNoise,
    HorizontalFlip,
    RandomCrop,
    RandomScaleCrop,
    average_predictions,
    resize,
    shift,
    test_time_views,
)

from topograd.data import load_digits


def batch(n=16, c=2, h=8, w=8, seed=0):
    return np.random.default_rng(seed).uniform(1.0, 2.0, size=(n, c, h, w))


RANDOM = {
    "flip": HorizontalFlip(0.5),
    "crop": RandomCrop(padding=2),
    "scale bilinear": RandomScaleCrop((0.7, 1.4)),
    "scale nearest": RandomScaleCrop((0.7, 1.4), mode="nearest"),
    "noise": GaussianNoise(0.1),
    "jitter": BrightnessContrast(0.2, 0.3),
    "cutout": Cutout(3),
    "compose": Compose([RandomCrop(1), HorizontalFlip(), Cutout(2), GaussianNoise(0.05)]),
}


# --- the common contract --------------------------------------------------------------------
@pytest.mark.parametrize("augment", RANDOM.values(), ids=RANDOM.keys())
def test_shape_kept_input_untouched_and_seeded(augment):
    images = batch()
    before = images.copy()
    out = augment(images, np.random.default_rng(7))
    assert out.shape == images.shape and out.dtype == np.float64
    assert np.array_equal(images, before)
    assert out is not images and not np.shares_memory(out, images)
    assert np.array_equal(out, augment(images, np.random.default_rng(7)))
    assert np.array_equal(out, augment(images, 7))  # an int seed is the same generator
    assert not np.array_equal(out, augment(images, np.random.default_rng(8)))


@pytest.mark.parametrize("augment", RANDOM.values(), ids=RANDOM.keys())
def test_non_image_arrays_are_refused(augment):
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        augment(np.zeros((4, 64)), 0)


def test_one_generator_gives_a_new_draw_each_batch():
    rng = np.random.default_rng(0)
    images = batch()
    augment = RandomCrop(2)
    assert not np.array_equal(augment(images, rng), augment(images, rng))


# --- flips --------------------------------------------------------------------------------------
def test_flip_is_the_mirror_and_twice_is_identity():
    images = batch()
    once = HorizontalFlip(p=1.0)(images, 0)
    assert np.array_equal(once, np.flip(images, axis=3))
    assert np.array_equal(HorizontalFlip(p=1.0)(once, 1), images)
    assert np.array_equal(HorizontalFlip(p=0.0)(images, 0), images)


def test_flip_flips_about_a_fraction_p_of_the_images():
    images = batch(n=2000, c=1, h=2, w=3)
    out = HorizontalFlip(p=0.3)(images, 0)
    flipped = np.all(out == images[..., ::-1], axis=(1, 2, 3))
    assert np.all(flipped | np.all(out == images, axis=(1, 2, 3)))
    assert abs(flipped.mean() - 0.3) < 0.04
    with pytest.raises(ValueError, match="p must be in"):
        HorizontalFlip(1.5)


# --- crops, shifts and scales -------------------------------------------------------------------
def test_each_crop_is_a_window_of_the_zero_padded_image():
    images, padding = batch(n=200, h=6, w=7), 2
    out = RandomCrop(padding)(images, 0)
    padded = np.pad(images, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    offsets = set()
    for padded_image, crop in zip(padded, out):
        windows = [
            (dy, dx)
            for dy in range(2 * padding + 1)
            for dx in range(2 * padding + 1)
            if np.array_equal(padded_image[:, dy : dy + 6, dx : dx + 7], crop)
        ]
        assert len(windows) == 1
        offsets.add(windows[0])
    assert len(offsets) == (2 * padding + 1) ** 2  # every offset is drawn
    assert np.array_equal(RandomCrop(0)(images, 0), images)


def test_shift_moves_the_window_and_fills_with_zeros():
    image = np.arange(12.0).reshape(1, 1, 3, 4)
    down = shift(image, 1, 0)[0, 0]
    assert np.array_equal(down[:2], image[0, 0, 1:]) and np.all(down[2] == 0)
    left = shift(image, 0, -1)[0, 0]
    assert np.array_equal(left[:, 1:], image[0, 0, :, :3]) and np.all(left[:, 0] == 0)


@pytest.mark.parametrize("size", [(8, 8), (10, 9), (5, 7), (16, 16), (4, 4), (3, 12)])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_resize_equals_pytorch_interpolate(size, mode):
    torch = pytest.importorskip("torch")
    images = batch(n=3)
    expected = torch.nn.functional.interpolate(
        torch.tensor(images),
        size=size,
        mode="bilinear" if mode == "bilinear" else "nearest-exact",
        **({"align_corners": False} if mode == "bilinear" else {}),
    ).numpy()
    assert np.allclose(resize(images, size, mode), expected, rtol=0, atol=1e-12)


def test_scale_one_is_identity():
    images = batch()
    for mode in ("bilinear", "nearest"):
        assert np.allclose(RandomScaleCrop((1.0, 1.0), mode)(images, 0), images, atol=1e-12)


def test_doubling_with_nearest_crops_a_window_of_the_pixel_doubled_image():
    images = batch(n=50, c=1, h=6, w=6)
    out = RandomScaleCrop((2.0, 2.0), mode="nearest")(images, 0)
    for image, crop in zip(images, out):
        big = np.kron(image[0], np.ones((2, 2)))
        matches = [
            (dy, dx)
            for dy in range(7)
            for dx in range(7)
            if np.array_equal(big[dy : dy + 6, dx : dx + 6], crop[0])
        ]
        assert matches


def test_halving_pads_the_resized_image_with_zeros():
    images = batch(n=50, c=2, h=8, w=8)
    small = resize(images, (4, 4), "bilinear")
    out = RandomScaleCrop((0.5, 0.5))(images, 0)
    for resized, result in zip(small, out):
        rows, cols = np.nonzero(result[0])
        top, left = rows.min(), cols.min()
        assert rows.max() - top == 3 and cols.max() - left == 3
        assert np.allclose(result[:, top : top + 4, left : left + 4], resized)
        assert np.count_nonzero(result) == 2 * 16


def test_bilinear_scaling_stays_within_the_pixel_range():
    images = load_digits().images()[:100]
    out = RandomScaleCrop((0.8, 1.3))(images, 0)
    assert out.min() >= 0 and out.max() <= 16 + 1e-12
    with pytest.raises(ValueError, match="interpolation must be"):
        RandomScaleCrop(mode="cubic")
    with pytest.raises(ValueError, match="0 < low <= high"):
        RandomScaleCrop((1.2, 0.9))


# --- noise, jitter, cutout ----------------------------------------------------------------------
def test_noise_has_the_asked_standard_deviation():
    images = batch(n=100, c=3, h=16, w=16)
    noise = GaussianNoise(0.25)(images, 0) - images
    assert abs(noise.std() - 0.25) < 0.005 and abs(noise.mean()) < 0.005
    assert np.array_equal(GaussianNoise(0.0)(images, 0), images)


def test_contrast_scales_deviations_from_each_image_mean():
    images = batch(n=200)
    out = BrightnessContrast(brightness=0.0, contrast=0.5)(images, 0)
    mean = images.mean(axis=(1, 2, 3), keepdims=True)
    assert np.allclose(out.mean(axis=(1, 2, 3), keepdims=True), mean)
    factors = ((out - mean) / (images - mean)).reshape(200, -1)
    assert np.allclose(factors, factors[:, :1])
    assert factors.min() >= 0.5 and factors.max() <= 1.5 and np.ptp(factors) > 0.5


def test_brightness_shifts_by_a_fraction_of_the_value_range():
    images = batch(n=200)
    out = BrightnessContrast(brightness=0.2, contrast=0.0)(images, 0)
    shifts = (out - images).reshape(200, -1)
    assert np.allclose(shifts, shifts[:, :1])
    value_range = np.ptp(images.reshape(200, -1), axis=1)
    assert np.all(np.abs(shifts[:, 0]) <= 0.2 * value_range + 1e-12)
    assert np.array_equal(BrightnessContrast(0.0, 0.0)(images, 0), images)


def test_cutout_zeroes_a_square_of_the_given_size_in_every_channel():
    size = 3
    images = np.ones((500, 2, 8, 8))
    out = Cutout(size)(images, 0)
    full = 0
    for result in out:
        hole = result == 0
        assert np.array_equal(hole[0], hole[1])
        assert np.all(result[~hole] == 1)
        rows, cols = np.nonzero(hole[0])
        height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert hole[0].sum() == height * width  # a filled rectangle
        assert height == size or rows.min() == 0 or rows.max() == 7  # clipped only at edges
        assert width == size or cols.min() == 0 or cols.max() == 7
        full += height == width == size
    assert full > 250  # most holes lie entirely inside an 8x8 image


# --- composition and test-time augmentation -----------------------------------------------------
def test_compose_applies_in_order_with_one_generator():
    images = batch()
    steps = [RandomCrop(1), HorizontalFlip(), GaussianNoise(0.1)]
    rng = np.random.default_rng(3)
    expected = images
    for step in steps:
        expected = step(expected, rng)
    assert np.array_equal(Compose(steps)(images, 3), expected)
    with pytest.raises(TypeError, match="callables"):
        Compose([RandomCrop(1), "flip"])


def test_test_time_views_are_fixed_shifts_and_their_mirrors():
    images = batch(n=4)
    views = test_time_views(images)
    assert len(views) == 10 and all(view.shape == images.shape for view in views)
    assert np.array_equal(views[0], images)
    assert np.array_equal(views[1], shift(images, 1, 0))
    assert np.array_equal(views[5], images[..., ::-1])
    assert np.array_equal(views[6], shift(images, 1, 0)[..., ::-1])
    again = test_time_views(images)
    assert all(np.array_equal(a, b) for a, b in zip(views, again))
    assert len(test_time_views(images, flips=False, shifts=((0, 0), (2, 2)))) == 2


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def test_average_predictions_is_the_mean_of_the_view_probabilities():
    images = batch(n=6)
    weights = np.random.default_rng(1).normal(size=(images[0].size, 5))

    def predict(x):
        return softmax(x.reshape(len(x), -1) @ weights)

    averaged = average_predictions(predict, images)
    manual = np.mean([predict(view) for view in test_time_views(images)], axis=0)
    assert np.allclose(averaged, manual) and np.allclose(averaged.sum(axis=1), 1)
    assert np.allclose(average_predictions(predict, images, lambda x: [x]), predict(images))


def test_average_predictions_refuses_logits():
    images = batch(n=3)
    with pytest.raises(ValueError, match="apply softmax"):
        average_predictions(lambda x: x.reshape(len(x), -1)[:, :4], images)
