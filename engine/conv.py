"""Convolution and pooling on (N, C, H, W) images: three primitives and their wrappers.

`conv2d` is a cross-correlation with PyTorch's weight layout (F, C, HH, WW), computed as one
matrix product on an im2col copy of the (padded) input; its VJP sums the columns' gradient
back over the HH * WW kernel offsets (col2im). `max_pool2d` and `avg_pool2d` run over the
kernel offsets too, each offset one strided slice, so no Python loop touches a pixel. The bias
add is a broadcast add and flatten a reshape: compositions, not primitives.

Output sizes follow the notes: H' = 1 + (H + 2 * padding - HH) / stride must be a whole
number, and a stride that does not divide H + 2 * padding - HH raises a ValueError (so does a
kernel larger than the padded input). PyTorch instead floors the quotient and silently drops
the last rows and columns; reshape or pad the input to get its result.

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


def _output_size(x_shape, kernel, stride, padding):
    """(H', W') by the notes' formula; raises ValueError where it is not a whole number."""
    if min(stride) < 1:
        raise ValueError(f"stride must be positive, got {stride}")
    if min(padding) < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if min(kernel) < 1:
        raise ValueError(f"kernel size must be positive, got {kernel}")
    padded = (x_shape[2] + 2 * padding[0], x_shape[3] + 2 * padding[1])
    if kernel[0] > padded[0] or kernel[1] > padded[1]:
        raise ValueError(
            f"kernel {kernel[0]}x{kernel[1]} is larger than the padded input "
            f"{padded[0]}x{padded[1]} (input {tuple(x_shape)}, padding {padding})"
        )
    sizes = []
    for axis, name, k in ((0, "H", "HH"), (1, "W", "WW")):
        span = padded[axis] - kernel[axis]
        if span % stride[axis]:
            raise ValueError(
                f"stride {stride[axis]} does not divide {name} + 2*padding - {k} = "
                f"{x_shape[2 + axis]} + {2 * padding[axis]} - {kernel[axis]} = {span} "
                f"(input {tuple(x_shape)}, kernel {kernel}): the output size "
                f"1 + ({name} + 2*padding - {k}) / stride must be whole (PyTorch would floor "
                f"it and drop the last {span % stride[axis]} rows/columns)"
            )
        sizes.append(1 + span // stride[axis])
    return tuple(sizes)


def _offsets(kernel, stride, out_size):
    """For each kernel offset (i, j): the strided slices of the (padded) input it touches."""
    (sh, sw), (ho, wo) = stride, out_size
    return [
        (slice(i, i + sh * (ho - 1) + 1, sh), slice(j, j + sw * (wo - 1) + 1, sw))
        for i, j in product(range(kernel[0]), range(kernel[1]))
    ]


def _pad(x, padding):
    ph, pw = padding
    if not (ph or pw):
        return x
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


# --- conv2d -------------------------------------------------------------------------------------
CHUNK_BYTES = 2**20  # im2col works on a few samples at a time: about this many bytes of columns


def _conv2d(x, w, stride=(1, 1), padding=(0, 0), save=True):
    stride, padding = _pair(stride, "stride"), _pair(padding, "padding")
    _check_image(x.shape)
    _check_image(w.shape, "weight (F, C, HH, WW)")
    if x.shape[1] != w.shape[1]:
        raise ValueError(
            f"input has {x.shape[1]} channels (shape {x.shape}) but the weight expects "
            f"{w.shape[1]} (weight shape {w.shape})"
        )
    ho, wo = _output_size(x.shape, w.shape[2:], stride, padding)
    n, f = x.shape[0], w.shape[0]
    w2 = w.reshape(f, -1)
    windows = _windows(_pad(x, padding), w.shape[2:], stride, (ho, wo))
    out = np.empty((n, f, ho, wo), dtype=np.result_type(x, w))
    # The samples go through in chunks whose columns fit in the cache, so that each chunk's
    # im2col copy is still there when the matrix product reads it; the columns are kept for
    # the VJP's weight gradient, unless nothing will backpropagate (`save=False`).
    chunk = max(1, CHUNK_BYTES // (w2.shape[1] * ho * wo * out.itemsize))
    saved = []
    for start in range(0, n, chunk):
        cols = _im2col(windows[start : start + chunk])
        part = (w2 @ cols).reshape(f, -1, ho, wo)  # (F, chunk, H', W')
        out[start : start + chunk] = part.transpose(1, 0, 2, 3)
        if save:
            saved.append(cols)
    return out, ((chunk, saved) if save else None)


def _windows(x_pad, kernel, stride, out_size):
    """The (N, C, H', W', HH, WW) view of every window the kernel visits (no copy)."""
    (sh, sw), (ho, wo) = stride, out_size
    windows = sliding_window_view(x_pad, kernel, axis=(2, 3))
    return windows[:, :, : sh * (ho - 1) + 1 : sh, : sw * (wo - 1) + 1 : sw]


def _im2col(windows):
    """Columns (C * HH * WW, N * H' * W') of a window view: one copy, laid out as (C, HH, WW,
    N, H', W') so that it reads along W' and each kernel offset's rows are contiguous."""
    c, kh, kw = windows.shape[1], windows.shape[4], windows.shape[5]
    return np.ascontiguousarray(windows.transpose(1, 4, 5, 0, 2, 3)).reshape(c * kh * kw, -1)


def _conv2d_vjp(g, out, x, w, stride=(1, 1), padding=(0, 0), ctx=None, needs=(True, True)):
    stride, padding = _pair(stride, "stride"), _pair(padding, "padding")
    chunk, saved = ctx
    f, c, kh, kw = w.shape
    ho, wo = g.shape[2:]
    (ph, pw), (h, width) = padding, x.shape[2:]
    w2t = w.reshape(f, -1).T
    offsets = _offsets((kh, kw), stride, (ho, wo))
    dw = np.zeros(w2t.shape[::-1], dtype=g.dtype) if needs[1] else None
    dx = np.empty(x.shape, dtype=np.result_type(g, w)) if needs[0] else None
    for start, cols in zip(range(0, x.shape[0], chunk), saved):
        part = g[start : start + chunk]
        g2 = np.ascontiguousarray(part.transpose(1, 0, 2, 3)).reshape(f, -1)  # (F, m*H'*W')
        if needs[1]:
            dw += g2 @ cols.T
        if needs[0]:
            # col2im: each kernel offset's rows of the columns' gradient go back to the
            # strided slice of the padded input they came from; overlaps add up.
            dcols = (w2t @ g2).reshape(c, kh * kw, part.shape[0], ho, wo)
            dxp = np.zeros((c, part.shape[0], h + 2 * ph, width + 2 * pw), dtype=dx.dtype)
            for k, (rows, columns) in enumerate(offsets):
                dxp[:, :, rows, columns] += dcols[:, k]
            dx[start : start + chunk] = dxp[:, :, ph : ph + h, pw : pw + width].transpose(
                1, 0, 2, 3
            )
    return dx, (dw.reshape(w.shape) if needs[1] else None)


register_op(
    Op(
        "conv2d",
        _conv2d,
        _conv2d_vjp,
        2,
        "out[n,f] = sum_c,i,j w[f,c,i,j] * x_pad[n,c,s*h+i,s*w+j]",
        "dw = g @ im2col(x)^T; dx = col2im(w^T @ g) (summed over kernel offsets)",
        kind="conv2d",
        saves=True,
        optional_save=True,
        takes_needs=True,
    )
)


# --- pooling -------------------------------------------------------------------------------------
def _pool_geometry(x, kernel_size, stride):
    _check_image(x.shape)
    kernel = _pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else _pair(stride, "stride")
    return kernel, stride, _output_size(x.shape, kernel, stride, (0, 0))


def _max_pool2d(x, kernel_size=2, stride=None):
    kernel, stride, size = _pool_geometry(x, kernel_size, stride)
    out = arg = None
    for k, (rows, columns) in enumerate(_offsets(kernel, stride, size)):
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


def _max_pool2d_vjp(g, out, x, kernel_size=2, stride=None, ctx=None):
    kernel, stride, size = _pool_geometry(x, kernel_size, stride)
    dx = np.zeros(x.shape, dtype=g.dtype)
    for k, (rows, columns) in enumerate(_offsets(kernel, stride, size)):
        dx[:, :, rows, columns] += np.where(ctx == k, g, 0.0).astype(g.dtype, copy=False)
    return (dx,)


def _avg_pool2d(x, kernel_size=2, stride=None):
    kernel, stride, size = _pool_geometry(x, kernel_size, stride)
    offsets = _offsets(kernel, stride, size)
    out = x[:, :, offsets[0][0], offsets[0][1]].copy()
    for rows, columns in offsets[1:]:
        out += x[:, :, rows, columns]
    out /= kernel[0] * kernel[1]
    return out


def _avg_pool2d_vjp(g, out, x, kernel_size=2, stride=None):
    kernel, stride, size = _pool_geometry(x, kernel_size, stride)
    share = g / (kernel[0] * kernel[1])
    dx = np.zeros(x.shape, dtype=share.dtype)
    for rows, columns in _offsets(kernel, stride, size):
        dx[:, :, rows, columns] += share
    return (dx,)


register_op(
    Op(
        "max_pool2d",
        _max_pool2d,
        _max_pool2d_vjp,
        1,
        "max over each kernel window",
        "dx = g at the window's argmax (ties: the first, as PyTorch)",
        kind="pool2d",
        domain="distinct",
        saves=True,
    )
)
register_op(
    Op(
        "avg_pool2d",
        _avg_pool2d,
        _avg_pool2d_vjp,
        1,
        "mean over each kernel window",
        "dx = g / (kh * kw) spread over each window",
        kind="pool2d",
    )
)


# --- functional wrappers --------------------------------------------------------------------------
def _tensor(x) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def conv2d(x, w, b=None, stride=1, padding=0):
    """Cross-correlate x (N, C, H, W) with w (F, C, HH, WW), add b (F,): (N, F, H', W')."""
    x, w = _tensor(x), _tensor(w)
    out = apply(
        OPS["conv2d"], x, w, stride=_pair(stride, "stride"), padding=_pair(padding, "padding")
    )
    if b is None:
        return out
    b = _tensor(b)
    if b.shape != (w.shape[0],):
        raise ValueError(f"conv2d: bias must have shape ({w.shape[0]},), got {b.shape}")
    return out + b.reshape(w.shape[0], 1, 1)


def max_pool2d(x, kernel_size, stride=None):
    """Max over kernel_size windows of (N, C, H, W), moved by stride (default kernel_size)."""
    stride = None if stride is None else _pair(stride, "stride")
    return apply(
        OPS["max_pool2d"], _tensor(x), kernel_size=_pair(kernel_size, "kernel_size"), stride=stride
    )


def avg_pool2d(x, kernel_size, stride=None):
    """Mean over kernel_size windows of (N, C, H, W), moved by stride (default kernel_size)."""
    stride = None if stride is None else _pair(stride, "stride")
    return apply(
        OPS["avg_pool2d"], _tensor(x), kernel_size=_pair(kernel_size, "kernel_size"), stride=stride
    )


def flatten(x, start_dim=1):
    """Merge the axes from start_dim on into one (a reshape): (N, C, H, W) -> (N, C*H*W)."""
    x = _tensor(x)
    if not -x.ndim <= start_dim < x.ndim:
        raise ValueError(f"flatten: start_dim {start_dim} is out of range for shape {x.shape}")
    start_dim %= x.ndim
    return x.reshape(*x.shape[:start_dim], -1)
