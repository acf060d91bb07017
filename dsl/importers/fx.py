"""PyTorch modules through torch.fx: `import_torch(module, example_input)`.

Symbolic tracing records the module's forward as a graph of nodes; it keeps PyTorch's own
layers (Conv2d, BatchNorm2d, Dropout, ...) as single `call_module` nodes, so each becomes the
engine layer of the same name with the same weights, and each keeps its train/eval mode.
Functions and tensor methods (`F.relu`, `torch.cat`, `x + y`, `x.view(x.size(0), -1)`) become
layers or joins too. The traced module runs once on a copy of itself, in evaluation mode, on
the example input: every node's value gives the shapes (a reshape is read from its input and
output shapes) and checks the engine's translation as it is built, layer by layer.

>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU()).double()
>>> imported = import_torch(net, torch.zeros(2, 3, dtype=torch.float64))
>>> imported.module
Sequential(
  (0): Linear(3, 4, bias=True)
  (1): ReLU()
)
>>> imported.sources["0.weight"], "0.weight" in imported.transposed
('0.weight', True)
"""

from __future__ import annotations

import copy
import operator

import numpy as np
from topograd.dsl.importers.common import (
    Imported,
    LayerGraph,
    ModelImportError,
    UnsupportedOperatorError,
    finish,
    network_name,
    pair,
    set_array,
    unsupported,
)
from topograd.dsl.importers.structure import structure
from topograd.dsl.torch_backend import require_torch
from topograd.engine import nn as enn
from topograd.engine.nn.activations_extra import GELU, LogSoftmax, Softmax

torch = require_torch()
tnn = torch.nn
F = torch.nn.functional


def import_torch(module, example_input, *, name: str | None = None) -> Imported:
    """Trace `module` with torch.fx and translate it into engine layers with its weights.

    `example_input` is one batch (N, ...) as the module takes it (a tensor or an array); its
    dtype (float64 or float32) becomes the engine model's. Each engine layer keeps the train
    or eval mode of the PyTorch layer it comes from. Raises UnsupportedOperatorError listing
    every operator without an engine counterpart, and ModelImportError for anything else
    that cannot be imported; nothing is changed in `module`.
    """
    if not isinstance(module, tnn.Module):
        raise TypeError(f"import_torch takes a torch.nn.Module, got {type(module).__name__}")
    example = _example(example_input)
    try:
        traced = torch.fx.symbolic_trace(module)
    except Exception as error:  # tracing runs the user's forward: any error can come out
        raise ModelImportError(
            f"torch.fx cannot trace {type(module).__name__}: {type(error).__name__}: {error}"
        ) from None
    values = _run(traced, example)
    translator = _Translator(module, traced, values, example)
    output = translator.translate()
    model = structure(translator.graph, output)
    owner = type(module)
    return finish(
        translator.graph,
        model,
        module.training,
        input_shape=tuple(example.shape[1:]),
        name=network_name(name or owner.__name__),
        source=f"the PyTorch module {owner.__module__}.{owner.__qualname__}, traced by "
        f"torch.fx on an input of shape {tuple(example.shape)}",
    )


def _example(example_input):
    example = example_input
    if not isinstance(example, torch.Tensor):
        example = torch.as_tensor(np.asarray(example))
    if example.dtype not in (torch.float64, torch.float32):
        raise ModelImportError(f"the example input must be float64 or float32, got {example.dtype}")
    if example.ndim < 2:
        raise ModelImportError(
            f"the example input must be a batch (N, ...), got shape {tuple(example.shape)}"
        )
    return example.detach().cpu()


def _run(traced, example) -> dict:
    """Every node's value when a copy of the traced module runs on `example` in eval mode."""
    values = {}  # node name -> value (the copy's nodes are not the traced module's)

    class Recorder(torch.fx.Interpreter):
        def run_node(self, node):
            values[node.name] = super().run_node(node)
            return values[node.name]

    replica = copy.deepcopy(traced).eval()
    try:
        with torch.no_grad():
            Recorder(replica).run(example)
    except Exception as error:  # the user's forward on the example input
        raise ModelImportError(
            f"the module does not run on the example input of shape {tuple(example.shape)}: "
            f"{type(error).__name__}: {error}"
        ) from None
    return values


