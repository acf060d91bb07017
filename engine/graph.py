"""A captured computation graph: inspect its nodes, export it, and step through it.

`Graph(loss)` walks back from the outputs and keeps every node in topological order. Its
stepper replays the forward pass one node at a time and then runs the backward pass one
node at a time through the same executor functions that eager evaluation and
`Tensor.backward()` use (engine.executor), so what a person steps through is what training
computes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import networkx as nx
import numpy as np
from topograd.engine.executor import (
    FREED,
    Released,
    evaluate,
    iter_backward,
    restore,
    topological_order,
)
from topograd.engine.tensor import Tensor, unit_gradient


@dataclass(frozen=True)
class StepEvent:
    """One step of a pass: the node just computed and its value (forward) or gradient."""

    phase: str  # "forward" or "backward"
    index: int  # position within the phase, from 0
    node: Tensor
    value: np.ndarray | None = None
    grad: np.ndarray | None = None


@dataclass(frozen=True)
class NodeInfo:
    """A plain-data snapshot of a node, what views and exporters read."""

    id: int
    op: str  # the primitive's name, or "input", "parameter", "constant" for leaves
    name: str | None
    shape: tuple
    dtype: str
    layer: str | None
    layer_kind: str | None
    inputs: tuple[int, ...]
    requires_grad: bool
    formula: str
    vjp_formula: str


def shape_text(shape) -> str:
    """How every view writes a shape: 4x10, or 'scalar' for a 0-D shape."""
    return "x".join(str(d) for d in shape) or "scalar"


def leaf_role(node: Tensor) -> str:
    """What a leaf is: a trainable 'parameter', an 'input', or a 'constant' the engine made."""
    if node.requires_grad:
        return "parameter"
    return "constant" if node.constant else "input"


class Graph:
    """The nodes reachable from `outputs`, inputs before users.

    >>> from topograd.engine import Tensor
    >>> x = Tensor(2.0, requires_grad=True, name="x")
    >>> g = Graph(x * x + x)
    >>> [e.phase for e in g.steps()]
    ['forward', 'forward', 'backward', 'backward', 'backward']
    """

    def __init__(self, outputs, roles: dict | None = None):
        """`roles` optionally names what some leaves are ({tensor: "input"}), for graphs
        whose inputs also take gradients (a model file's `input` lines); other leaves get
        `leaf_role`."""
        self.outputs = tuple(outputs) if isinstance(outputs, (list, tuple)) else (outputs,)
        self._roles = {id(leaf): role for leaf, role in (roles or {}).items()}
        if not self.outputs or not all(isinstance(t, Tensor) for t in self.outputs):
            raise TypeError("Graph needs one or more Tensors as outputs")
        self.nodes: list[Tensor] = topological_order(self.outputs)
        freed = next((n for n in self.nodes if n.op is not None and n.ctx is FREED), None)
        if freed is not None:
            raise RuntimeError(
                f"Graph: the graph behind node #{freed.id} ({freed.op.name}) was freed by a "
                "backward() call; build the Graph before calling backward(), or call "
                "backward(retain_graph=True)"
            )
        for node in self.nodes:  # values the forward pass released are shown: compute them
            if type(node._data) is Released:
                restore(node)
        # What a graph shows is kept: a plain backward() frees the links of the nodes it
        # passes through, and this graph puts them back before it steps again.
        self._links = {n.id: (n.inputs, n.ctx) for n in self.nodes if n.op is not None}
        self.grads: dict[int, np.ndarray] = {}
        self._by_id = {node.id: node for node in self.nodes}
        self._layers = self._assign_layers()

    def _role(self, node: Tensor) -> str:
        return self._roles.get(id(node)) or leaf_role(node)

    def _assign_layers(self):
        """Each node's layer; a parameter or constant made outside any layer joins the layer of
        its users when they all share one, so a layer's weights sit inside it (data inputs
        stay outside)."""
        users: dict[int, set] = {}
        for node in self.nodes:
            for parent in node.inputs:
                users.setdefault(parent.id, set()).add(node.layer)
        layers = {}
        for node in self.nodes:
            layer = node.layer
            if layer is None and node.op is None and (node.requires_grad or node.constant):
                around = users.get(node.id, set())
                if len(around) == 1:
                    layer = next(iter(around))
            layers[node.id] = layer
        return layers

    def layer_of(self, node: Tensor):
        """The layer a node is drawn in (see `_assign_layers`)."""
        return self._layers.get(node.id, node.layer)

    @classmethod
    def trace(cls, fn, *args, **kwargs) -> Graph:
        """Call `fn` and capture the graph of what it returns."""
        return cls(fn(*args, **kwargs))

    def __len__(self):
        return len(self.nodes)

    def __getitem__(self, node_id: int) -> Tensor:
        return self._by_id[node_id]

    @property
    def op_nodes(self) -> list[Tensor]:
        return [n for n in self.nodes if n.op is not None]

    @property
    def leaves(self) -> list[Tensor]:
        return [n for n in self.nodes if n.op is None]

    def info(self, node: Tensor) -> NodeInfo:
        layer = self.layer_of(node)
        return NodeInfo(
            id=node.id,
            op=node.op.name if node.op is not None else self._role(node),
            name=node.name,
            shape=tuple(node.shape),
            dtype=str(node.dtype),
            layer=getattr(layer, "path", None if layer is None else str(layer)),
            layer_kind=getattr(layer, "kind", None),
            inputs=tuple(i.id for i in node.inputs),
            requires_grad=node.requires_grad,
            formula=node.op.formula if node.op is not None else "",
            vjp_formula=node.op.vjp_formula if node.op is not None else "",
        )

    def grad_of(self, node: Tensor):
        """The gradient that reached `node` in the last backward run through this graph."""
        return self.grads.get(node.id)

    # --- executing ---------------------------------------------------------------------
    def forward_steps(self) -> Iterator[StepEvent]:
        """Recompute each op node from its inputs, in topological order, one per event."""
        self._relink()
        for index, node in enumerate(self.op_nodes):
            node._data, node.ctx = evaluate(node.op, node.inputs, node.attrs)
            node._mark_changed()  # a new value: nodes that read the old one must be replayed
            node._saved = node._changed  # ... and this one read its inputs just now
            self._links[node.id] = (node.inputs, node.ctx)
            yield StepEvent("forward", index, node, value=node.data)

    def _relink(self) -> None:
        """Give back the links and saved contexts that a plain backward() freed."""
        for node in self.op_nodes:
            if node.ctx is FREED:
                node.inputs, node.ctx = self._links[node.id]

    def backward_steps(self, grad=None) -> Iterator[StepEvent]:
        """Backpropagate from the first output, one node per event (leaves accumulate .grad)."""
        root = self.outputs[0]
        if not root.requires_grad:
            raise RuntimeError("backward_steps: the graph's output does not require grad")
        if grad is None:
            if root.size != 1:
                raise RuntimeError(
                    f"backward_steps needs a gradient for an output of shape {root.shape}"
                )
            grad = unit_gradient(root._data)
        self.grads = {}
        self._relink()
        for index, (node, g) in enumerate(iter_backward(root, grad)):
            self.grads[node.id] = g
            yield StepEvent("backward", index, node, value=node.data, grad=np.asarray(g))

    def steps(self, grad=None) -> Iterator[StepEvent]:
        """The forward pass then the backward pass, one node at a time."""
        yield from self.forward_steps()
        yield from self.backward_steps(grad)

    def forward(self) -> Tensor:
        """Replay the whole forward pass (after inputs or parameters changed)."""
        for _ in self.forward_steps():
            pass
        return self.outputs[0]

    def backward(self, grad=None) -> None:
        """Run the whole backward pass, keeping every node's gradient in `self.grads`."""
        for _ in self.backward_steps(grad):
            pass

    def first_nonfinite(self) -> Tensor | None:
        """The first node, in topological order, whose value holds a NaN or an Inf."""
        for node in self.nodes:
            if not np.all(np.isfinite(node._data)):
                return node
        return None

    # --- exporting ----------------------------------------------------------------------
    def to_networkx(self) -> nx.MultiDiGraph:
        """A MultiDiGraph keyed by node id (attributes: the NodeInfo fields), one edge per
        input with its position as the key, so `x * x` keeps both of its edges."""
        graph = nx.MultiDiGraph()
        for node in self.nodes:
            info = self.info(node)
            graph.add_node(node.id, **{k: v for k, v in info.__dict__.items() if k != "id"})
        for node in self.nodes:
            for position, parent in enumerate(node.inputs):
                graph.add_edge(
                    parent.id, node.id, key=position, shape=tuple(parent.shape), position=position
                )
        return graph

    def to_dot(self, rankdir: str = "LR") -> str:
        """Graphviz DOT text: one box per node, layers drawn as clusters."""
        lines = [
            "digraph topograd {",
            f"  rankdir={rankdir};",
            '  node [shape=box, style="rounded,filled", fillcolor="#f4f4f4",'
            ' fontname="Helvetica"];',
            '  edge [fontname="Helvetica", fontsize=9];',
        ]
        clusters: dict[str, list[Tensor]] = {}
        loose = []
        for node in self.nodes:
            layer = self.layer_of(node)
            if layer is None:
                loose.append(node)
            else:
                clusters.setdefault(str(layer), []).append(node)
        for index, (label, members) in enumerate(clusters.items()):
            lines.append(f"  subgraph cluster_{index} {{")
            lines.append(f'    label={_quote(label)}; style=rounded; color="#8888aa";')
            lines.extend(f"    {self._dot_node(n)}" for n in members)
            lines.append("  }")
        lines.extend(f"  {self._dot_node(n)}" for n in loose)
        for node in self.nodes:
            for parent in node.inputs:
                label = _quote(shape_text(parent.shape))
                lines.append(f"  n{parent.id} -> n{node.id} [label={label}];")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def _dot_node(self, node: Tensor) -> str:
        info = self.info(node)
        title = info.op if info.name is None else f"{info.name}: {info.op}"
        body = f"{title}\\n{shape_text(info.shape)}"
        if node.size == 1:
            body += f"\\n{float(np.asarray(node._data).reshape(())):.4g}"
        fill = {"parameter": "#dbe8ff", "input": "#e6f5e6", "constant": "#eeeeee"}.get(
            info.op, "#fff6dd"
        )
        return f"n{node.id} [label={_quote(body)}, fillcolor={_quote(fill)}];"


def _quote(text: str) -> str:
    """Quote a DOT label; `\\n` sequences already in `text` stay DOT line breaks."""
    return '"' + text.replace('"', '\\"') + '"'
