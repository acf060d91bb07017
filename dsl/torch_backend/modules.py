"""Engine modules as PyTorch modules, and their weights copied both ways.

Every layer of the model language has a counterpart (PyTorch's own where one exists, a small
module here where none does: Maxout, the scalar network's Neuron and ScalarLinear, an
Unflatten that lets images pass, and the branching blocks Residual, Concat and Merge with
a Sequential that hands a merge the earlier outputs it names). The torch module mirrors the
engine's structure: the same child names ('0', '1', ...; a scalar layer's 'n0.w1', a block's
'4.body.0', '8.shortcut.1'), so parameter and buffer names match, and
`torch_parameters(module)[i]` is the counterpart of `model.parameters()[i]`. The one
layout difference is a Linear weight: the engine stores (in, out), PyTorch (out, in);
`transposed_parameters(module)` says where.

>>> from topograd.engine import nn
>>> model = nn.Sequential(nn.Linear(3, 4, rng=0), nn.BatchNorm1d(4), nn.ReLU())
>>> module = to_torch_module(model)
>>> [tuple(p.shape) for p in torch_parameters(module)]
[(4, 3), (4,), (4,), (4,)]
>>> transposed_parameters(module)
[True, False, False, False]
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from topograd.dsl.torch_backend import UnsupportedError, require_torch
from topograd.engine import nn as enn
from topograd.engine.custom_ops import CustomActivation

torch = require_torch()
tnn = torch.nn

_TORCH_DTYPES = {np.dtype(np.float64): torch.float64, np.dtype(np.float32): torch.float32}


# --- torch modules for the layers PyTorch lacks ---------------------------------------------
class Maxout(tnn.Linear):
    """max over `pieces` linear pieces: a Linear to out_features * pieces, then the max of
    each consecutive group of `pieces` (ties share the gradient, as the engine's max)."""

    def __init__(self, in_features, out_features, pieces=2, device=None, dtype=None):
        super().__init__(in_features, out_features * pieces, device=device, dtype=dtype)
        self.units, self.pieces = out_features, pieces

    def forward(self, x):
        z = super().forward(x)
        return z.unflatten(-1, (self.units, self.pieces)).amax(dim=-1)

    def extra_repr(self):
        return f"{self.in_features}, {self.units}, pieces={self.pieces}"


class Unflatten(tnn.Unflatten):
    """Rows (N, C*H*W) folded into images (N, C, H, W); inputs that already have the image
    shape pass through unchanged (the engine's Unflatten)."""

    def __init__(self, shape):
        super().__init__(1, tuple(shape))

    def forward(self, x):
        if tuple(x.shape[1:]) == tuple(self.unflattened_size):
            return x
        return super().forward(x)


class Neuron(tnn.Module):
    """One unit of a scalar network: 0-d parameters w0, w1, ... and b, as the engine's."""

    def __init__(self, in_features):
        super().__init__()
        for index in range(in_features):
            setattr(self, f"w{index}", tnn.Parameter(torch.empty(())))
        self.b = tnn.Parameter(torch.empty(()))


class ScalarLinear(tnn.Module):
    """A dense layer of Neurons n0, n1, ... on (N, in) rows; every weight is its own 0-d
    parameter (stacked in forward), so an optimizer keeps one state per engine scalar."""

    def __init__(self, in_features, out_features):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        for index in range(out_features):
            setattr(self, f"n{index}", Neuron(in_features))

    def forward(self, x):
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"ScalarLinear({self.in_features}, {self.out_features}): expected (N, "
                f"{self.in_features}) inputs, got shape {tuple(x.shape)}"
            )
        # row j holds neuron j's w0, ..., w_{in-1}, b (its parameters' order)
        table = torch.stack(list(self.parameters())).view(self.out_features, -1)
        total = table[:, -1]
        # b + w0 x0 + w1 x1 + ..., added in the engine's order (the same rounding)
        for index in range(self.in_features):
            total = total + table[:, index] * x[:, index : index + 1]
        return total

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}"