# --- the node tables ----------------------------------------------------------------------------
def _arg(node, index: int, name: str, default=None):
    """A call's argument by position or keyword."""
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _function_name(target) -> str:
    module = getattr(target, "__module__", None) or "torch"
    module = {"_operator": "operator", "torch._C._nn": "torch.nn.functional"}.get(module, module)
    return f"{module}.{getattr(target, '__name__', repr(target))}"


class _Translator:
    def __init__(self, root, traced, values, example):
        self.root, self.traced, self.values = root, traced, values
        self.dtype = example.numpy().dtype
        self.graph = LayerGraph(example.numpy())
        self.ids: dict = {}  # fx node -> value id

    def translate(self) -> int:
        self.refuse_unknown()
        output = None
        for node in self.traced.graph.nodes:
            if node.op == "placeholder":
                if self.ids:
                    raise ModelImportError(
                        f"{type(self.root).__name__}.forward takes more than one input "
                        f"({node.name!r}); only one can be imported"
                    )
                self.ids[node] = 0
            elif node.op == "output":
                output = self.output(node)
            elif isinstance(self.values[node.name], torch.Tensor):
                try:
                    self.ids[node] = self.node(node)
                except ModelImportError:
                    raise
                except (ValueError, TypeError) as error:  # an engine layer refusing a value
                    raise ModelImportError(
                        f"node {self.where(node)!r} ({self.op_name(node)}) cannot be "
                        f"translated: {error}"
                    ) from None
                self.check(node)
        return output

    def refuse_unknown(self) -> None:
        """Every node whose operator has no translation, all in one error. Nodes that only
        compute with constants (`x.size(0)`, `x.shape[1]`) need none, and unpacking what a
        refused node returns (`out, state = self.lstm(x)`) is not named again."""
        problems, refused = [], set()
        for node in self.traced.graph.nodes:
            if node.op in ("placeholder", "output"):
                continue
            if node.op == "call_module":
                known = type(self.traced.get_submodule(node.target)) in MODULES
            elif node.op == "call_function":
                known = node.target in FUNCTIONS
            elif node.op == "call_method":
                known = node.target in METHODS
            else:
                known = False
            if known or not _holds_tensor(self.values.get(node.name)):
                continue
            refused.add(node)
            if node.target is operator.getitem and set(node.all_input_nodes) & refused:
                continue  # unpacking what a refused node returned: named there already
            reason = "a parameter used directly in forward" if node.op == "get_attr" else None
            problems.append((self.op_name(node), self.where(node), reason))
        if problems:
            raise UnsupportedOperatorError(problems)

    def op_name(self, node) -> str:
        if node.op == "call_module":
            return type(self.traced.get_submodule(node.target)).__name__
        if node.op == "call_method":
            return f"Tensor.{node.target}"
        if node.op == "call_function" and node.target is getattr:
            return f"Tensor.{node.args[1]}"  # an attribute that is a tensor: x.T, x.mT
        if node.op == "call_function":
            return _function_name(node.target)
        return node.op

    def where(self, node) -> str:
        return node.target if node.op == "call_module" else node.name

    def output(self, node) -> int:
        result = node.args[0]
        if not isinstance(result, torch.fx.Node) or result not in self.ids:
            raise ModelImportError(
                f"{type(self.root).__name__}.forward must return one tensor, got "
                f"{type(self.values.get(getattr(result, 'name', None), result)).__name__}"
            )
        return self.ids[result]

    def node(self, node) -> int:
        if node.op == "call_module":
            layer = self.traced.get_submodule(node.target)
            return MODULES[type(layer)](self, node, layer)
        if node.op == "call_function":
            return FUNCTIONS[node.target](self, node)
        return METHODS[node.target](self, node)

    def check(self, node) -> None:
        """The engine's value for `node` against PyTorch's (both in eval mode)."""
        expected = self.values[node.name].detach().numpy()
        got = self.graph.probes[self.ids[node]]
        if got.shape != expected.shape:
            raise ModelImportError(
                f"node {self.where(node)!r}: the engine computes shape {got.shape}, PyTorch "
                f"{expected.shape}"
            )
        scale = 1.0 + float(np.abs(expected).max(initial=0.0))
        tolerance = (1e-9 if self.dtype == np.float64 else 1e-4) * scale
        difference = float(np.abs(got - expected).max(initial=0.0))
        if not difference <= tolerance:
            raise ModelImportError(
                f"node {self.where(node)!r} ({self.op_name(node)}): the engine's value differs "
                f"from PyTorch's by {difference:.3g}; the translation does not hold"
            )

    # --- helpers for the tables -----------------------------------------------------------
    def input_of(self, node, index=0) -> int:
        """The value id of the node's tensor argument `index` (the first by default)."""
        argument = node.args[index] if len(node.args) > index else None
        if not isinstance(argument, torch.fx.Node) or argument not in self.ids:
            raise unsupported(self.op_name(node), self.where(node), "its input is no tensor")
        return self.ids[argument]

    def only_tensor(self, node) -> int:
        """The single tensor the node reads; a second one is refused."""
        tensors = [a for a in _flat(node.args, node.kwargs) if a in self.ids]
        if len(tensors) != 1:
            raise unsupported(
                self.op_name(node), self.where(node), f"takes {len(tensors)} tensors, not one"
            )
        return self.ids[tensors[0]]

    def layer(self, node, module, value=None, mode=None) -> int:
        """Append `module` (in `mode`, else the root module's) applied to the node's input."""
        value = self.only_tensor(node) if value is None else value
        return self.graph.layer(self.where(node), module, value, _named(node), mode)

    def reshaped(self, node) -> int:
        """A reshape, flatten or view, read from its input's and its output's shapes."""
        value = self.only_tensor(node)
        shape = tuple(self.values[node.name].shape)
        return self.graph.reshape(self.where(node), value, shape, _named(node), self.op_name(node))

    def params(self, module, layer, node, names, transposed=()) -> None:
        """Copy the PyTorch layer's parameters and buffers `names` into `module`."""
        for attribute in names:
            array = getattr(layer, attribute).detach().cpu().numpy()
            if attribute in transposed:
                array = array.T
            set_array(
                module,
                attribute,
                array,
                f"{node.target}.{attribute}",
                transposed=attribute in transposed,
                graph=self.graph,
            )


