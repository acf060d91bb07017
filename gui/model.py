"""Plain-data snapshots of a graph for the window: what each node box and layer group shows.

Views and the layout read these and never the engine's tensors, so a picture can be drawn,
laid out and tested without running anything. A node's key is its position in topological
order ("n0", "n1", ...), so rebuilding the same model on a new mini-batch keeps every key
(and the cached layout) while the engine's node ids change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from topograd.engine import Graph
from topograd.engine.graph import shape_text

GROUP_PREFIX = "g:"
MERGE_KIND = "Merge"  # engine.nn.Merge: its inputs after the first are earlier layers' outputs
LOSS_PATH = "loss"  # the group of a network's loss ops (those that read the data)
PENALTY_PATH = "penalty"  # the group of the ops that read only parameters (an L2 term)
INPUTS, OUTPUTS = "inputs", "outputs"  # where a container's own leaves and ops are grouped


@dataclass(frozen=True)
class LayerInfo:
    """What the model file says about a layer (or the loss): its kind, label and sizes, which
    its box shows as 'fc1 Linear 64→256'."""

    kind: str  # the kind to show when the engine names none
    label: str | None = None
    detail: str = ""

    def caption(self, kind: str | None = None) -> str:
        """'fc1 Linear 64→256': the label, `kind` (default: its own) and the sizes."""
        parts = (self.label, kind or self.kind, self.detail)
        return " ".join(part for part in parts if part)


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
    """A layer, or a block of layers (a residual or concatenating block): the nodes it is made
    of, its own nodes and those of the layers nested in it, shown as one box when collapsed."""

    key: str
    path: str
    kind: str | None
    members: tuple[str, ...]  # every node inside, in topological order
    parent: str | None = None  # the key of the block around it
    children: tuple[str, ...] = ()  # the keys of the layers directly inside it
    name: str | None = None  # what its box calls it (see `title`); None: its path
    caption: str | None = None  # the model file's words for it, 'fc1 Linear 64→256'

    @property
    def title(self) -> str:
        """Its caption; else its short title, '4 (Residual)'."""
        return self.caption or self.short_title

    @property
    def short_title(self) -> str:
        """'body.0 (Linear)': its name, and its kind in brackets (what a block's list of its
        layers calls it)."""
        name = self.name or self.path
        return name if not self.kind else f"{name} ({self.kind})"

    @property
    def long_title(self) -> str:
        """'net.4 (Residual)': its whole path, and its kind in brackets."""
        return self.path if not self.kind else f"{self.path} ({self.kind})"

    @property
    def detail(self) -> str:
        """Its collapsed box's second line: '12 ops', or '5 layers, 40 ops' for a block."""
        count = len(self.members)
        ops = f"{count} op{'s' if count != 1 else ''}"
        if not self.children:
            return ops
        layers = len(self.children)
        return f"{layers} layer{'s' if layers != 1 else ''}, {ops}"


@dataclass(frozen=True)
class GraphView:
    """Every node of a graph in topological order, and its layers, blocks nesting theirs."""

    nodes: tuple[NodeView, ...]
    groups: tuple[GroupView, ...]  # blocks before the layers inside them
    _by_key: dict = field(default_factory=dict, compare=False, repr=False)
    _group_of: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        self._by_key.update((node.key, node) for node in self.nodes)
        self._by_key.update((group.key, group) for group in self.groups)
        for group in self.groups:  # outer groups first: an inner one overwrites its members
            self._group_of.update((member, group.key) for member in group.members)

    def node(self, key: str) -> NodeView:
        return self._by_key[key]

    def __contains__(self, key: str) -> bool:
        """Whether a node's or a group's key belongs to this graph."""
        return key in self._by_key

    def group(self, key: str) -> GroupView:
        return self._by_key[key]

    def group_of(self, key: str) -> str | None:
        """The key of the innermost layer group a node belongs to, or None."""
        return self._group_of.get(key)

    def enclosing(self, key: str) -> list[str]:
        """The keys of the groups around a node or a group, innermost first."""
        found = []
        group = self._by_key[key].parent if key.startswith(GROUP_PREFIX) else self.group_of(key)
        while group is not None:
            found.append(group)
            group = self._by_key[group].parent
        return found

    def shown_as(self, key: str, collapsed) -> str:
        """The box that shows a node or group when the groups in `collapsed` are drawn as one
        box each: its outermost collapsed group, or itself."""
        shown = key
        for group in self.enclosing(key):
            if group in collapsed:
                shown = group
        return shown

    def is_skip(self, source: str, target: str, position: int) -> bool:
        """Whether the edge source -> target (input `position`) skips layers: it carries a
        block's input past the block's layers to its join (a residual's `x` in
        `body(x) + x`, the input a concatenating block keeps), or an earlier layer's output
        into a merge (`add(name)`, `concat(name)`; their first input is the current value)."""
        group = self.group_of(target)
        if group is None or group in self.enclosing(source):
            return False
        view = self.group(group)
        return bool(view.children) or (view.kind == MERGE_KIND and position > 0)

    @classmethod
    def from_graph(
        cls,
        graph: Graph,
        layers: Mapping[str, LayerInfo] | None = None,
        loss: LayerInfo | None = None,
        penalty: LayerInfo | None = None,
        container: str | None = None,
    ) -> GraphView:
        """The plain data of `graph`. `layers` (engine paths -> what the model file says)
        captions the layers and adds a group for a layer whose parts made the nodes (a
        scalar layer's neurons). With `loss`, the ops outside every layer are grouped: those
        that read the data as "loss", those that read only parameters as "penalty" (when
        given; else in "loss"). A parameter outside every layer joins the one layer its users
        in layers share (a scalar weight that an L2 term also reads stays in its neuron).
        The nodes that the `container` layer made itself go into two groups inside it, its
        leaves in "<container>.inputs" and its ops in "<container>.outputs" (a scalar
        network's scalars of x, and the tensor it gathers its outputs into)."""
        layers = layers or {}
        keys = {node.id: f"n{index}" for index, node in enumerate(graph.nodes)}
        infos = [graph.info(node) for node in graph.nodes]
        placed = _place_loose(graph, infos, loss, penalty)
        if container is not None:
            for node, info in zip(graph.nodes, infos):
                if info.layer == container:
                    part = OUTPUTS if node.op is not None else INPUTS
                    placed[info.id] = (f"{container}.{part}", None)
        nodes, own, kinds = [], {}, {}
        for index, (node, info) in enumerate(zip(graph.nodes, infos)):
            role = "op" if node.op is not None else info.op
            layer, kind = placed.get(node.id, (info.layer, info.layer_kind))
            view = NodeView(
                key=keys[node.id],
                index=index,
                node_id=node.id,
                op=info.op,
                name=info.name,
                shape=info.shape,
                layer=layer,
                layer_kind=kind,
                inputs=tuple(keys[i] for i in info.inputs),
                role=role,
                formula=info.formula,
                vjp_formula=info.vjp_formula,
                requires_grad=info.requires_grad,
            )
            nodes.append(view)
            if layer is not None:
                own.setdefault(layer, []).append(view)
                kinds.setdefault(layer, kind)
        for path, layer in layers.items():  # a layer that only its parts made nodes for
            if path not in own and any(other.startswith(path + ".") for other in own):
                own[path], kinds[path] = [], layer.kind
        captions = {path: layer.caption(kinds.get(path)) for path, layer in layers.items()}
        for path, extra in ((LOSS_PATH, loss), (PENALTY_PATH, penalty)):
            if extra is not None:
                captions[path] = extra.caption()
        return cls(tuple(nodes), _nested_groups(own, kinds, captions))


