"""Datasets, splits, mini-batches, preprocessing and augmentation.

Preprocessing is fitted on the training split only and applied unchanged to validation and
test (the notes' rule); augmentation applies to training images only.
"""

from topograd.engine.data.augment import (
    BrightnessContrast,
    Compose,
    Cutout,
    GaussianNoise,
    HorizontalFlip,
    RandomCrop,
    RandomScaleCrop,
    average_predictions,
    test_time_views,
)
from topograd.engine.data.datasets import (
    DataError,
    Dataset,
    Splits,
    batches,
    load_csv,
    load_dataset,
    load_digits,
    load_iris,
    load_npz,
    make_circles,
    make_moons,
    make_spiral,
    split,
)
from topograd.engine.data.preprocess import (
    PCA,
    MeanSubtraction,
    NotFittedError,
    Pipeline,
    Standardize,
    Whitening,
)

__all__ = [
    "PCA",
    "BrightnessContrast",
    "Compose",
    "Cutout",
    "DataError",
    "Dataset",
    "GaussianNoise",
    "HorizontalFlip",
    "MeanSubtraction",
    "NotFittedError",
    "Pipeline",
    "RandomCrop",
    "RandomScaleCrop",
    "Splits",
    "Standardize",
    "Whitening",
    "average_predictions",
    "batches",
    "load_csv",
    "load_dataset",
    "load_digits",
    "load_iris",
    "load_npz",
    "make_circles",
    "make_moons",
    "make_spiral",
    "split",
    "test_time_views",
]