def _named(node) -> bool:
    """Whether the node's name is worth a label: a PyTorch layer's path ('layer1.0.conv1'),
    not a name fx made up for a function call ('relu_3')."""
    return node.op == "call_module"


def _flat(args, kwargs):
    for item in [*args, *kwargs.values()]:
        if isinstance(item, list | tuple):
            yield from item
        else:
            yield item


def _holds_tensor(value) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, list | tuple):
        return any(_holds_tensor(item) for item in value)
    return False


# --- PyTorch layers -----------------------------------------------------------------------------
def _linear(t: _Translator, node, layer) -> int:
    module = enn.Linear(
        layer.in_features, layer.out_features, bias=layer.bias is not None, rng=0, dtype=t.dtype
    )
    names = ("weight", "bias") if layer.bias is not None else ("weight",)
    t.params(module, layer, node, names, transposed=("weight",))
    return t.layer(node, module, mode=layer.training)


def _conv2d(t: _Translator, node, layer) -> int:
    name = node.target
    if layer.padding_mode != "zeros":
        raise unsupported("Conv2d", name, f"padding_mode={layer.padding_mode!r} (only 'zeros')")
    padding = layer.padding
    if isinstance(padding, str):
        # [left, right, top, bottom]: PyTorch's split of 'same' padding
        left, right, top, bottom = layer._reversed_padding_repeated_twice
        if left != right or top != bottom:
            raise unsupported("Conv2d", name, "padding='same' that pads one side more")
        padding = (top, left)
    module = enn.Conv2d(
        layer.in_channels,
        layer.out_channels,
        pair(layer.kernel_size, "kernel_size", name, "Conv2d"),
        stride=pair(layer.stride, "stride", name, "Conv2d"),
        padding=pair(padding, "padding", name, "Conv2d"),
        dilation=pair(layer.dilation, "dilation", name, "Conv2d"),
        groups=layer.groups,
        bias=layer.bias is not None,
        rng=0,
        dtype=t.dtype,
    )
    t.params(module, layer, node, ("weight", "bias") if layer.bias is not None else ("weight",))
    return t.layer(node, module, mode=layer.training)


