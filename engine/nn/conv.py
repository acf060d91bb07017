"""Image layers on (N, C, H, W): convolution, pooling, flatten and the image normalizations.

Conv2d, MaxPool2d and AvgPool2d call the primitives of engine/conv.py; AdaptiveAvgPool2d (a
mean), BatchNorm2d and InstanceNorm2d are compositions of primitives (BatchNorm2d's
`fused=True` is the one fused primitive), so the engine derives their backward passes.

>>> from topograd.engine import Tensor, nn
>>> net = nn.Sequential(
...     nn.Conv2d(1, 4, 3, padding=1, rng=0), nn.BatchNorm2d(4), nn.ReLU(),
...     nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 10, rng=0),
... )
>>> net(Tensor(np.zeros((2, 1, 8, 8)))).shape
(2, 10)
"""

from __future__ import annotations

import numpy as np
from topograd.engine import functional as F
from topograd.engine import init as initializers
from topograd.engine.conv import _pair, adaptive_avg_pool2d
from topograd.engine.nn.layers import LAYERS
from topograd.engine.nn.module import Module, Parameter
from topograd.engine.nn.norm import BatchNorm1d
from topograd.engine.tensor import Tensor


def _check_image(layer, x, channels):
    """A 4-D input with `channels` channels, or a ValueError naming the layer and the shape."""
    if x.ndim != 4 or (channels is not None and x.shape[1] != channels):
        expected = "C" if channels is None else channels
        raise ValueError(f"{layer!r}: expected input (N, {expected}, H, W), got shape {x.shape}")


def _prefixed(layer, call, *args, **kwargs):
    """Run `call`; a ValueError it raises is re-raised with the layer's description in front."""
    try:
        return call(*args, **kwargs)
    except ValueError as error:
        raise ValueError(f"{layer!r}: {error}") from None


@LAYERS.register("conv2d")
class Conv2d(Module):
    """2-D cross-correlation with weight (F, C / groups, HH, WW) and bias (F,), PyTorch's layout
    and arguments.

    `init` is an initializer name from engine.init or a callable `(shape, rng) -> ndarray`;
    its fan_in is C / groups * HH * WW (it draws a (C/groups * HH*WW, F) matrix that is
    reshaped to the kernel). The output size is PyTorch's: a stride that does not divide
    H + 2*padding - dilation*(HH - 1) - 1 leaves the last rows and columns out.
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        bias=True,
        init="he",
        rng=None,
        dtype=None,
    ):
        super().__init__()
        _check_channels(in_channels, out_channels, groups)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _pair(kernel_size, "Conv2d kernel_size")
        self.stride = _pair(stride, "Conv2d stride")
        self.padding = _pair(padding, "Conv2d padding")
        self.dilation = _pair(dilation, "Conv2d dilation")
        if min(self.kernel_size + self.stride + self.dilation) < 1 or min(self.padding) < 0:
            raise ValueError(
                f"Conv2d needs kernel_size, stride and dilation >= 1 and padding >= 0, got "
                f"{self.kernel_size}, {self.stride}, {self.dilation}, {self.padding}"
            )
        per_group = in_channels // groups
        fan_in = per_group * self.kernel_size[0] * self.kernel_size[1]
        drawn = initializers.get(init)((fan_in, out_channels), rng)
        weight = np.asarray(drawn).T.reshape(out_channels, per_group, *self.kernel_size)
        self.weight = Parameter(weight, dtype=dtype)
        self.bias = Parameter(np.zeros(out_channels), dtype=dtype) if bias else None

    def forward(self, x):
        x = x if isinstance(x, Tensor) else Tensor(x, dtype=self.weight.dtype)
        _check_image(self, x, self.in_channels)
        return _prefixed(
            self,
            F.conv2d,
            x,
            self.weight,
            self.bias,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
        )

    def extra_repr(self):
        # dilation and groups only where they differ from the default, as PyTorch writes them
        options = _non_default(dilation=(self.dilation, (1, 1)), groups=(self.groups, 1))
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}{options}, bias={self.bias is not None}"
        )


def _check_channels(in_channels, out_channels, groups):
    """Positive channel counts that split into `groups` equal groups, or a ValueError."""
    if in_channels <= 0 or out_channels <= 0:
        raise ValueError(
            f"Conv2d needs positive channel counts, got in={in_channels}, out={out_channels}"
        )
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"Conv2d groups must be a positive int, got {groups!r}")
    if in_channels % groups or out_channels % groups:
        raise ValueError(
            f"Conv2d groups={groups} must divide in_channels={in_channels} and "
            f"out_channels={out_channels}"
        )


def _non_default(**options):
    """`, name=value` for each option (value, default) whose value is not its default."""
    return "".join(
        f", {name}={value}" for name, (value, default) in options.items() if value != default
    )


class _Pool2d(Module):
    function = None  # the functional form, set by subclasses

    # NOTE: ceil_mode is keyword-only, as in the functional forms (PyTorch's MaxPool2d takes
    # `dilation` in that place).
    def __init__(self, kernel_size, stride=None, padding=0, *, ceil_mode=False):
        super().__init__()
        name = type(self).__name__
        self.kernel_size = _pair(kernel_size, f"{name} kernel_size")
        self.stride = self.kernel_size if stride is None else _pair(stride, f"{name} stride")
        self.padding = _pair(padding, f"{name} padding")
        self.ceil_mode = bool(ceil_mode)
        if min(self.kernel_size + self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(
                f"{name} needs kernel_size >= 1, stride >= 1 and padding >= 0, got "
                f"{self.kernel_size}, {self.stride}, {self.padding}"
            )

    def forward(self, x):
        _check_image(self, x, None)
        return _prefixed(
            self,
            type(self).function,
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            ceil_mode=self.ceil_mode,
        )

    def extra_repr(self):
        options = _non_default(padding=(self.padding, (0, 0)), ceil_mode=(self.ceil_mode, False))
        return f"kernel_size={self.kernel_size}, stride={self.stride}{options}"


@LAYERS.register("maxpool2d")
class MaxPool2d(_Pool2d):
    """Max over each window; the gradient goes to the window's first maximum (as PyTorch).
    Padding is -inf; the output size is PyTorch's (floor, or ceil with `ceil_mode=True`)."""

    function = staticmethod(F.max_pool2d)


