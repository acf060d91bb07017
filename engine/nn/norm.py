"""Normalization layers. Their forward passes are compositions of primitives (or, with
`fused=True` for batch norm, one primitive with the notes' closed-form backward)."""

from __future__ import annotations

import numpy as np
from topograd.engine import functional as F
from topograd.engine.capture import note_effect, note_unreplayable
from topograd.engine.nn.layers import LAYERS
from topograd.engine.nn.module import Module, Parameter


@LAYERS.register("batchnorm")
class BatchNorm1d(Module):
    """Batch norm over (N, C) or (N, C, L), PyTorch semantics.

    Training normalizes with the biased batch variance and updates running_var with the
    unbiased one; momentum is the weight of the new batch (None: cumulative average).
    Evaluation normalizes with running_mean and running_var.
    """

    def __init__(
        self,
        num_features,
        eps=1e-5,
        momentum=0.1,
        affine=True,
        track_running_stats=True,
        fused=False,
        dtype=None,
    ):
        super().__init__()
        if num_features <= 0:
            raise ValueError(f"BatchNorm1d needs num_features > 0, got {num_features}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"BatchNorm1d momentum must be in [0, 1] or None, got {momentum}")
        self.num_features, self.eps, self.momentum, self.fused = num_features, eps, momentum, fused
        self.track_running_stats = track_running_stats
        self.weight = Parameter(np.ones(num_features), dtype=dtype) if affine else None
        self.bias = Parameter(np.zeros(num_features), dtype=dtype) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype=dtype))
            self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))

    def _check_input(self, x):
        if x.ndim not in (2, 3) or x.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}({self.num_features}): "
                f"expected input (N, {self.num_features}) "
                f"or (N, {self.num_features}, L), got shape {x.shape}"
            )

    def forward(self, x):
        self._check_input(x)
        batch_stats = self.training or not self.track_running_stats
        update = self.training and self.track_running_stats
        momentum = self.momentum
        if update and momentum is None:
            momentum = 1.0 / float(self.num_batches_tracked + 1)
            note_unreplayable(f"{type(self).__name__}(momentum=None) changes its momentum per step")
        try:
            out = F.batch_norm(
                x,
                getattr(self, "running_mean", None),
                getattr(self, "running_var", None),
                self.weight,
                self.bias,
                training=batch_stats,
                momentum=momentum,
                eps=self.eps,
                fused=self.fused,
            )
        except ValueError as error:
            raise ValueError(f"{type(self).__name__}({self.num_features}): {error}") from None
        if update:
            self.num_batches_tracked += 1
            note_effect(self._count_batch, (), (self.num_batches_tracked,))
        return out

    def _count_batch(self):
        self.num_batches_tracked += 1

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, fused={self.fused}"


@LAYERS.register("layernorm")
class LayerNorm(Module):
    """Normalize each sample over its trailing `normalized_shape` axes; same in train and eval."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, dtype=None):
        super().__init__()
        shape = (
            (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        )
        self.normalized_shape, self.eps = shape, eps
        self.weight = Parameter(np.ones(shape), dtype=dtype) if elementwise_affine else None
        self.bias = Parameter(np.zeros(shape), dtype=dtype) if elementwise_affine else None

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}"


@LAYERS.register("groupnorm")
class GroupNorm(Module):
    """Normalize groups of channels per sample (Wu and He 2018); C must divide into groups."""

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, dtype=None):
        super().__init__()
        if num_groups <= 0 or num_channels % num_groups:
            raise ValueError(
                f"GroupNorm: {num_groups} groups do not divide {num_channels} channels"
            )
        self.num_groups, self.num_channels, self.eps = num_groups, num_channels, eps
        self.weight = Parameter(np.ones(num_channels), dtype=dtype) if affine else None
        self.bias = Parameter(np.zeros(num_channels), dtype=dtype) if affine else None

    def forward(self, x):
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ValueError(
                f"GroupNorm({self.num_groups}, {self.num_channels}): expected (N, "
                f"{self.num_channels}, ...), got shape {x.shape}"
            )
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}"
