"""Plain-data snapshots of a graph for the window: what each node box and layer group shows.

Views and the layout read these and never the engine's tensors, so a picture can be drawn,
laid out and tested without running anything. A node's key is its position in topological
order ("n0", "n1", ...), so rebuilding the same model on a new mini-batch keeps every key
(and the cached layout) while the engine's node ids change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from topograd.engine import Graph
from topograd.engine.graph import shape_text

GROUP_PREFIX = "g:"


@dataclass(frozen=True)
class NodeView:
    """One node: its op, name, shape, layer and formulas, and its inputs' keys in order."""

    key: str
    index: int
    node_id: int
    op: str
    name: str | None
    shape: tuple
    layer: str | None
    layer_kind: str | None
    inputs: tuple[str, ...]
    role: str  # "op", "input", "parameter" or "constant"
    formula: str
    vjp_formula: str
    requires_grad: bool = False  # a gradient reaches it in backward (its box holds a grad line)

    @property
    def title(self) -> str:
        return self.op if self.name is None else f"{self.name}: {self.op}"

    @property
    def shape_text(self) -> str:
        return shape_text(self.shape)


@dataclass(frozen=True)
class GroupView:
    """A layer: the nodes it is made of, shown as one box when collapsed."""

    key: str
    path: str
    kind: str | None
    members: tuple[str, ...]

    @property
    def title(self) -> str:
        return self.path if not self.kind else f"{self.path} ({self.kind})"


@dataclass(frozen=True)
class GraphView:
    """Every node of a graph in topological order, and its layers."""

    nodes: tuple[NodeView, ...]
    groups: tuple[GroupView, ...]
    _by_key: dict = field(default_factory=dict, compare=False, repr=False)
    _group_of: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        self._by_key.update((node.key, node) for node in self.nodes)
        self._by_key.update((group.key, group) for group in self.groups)
        for group in self.groups:
            self._group_of.update((member, group.key) for member in group.members)

    def node(self, key: str) -> NodeView:
        return self._by_key[key]

    def group(self, key: str) -> GroupView:
        return self._by_key[key]

    def group_of(self, key: str) -> str | None:
        """The key of the layer group a node belongs to, or None."""
        return self._group_of.get(key)

    @classmethod
    def from_graph(cls, graph: Graph) -> GraphView:
        keys = {node.id: f"n{index}" for index, node in enumerate(graph.nodes)}
        nodes, members, kinds = [], {}, {}
        for index, node in enumerate(graph.nodes):
            info = graph.info(node)
            role = "op" if node.op is not None else info.op
            view = NodeView(
                key=keys[node.id],
                index=index,
                node_id=node.id,
                op=info.op,
                name=info.name,
                shape=info.shape,
                layer=info.layer,
                layer_kind=info.layer_kind,
                inputs=tuple(keys[i] for i in info.inputs),
                role=role,
                formula=info.formula,
                vjp_formula=info.vjp_formula,
                requires_grad=info.requires_grad,
            )
            nodes.append(view)
            if info.layer is not None:
                members.setdefault(info.layer, []).append(view.key)
                kinds.setdefault(info.layer, info.layer_kind)
        groups = tuple(
            GroupView(GROUP_PREFIX + path, path, kinds[path], tuple(keys_))
            for path, keys_ in members.items()
        )
        return cls(tuple(nodes), groups)