@LAYERS.register("avgpool2d")
class AvgPool2d(_Pool2d):
    """Mean over each window; padding counts as zeros in the mean (PyTorch's default,
    count_include_pad=True). The output size is PyTorch's (floor, or ceil with `ceil_mode`)."""

    function = staticmethod(F.avg_pool2d)


@LAYERS.register("adaptiveavgpool2d")
class AdaptiveAvgPool2d(Module):
    """Global average pooling, (N, C, H, W) -> (N, C, 1, 1) as PyTorch's AdaptiveAvgPool2d(1):
    the head of a ResNet, whatever the image size. Only output_size 1 is supported."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = _pair(output_size, "AdaptiveAvgPool2d output_size")
        if self.output_size != (1, 1):
            raise ValueError(
                f"AdaptiveAvgPool2d supports output_size 1 (global average pooling) only, got "
                f"{output_size!r}"
            )

    def forward(self, x):
        _check_image(self, x, None)
        return adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


@LAYERS.register("flatten")
class Flatten(Module):
    """Merge the axes from start_dim on: (N, C, H, W) -> (N, C*H*W)."""

    def __init__(self, start_dim=1):
        super().__init__()
        self.start_dim = start_dim

    def forward(self, x):
        return _prefixed(self, F.flatten, x, self.start_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}"


@LAYERS.register("unflatten")
class Unflatten(Module):
    """Fold rows (N, C*H*W), as Datasets and `fit` pass them, into images (N, C, H, W);
    inputs that already have the image shape pass through unchanged."""

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(int(size) for size in shape)
        if not self.shape or min(self.shape) < 1:
            raise ValueError(f"Unflatten needs positive sizes, got {shape}")

    def forward(self, x):
        if tuple(x.shape[1:]) == self.shape:
            return x
        size = int(np.prod(self.shape))
        if x.ndim != 2 or x.shape[1] != size:
            raise ValueError(
                f"Unflatten{self.shape}: expected rows of {size} values, got shape {x.shape}"
            )
        return x.reshape(-1, *self.shape)

    def extra_repr(self):
        return f"{self.shape}"


@LAYERS.register("batchnorm2d")
class BatchNorm2d(BatchNorm1d):
    """Spatial batch norm: per-channel statistics over N, H and W of (N, C, H, W) inputs.

    Same parameters, running statistics and momentum convention as BatchNorm1d (PyTorch's).
    """

    def _check_input(self, x):
        _check_image(self, x, self.num_features)


@LAYERS.register("instancenorm2d")
class InstanceNorm2d(Module):
    """Normalize each (sample, channel) plane over H and W: group norm with one channel a group.

    As in PyTorch's default, no affine parameters (`affine=True` adds a per-channel weight and
    bias) and no running statistics: training and evaluation compute the same thing.
    """

    def __init__(self, num_features, eps=1e-5, affine=False, dtype=None):
        super().__init__()
        if num_features <= 0:
            raise ValueError(f"InstanceNorm2d needs num_features > 0, got {num_features}")
        self.num_features, self.eps = num_features, eps
        self.weight = Parameter(np.ones(num_features), dtype=dtype) if affine else None
        self.bias = Parameter(np.zeros(num_features), dtype=dtype) if affine else None

    def forward(self, x):
        _check_image(self, x, self.num_features)
        return F.group_norm(x, self.num_features, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, affine={self.weight is not None}"
