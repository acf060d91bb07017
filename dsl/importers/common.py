"""What the two importers share: the errors, the result, the graph of layers they both build,
and the translations that do not depend on where a model came from (reshapes, float
attributes, labels).

Each importer walks its source graph (torch.fx nodes, ONNX nodes) once and turns every
operator into engine layers on a `LayerGraph`: a layer takes one value, a join (`add`,
`concat`) several. `dsl.importers.structure` then folds that graph into the nested
Sequential, Residual, Concat and Merge modules that a model file can say.
"""

from __future__ import annotations

import importlib
import keyword
import re
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
from topograd.engine import Tensor, no_grad
from topograd.engine import nn as enn

ONNX_HINT = "pip install 'topograd[onnx]' (or: pip install onnx)"

# Words the model language reads as keywords or constants: never used as a layer label.
RESERVED = frozenset(
    {
        "let",
        "graph",
        "network",
        "input",
        "param",
        "output",
        "repeat",
        "shortcut",
        "data",
        "train",
        "search",
        "lr_range_test",
        "true",
        "false",
        "none",
        "inf",
    }
)


class ModelImportError(ValueError):
    """A model that cannot be imported; the message says why, naming the node."""


class UnsupportedOperatorError(ModelImportError):
    """Operators with no engine counterpart: `problems` lists (operator, node, reason) for
    each, and the message has one line per problem."""

    def __init__(self, problems):
        self.problems = tuple(problems)
        lines = [
            f"unsupported operator {op!r} at node {node!r}" + (f": {reason}" if reason else "")
            for op, node, reason in self.problems
        ]
        super().__init__("\n".join(lines))


def unsupported(op: str, node: str, reason: str | None = None) -> UnsupportedOperatorError:
    """One refused operator, as an error to raise."""
    return UnsupportedOperatorError([(op, node, reason)])


def require_onnx():
    """The onnx module, or ModelImportError with the install command."""
    try:
        return importlib.import_module("onnx")
    except ImportError:
        raise ModelImportError(f"the onnx package is not installed: {ONNX_HINT}") from None


@dataclass
class Imported:
    """An imported model: the engine module, the shape of one example, a name for it, where
    it came from, and for each engine parameter and buffer the source's name for it
    (`transposed` lists those stored the other way round: a Linear's weight)."""

    module: enn.Sequential
    input_shape: tuple[int, ...]
    name: str
    source: str
    sources: dict[str, str] = field(default_factory=dict)
    transposed: frozenset[str] = frozenset()


# --- the graph of layers ----------------------------------------------------------------------
@dataclass
class Step:
    """One layer (a module of one input) or one join of several values (`join` is "add" or
    "concat", along `axis`), named after the source node that made it; `labelled` says
    whether that name is worth showing (a layer's path, not a generated `relu_3`)."""

    name: str
    inputs: tuple[int, ...]
    output: int
    module: enn.Module | None = None
    join: str | None = None
    axis: int = 1
    labelled: bool = True


class LayerGraph:
    """Values (ids; 0 is the network's input) joined by steps, in the order they run.

    Every value keeps a probe: what the engine computes for it from an example input, in
    evaluation mode (no running statistics change, no unit is dropped), so that each new
    layer is built for the shape it will see and a reshape is told by the shapes around it.
    `origins` records, for each parameter and buffer array, the source's name for it, and
    `modes` the train/eval mode of each layer whose source says it.
    """

    def __init__(self, example: np.ndarray):
        self.steps: list[Step] = []
        self.probes: dict[int, np.ndarray] = {0: np.asarray(example)}
        self.origins: dict[int, tuple[str, bool]] = {}  # id(array or Parameter) -> origin
        self.modes: dict[int, bool] = {}  # id(module) -> its source's train/eval mode

    @property
    def output(self) -> int:
        return self.steps[-1].output if self.steps else 0

    def shape(self, value: int) -> tuple[int, ...]:
        return tuple(self.probes[value].shape)

    def dtype(self, value: int) -> np.dtype:
        return self.probes[value].dtype

    def layer(
        self, name: str, module: enn.Module, value: int, labelled: bool = True, mode=None
    ) -> int:
        """Append `module` applied to `value`; its output's id. `mode` is the train/eval mode
        its source gives it (None: the model's). The module is probed on the input's probe,
        and a ValueError it raises names the source node."""
        if mode is not None:
            self.modes[id(module)] = bool(mode)
        module.train(False)
        try:
            with no_grad():
                out = module(Tensor(self.probes[value], dtype=self.probes[value].dtype))
        except (ValueError, TypeError) as error:
            raise ModelImportError(
                f"node {name!r}: the engine's {type(module).__name__} refuses its input of "
                f"shape {self.shape(value)}: {error}"
            ) from None
        step = Step(name, (value,), -1, module=module, labelled=labelled)
        return self._append(step, out.data)

    def join(
        self, name: str, mode: str, values, axis: int = 1, labelled: bool = True, op=None
    ) -> int:
        """Append the sum (mode "add") or the concatenation along `axis` of `values`; `op`
        is the source's operator (for messages)."""
        op = op or mode
        values = tuple(values)
        shapes = [self.shape(v) for v in values]
        if mode == "add":
            if any(s != shapes[0] for s in shapes):
                raise unsupported(
                    op, name, f"adds shapes {' and '.join(map(str, shapes))} (broadcasting)"
                )
            out = self.probes[values[0]]
            for value in values[1:]:
                out = out + self.probes[value]
        else:
            rank = len(shapes[0])
            axis = axis % rank if rank else axis
            if axis != 1:
                raise unsupported(
                    op,
                    name,
                    f"joins along axis {axis}; only the channel or feature axis (1) can be joined",
                )
            if any(
                len(s) != rank or s[:1] + s[2:] != shapes[0][:1] + shapes[0][2:] for s in shapes
            ):
                raise unsupported(op, name, f"joins shapes {shapes}")
            out = np.concatenate([self.probes[v] for v in values], axis=1)
        return self._append(Step(name, values, -1, join=mode, axis=axis, labelled=labelled), out)

    def reshape(self, name: str, value: int, out_shape, labelled: bool = True, op=None) -> int:
        """The layers that turn `value` into `out_shape` (the batch axis kept): Flatten,
        Unflatten, or both; nothing when the shape does not change. `op` is the source's
        operator (for messages)."""
        in_shape, out_shape = self.shape(value), tuple(int(s) for s in out_shape)
        if out_shape == in_shape:
            return value
        if not out_shape or not in_shape or out_shape[0] != in_shape[0]:
            raise unsupported(
                op or "reshape",
                name,
                f"reshapes {in_shape} to {out_shape}; only reshapes that keep the batch axis "
                "(the first) can be imported",
            )
        if len(in_shape) > 2:
            value = self.layer(name, enn.Flatten(1), value, labelled)
        if len(out_shape) > 2:
            value = self.layer(name, enn.Unflatten(out_shape[1:]), value, labelled)
        return value

    def _append(self, step: Step, out: np.ndarray) -> int:
        step.output = len(self.probes)
        self.probes[step.output] = np.asarray(out)
        self.steps.append(step)
        return step.output


