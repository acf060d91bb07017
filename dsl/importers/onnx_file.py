"""ONNX files: `import_onnx(path)`.

The file is read with the `onnx` package (protocol buffers: nothing is unpickled, no code
runs). Its nodes are visited in their (topological) order. Values fall into two kinds:

- constants: initializers, `Constant` nodes and whatever is computed from them and from
  shapes (`Shape`, `Gather`, `Concat`, `Unsqueeze`, ...: how exporters spell `x.view(N, -1)`),
  evaluated here with numpy, lazily, so that a pattern can look ahead;
- tensors computed from the input, each an engine layer (or a join) on the graph of layers,
  probed on an example input so that every layer knows the shape it receives.

Exporters write some layers as several nodes; these are recognised as one: MatMul + Add (a
Linear), and Reshape, InstanceNormalization, Reshape, Mul, Add (PyTorch's GroupNorm). Every
other operator without an engine counterpart is refused, all of them in one message that
names each operator and node; nothing is written then.

BatchNormalization's `momentum` is the weight of the OLD running value in ONNX (running =
momentum * running + (1 - momentum) * batch; PyTorch's 0.1 is exported as 0.9), and the weight
of the NEW batch in the engine and PyTorch: the importer converts it (`old_weight_to_new`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from topograd.dsl.importers.common import (
    Imported,
    LayerGraph,
    ModelImportError,
    UnsupportedOperatorError,
    finish,
    float_attribute,
    network_name,
    old_weight_to_new,
    pair,
    require_onnx,
    set_array,
    unsupported,
)
from topograd.dsl.importers.structure import structure
from topograd.engine import nn as enn
from topograd.engine.nn.activations_extra import GELU, LogSoftmax, Softmax

DTYPES = {1: np.dtype(np.float32), 11: np.dtype(np.float64)}  # TensorProto FLOAT, DOUBLE
PROBE_BATCH = 2
"""The batch size of the example input when the file leaves it open."""


def import_onnx(path, *, input_shape=None, name: str | None = None) -> Imported:
    """Read the ONNX file at `path` and translate it into engine layers with its weights.

    `input_shape` is the shape of one example (C, H, W) where the file leaves sizes open
    (beyond the batch axis); the engine model's dtype is the input's (float32 or float64).
    Each BatchNormalization and Dropout keeps the mode the file gives it (`training_mode`).
    Raises UnsupportedOperatorError listing every operator without an engine counterpart,
    and ModelImportError for anything else that cannot be imported.
    """
    onnx = require_onnx()
    path = Path(path)
    try:
        model = onnx.load(str(path))
    except FileNotFoundError:
        raise ModelImportError(f"no such file: {path}") from None
    except Exception as error:  # protobuf's DecodeError and friends: not an ONNX file
        raise ModelImportError(f"cannot read {path} as ONNX: {error}") from None
    opset = next(
        (entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 1
    )
    translator = _Translator(onnx, model.graph, opset, input_shape)
    output = translator.translate()
    module = structure(translator.graph, output)
    producer = model.producer_name or "an unnamed producer"
    version = f" {model.producer_version}" if model.producer_version else ""
    return finish(
        translator.graph,
        module,
        any(translator.graph.modes.values()),  # a graph exported for training
        input_shape=translator.input_shape,
        name=network_name(name or path.stem),
        source=f"the ONNX file {path.name} (opset {opset}, written by {producer}{version})",
    )


CONSTANT_OPS = frozenset(
    {
        "Constant",
        "Identity",
        "Cast",
        "CastLike",
        "Shape",
        "Gather",
        "Unsqueeze",
        "Squeeze",
        "Concat",
        "Reshape",
        "Range",
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Neg",
        "Slice",
        "Expand",
        "ConstantOfShape",
        "Transpose",
    }
)
"""Operators evaluated here when their inputs are constants (shape arithmetic)."""


class _Translator:
    def __init__(self, onnx, graph, opset: int, input_shape):
        self.onnx, self.graph_proto, self.opset = onnx, graph, opset
        self.constants: dict[str, np.ndarray] = {
            tensor.name: onnx.numpy_helper.to_array(tensor) for tensor in graph.initializer
        }
        self.initializers = frozenset(self.constants)
        self.producer = {out: node for node in graph.node for out in node.output if out}
        self.users: dict[str, list] = {}  # tensor name -> the nodes that read its values
        for node in graph.node:
            for name in _value_inputs(node):
                if name:
                    self.users.setdefault(name, []).append(node)
        self.outputs = [value.name for value in graph.output]
        self.values: dict[str, int] = {}  # tensor name -> value id on the graph of layers
        self.done: set[int] = set()  # ids of nodes folded into a pattern already translated
        self.input_name, self.dtype, self.input_shape, example = self.input(input_shape)
        self.values[self.input_name] = 0
        self.graph = LayerGraph(example)

    # --- the input --------------------------------------------------------------------------
    def input(self, override):
        inputs = [v for v in self.graph_proto.input if v.name not in self.constants]
        if len(inputs) != 1:
            names = ", ".join(repr(v.name) for v in inputs) or "none"
            raise ModelImportError(f"the graph must take one input, it takes {names}")
        value = inputs[0]
        kind = value.type.tensor_type
        dtype = DTYPES.get(kind.elem_type)
        if dtype is None:
            raise ModelImportError(
                f"input {value.name!r} has element type "
                f"{self.onnx.TensorProto.DataType.Name(kind.elem_type)}; only FLOAT and "
                "DOUBLE inputs can be imported"
            )
        dims = [d.dim_value if d.HasField("dim_value") else None for d in kind.shape.dim]
        if len(dims) < 2:
            raise ModelImportError(
                f"input {value.name!r} must be a batch (N, ...), its shape has {len(dims)} axes"
            )
        shape = dims[1:]
        if override is not None:
            override = tuple(int(s) for s in override)
            clash = any(d is not None and d != o for d, o in zip(shape, override))
            if len(override) != len(shape) or clash:
                raise ModelImportError(
                    f"input shape {override} does not match the file's {_dims_text(dims)}"
                )
            shape = list(override)
        if any(d is None or d < 1 for d in shape):
            raise ModelImportError(
                f"input {value.name!r} has shape {_dims_text(dims)}: give the size of one "
                "example (--input-shape C,H,W)"
            )
        batch = dims[0] if dims[0] else PROBE_BATCH
        example = np.random.default_rng(0).standard_normal((batch, *shape)).astype(dtype)
        return value.name, dtype, tuple(shape), example

    # --- the walk ---------------------------------------------------------------------------
    def translate(self) -> int:
        self.refuse_unknown()
        for node in self.graph_proto.node:
            if id(node) in self.done:
                continue
            try:
                if self.is_constant(node):
                    self.evaluate(node)
                else:
                    HANDLERS[node.op_type](self, node)
            except ModelImportError:
                raise
            except (ValueError, TypeError, IndexError, KeyError) as error:
                # an engine layer refusing a value, or numpy refusing a constant's shapes
                raise ModelImportError(
                    f"node {_name(node)!r} ({node.op_type}) cannot be translated: {error}"
                ) from None
        if not self.outputs:
            raise ModelImportError("the graph has no output")
        if self.outputs[0] not in self.values:
            raise ModelImportError(f"output {self.outputs[0]!r} does not depend on the input")
        for extra in self.outputs[1:]:
            if not self.running_statistic(extra):
                raise ModelImportError(
                    f"the graph has several outputs ({', '.join(map(repr, self.outputs))}); "
                    "only one can be imported"
                )
        return self.values[self.outputs[0]]

    def refuse_unknown(self) -> None:
        """Every node without a translation, all in one error: a node on the input's path
        needs a handler, a constant one must be evaluable here."""
        computed = {v.name for v in self.graph_proto.input if v.name not in self.constants}
        problems = []
        for node in self.graph_proto.node:
            on_path = any(name in computed for name in _value_inputs(node))
            if on_path:
                computed.update(out for out in node.output if out)
            known = HANDLERS if on_path else CONSTANT_OPS
            if node.domain not in ("", "ai.onnx"):
                problems.append((f"{node.domain}.{node.op_type}", _name(node), None))
            elif node.op_type not in known:
                reason = None if on_path or node.op_type in HANDLERS else "on constants"
                problems.append((node.op_type, _name(node), reason))
        if problems:
            raise UnsupportedOperatorError(problems)

    def is_constant(self, node) -> bool:
        """Whether every value the node reads is a constant (evaluating them if need be)."""
        return all(not name or self.constant(name) is not None for name in _value_inputs(node))

    # --- constants --------------------------------------------------------------------------
    def constant(self, name: str) -> np.ndarray | None:
        """The value of a constant tensor, evaluated on first use; None for a tensor that
        depends on the input."""
        if name in self.constants:
            return self.constants[name]
        if name in self.values:
            return None
        node = self.producer.get(name)
        if node is None or node.op_type not in CONSTANT_OPS:
            return None
        if node.op_type == "Shape" and not (
            node.input[0] in self.values or self.constant(node.input[0]) is not None
        ):
            return None
        if not self.is_constant(node):
            return None
        self.evaluate(node)
        return self.constants.get(name)

    def evaluate(self, node) -> None:
        """Compute a constant node's outputs with numpy."""
        if all(out in self.constants for out in node.output if out):
            return
        op = node.op_type
        a = self.attributes(node)
        x = [self.constant(n) if n else None for n in node.input]
        if op == "Shape":
            shape = np.array(
                self.graph.shape(self.values[node.input[0]])
                if node.input[0] in self.values
                else x[0].shape,
                dtype=np.int64,
            )
            result = shape[a.get("start", 0) : a.get("end", len(shape))]
        elif op == "Constant":
            result = self.constant_attribute(node, a)
        elif op == "Identity":
            result = x[0]
        elif op == "Cast":
            result = x[0].astype(self.onnx.helper.tensor_dtype_to_np_dtype(a["to"]))
        elif op == "CastLike":
            like = x[1] if x[1] is not None else np.empty(0, self.dtype)
            result = x[0].astype(like.dtype)
        elif op == "Gather":
            result = np.take(x[0], x[1], axis=a.get("axis", 0))
        elif op in ("Unsqueeze", "Squeeze"):
            axes = a.get("axes") if len(x) < 2 or x[1] is None else x[1].tolist()
            result = _squeezed(op, x[0], axes)
        elif op == "Concat":
            result = np.concatenate([np.atleast_1d(v) for v in x], axis=a["axis"])
        elif op == "Reshape":
            result = x[0].reshape(_target_shape(x[0].shape, x[1], a.get("allowzero", 0)))
        elif op == "Range":
            result = np.arange(x[0], x[1], x[2]).astype(x[0].dtype)
        elif op in ("Add", "Sub", "Mul", "Div"):
            result = _arithmetic(op, x[0], x[1])
        elif op == "Neg":
            result = -x[0]
        elif op == "Slice":
            result = _slice(x, a)
        elif op == "Expand":
            result = x[0] * np.ones(tuple(x[1].tolist()), dtype=x[0].dtype)
        elif op == "ConstantOfShape":
            fill = a.get("value")
            fill = np.zeros(1, np.float32) if fill is None else fill
            result = np.full(tuple(x[0].tolist()), fill.reshape(-1)[0], dtype=fill.dtype)
        elif op == "Transpose":
            result = np.transpose(x[0], a.get("perm"))
        else:
            raise unsupported(op, _name(node), "on constants")
        self.constants[node.output[0]] = np.asarray(result)

    def constant_attribute(self, node, a) -> np.ndarray:
        for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
            if key in a:
                return np.asarray(a[key])
        raise unsupported("Constant", _name(node), "a constant that is no number or tensor")

    def attributes(self, node) -> dict:
        """The node's attributes as Python values (tensors as numpy arrays)."""
        found = {}
        for attribute in node.attribute:
            value = self.onnx.helper.get_attribute_value(attribute)
            if isinstance(value, self.onnx.TensorProto):
                value = self.onnx.numpy_helper.to_array(value)
            elif isinstance(value, bytes):
                value = value.decode()
            found[attribute.name] = value
        return found

    def origin(self, name: str) -> str:
        """The source's name for a weight: the initializer it comes from through Cast,
        Unsqueeze, Reshape and the like (PyTorch names them after its parameters:
        'layer1.0.conv1.weight'); an Identity's output keeps its own name (PyTorch's exporter
        shares one initializer between equal arrays through Identity nodes named after each)."""
        passes = ("Cast", "CastLike", "Unsqueeze", "Squeeze", "Reshape", "Expand")
        node = self.producer.get(name)
        while node is not None and node.op_type in passes:
            name = node.input[0]
            node = self.producer.get(name)
        return name

    # --- helpers for the handlers -------------------------------------------------------------
    def data(self, node, index=0) -> int:
        name = node.input[index] if len(node.input) > index else ""
        if name not in self.values:
            raise unsupported(node.op_type, _name(node), f"input {index} is no computed tensor")
        return self.values[name]

    def bias(self, node, index) -> np.ndarray | None:
        """An optional bias input; a zero bias that the exporter made up (computed, not
        stored: PyTorch's dynamo exporter writes one for a layer with bias=False) is none."""
        bias = self.weight(node, index, optional=True)
        stored = len(node.input) > index and self.origin(node.input[index]) in self.initializers
        if bias is not None and not stored and not np.any(bias):
            return None
        return bias

    def weight(self, node, index, optional=False) -> np.ndarray | None:
        name = node.input[index] if len(node.input) > index else ""
        if not name:
            if optional:
                return None
            raise unsupported(node.op_type, _name(node), f"input {index} is missing")
        value = self.constant(name)
        if value is None:
            raise unsupported(
                node.op_type, _name(node), f"input {index} ({name!r}) is computed, not a weight"
            )
        return value

    def layer(self, node, module, value=None, training=None) -> None:
        """Append `module` on the node's input; `training` is the mode the file gives it
        (BatchNormalization's and Dropout's training_mode), None for the model's."""
        if value is None:
            value = self.data(node)
        self.values[node.output[0]] = self.graph.layer(
            _name(node), module, value, bool(node.name), training
        )

    def put(self, module, attribute, node, index, array=None, transposed=False) -> None:
        name = node.input[index]
        array = self.weight(node, index) if array is None else array
        set_array(
            module, attribute, array, self.origin(name), transposed=transposed, graph=self.graph
        )

    def only_user(self, name: str, op_type: str):
        """The one node that reads `name` when it is an `op_type` (and `name` is no graph
        output), else None."""
        users = self.users.get(name, [])
        if len(users) == 1 and users[0].op_type == op_type and name not in self.outputs:
            return users[0]
        return None

    def unused(self, node, index: int) -> None:
        """Refuse the node when its extra output `index` (a mask, indices) is read."""
        if len(node.output) > index and node.output[index]:
            name = node.output[index]
            if self.users.get(name) or name in self.outputs:
                raise unsupported(node.op_type, _name(node), f"its output {index} is used")

    def running_statistic(self, name: str) -> bool:
        node = self.producer.get(name)
        return node is not None and node.op_type == "BatchNormalization" and name in node.output[1:]

    def reshape_to(self, node, out_shape) -> None:
        value = self.data(node)
        self.values[node.output[0]] = self.graph.reshape(
            _name(node), value, out_shape, bool(node.name), node.op_type
        )