def _batch_norm(kind):
    def translate(t: _Translator, node, layer) -> int:
        module = kind(
            layer.num_features,
            eps=layer.eps,
            momentum=layer.momentum,  # PyTorch's convention is the engine's (the new batch)
            affine=layer.affine,
            track_running_stats=layer.track_running_stats,
            dtype=t.dtype,
        )
        names = ("weight", "bias") if layer.affine else ()
        if layer.track_running_stats:
            names += ("running_mean", "running_var", "num_batches_tracked")
        t.params(module, layer, node, names)
        return t.layer(node, module, mode=layer.training)

    return translate


def _layer_norm(t: _Translator, node, layer) -> int:
    affine = layer.elementwise_affine
    if affine and layer.bias is None:
        raise unsupported("LayerNorm", node.target, "bias=False (the engine's has a bias)")
    module = enn.LayerNorm(
        tuple(layer.normalized_shape), eps=layer.eps, elementwise_affine=affine, dtype=t.dtype
    )
    t.params(module, layer, node, ("weight", "bias") if affine else ())
    return t.layer(node, module, mode=layer.training)


def _group_norm(t: _Translator, node, layer) -> int:
    module = enn.GroupNorm(
        layer.num_groups, layer.num_channels, eps=layer.eps, affine=layer.affine, dtype=t.dtype
    )
    t.params(module, layer, node, ("weight", "bias") if layer.affine else ())
    return t.layer(node, module, mode=layer.training)


def _simple(make):
    """A layer without weights made from the PyTorch layer by `make(layer, node)`."""

    def translate(t: _Translator, node, layer) -> int:
        return t.layer(node, make(layer, node), mode=layer.training)

    return translate


def _softmax_dim(layer, node, kind):
    if layer.dim is None:
        raise unsupported(type(layer).__name__, node.target, "dim=None (give the axis)")
    return kind(layer.dim)


def _max_pool(layer, node):
    if (
        layer.return_indices
        or pair(_two(layer.dilation), "dilation", node.target, "MaxPool2d") != 1
    ):
        raise unsupported("MaxPool2d", node.target, "dilation or return_indices")
    return _pool(
        enn.MaxPool2d, layer.kernel_size, layer.stride, layer.padding, layer.ceil_mode, node.target
    )


def _avg_pool(layer, node):
    _check_avg(layer.count_include_pad, layer.padding, layer.divisor_override, node.target)
    return _pool(
        enn.AvgPool2d, layer.kernel_size, layer.stride, layer.padding, layer.ceil_mode, node.target
    )


def _check_avg(count_include_pad, padding, divisor_override, where):
    if divisor_override is not None:
        raise unsupported("AvgPool2d", where, "divisor_override")
    if not count_include_pad and max(_two(padding)) > 0:
        raise unsupported(
            "AvgPool2d", where, "count_include_pad=False with padding (the engine counts the pad)"
        )


def _two(value):
    return tuple(value) if isinstance(value, list | tuple) else (value, value)


def _pool(kind, kernel_size, stride, padding, ceil_mode, where):
    name = kind.__name__
    kernel = pair(_two(kernel_size), "kernel_size", where, name)
    stride = kernel if stride is None or stride == [] else pair(_two(stride), "stride", where, name)
    return kind(
        kernel, stride, pair(_two(padding), "padding", where, name), ceil_mode=bool(ceil_mode)
    )


