"""Fused batch norm: one primitive with the closed-form backward from the notes.

The composed batch norm (engine.functional.batch_norm with fused=False) lets the engine derive
the backward pass through nine primitive nodes; this op computes the same numbers in one node
for speed. tests/engine/test_batchnorm.py proves the two equal.
"""

from __future__ import annotations

import numpy as np
from topograd.engine.ops import Op, product_sum_leading, reduce_mean, register_op, sum_leading


def _batch_norm_train(x, gamma, beta, eps=1e-5):
    # Two input-sized arrays and no temporaries: x_hat is written over `centered`, and the
    # output over the squares once their mean is taken (the same arithmetic, in place).
    axes = _stat_axes(x)
    mean = reduce_mean(x, axes, True)
    centered = x - mean
    squares = np.multiply(centered, centered)
    var = reduce_mean(squares, axes, True)
    inv_std = 1.0 / np.sqrt(var + eps)
    shape = _param_shape(x)
    gamma, beta = gamma.reshape(shape), beta.reshape(shape)
    if np.result_type(centered, inv_std, gamma, beta) != centered.dtype:  # mixed dtypes
        x_hat = centered * inv_std
        return x_hat * gamma + beta, (x_hat, inv_std, mean, var)
    x_hat = np.multiply(centered, inv_std, out=centered)
    out = np.multiply(x_hat, gamma, out=squares)
    out += beta
    return out, (x_hat, inv_std, mean, var)


def _batch_norm_train_vjp(g, out, x, gamma, beta, eps=1e-5, ctx=None):
    x_hat, inv_std, _, _ = ctx
    axes = _stat_axes(x)
    count = x.size // gamma.size
    if x.ndim == 2:  # (N, C): sums over the batch axis, as BLAS and einsum run them fastest
        dgamma, dbeta = product_sum_leading(g, x_hat, 1), sum_leading(g, 1)
    else:
        dgamma, dbeta = (g * x_hat).sum(axis=axes), g.sum(axis=axes)
    # dx = (1/m) * inv_std * (m * dx_hat - sum(dx_hat) - x_hat * sum(dx_hat * x_hat)),
    # with dx_hat = g * gamma: the notes' three-term formula, collected.
    shape = _param_shape(x)
    scale = (gamma * inv_std.reshape(gamma.shape)).reshape(shape) / count
    if np.result_type(g, x_hat, dgamma, scale) != g.dtype:  # mixed dtypes
        dx = scale * (count * g - dbeta.reshape(shape) - x_hat * dgamma.reshape(shape))
        return dx, dgamma, dbeta
    dx = np.multiply(g, count)  # the same arithmetic with one temporary instead of four
    dx -= dbeta.reshape(shape)
    dx -= x_hat * dgamma.reshape(shape)
    dx *= scale
    return dx, dgamma, dbeta


def _stat_axes(x):
    """Batch statistics run over every axis but the channel axis 1: (N, C) or (N, C, ...)."""
    return (0, *range(2, x.ndim))


def _param_shape(x):
    return (x.shape[1],) + (1,) * (x.ndim - 2)


register_op(
    Op(
        "batch_norm_fused",
        _batch_norm_train,
        _batch_norm_train_vjp,
        3,
        "gamma * (x - mean) / sqrt(var + eps) + beta  (batch statistics)",
        "dx = gamma/(m*std) * (m*g - sum(g) - x_hat*sum(g*x_hat)); dgamma = sum(g*x_hat); "
        "dbeta = sum(g)",
        kind="batch_norm",
        saves=True,
        reads=(1,),  # gamma; x_hat and 1/std come from the saved context, x only by shape
    )
)