# --- handlers: one per operator on the input's path ---------------------------------------------
def _alias(t: _Translator, node) -> None:
    t.values[node.output[0]] = t.data(node)


def _cast(t: _Translator, node) -> None:
    target = t.onnx.helper.tensor_dtype_to_np_dtype(t.attributes(node)["to"])
    if np.dtype(target) != t.dtype:
        raise unsupported("Cast", _name(node), f"casts the {t.dtype} values to {np.dtype(target)}")
    _alias(t, node)


def _activation(make):
    def handle(t: _Translator, node) -> None:
        t.layer(node, make(t, node, t.attributes(node)))

    return handle


def _softmax(kind):
    def make(t: _Translator, node, a):
        rank = len(t.graph.shape(t.data(node)))
        axis = a.get("axis", -1 if t.opset >= 13 else 1)
        if t.opset < 13 and axis % rank != rank - 1:
            raise unsupported(
                node.op_type, _name(node), f"opset {t.opset} {node.op_type} over axes {axis}.."
            )
        return kind(axis)

    return _activation(make)


def _gelu(t, node, a):
    return GELU(a.get("approximate", "none"))


def _dropout(t: _Translator, node) -> None:
    t.unused(node, 1)
    a = t.attributes(node)
    ratio = float_attribute(a.get("ratio", 0.5))
    if len(node.input) > 1 and node.input[1]:
        stored = t.weight(node, 1)
        ratio = float_attribute(stored) if stored.dtype == np.float32 else float(stored)
    training = False
    if len(node.input) > 2 and node.input[2]:
        training = bool(t.weight(node, 2))
    t.layer(node, enn.Dropout(ratio), training=training)


