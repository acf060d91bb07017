"""Convolution and pooling on (N, C, H, W) images: three primitives and their wrappers.

`conv2d` is a cross-correlation with PyTorch's weight layout (F, C / groups, HH, WW), computed
as one matrix product per group on an im2col copy of the (padded) input. It saves nothing but
its inputs (PyTorch saves the same): the VJP makes the columns again, a few samples at a
time, for the weight's gradient, and computes the input's gradient as a convolution of the
output gradient with the flipped kernel (stride 1) or by summing the columns' gradient back
over the HH * WW kernel offsets (col2im, any stride). `max_pool2d` and
`avg_pool2d` run over the kernel offsets too, each offset one strided slice, so no Python loop
touches a pixel. The bias add is a broadcast add, flatten a reshape and global average pooling
a mean: compositions, not primitives.

Output sizes are PyTorch's: H' = floor((H + 2 * padding - dilation * (HH - 1) - 1) / stride) + 1,
so a stride that does not divide leaves the last rows and columns out (the notes' formula
H' = 1 + (H + 2 * padding - HH) / stride where it is whole). Pooling's `ceil_mode=True` rounds
up instead, dropping a last window that would start in the right padding, as PyTorch does. A
kernel larger than the padded input raises a ValueError.

>>> import numpy as np
>>> from topograd.engine import Tensor, functional as F
>>> x = Tensor(np.arange(16.0).reshape(1, 1, 4, 4), requires_grad=True)
>>> w = Tensor(np.ones((2, 1, 3, 3)), requires_grad=True)
>>> out = F.max_pool2d(F.conv2d(x, w, padding=1), 2)
>>> out.shape
(1, 2, 2, 2)
>>> out.sum().backward()
>>> x.grad.shape, w.grad.shape
((1, 1, 4, 4), (2, 1, 3, 3))
"""

from __future__ import annotations

from itertools import product
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from topograd.engine.ops import OPS, Op, register_op
from topograd.engine.tensor import Tensor, apply