def _place_loose(graph: Graph, infos, loss, penalty) -> dict[int, tuple[str, str | None]]:
    """Node id -> (layer path, kind) for the nodes that the engine left outside every layer
    and that belong in one: a parameter or constant whose users in layers all share one, and,
    with `loss`, the ops outside layers (and the constants only they read)."""
    layer_of = {info.id: (info.layer, info.layer_kind) for info in infos}
    users: dict[int, list[int]] = {}
    for info in infos:
        for parent in info.inputs:
            users.setdefault(parent, []).append(info.id)
    placed: dict[int, tuple[str, str | None]] = {}
    reads_data: dict[int, bool] = {}
    for node, info in zip(graph.nodes, infos):
        if node.op is None:
            reads_data[info.id] = info.op == "input"
            continue
        reads_data[info.id] = any(reads_data[parent] for parent in info.inputs)
        if loss is not None and info.layer is None:
            outside = loss if reads_data[info.id] or penalty is None else penalty
            path = LOSS_PATH if outside is loss else PENALTY_PATH
            placed[info.id] = (path, outside.kind)
    for node, info in zip(graph.nodes, infos):
        if node.op is not None or info.layer is not None or info.op == "input":
            continue
        if info.op == "parameter":  # a weight belongs to a layer, never to the loss
            around = {layer_of[user] for user in users.get(info.id, ())}
        else:
            around = {placed.get(user, layer_of[user]) for user in users.get(info.id, ())}
        around.discard((None, None))
        if len(around) == 1:
            placed[info.id] = next(iter(around))
    return placed


def _nested_groups(
    own: dict[str, list[NodeView]], kinds: dict, captions: Mapping[str, str] | None = None
) -> tuple[GroupView, ...]:
    """A group for each layer path that made nodes, inside the group of the nearest enclosing
    path that made some too (a residual block's `add` holds `4`, around `4.body.0`, ...);
    outer groups first, the layers in a block in the order of their outputs. A group's name
    is its path after its parent's, or, at the top, after the network's name when every
    top-level path with a dot starts with the same one (the loss's groups have none);
    `captions` names some paths' boxes."""
    captions = captions or {}

    def parent_of(path: str) -> str | None:
        parts = path.split(".")
        for end in range(len(parts) - 1, 0, -1):
            if ".".join(parts[:end]) in own:
                return ".".join(parts[:end])
        return None

    parents = {path: parent_of(path) for path in own}
    children: dict[str | None, list[str]] = {}
    for path in own:
        children.setdefault(parents[path], []).append(path)
    members: dict[str, list[NodeView]] = {}

    def gather(path: str) -> list[NodeView]:
        if path not in members:
            found = list(own[path])
            for child in children.get(path, ()):
                found += gather(child)
            members[path] = sorted(found, key=lambda node: node.index)
        return members[path]

    top = children.get(None, [])
    dotted = [path for path in top if "." in path]  # not the loss's own groups
    strip = len({path.split(".")[0] for path in dotted}) == 1

    def name_of(path: str) -> str:
        parent = parents[path]
        if parent is not None:
            return path.removeprefix(parent + ".")
        return path.split(".", 1)[1] if strip and "." in path else path

    groups: list[GroupView] = []

    def add(path: str) -> None:
        inner = sorted(children.get(path, ()), key=lambda child: gather(child)[-1].index)
        groups.append(
            GroupView(
                GROUP_PREFIX + path,
                path,
                kinds[path],
                tuple(node.key for node in gather(path)),
                None if parents[path] is None else GROUP_PREFIX + parents[path],
                tuple(GROUP_PREFIX + child for child in inner),
                name_of(path),
                captions.get(path),
            )
        )
        for child in inner:
            add(child)

    for path in top:
        add(path)
    return tuple(groups)