def _gemm(t: _Translator, node) -> None:
    a = t.attributes(node)
    if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
        raise unsupported("Gemm", _name(node), "transA, alpha or beta other than 0, 1, 1")
    weight = t.weight(node, 1)
    transposed = bool(a.get("transB", 0))
    matrix = weight.T if transposed else weight
    _linear(t, node, matrix, transposed, t.bias(node, 2), 2)


def _linear(t: _Translator, node, matrix, transposed, bias, bias_index, bias_node=None) -> None:
    """A Linear with `matrix` (in, out) and `bias` (input `bias_index` of `bias_node`)."""
    if matrix.ndim != 2:
        raise unsupported(node.op_type, _name(node), f"a weight of shape {matrix.shape}")
    features = t.graph.shape(t.data(node))[-1]
    if features != matrix.shape[0]:
        raise ModelImportError(
            f"node {_name(node)!r}: its weight takes {matrix.shape[0]} features, the input "
            f"has {features}"
        )
    if bias is not None:
        if bias.size != matrix.shape[1] or bias.ndim > 2:
            raise unsupported(
                node.op_type, _name(node), f"a bias of shape {bias.shape} (not one per output)"
            )
        bias = bias.reshape(-1)
    module = enn.Linear(*matrix.shape, bias=bias is not None, rng=0, dtype=t.dtype)
    t.put(module, "weight", node, 1, matrix, transposed=transposed)
    if bias is not None:
        t.put(module, "bias", bias_node or node, bias_index, bias)
    t.layer(node, module)


