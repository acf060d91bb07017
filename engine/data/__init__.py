"""Datasets, splits, mini-batches, preprocessing and augmentation."""