# --- geometry -------------------------------------------------------------------------------
def _pair(value, label):
    """An int or a pair of ints as a pair (rows, columns)."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair):
        raise ValueError(f"{label} must be an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])


def _check_image(x_shape, label="input"):
    if len(x_shape) != 4:
        raise ValueError(f"{label} must be 4-D (N, C, H, W), got shape {tuple(x_shape)}")


def _check_ranges(kernel, stride, padding, dilation):
    """Refuse sizes that make no window, before any arithmetic divides by them."""
    for label, pair, low in (
        ("kernel size", kernel, 1),
        ("stride", stride, 1),
        ("padding", padding, 0),
        ("dilation", dilation, 1),
    ):
        if min(pair) < low:
            raise ValueError(f"{label} must be >= {low}, got {pair}")


def _span(kernel, dilation):
    """How many input pixels a (dilated) kernel covers along each axis."""
    return tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))


def _output_size(x_shape, kernel, stride, padding, dilation=(1, 1), ceil_mode=False):
    """(H', W') as PyTorch computes them (see the module docstring)."""
    _check_ranges(kernel, stride, padding, dilation)
    span = _span(kernel, dilation)
    padded = (x_shape[2] + 2 * padding[0], x_shape[3] + 2 * padding[1])
    if span[0] > padded[0] or span[1] > padded[1]:
        dilated = f" (dilated to {span[0]}x{span[1]})" if dilation != (1, 1) else ""
        raise ValueError(
            f"kernel {kernel[0]}x{kernel[1]}{dilated} is larger than the padded input "
            f"{padded[0]}x{padded[1]} (input {tuple(x_shape)}, padding {padding})"
        )
    return tuple(
        _axis_size(x_shape[2 + axis], span[axis], stride[axis], padding[axis], ceil_mode)
        for axis in (0, 1)
    )


def _axis_size(size, span, stride, padding, ceil_mode):
    """Windows along one axis: where each may start, rounded down (or up with ceil_mode)."""
    room = size + 2 * padding - span
    if not ceil_mode:
        return room // stride + 1
    out = -(-room // stride) + 1
    # NOTE: PyTorch's ceil_mode rule: the last window must start inside the input or its left
    # padding; one that would start in the right padding is dropped.
    return out - 1 if (out - 1) * stride >= size + padding else out


def _offsets(kernel, stride, out_size, dilation=(1, 1)):
    """For each kernel offset (i, j): the strided slices of the (padded) input it touches."""
    (sh, sw), (ho, wo), (dh, dw) = stride, out_size, dilation
    return [
        (
            slice(dh * i, dh * i + sh * (ho - 1) + 1, sh),
            slice(dw * j, dw * j + sw * (wo - 1) + 1, sw),
        )
        for i, j in product(range(kernel[0]), range(kernel[1]))
    ]


def _pad(x, widths, fill=0.0):
    """x with ((top, bottom), (left, right)) rows and columns of `fill` around each plane."""
    if not any(sum(widths, ())):
        return x
    return np.pad(x, ((0, 0), (0, 0), *widths), constant_values=fill)


def _crop(padded, top_left, size):
    """The (H, W) planes of a padded gradient that belong to the input (the padding's part
    of the gradient is dropped); the array itself where nothing was padded."""
    if padded.shape[-2:] == tuple(size):
        return padded
    (top, left), (h, w) = top_left, size
    return padded[..., top : top + h, left : left + w]


# --- conv2d -------------------------------------------------------------------------------------
CHUNK_BYTES = 2**20  # im2col works on a few samples at a time: about this many bytes of columns


def _conv_output_size(x_shape, w_shape, stride, padding, dilation, groups):
    """(H', W') of a convolution, after checking that the channels split into the groups."""
    _check_image(x_shape)
    _check_image(w_shape, "weight (F, C / groups, HH, WW)")
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    c, f, per_group = x_shape[1], w_shape[0], w_shape[1]
    if f % groups:
        raise ValueError(
            f"groups={groups} does not divide the weight's {f} output channels "
            f"(weight shape {w_shape})"
        )
    if c != per_group * groups:
        split = f" ({groups} groups of {per_group})" if groups > 1 else ""
        raise ValueError(
            f"input has {c} channels (shape {x_shape}) but the weight expects "
            f"{per_group * groups}{split} (weight shape {w_shape})"
        )
    return _output_size(x_shape, w_shape[2:], stride, padding, dilation)


def _conv2d(x, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    stride, padding = _pair(stride, "stride"), _pair(padding, "padding")
    dilation = _pair(dilation, "dilation")
    ho, wo = _conv_output_size(x.shape, w.shape, stride, padding, dilation, groups)
    n, f = x.shape[0], w.shape[0]
    w3 = w.reshape(groups, f // groups, -1)  # one (F/G, C/G * HH * WW) matrix per group
    windows = _padded_windows(x, w.shape[2:], stride, padding, dilation, (ho, wo))
    out = np.empty((n, f, ho, wo), dtype=np.result_type(x, w))
    # The samples go through in chunks whose columns fit in the cache, so that each chunk's
    # im2col copy is still there when the matrix product reads it; no columns are kept.
    chunk = _chunk(groups * w3.shape[2] * ho * wo * out.itemsize)
    for start in range(0, n, chunk):
        cols = _im2col(windows[start : start + chunk])
        part = (w3 @ _by_group(cols, groups)).reshape(f, -1, ho, wo)  # (F, chunk, H', W')
        out[start : start + chunk] = part.transpose(1, 0, 2, 3)
    return out


def _chunk(bytes_per_sample):
    """How many samples' columns fit in CHUNK_BYTES (at least one)."""
    return max(1, CHUNK_BYTES // bytes_per_sample)


def _padded_windows(x, kernel, stride, padding, dilation, out_size):
    """The window view (see `_windows`) of x with `padding` zeros around each plane."""
    x_pad = _pad(x, ((padding[0],) * 2, (padding[1],) * 2))
    return _windows(x_pad, kernel, stride, dilation, out_size)


def _windows(x_pad, kernel, stride, dilation, out_size):
    """The (N, C, H', W', HH, WW) view of every window the kernel visits (no copy)."""
    (sh, sw), (dh, dw), (ho, wo) = stride, dilation, out_size
    windows = sliding_window_view(x_pad, _span(kernel, dilation), axis=(2, 3))
    return windows[:, :, : sh * (ho - 1) + 1 : sh, : sw * (wo - 1) + 1 : sw, ::dh, ::dw]


def _im2col(windows):
    """Columns (C * HH * WW, N * H' * W') of a window view: one copy, laid out as (C, HH, WW,
    N, H', W') so that it reads along W' and each kernel offset's rows are contiguous."""
    c, kh, kw = windows.shape[1], windows.shape[4], windows.shape[5]
    return np.ascontiguousarray(windows.transpose(1, 4, 5, 0, 2, 3)).reshape(c * kh * kw, -1)


def _by_group(rows, groups):
    """(G, rows / G, columns) view of a matrix whose rows run channel by channel: the
    channels of one group are consecutive, so each group's rows are one block (no copy)."""
    return rows.reshape(groups, -1, rows.shape[-1])


def _col2im(dcols, offsets, size, padding):
    """The input's gradient (C, m, H, W) from the columns' (C, HH * WW, m, H', W'): each
    kernel offset's rows go back to the strided slice of the padded input they came from, and
    overlaps add up."""
    c, _, m = dcols.shape[:3]
    (ph, pw), (h, w) = padding, size
    dx_pad = np.zeros((c, m, h + 2 * ph, w + 2 * pw), dtype=dcols.dtype)
    for k, (rows, columns) in enumerate(offsets):
        dx_pad[:, :, rows, columns] += dcols[:, k]
    return _crop(dx_pad, padding, size)


def _conv2d_vjp(
    g,
    out,
    x,
    w,
    stride=(1, 1),
    padding=(0, 0),
    dilation=(1, 1),
    groups=1,
    needs=(True, True),
):
    stride, padding = _pair(stride, "stride"), _pair(padding, "padding")
    dilation = _pair(dilation, "dilation")
    f, _, kh, kw = w.shape
    c, (ho, wo) = x.shape[1], g.shape[2:]
    w3 = w.reshape(groups, f // groups, -1)
    # stride 1 with padding no wider than the kernel's reach: dx is a plain convolution
    transposed = stride == (1, 1) and all(
        p <= d * (k - 1) for p, d, k in zip(padding, dilation, (kh, kw))
    )
    dw = dx = None
    if needs[0]:
        dx = (
            _conv_input_grad(g, w, padding, dilation, groups)
            if transposed
            else np.empty(x.shape, dtype=np.result_type(g, w))
        )
    if needs[1] or (needs[0] and not transposed):
        windows = _padded_windows(x, (kh, kw), stride, padding, dilation, (ho, wo))
        offsets = _offsets((kh, kw), stride, (ho, wo), dilation)
        dw = np.zeros(w3.shape, dtype=g.dtype) if needs[1] else None
        chunk = _chunk(groups * w3.shape[2] * ho * wo * np.result_type(x, w).itemsize)
        for start in range(0, x.shape[0], chunk):
            part = g[start : start + chunk]
            g3 = _by_group(np.ascontiguousarray(part.transpose(1, 0, 2, 3)).reshape(f, -1), groups)
            if needs[1]:
                cols = _im2col(windows[start : start + chunk])  # made again, not kept
                # (cols @ g3^T)^T rather than g3 @ cols^T: the same sums, but BLAS runs this
                # orientation about twice as fast for these thin products (bench/conv.py)
                dw += (_by_group(cols, groups) @ g3.transpose(0, 2, 1)).transpose(0, 2, 1)
            if needs[0] and not transposed:
                dcols = (w3.transpose(0, 2, 1) @ g3).reshape(c, kh * kw, part.shape[0], ho, wo)
                dx_part = _col2im(dcols, offsets, x.shape[2:], padding)
                dx[start : start + chunk] = dx_part.transpose(1, 0, 2, 3)
    return dx, (dw.reshape(w.shape) if needs[1] else None)


def _conv_input_grad(g, w, padding, dilation, groups):
    """The input's gradient of a stride-1 convolution: the output gradient convolved with the
    kernel flipped in both axes, input and output channels swapped within each group, and
    padded by the kernel's reach less the forward padding (the transposed convolution)."""
    f, per_group, kh, kw = w.shape
    flipped = w.reshape(groups, f // groups, per_group, kh, kw).transpose(0, 2, 1, 3, 4)
    flipped = flipped[..., ::-1, ::-1].reshape(groups * per_group, f // groups, kh, kw)
    reach = tuple(d * (k - 1) - p for p, d, k in zip(padding, dilation, (kh, kw)))
    return _conv2d(g, flipped, padding=reach, dilation=dilation, groups=groups)


register_op(
    Op(
        "conv2d",
        _conv2d,
        _conv2d_vjp,
        2,
        "out[n,f] = sum_c,i,j w[f,c,i,j] * x_pad[n,c,s*h+d*i,s*w+d*j] (c: f's group's channels)",
        "dw = g @ im2col(x)^T; dx = conv(g, flipped w) (stride 1) or col2im(w^T @ g); per group",
        kind="conv2d",
        takes_needs=True,
    )
)


# --- pooling -------------------------------------------------------------------------------------
class _PoolGeometry(NamedTuple):
    kernel: tuple
    stride: tuple
    padding: tuple  # (top, left)
    size: tuple  # (H', W')
    widths: tuple  # ((top, bottom), (left, right)) rows and columns padded around each plane


def _pool_geometry(x_shape, kernel_size, stride, padding, ceil_mode):
    """Where the windows lie. A ceil_mode window may hang past the bottom or right padding:
    the input is then padded further on that side, so that every window is a full slice."""
    _check_image(x_shape)
    kernel = _pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else _pair(stride, "stride")
    padding = _pair(padding, "padding")
    size = _output_size(x_shape, kernel, stride, padding, ceil_mode=ceil_mode)
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(
            f"padding {padding} must be at most half the kernel {kernel} (PyTorch's limit)"
        )
    widths = tuple(
        (p, max(p, (o - 1) * s + k - n - p))
        for n, k, s, p, o in zip(x_shape[2:], kernel, stride, padding, size)
    )
    return _PoolGeometry(kernel, stride, padding, size, widths)


def _padded_shape(x_shape, widths):
    (top, bottom), (left, right) = widths
    return (*x_shape[:2], x_shape[2] + top + bottom, x_shape[3] + left + right)


def _max_pool2d(x, kernel_size=2, stride=None, padding=0, ceil_mode=False):
    geometry = _pool_geometry(x.shape, kernel_size, stride, padding, ceil_mode)
    # NOTE: the padding is -inf, as in PyTorch: it never wins a window, since every window
    # holds at least one input value (padding is at most half the kernel).
    x = _pad(x, geometry.widths, -np.inf)
    out = arg = None
    for k, (rows, columns) in enumerate(_offsets(geometry.kernel, geometry.stride, geometry.size)):
        v = x[:, :, rows, columns]
        if out is None:
            out, arg = v.copy(), np.zeros(v.shape, dtype=np.int32)
            continue
        # NOTE: ties go to the first maximum in the window (row-major order), as in PyTorch,
        # which also picks one index: only `v > out` replaces. A NaN wins (and propagates).
        better = (v > out) | (v != v)
        np.copyto(out, v, where=better)
        arg[better] = k
    return out, arg


def _max_pool2d_vjp(g, out, x, kernel_size=2, stride=None, padding=0, ceil_mode=False, ctx=None):
    geometry = _pool_geometry(x.shape, kernel_size, stride, padding, ceil_mode)
    dx = np.zeros(_padded_shape(x.shape, geometry.widths), dtype=g.dtype)
    for k, (rows, columns) in enumerate(_offsets(geometry.kernel, geometry.stride, geometry.size)):
        dx[:, :, rows, columns] += np.where(ctx == k, g, 0.0).astype(g.dtype, copy=False)
    return (_crop(dx, geometry.padding, x.shape[2:]),)


def _window_sizes(geometry, x_shape, dtype):
    """What avg pooling divides each window's sum by: the (H', W') counts of the window's
    pixels inside the input and its padding, or the kernel's area (a scalar, a cheaper
    division) where every window lies inside."""
    # NOTE: PyTorch's count_include_pad=True: padding counts as zeros in the window, so
    # windows are divided by the kernel's area, except where a ceil_mode window hangs past
    # the padding: that part is not counted.
    counts = [
        np.minimum(k, n + 2 * p - s * np.arange(o))
        for n, k, s, p, o in zip(
            x_shape[2:], geometry.kernel, geometry.stride, geometry.padding, geometry.size
        )
    ]
    if all(c.min() == k for c, k in zip(counts, geometry.kernel)):
        return dtype.type(geometry.kernel[0] * geometry.kernel[1])
    return np.outer(*counts).astype(dtype)


def _avg_pool2d(x, kernel_size=2, stride=None, padding=0, ceil_mode=False):
    geometry = _pool_geometry(x.shape, kernel_size, stride, padding, ceil_mode)
    sizes = _window_sizes(geometry, x.shape, x.dtype)
    x = _pad(x, geometry.widths)
    offsets = _offsets(geometry.kernel, geometry.stride, geometry.size)
    out = x[:, :, offsets[0][0], offsets[0][1]].copy()
    for rows, columns in offsets[1:]:
        out += x[:, :, rows, columns]
    out /= sizes
    return out


def _avg_pool2d_vjp(g, out, x, kernel_size=2, stride=None, padding=0, ceil_mode=False):
    geometry = _pool_geometry(x.shape, kernel_size, stride, padding, ceil_mode)
    share = g / _window_sizes(geometry, x.shape, g.dtype)
    dx = np.zeros(_padded_shape(x.shape, geometry.widths), dtype=share.dtype)
    for rows, columns in _offsets(geometry.kernel, geometry.stride, geometry.size):
        dx[:, :, rows, columns] += share
    return (_crop(dx, geometry.padding, x.shape[2:]),)


register_op(
    Op(
        "max_pool2d",
        _max_pool2d,
        _max_pool2d_vjp,
        1,
        "max over each kernel window (padding: -inf)",
        "dx = g at the window's argmax (ties: the first, as PyTorch)",
        kind="pool2d",
        domain="distinct",
        saves=True,
        reads=(),  # the argmax positions come from the saved context
    )
)
register_op(
    Op(
        "avg_pool2d",
        _avg_pool2d,
        _avg_pool2d_vjp,
        1,
        "mean over each kernel window (padding: zeros, counted)",
        "dx = g / (window size) spread over each window",
        kind="pool2d",
        reads=(),
    )
)


# --- functional wrappers --------------------------------------------------------------------------
def _tensor(x) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """Cross-correlate x (N, C, H, W) with w (F, C / groups, HH, WW), add b (F,): (N, F, H', W').

    PyTorch's arguments: `dilation` spaces the kernel's taps that many pixels apart; with
    `groups` G, output channels f * F/G ... (f + 1) * F/G - 1 see only input channels
    f * C/G ... (f + 1) * C/G - 1 (G = C: depthwise).
    """
    x, w = _tensor(x), _tensor(w)
    out = apply(
        OPS["conv2d"],
        x,
        w,
        stride=_pair(stride, "stride"),
        padding=_pair(padding, "padding"),
        dilation=_pair(dilation, "dilation"),
        groups=groups,
    )
    if b is None:
        return out
    b = _tensor(b)
    if b.shape != (w.shape[0],):
        raise ValueError(f"conv2d: bias must have shape ({w.shape[0]},), got {b.shape}")
    return out + b.reshape(w.shape[0], 1, 1)


def _pool_attributes(kernel_size, stride, padding, ceil_mode):
    return {
        "kernel_size": _pair(kernel_size, "kernel_size"),
        "stride": None if stride is None else _pair(stride, "stride"),
        "padding": _pair(padding, "padding"),
        "ceil_mode": bool(ceil_mode),
    }


# NOTE: ceil_mode is keyword-only: PyTorch's max_pool2d takes `dilation` in that place, so a
# positional call copied from PyTorch fails instead of meaning something else.
def max_pool2d(x, kernel_size, stride=None, padding=0, *, ceil_mode=False):
    """Max over kernel_size windows of (N, C, H, W), moved by stride (default kernel_size);
    `padding` (at most half the kernel) adds -inf around each plane, as in PyTorch."""
    attributes = _pool_attributes(kernel_size, stride, padding, ceil_mode)
    return apply(OPS["max_pool2d"], _tensor(x), **attributes)


def avg_pool2d(x, kernel_size, stride=None, padding=0, *, ceil_mode=False):
    """Mean over kernel_size windows of (N, C, H, W), moved by stride (default kernel_size);
    `padding` adds zeros that count in the mean (PyTorch's count_include_pad=True)."""
    attributes = _pool_attributes(kernel_size, stride, padding, ceil_mode)
    return apply(OPS["avg_pool2d"], _tensor(x), **attributes)


def adaptive_avg_pool2d(x, output_size):
    """Global average pooling: the mean of each (N, C) plane, kept as (N, C, 1, 1) like
    PyTorch's AdaptiveAvgPool2d((1, 1)). Only output_size 1 is supported."""
    x = _tensor(x)
    if x.ndim != 4:
        raise ValueError(f"adaptive_avg_pool2d: input must be 4-D (N, C, H, W), got {x.shape}")
    if _pair(output_size, "output_size") != (1, 1):
        raise ValueError(
            f"adaptive_avg_pool2d supports output_size 1 (global average pooling) only, got "
            f"{output_size!r}; for sizes that divide H and W, avg_pool2d with kernel_size = "
            f"stride = (H // out_h, W // out_w) computes the same"
        )
    return x.mean(axis=(2, 3), keepdims=True)


def flatten(x, start_dim=1):
    """Merge the axes from start_dim on into one (a reshape): (N, C, H, W) -> (N, C*H*W)."""
    x = _tensor(x)
    if not -x.ndim <= start_dim < x.ndim:
        raise ValueError(f"flatten: start_dim {start_dim} is out of range for shape {x.shape}")
    start_dim %= x.ndim
    return x.reshape(*x.shape[:start_dim], -1)