def _matmul(t: _Translator, node) -> None:
    """MatMul by a weight, with the Add of a bias that follows it when there is one."""
    matrix = t.weight(node, 1)
    add = t.only_user(node.output[0], "Add")
    bias, bias_index = None, None
    if add is not None:
        other = 1 if add.input[0] == node.output[0] else 0
        candidate = t.constant(add.input[other])
        if candidate is not None and candidate.size == matrix.shape[-1]:
            bias, bias_index = candidate, other
    _linear(t, node, matrix, False, bias, bias_index, add)
    if bias is not None:
        t.done.add(id(add))
        t.values[add.output[0]] = t.values[node.output[0]]


def _add(t: _Translator, node) -> None:
    if not all(name in t.values for name in node.input):
        raise unsupported(node.op_type, _name(node), "adds a constant to a computed tensor")
    values = [t.values[name] for name in node.input]
    t.values[node.output[0]] = t.graph.join(
        _name(node), "add", values, labelled=bool(node.name), op=node.op_type
    )


def _mul(t: _Translator, node) -> None:
    """A product with a constant 1 (exporters scale by it around Elu) is the identity."""
    computed = [name for name in node.input if name in t.values]
    factor = [t.constant(name) for name in node.input if name not in t.values]
    if len(computed) == 1 and len(factor) == 1 and factor[0] is not None:
        shape = t.graph.shape(t.values[computed[0]])
        if np.all(factor[0] == 1) and np.broadcast_shapes(shape, factor[0].shape) == shape:
            t.values[node.output[0]] = t.values[computed[0]]
            return
    raise unsupported("Mul", _name(node), "a product other than with the constant 1")


