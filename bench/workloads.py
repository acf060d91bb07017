"""Shared benchmark inputs: the two-moons points and micrograd-style scalar MLPs."""

from __future__ import annotations

import itertools
import random

import numpy as np


def two_moons(n=100, noise=0.1, seed=1):
    """scikit-learn's make_moons recipe (two interleaved half circles), labels in {-1, +1}."""
    rng = np.random.default_rng(seed)
    n_out = n // 2
    n_in = n - n_out
    outer = np.linspace(0, np.pi, n_out)
    inner = np.linspace(0, np.pi, n_in)
    x = np.concatenate(
        [np.c_[np.cos(outer), np.sin(outer)], np.c_[1 - np.cos(inner), 1 - np.sin(inner) - 0.5]]
    )
    x += rng.normal(scale=noise, size=x.shape)
    y = np.concatenate([-np.ones(n_out), np.ones(n_in)])
    return x, y


def scalar_mlp_weights(sizes=(2, 16, 16, 1), seed=1337):
    """Uniform(-1, 1) weights and zero biases laid out as micrograd's MLP makes them."""
    rng = random.Random(seed)
    layers = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        layers.append([([rng.uniform(-1, 1) for _ in range(fan_in)], 0.0) for _ in range(fan_out)])
    return layers


def batch_norm_train(z, gamma, beta, running_mean, running_var, eps, momentum):
    """Hand-written training-mode batch norm over axis 0 (the benchmarks' numpy reference);
    updates the running statistics as PyTorch does. Returns (out, saved for backward)."""
    n = len(z)
    mean = z.mean(axis=0)
    centered = z - mean
    var = (centered * centered).mean(axis=0)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = centered * inv_std
    running_mean *= 1.0 - momentum
    running_mean += momentum * mean
    running_var *= 1.0 - momentum
    running_var += (momentum * n / (n - 1)) * var
    return x_hat * gamma + beta, (x_hat, inv_std)


def batch_norm_backward(g, gamma, saved):
    """The notes' closed form: dz = gamma / (n std) * (n g - sum(g) - x_hat sum(g x_hat))."""
    x_hat, inv_std = saved
    n = len(g)
    dbeta = g.sum(axis=0)
    dgamma = (g * x_hat).sum(axis=0)
    return (gamma * inv_std / n) * (n * g - dbeta - x_hat * dgamma), dgamma, dbeta