# --- branching networks (engine.nn.branch) ----------------------------------------------------
class Residual(tnn.Module):
    """`body(x) + x`, or `body(x) + shortcut(x)` when there is a shortcut."""

    def __init__(self, body, shortcut=None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut  # None registers no child: the names stay the engine's

    def forward(self, x):
        out = self.body(x)
        return out + (x if self.shortcut is None else self.shortcut(x))


class Concat(tnn.Module):
    """`[x, body(x)]` joined along `axis`."""

    def __init__(self, body, axis=1):
        super().__init__()
        self.body, self.axis = body, axis

    def forward(self, x):
        return torch.cat([x, self.body(x)], dim=self.axis)

    def extra_repr(self):
        return f"axis={self.axis}"


class Merge(tnn.Module):
    """The current value joined with the outputs of earlier items of its MergingSequential,
    named by `sources`: summed (mode "add", in order) or joined along `axis` ("concat")."""

    def __init__(self, mode, sources, axis=1):
        super().__init__()
        self.mode, self.sources, self.axis = mode, tuple(sources), axis

    def forward(self, x, *earlier):
        if self.mode == "concat":
            return torch.cat([x, *earlier], dim=self.axis)
        for value in earlier:
            x = x + value
        return x

    def extra_repr(self):
        axis = f", axis={self.axis}" if self.mode == "concat" else ""
        return f"{self.mode}, {', '.join(self.sources)}{axis}"


class MergingSequential(tnn.Sequential):
    """A Sequential with Merge items: it keeps the outputs of the items that a merge names
    (`item_names`: the model file's labels, else the indexes) and hands them to the merge."""

    def __init__(self, layers, item_names):
        super().__init__(layers)
        self.item_names = tuple(item_names)

    def forward(self, x):
        wanted = {source for m in self if isinstance(m, Merge) for source in m.sources}
        kept = {}
        for name, module in zip(self.item_names, self):
            if isinstance(module, Merge):
                x = module(x, *(kept[source] for source in module.sources))
            else:
                x = module(x)
            if name in wanted:
                kept[name] = x
        return x


# --- the translation table -------------------------------------------------------------------
_CONVERTERS = {}


def _converts(*engine_types):
    """Register a function (engine module, path) -> torch module for these engine types."""

    def add(function):
        for engine_type in engine_types:
            _CONVERTERS[engine_type] = function
        return function

    return add


def _where(path: str, module) -> str:
    """'layer 3', or 'layer 3 (label)' when the model file labelled it."""
    label = module._local_name
    where = f"layer {path}" if path else "the network"
    return f"{where} ({label})" if label and label != path.rpartition(".")[2] else where


def _convert(module, path: str):
    """The torch counterpart of `module` (at `path` in the model), or UnsupportedError."""
    if isinstance(module, CustomActivation):
        name = module.op_function.op.name
        raise UnsupportedError(
            f"the custom op {name!r} (a plugin's op) at {_where(path, module)}",
            "its forward and VJP are numpy code; use a built-in activation for --backend "
            "torch, or train this file with the numpy engine",
        )
    converter = _CONVERTERS.get(type(module))
    if converter is None:
        raise UnsupportedError(f"the {type(module).__name__} at {_where(path, module)}")
    return converter(module, path)


def _child_path(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


@_converts(enn.Sequential)
def _sequential(module, path):
    layers = OrderedDict(
        (name, _convert(child, _child_path(path, name))) for name, child in module.named_children()
    )
    if any(isinstance(child, Merge) for child in layers.values()):
        return MergingSequential(layers, module.item_names())
    return tnn.Sequential(layers)


@_converts(enn.Residual)
def _residual(module, path):
    body = _convert(module.body, _child_path(path, "body"))
    shortcut = getattr(module, "shortcut", None)
    if shortcut is not None:
        shortcut = _convert(shortcut, _child_path(path, "shortcut"))
    return Residual(body, shortcut)


_converts(enn.Concat)(
    lambda module, path: Concat(_convert(module.body, _child_path(path, "body")), module.axis)
)
_converts(enn.Merge)(lambda module, path: Merge(module.mode, module.sources, module.axis))


_ELEMENTWISE = (enn.ReLU, enn.Tanh, enn.Sigmoid, enn.LeakyReLU, enn.ELU)  # (scalar networks)


@_converts(enn.ScalarSequential)
def _scalar_sequential(module, path):
    layers = OrderedDict()
    for name, child in module.named_children():
        child_path = _child_path(path, name)
        allowed = (enn.ScalarLinear, *_ELEMENTWISE, CustomActivation)  # (a custom op: its own)
        if not isinstance(child, allowed):
            raise UnsupportedError(
                f"the {type(child).__name__} in a scalar network at {_where(child_path, child)}",
                "a scalar network takes scalar linear layers and activations",
            )
        layers[name] = _convert(child, child_path)
    return tnn.Sequential(layers)


@_converts(enn.ScalarLinear)
def _scalar_linear(module, path):
    return ScalarLinear(module.in_features, module.out_features)


@_converts(enn.Linear)
def _linear(module, path):
    return tnn.Linear(module.in_features, module.out_features, bias=module.bias is not None)


@_converts(enn.Maxout)
def _maxout(module, path):
    return Maxout(module.in_features, module.out_features, module.pieces)


@_converts(enn.Dropout)
def _dropout(module, path):
    if not module.inverted and module.p > 0:
        raise UnsupportedError(
            f"vanilla dropout (inverted=false) at {_where(path, module)}",
            "PyTorch's dropout is inverted: kept units are scaled by 1/(1-p) in training; "
            "drop inverted=false to use it",
        )
    return tnn.Dropout(module.p)


_converts(enn.ReLU)(lambda module, path: tnn.ReLU())
_converts(enn.Tanh)(lambda module, path: tnn.Tanh())
_converts(enn.Sigmoid)(lambda module, path: tnn.Sigmoid())
_converts(enn.LeakyReLU)(lambda module, path: tnn.LeakyReLU(module.negative_slope))
_converts(enn.ELU)(lambda module, path: tnn.ELU(module.alpha))
_converts(enn.GELU)(lambda module, path: tnn.GELU(approximate=module.approximate))
_converts(enn.Softmax)(lambda module, path: tnn.Softmax(dim=module.axis))
_converts(enn.LogSoftmax)(lambda module, path: tnn.LogSoftmax(dim=module.axis))


@_converts(enn.BatchNorm1d, enn.BatchNorm2d)
def _batch_norm(module, path):
    kind = tnn.BatchNorm2d if isinstance(module, enn.BatchNorm2d) else tnn.BatchNorm1d
    # momentum is the new batch's weight and running_var unbiased in both (None: cumulative)
    return kind(
        module.num_features,
        eps=module.eps,
        momentum=module.momentum,
        affine=module.weight is not None,
        track_running_stats=module.track_running_stats,
    )


@_converts(enn.LayerNorm)
def _layer_norm(module, path):
    return tnn.LayerNorm(
        module.normalized_shape, eps=module.eps, elementwise_affine=module.weight is not None
    )


@_converts(enn.GroupNorm)
def _group_norm(module, path):
    return tnn.GroupNorm(
        module.num_groups, module.num_channels, eps=module.eps, affine=module.weight is not None
    )


@_converts(enn.InstanceNorm2d)
def _instance_norm(module, path):
    return tnn.InstanceNorm2d(
        module.num_features,
        eps=module.eps,
        affine=module.weight is not None,
        track_running_stats=False,
    )


@_converts(enn.Conv2d)
def _conv2d(module, path):
    # the same kernel layout (F, C, HH, WW); zero padding
    return tnn.Conv2d(
        module.in_channels,
        module.out_channels,
        module.kernel_size,
        stride=module.stride,
        padding=module.padding,
        dilation=module.dilation,
        groups=module.groups,
        bias=module.bias is not None,
    )


def _pool_options(module) -> dict:
    return {"stride": module.stride, "padding": module.padding, "ceil_mode": module.ceil_mode}


# average pooling counts the zero padding in the mean, torch's count_include_pad=True
_converts(enn.MaxPool2d)(
    lambda module, path: tnn.MaxPool2d(module.kernel_size, **_pool_options(module))
)
_converts(enn.AvgPool2d)(
    lambda module, path: tnn.AvgPool2d(module.kernel_size, **_pool_options(module))
)
_converts(enn.AdaptiveAvgPool2d)(lambda module, path: tnn.AdaptiveAvgPool2d(module.output_size))
_converts(enn.Flatten)(lambda module, path: tnn.Flatten(module.start_dim))
_converts(enn.Unflatten)(lambda module, path: Unflatten(module.shape))


# --- the public functions ----------------------------------------------------------------------
def to_torch_module(model, dtype=None):
    """A torch module that computes what `model` computes, with its weights, buffers and
    train/eval mode; `dtype` defaults to the engine parameters' (float64 -> torch.float64).

    Raises UnsupportedError naming the first layer without a counterpart.
    """
    if dtype is None:
        dtype = _engine_dtype(model)
    # Built on the meta device: nothing is drawn from torch's generator, nothing initialized;
    # every parameter and buffer is then copied from the engine.
    with torch.device("meta"):
        module = _convert(model, "")
    module = module.to_empty(device="cpu").to(dtype)
    copy_weights_to_torch(model, module)
    for path, engine_module in model.named_modules():
        module.get_submodule(path).training = engine_module.training
    return module


def _engine_dtype(model):
    for value in [*model.parameters(), *(b for _, b in model.named_buffers())]:
        if np.issubdtype(value.dtype, np.floating):
            return _TORCH_DTYPES[np.dtype(value.dtype)]
    return torch.float64


def _unwrapped(module):
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    return module.module if isinstance(module, tnn.parallel.DistributedDataParallel) else module


def torch_parameters(module) -> list:
    """The torch parameters in the engine's order: the i-th is model.parameters()[i]'s."""
    return list(_unwrapped(module).parameters())


def transposed_parameters(module) -> list[bool]:
    """For each of torch_parameters(module): whether it is the engine array transposed
    (a Linear's weight, Maxout's included); every other parameter has the engine's layout."""
    return [
        isinstance(owner, tnn.Linear) and name == "weight"
        for owner in _unwrapped(module).modules()
        for name, _ in owner.named_parameters(recurse=False)
    ]


def _pairs(model, module):
    """(engine parameter, torch parameter, transposed) for every parameter, checked 1:1."""
    engine_params = model.parameters()
    params, flags = torch_parameters(module), transposed_parameters(module)
    if len(engine_params) != len(params):
        raise ValueError(
            f"the engine model has {len(engine_params)} parameters, the torch module "
            f"{len(params)}: it was not made from this model"
        )
    names = [name for name, _ in model.named_parameters()]
    for name, engine_param, param, transposed in zip(names, engine_params, params, flags):
        expected = tuple(reversed(engine_param.shape)) if transposed else engine_param.shape
        if tuple(param.shape) != expected:
            raise ValueError(
                f"parameter {name}: engine shape {engine_param.shape} does not match the "
                f"torch shape {tuple(param.shape)}"
            )
    return zip(engine_params, params, flags)


def _buffers(model, module) -> list:
    """(name, engine array, torch buffer) for every engine buffer, matched by name."""
    torch_buffers = dict(_unwrapped(module).named_buffers())
    engine_buffers = dict(model.named_buffers())
    if torch_buffers.keys() != engine_buffers.keys():
        raise ValueError(
            f"the engine model's buffers {sorted(engine_buffers)} are not the torch module's "
            f"{sorted(torch_buffers)}: it was not made from this model"
        )
    return [(name, array, torch_buffers[name]) for name, array in engine_buffers.items()]


def copy_weights_to_torch(model, module) -> None:
    """Copy the engine model's parameters and buffers (running statistics) into `module`."""
    with torch.no_grad():
        for engine_param, param, transposed in _pairs(model, module):
            data = engine_param.data.T if transposed else engine_param.data
            param.copy_(torch.as_tensor(data))
        for _, array, buffer in _buffers(model, module):
            buffer.copy_(torch.as_tensor(np.asarray(array)))


def copy_weights_to_engine(module, model) -> None:
    """Copy `module`'s parameters and buffers back into the engine model (in the engine's
    dtypes; Linear weights transposed back)."""
    with torch.no_grad():
        for engine_param, param, transposed in _pairs(model, module):
            data = param.detach().cpu().numpy()
            engine_param.data = np.array(data.T if transposed else data, dtype=engine_param.dtype)
        for _, array, buffer in _buffers(model, module):
            array[...] = buffer.detach().cpu().numpy()