def _concat(t: _Translator, node) -> None:
    if not all(name in t.values for name in node.input):
        raise unsupported("Concat", _name(node), "joins a constant to a computed tensor")
    axis = t.attributes(node)["axis"]
    values = [t.values[name] for name in node.input]
    t.values[node.output[0]] = t.graph.join(
        _name(node), "concat", values, axis=axis, labelled=bool(node.name), op="Concat"
    )


def _spatial(t: _Translator, node, a, kernel):
    """stride, padding and dilation of a Conv or a pool, PyTorch's way (one int when equal);
    ONNX pads are [top, left, bottom, right] and must be symmetric."""
    where = _name(node)
    auto = a.get("auto_pad", "NOTSET")
    pads = a.get("pads", [0, 0, 0, 0])
    if auto == "VALID":
        pads = [0, 0, 0, 0]
    elif auto != "NOTSET":
        raise unsupported(node.op_type, where, f"auto_pad={auto}")
    if len(pads) != 4 or pads[:2] != pads[2:]:
        raise unsupported(
            node.op_type, where, f"padding {list(pads)} (only the same on both sides)"
        )
    stride = pair(a.get("strides", [1, 1]), "strides", where, node.op_type)
    padding = pair(pads[:2], "pads", where, node.op_type)
    dilation = pair(a.get("dilations", [1, 1]), "dilations", where, node.op_type)
    return pair(kernel, "kernel_shape", where, node.op_type), stride, padding, dilation