def _adaptive(layer, node):
    if _two(layer.output_size) != (1, 1):
        raise unsupported(
            "AdaptiveAvgPool2d", node.target, f"output_size {layer.output_size} (only 1)"
        )
    return enn.AdaptiveAvgPool2d(1)


def _reshape_layer(t: _Translator, node, layer) -> int:
    return t.reshaped(node)


def _identity(t: _Translator, node, layer=None) -> int:
    return t.only_tensor(node)


MODULES = {
    tnn.Linear: _linear,
    tnn.Conv2d: _conv2d,
    tnn.BatchNorm1d: _batch_norm(enn.BatchNorm1d),
    tnn.BatchNorm2d: _batch_norm(enn.BatchNorm2d),
    tnn.LayerNorm: _layer_norm,
    tnn.GroupNorm: _group_norm,
    tnn.ReLU: _simple(lambda layer, node: enn.ReLU()),
    tnn.LeakyReLU: _simple(lambda layer, node: enn.LeakyReLU(layer.negative_slope)),
    tnn.ELU: _simple(lambda layer, node: enn.ELU(layer.alpha)),
    tnn.Sigmoid: _simple(lambda layer, node: enn.Sigmoid()),
    tnn.Tanh: _simple(lambda layer, node: enn.Tanh()),
    tnn.GELU: _simple(lambda layer, node: GELU(layer.approximate)),
    tnn.Softmax: _simple(lambda layer, node: _softmax_dim(layer, node, Softmax)),
    tnn.LogSoftmax: _simple(lambda layer, node: _softmax_dim(layer, node, LogSoftmax)),
    tnn.Dropout: _simple(lambda layer, node: enn.Dropout(layer.p)),
    tnn.MaxPool2d: _simple(_max_pool),
    tnn.AvgPool2d: _simple(_avg_pool),
    tnn.AdaptiveAvgPool2d: _simple(_adaptive),
    tnn.Flatten: _reshape_layer,
    tnn.Unflatten: _reshape_layer,
    tnn.Identity: _identity,
}
"""PyTorch layer class -> translate(translator, node, layer) -> the output's value id."""


# --- functions and tensor methods ---------------------------------------------------------------
def _activation(make):
    def translate(t: _Translator, node) -> int:
        return t.layer(node, make(node))

    return translate


def _add(t: _Translator, node) -> int:
    if _arg(node, 2, "alpha", 1) != 1:
        raise unsupported(t.op_name(node), node.name, "alpha != 1")
    first, second = node.args[0], node.args[1] if len(node.args) > 1 else node.kwargs.get("other")
    if not (first in t.ids and second in t.ids):
        raise unsupported(t.op_name(node), node.name, "adds a constant to a tensor")
    values = (t.ids[first], t.ids[second])
    return t.graph.join(node.name, "add", values, labelled=False, op=t.op_name(node))


def _cat(t: _Translator, node) -> int:
    tensors = _arg(node, 0, "tensors")
    if not all(item in t.ids for item in tensors):
        raise unsupported(t.op_name(node), node.name, "joins a constant")
    dim = _arg(node, 1, "dim", 0)
    values = [t.ids[item] for item in tensors]
    return t.graph.join(node.name, "concat", values, axis=dim, labelled=False, op=t.op_name(node))


def _mean(t: _Translator, node) -> int:
    """The mean over the two image axes: global average pooling (then flattened unless the
    axes are kept)."""
    value = t.input_of(node)
    rank = len(t.graph.shape(value))
    dims = _arg(node, 1, "dim")
    dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
    if rank != 4 or sorted(d % rank for d in dims) != [2, 3]:
        raise unsupported(
            t.op_name(node), node.name, "a mean other than over the image axes (2, 3)"
        )
    value = t.graph.layer(node.name, enn.AdaptiveAvgPool2d(1), value, labelled=False)
    if not _arg(node, 2, "keepdim", False):
        value = t.graph.layer(node.name, enn.Flatten(1), value, labelled=False)
    return value


