"""What the model file says about each box of the window: its layer's caption, and the lines
that made it (both ways: a node's lines, a line's nodes).

A network's layers come with their source positions (`LayerSpec.pos`) and engine paths
(`NetworkSpec.paths()`: the file's labels in place of indexes, the network's name in front);
a graph file's nodes are named by its lines. Plain Python, no Qt: the window asks, the editor
and the scene show.

>>> from topograd.dsl.spec import LayerSpec
>>> fc1 = LayerSpec("linear", {"in_features": 64, "out_features": 256}, "fc1", (64,), (256,))
>>> layer_info(fc1).caption("Linear")
'fc1 Linear 64→256'
"""

from __future__ import annotations

from collections.abc import Iterable

from topograd.dsl.spec import LayerSpec, NetworkSpec, Spec
from topograd.engine.graph import shape_text
from topograd.gui.model import (
    GROUP_PREFIX,
    INPUTS,
    LOSS_PATH,
    OUTPUTS,
    PENALTY_PATH,
    GraphView,
    LayerInfo,
)

Lines = tuple[int, int]  # first and last line, 1-based


def _size(value) -> str:
    """A kernel or window size: 3 -> '3x3', (3, 1) -> '3x1'."""
    if isinstance(value, (tuple, list)):
        return "x".join(str(v) for v in value)
    return f"{value}x{value}"


def detail(layer: LayerSpec) -> str:
    """The sizes that tell a layer apart: '64→256', '1→16 3x3', '256', 'p=0.2', '2x2';
    '' for a layer with nothing to size (relu)."""
    kwargs = layer.kwargs
    stride = kwargs.get("stride", 1)
    strided = f" /{stride}" if stride not in (1, None) and not isinstance(stride, tuple) else ""
    if "in_features" in kwargs and "out_features" in kwargs:
        return f"{kwargs['in_features']}→{kwargs['out_features']}"
    if "in_channels" in kwargs and "out_channels" in kwargs:
        kernel = f" {_size(kwargs['kernel_size'])}" if "kernel_size" in kwargs else ""
        return f"{kwargs['in_channels']}→{kwargs['out_channels']}{kernel}{strided}"
    if "num_features" in kwargs:
        return str(kwargs["num_features"])
    if "p" in kwargs:
        return f"p={kwargs['p']:.3g}"
    if "kernel_size" in kwargs:
        return _size(kwargs["kernel_size"]) + strided
    if "output_size" in kwargs:
        return f"→{_size(kwargs['output_size'])}"
    if not layer.is_block and layer.in_shape and layer.in_shape != layer.out_shape:
        return f"{shape_text(layer.in_shape)}→{shape_text(layer.out_shape)}"
    return ""


def kind_name(layer: LayerSpec) -> str:
    """The layer's kind as the engine's class would say it, from its registry name."""
    return "".join(part.capitalize() for part in layer.kind.split("_"))


def layer_info(layer: LayerSpec) -> LayerInfo:
    """Its label, kind and sizes: 'fc1 Linear 64→256', 'BatchNorm1d 256', 'ReLU'."""
    return LayerInfo(kind_name(layer), layer.label, detail(layer))


def network_layers(network: NetworkSpec) -> dict[str, LayerInfo]:
    """Engine path ('digits_mlp.fc1') -> LayerInfo for every layer of the network (and, for
    a scalar network, for the groups of the scalars of x and of the tensor of outputs that
    the network makes itself)."""
    found = {
        f"{network.name}.{shown}": layer_info(layer) for shown, layer in network.paths().values()
    }
    if network.scalar:
        found[f"{network.name}.{INPUTS}"] = LayerInfo("scalars", "x as")
        found[f"{network.name}.{OUTPUTS}"] = LayerInfo("tensor", "outputs as a")
    return found


def loss_layers(spec: Spec) -> tuple[LayerInfo | None, LayerInfo | None]:
    """The loss group's and the penalty group's LayerInfo for a network file that trains
    (None, None otherwise; no penalty group without an L2 term)."""
    if spec.network is None or spec.train is None or spec.data is None:
        return None, None
    loss = LayerInfo(spec.train.loss.name, "loss")
    penalty = LayerInfo("penalty", "L2", f"{spec.train.l2:g}") if spec.train.l2 else None
    return loss, penalty


def _pos_lines(pos) -> Lines | None:
    if pos is None or pos.line <= 0:
        return None
    return pos.line, max(pos.line, pos.end_line)


class SourceMap:
    """The lines of every node and group of a GraphView, and the keys on every line."""

    def __init__(self, lines: dict[str, Lines]):
        self._lines = dict(lines)
        self._on: dict[int, list[str]] = {}
        for key, (first, last) in self._lines.items():
            for line in range(first, last + 1):
                self._on.setdefault(line, []).append(key)

    def lines_of(self, key: str) -> Lines | None:
        """The first and last line that made a node or a group, None when no line did."""
        return self._lines.get(key)

    def keys_on(self, line: int) -> list[str]:
        """The nodes (not groups) made by a line, in topological order."""
        return [key for key in self._on.get(line, ()) if not key.startswith(GROUP_PREFIX)]

    @classmethod
    def of(cls, view: GraphView, spec: Spec) -> SourceMap:
        """The map for the graph of `spec`'s network (its layers' lines, the loss's line and
        the network's line for its input), or of its graph blocks (each named node's line,
        an unnamed node the line of its first user that has one)."""
        if spec.network is not None:
            return cls(_network_lines(view, spec))
        return cls(_graph_lines(view, spec))


def _network_lines(view: GraphView, spec: Spec) -> dict[str, Lines]:
    network = spec.network
    header = _pos_lines(network.pos)
    header = None if header is None else (header[0], header[0])  # its first line, not its body
    by_path = {network.name: header}  # what the network makes itself: its first line
    for shown, layer in network.paths().values():
        by_path[f"{network.name}.{shown}"] = _pos_lines(layer.pos) or header
    if spec.train is not None:
        by_path[LOSS_PATH] = by_path[PENALTY_PATH] = _pos_lines(spec.train.loss.pos)

    def lines_of_path(path: str | None) -> Lines | None:
        while path:
            if path in by_path:
                return by_path[path]
            path = path.rpartition(".")[0]
        return None

    found = {}
    for node in view.nodes:
        lines = lines_of_path(node.layer) if node.layer is not None else None
        if lines is None and node.role == "input":
            lines = header
        if lines is not None:
            found[node.key] = lines
    for group in view.groups:
        lines = lines_of_path(group.path)
        if lines is not None:
            found[group.key] = lines
    return found


def _graph_lines(view: GraphView, spec: Spec) -> dict[str, Lines]:
    named: dict[str, Lines] = {}
    for graph in spec.graphs:
        for item in graph.items:
            lines = _pos_lines(item.pos)
            if lines is not None:
                named.setdefault(item.name, lines)
    found: dict[str, Lines] = {}
    users: dict[str, list[str]] = {}
    for node in view.nodes:
        for parent in node.inputs:
            users.setdefault(parent, []).append(node.key)
    for node in reversed(view.nodes):  # users first: an unnamed node takes its user's line
        lines = named.get(node.name) if node.name is not None else None
        if lines is None:
            lines = _first(found.get(user) for user in users.get(node.key, ()))
        if lines is not None:
            found[node.key] = lines
    return found


def _first(candidates: Iterable[Lines | None]) -> Lines | None:
    present = [lines for lines in candidates if lines is not None]
    return min(present) if present else None