def _conv(t: _Translator, node) -> None:
    a = t.attributes(node)
    weight = t.weight(node, 1)
    if weight.ndim != 4:
        raise unsupported("Conv", _name(node), f"a {weight.ndim - 2}-D convolution (only 2-D)")
    kernel, stride, padding, dilation = _spatial(
        t, node, a, a.get("kernel_shape", weight.shape[2:])
    )
    groups = a.get("group", 1)
    channels = t.graph.shape(t.data(node))[1]
    bias = t.bias(node, 2)
    module = enn.Conv2d(
        channels,
        weight.shape[0],
        kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=bias is not None,
        rng=0,
        dtype=t.dtype,
    )
    t.put(module, "weight", node, 1)
    if bias is not None:
        t.put(module, "bias", node, 2)
    t.layer(node, module)


def _batch_norm(t: _Translator, node) -> None:
    a = t.attributes(node)
    for index in (1, 2):  # the updated running statistics: the engine layer keeps its own
        if len(node.output) > index and t.users.get(node.output[index]):
            raise unsupported("BatchNormalization", _name(node), f"its output {index} is used")
    if a.get("spatial", 1) != 1:
        raise unsupported("BatchNormalization", _name(node), "spatial=0 (per-position statistics)")
    value = t.data(node)
    rank = len(t.graph.shape(value))
    kind = {2: enn.BatchNorm1d, 3: enn.BatchNorm1d, 4: enn.BatchNorm2d}.get(rank)
    if kind is None:
        raise unsupported("BatchNormalization", _name(node), f"a {rank}-D input")
    scale = t.weight(node, 1)
    # NOTE: ONNX's momentum weighs the OLD running value, the engine's (PyTorch's) the NEW batch.
    module = kind(
        scale.shape[0],
        eps=float_attribute(a.get("epsilon", 1e-5)),
        momentum=old_weight_to_new(a.get("momentum", 0.9)),
        dtype=t.dtype,
    )
    for attribute, index in (("weight", 1), ("bias", 2), ("running_mean", 3), ("running_var", 4)):
        t.put(module, attribute, node, index)
    t.layer(node, module, value, training=bool(a.get("training_mode", 0)))


def _instance_norm(t: _Translator, node) -> None:
    value = t.data(node)
    if len(t.graph.shape(value)) != 4:
        raise unsupported("InstanceNormalization", _name(node), "an input that is no image")
    scale = t.weight(node, 1)
    module = enn.InstanceNorm2d(
        scale.shape[0],
        eps=float_attribute(t.attributes(node).get("epsilon", 1e-5)),
        affine=True,
        dtype=t.dtype,
    )
    t.put(module, "weight", node, 1)
    t.put(module, "bias", node, 2)
    t.layer(node, module, value)


def _layer_norm(t: _Translator, node) -> None:
    a = t.attributes(node)
    value = t.data(node)
    shape = t.graph.shape(value)
    axis = a.get("axis", -1) % len(shape)
    if axis == 0:
        raise unsupported("LayerNormalization", _name(node), "normalizes over the batch axis")
    normalized = shape[axis:]
    bias = t.weight(node, 2, optional=True)
    if bias is None:
        raise unsupported("LayerNormalization", _name(node), "no bias (the engine's has one)")
    module = enn.LayerNorm(normalized, eps=float_attribute(a.get("epsilon", 1e-5)), dtype=t.dtype)
    t.put(module, "weight", node, 1, t.weight(node, 1).reshape(normalized))
    t.put(module, "bias", node, 2, bias.reshape(normalized))
    t.layer(node, module, value)


def _group_norm_node(t: _Translator, node) -> None:
    a = t.attributes(node)
    value = t.data(node)
    channels = t.graph.shape(value)[1]
    groups = a["num_groups"]
    scale, bias = t.weight(node, 1), t.weight(node, 2)
    if scale.size != channels:
        raise unsupported(
            "GroupNormalization",
            _name(node),
            f"opset {t.opset}'s scale and bias per group ({scale.size}); only per channel",
        )
    module = enn.GroupNorm(
        groups, channels, eps=float_attribute(a.get("epsilon", 1e-5)), dtype=t.dtype
    )
    t.put(module, "weight", node, 1, scale.reshape(channels))
    t.put(module, "bias", node, 2, bias.reshape(channels))
    t.layer(node, module, value)


def _reshape(t: _Translator, node) -> None:
    if _group_norm(t, node):
        return
    value = t.data(node)
    shape = t.weight(node, 1)
    in_shape = t.graph.shape(value)
    target = _target_shape(in_shape, shape, t.attributes(node).get("allowzero", 0))
    t.reshape_to(node, np.empty(in_shape, dtype=np.int8).reshape(target).shape)