def set_array(module: enn.Module, attribute: str, array, origin: str, *, transposed=False, graph):
    """Copy `array` into the module's parameter or buffer `attribute` (its shape checked), and
    record where it came from."""
    current = getattr(module, attribute)
    array = np.asarray(array)
    if tuple(array.shape) != tuple(np.shape(current)):
        raise ModelImportError(
            f"{origin}: shape {tuple(array.shape)} does not fit {type(module).__name__}."
            f"{attribute} of shape {tuple(np.shape(current))}"
        )
    if isinstance(current, enn.Parameter):
        current.data = array
    else:
        current[...] = array
    graph.origins[id(current)] = (origin, transposed)


def finish(graph: LayerGraph, module: enn.Module, training: bool, **fields) -> Imported:
    """The Imported record: each module in the mode its source gave it (the others, blocks
    and layers without a mode of their own, in `training`), and each parameter's and
    buffer's origin by its engine name."""
    for part in module.modules():
        object.__setattr__(part, "training", graph.modes.get(id(part), training))
    sources, transposed = {}, set()
    named = [*module.named_parameters(), *module.named_buffers()]
    for name, value in named:
        origin = graph.origins.get(id(value))
        if origin is not None:
            sources[name] = origin[0]
            if origin[1]:
                transposed.add(name)
    return Imported(module, sources=sources, transposed=frozenset(transposed), **fields)


# --- small translations ----------------------------------------------------------------------
def float_attribute(value) -> float:
    """A float stored as float32 (every ONNX float attribute) read back as the shortest
    decimal that rounds to it: 0.8999999761581421 is 0.9, 9.999999747378752e-06 is 1e-05."""
    return float(str(np.float32(value)))


def old_weight_to_new(momentum) -> float:
    """ONNX's BatchNormalization momentum (the weight of the OLD running value: running =
    momentum * running + (1 - momentum) * batch) as the engine's and PyTorch's (the weight
    of the NEW batch): 1 - momentum, computed in decimal so that 0.9 gives exactly 0.1."""
    return float(Decimal(1) - Decimal(str(np.float32(momentum))))


def pair(values, what: str, node: str, op: str) -> int | tuple[int, int]:
    """Two per-axis sizes as one int when equal (PyTorch's way of writing them)."""
    values = tuple(int(v) for v in values)
    if len(values) != 2:
        raise unsupported(op, node, f"{what} {list(values)}: only 2-D images are supported")
    return values[0] if values[0] == values[1] else values


def label(text: str) -> str:
    """A layer label for the model language from a source name ('/layer1/0/conv1/Conv',
    'layer1.0.conv1'): letters, digits and underscores, not starting with a digit, and no
    keyword of the language or of Python."""
    cleaned = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_") or "layer"
    if cleaned[0].isdigit():
        cleaned = f"n{cleaned}"
    if cleaned in RESERVED or keyword.iskeyword(cleaned):
        cleaned = f"{cleaned}_"
    return cleaned


def network_name(text: str) -> str:
    """A network name from a file's stem or a class name."""
    return label(text)