def _f_softmax(kind):
    def make(node):
        dim = _arg(node, 1, "dim")
        if dim is None:
            raise unsupported(kind.__name__.lower(), node.name, "dim=None (give the axis)")
        return kind(dim)

    return _activation(make)


def _f_dropout(t: _Translator, node) -> int:
    module = enn.Dropout(_arg(node, 1, "p", 0.5))
    return t.layer(node, module, mode=bool(_arg(node, 2, "training", True)))


def _f_max_pool(t: _Translator, node) -> int:
    dilation = _arg(node, 4, "dilation", 1)
    if _arg(node, 6, "return_indices", False) or _two(dilation) != (1, 1):
        raise unsupported(t.op_name(node), node.name, "dilation or return_indices")
    module = _pool(
        enn.MaxPool2d,
        _arg(node, 1, "kernel_size"),
        _arg(node, 2, "stride"),
        _arg(node, 3, "padding", 0),
        _arg(node, 5, "ceil_mode", False),
        node.name,
    )
    return t.layer(node, module)


def _f_avg_pool(t: _Translator, node) -> int:
    padding = _arg(node, 3, "padding", 0)
    _check_avg(
        _arg(node, 5, "count_include_pad", True),
        padding,
        _arg(node, 6, "divisor_override"),
        node.name,
    )
    module = _pool(
        enn.AvgPool2d,
        _arg(node, 1, "kernel_size"),
        _arg(node, 2, "stride"),
        padding,
        _arg(node, 4, "ceil_mode", False),
        node.name,
    )
    return t.layer(node, module)


def _f_adaptive(t: _Translator, node) -> int:
    size = _arg(node, 1, "output_size")
    if _two(size) != (1, 1):
        raise unsupported(t.op_name(node), node.name, f"output_size {size} (only 1)")
    return t.layer(node, enn.AdaptiveAvgPool2d(1))


def _f_reshape(t: _Translator, node) -> int:
    return t.reshaped(node)


_RELU = _activation(lambda node: enn.ReLU())
_SIGMOID = _activation(lambda node: enn.Sigmoid())
_TANH = _activation(lambda node: enn.Tanh())

FUNCTIONS = {
    torch.relu: _RELU,
    F.relu: _RELU,
    torch.sigmoid: _SIGMOID,
    F.sigmoid: _SIGMOID,
    torch.tanh: _TANH,
    F.tanh: _TANH,
    F.leaky_relu: _activation(lambda node: enn.LeakyReLU(_arg(node, 1, "negative_slope", 0.01))),
    F.elu: _activation(lambda node: enn.ELU(_arg(node, 1, "alpha", 1.0))),
    F.gelu: _activation(lambda node: GELU(_arg(node, 1, "approximate", "none"))),
    F.softmax: _f_softmax(Softmax),
    torch.softmax: _f_softmax(Softmax),
    F.log_softmax: _f_softmax(LogSoftmax),
    torch.log_softmax: _f_softmax(LogSoftmax),
    F.dropout: _f_dropout,
    F.max_pool2d: _f_max_pool,
    F.avg_pool2d: _f_avg_pool,
    F.adaptive_avg_pool2d: _f_adaptive,
    torch.flatten: _f_reshape,
    torch.reshape: _f_reshape,
    torch.mean: _mean,
    torch.cat: _cat,
    torch.concat: _cat,
    operator.add: _add,
    operator.iadd: _add,
    torch.add: _add,
}
"""Function -> translate(translator, node) -> the output's value id."""

METHODS = {
    "relu": _RELU,
    "sigmoid": _SIGMOID,
    "tanh": _TANH,
    "softmax": _f_softmax(Softmax),
    "log_softmax": _f_softmax(LogSoftmax),
    "view": _f_reshape,
    "reshape": _f_reshape,
    "flatten": _f_reshape,
    "contiguous": _identity,
    "mean": _mean,
    "add": _add,
}
"""Tensor method name -> translate(translator, node) -> the output's value id."""


__all__ = ["FUNCTIONS", "METHODS", "MODULES", "UnsupportedOperatorError", "import_torch"]