def _flatten(t: _Translator, node) -> None:
    shape = t.graph.shape(t.data(node))
    axis = t.attributes(node).get("axis", 1) % max(len(shape), 1)
    t.reshape_to(node, (math.prod(shape[:axis]), math.prod(shape[axis:])))


def _squeeze(t: _Translator, node) -> None:
    shape = t.graph.shape(t.data(node))
    axes = t.attributes(node).get("axes")
    if len(node.input) > 1 and node.input[1]:
        axes = t.weight(node, 1).tolist()
    t.reshape_to(node, _squeezed(node.op_type, np.empty(shape, dtype=np.int8), axes).shape)


def _pool(kind):
    def handle(t: _Translator, node) -> None:
        a = t.attributes(node)
        t.unused(node, 1)
        kernel, stride, padding, dilation = _spatial(t, node, a, a["kernel_shape"])
        if dilation != 1:
            raise unsupported(node.op_type, _name(node), f"dilations {a['dilations']}")
        if kind is enn.AvgPool2d and padding != 0 and not a.get("count_include_pad", 0):
            raise unsupported(
                "AveragePool",
                _name(node),
                "count_include_pad=0 with padding (the engine counts the pad)",
            )
        t.layer(node, kind(kernel, stride, padding, ceil_mode=bool(a.get("ceil_mode", 0))))

    return handle


def _global_average(t: _Translator, node) -> None:
    if len(t.graph.shape(t.data(node))) != 4:
        raise unsupported("GlobalAveragePool", _name(node), "an input that is no image")
    t.layer(node, enn.AdaptiveAvgPool2d(1))


def _reduce_mean(t: _Translator, node) -> None:
    a = t.attributes(node)
    value = t.data(node)
    rank = len(t.graph.shape(value))
    axes = a.get("axes")
    if len(node.input) > 1 and node.input[1]:
        axes = t.weight(node, 1).tolist()
    if rank != 4 or sorted(int(x) % rank for x in (axes or ())) != [2, 3]:
        raise unsupported("ReduceMean", _name(node), "a mean other than over the image axes (2, 3)")
    out = t.graph.layer(_name(node), enn.AdaptiveAvgPool2d(1), value, bool(node.name))
    if not a.get("keepdims", 1):
        out = t.graph.layer(_name(node), enn.Flatten(1), out, bool(node.name))
    t.values[node.output[0]] = out


def _group_norm(t: _Translator, node) -> bool:
    """PyTorch's GroupNorm as exporters write it: Reshape (N, C, ...) -> (N, G, -1),
    InstanceNormalization with scale 1 and bias 0, Reshape back, then Mul by the weight and
    Add the bias (per channel). True when `node` starts that pattern, now one GroupNorm."""
    norm = t.only_user(node.output[0], "InstanceNormalization")
    back = norm and t.only_user(norm.output[0], "Reshape")
    if back is None or node.input[0] not in t.values:
        return False
    value = t.data(node)
    shape = t.graph.shape(value)
    grouped, restored = t.constant(node.input[1]), t.constant(back.input[1])
    scale, shift = t.constant(norm.input[1]), t.constant(norm.input[2])
    if any(v is None for v in (grouped, scale, shift, restored)) or len(shape) < 3:
        return False
    target = _target_shape(shape, grouped, 0)
    groups = target[1] if len(target) == 3 and target[0] == shape[0] else 0
    plain = np.all(scale == 1) and np.all(shift == 0)
    if not groups or shape[1] % groups or not plain or _target_shape(shape, restored, 0) != shape:
        return False
    channels = shape[1]
    eps = float_attribute(t.attributes(norm).get("epsilon", 1e-5))
    parts = [node, norm, back]
    affine = None
    mul = t.only_user(back.output[0], "Mul")
    add = mul and t.only_user(mul.output[0], "Add")
    if add is not None:
        weight_name = next(n for n in mul.input if n != back.output[0])
        bias_name = next(n for n in add.input if n != mul.output[0])
        weight, bias = t.constant(weight_name), t.constant(bias_name)
        if _per_channel(weight, shape) and _per_channel(bias, shape):
            affine = (weight, weight_name, bias, bias_name)
            parts += [mul, add]
    module = enn.GroupNorm(groups, channels, eps=eps, affine=affine is not None, dtype=t.dtype)
    if affine is not None:
        weight, weight_name, bias, bias_name = affine
        set_array(module, "weight", weight.reshape(-1), t.origin(weight_name), graph=t.graph)
        set_array(module, "bias", bias.reshape(-1), t.origin(bias_name), graph=t.graph)
    out = t.graph.layer(_name(norm), module, value, bool(norm.name))
    for part in parts:
        t.done.add(id(part))
        t.values[part.output[0]] = out
    return True


def _per_channel(array, shape) -> bool:
    """Whether `array` broadcasts against `shape` (N, C, ...) as one value per channel."""
    if array is None or array.ndim > len(shape):
        return False
    padded = (1,) * (len(shape) - array.ndim) + array.shape
    return padded[1] == shape[1] and all(size == 1 for i, size in enumerate(padded) if i != 1)


HANDLERS = {
    "Identity": _alias,
    "Cast": _cast,
    "Relu": _activation(lambda t, node, a: enn.ReLU()),
    "LeakyRelu": _activation(
        lambda t, node, a: enn.LeakyReLU(float_attribute(a.get("alpha", 0.01)))
    ),
    "Elu": _activation(lambda t, node, a: enn.ELU(float_attribute(a.get("alpha", 1.0)))),
    "Sigmoid": _activation(lambda t, node, a: enn.Sigmoid()),
    "Tanh": _activation(lambda t, node, a: enn.Tanh()),
    "Gelu": _activation(_gelu),
    "Softmax": _softmax(Softmax),
    "LogSoftmax": _softmax(LogSoftmax),
    "Dropout": _dropout,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Add": _add,
    "Sum": _add,
    "Mul": _mul,
    "Concat": _concat,
    "Conv": _conv,
    "BatchNormalization": _batch_norm,
    "InstanceNormalization": _instance_norm,
    "LayerNormalization": _layer_norm,
    "GroupNormalization": _group_norm_node,
    "MaxPool": _pool(enn.MaxPool2d),
    "AveragePool": _pool(enn.AvgPool2d),
    "GlobalAveragePool": _global_average,
    "ReduceMean": _reduce_mean,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Squeeze": _squeeze,
    "Unsqueeze": _squeeze,
}
"""ONNX operator -> handle(translator, node), for nodes on the input's path."""


# --- numpy helpers -------------------------------------------------------------------------------
def _value_inputs(node) -> list[str]:
    """The inputs whose values the node reads: not Shape's (only its shape) nor CastLike's
    second (only its type)."""
    if node.op_type == "Shape":
        return []
    if node.op_type == "CastLike":
        return list(node.input[:1])
    return list(node.input)


def _name(node) -> str:
    """A node's name, or its first output's when it has none."""
    return node.name or (node.output[0] if node.output else node.op_type)


def _dims_text(dims) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"


def _target_shape(in_shape, shape, allowzero) -> tuple[int, ...]:
    """Reshape's target with ONNX's 0 (copy the input's size, unless allowzero) resolved."""
    target = [int(s) for s in np.asarray(shape).reshape(-1)]
    if not allowzero:
        target = [in_shape[i] if s == 0 and i < len(in_shape) else s for i, s in enumerate(target)]
    if -1 in target:
        known = math.prod(s for s in target if s != -1)
        target[target.index(-1)] = math.prod(in_shape) // known if known else 0
    return tuple(target)


def _squeezed(op, array, axes):
    if op == "Squeeze":
        return np.squeeze(array, axis=None if axes is None else tuple(int(a) for a in axes))
    for axis in sorted(int(a) % (array.ndim + len(axes)) for a in axes):
        array = np.expand_dims(array, axis)
    return array


def _arithmetic(op, x, y):
    if op == "Div" and np.issubdtype(x.dtype, np.integer):
        return np.trunc(x / y).astype(x.dtype)
    function = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op]
    return function(x, y).astype(np.result_type(x, y), copy=False)


def _slice(x, a):
    data = x[0]
    if len(x) > 1:
        starts, ends = x[1].tolist(), x[2].tolist()
        axes = x[3].tolist() if len(x) > 3 and x[3] is not None else list(range(len(starts)))
        steps = x[4].tolist() if len(x) > 4 and x[4] is not None else [1] * len(starts)
    else:
        starts, ends = a["starts"], a["ends"]
        axes, steps = a.get("axes", list(range(len(starts)))), [1] * len(starts)
    index = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        index[axis] = slice(start, end, step)
    return data[tuple(index)]


__all__ = ["CONSTANT_OPS", "HANDLERS", "UnsupportedOperatorError", "import_onnx"]
