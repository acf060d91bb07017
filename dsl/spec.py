"""What a checked model file says, as plain values: the checker's output, the builder's input.

Every entry keeps the position it came from, so the builder can still blame a line when
the engine refuses a value that only shows up at build time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from topograd.dsl import ast


@dataclass(frozen=True)
class Entry:
    """A registry name with its keyword arguments for the engine (values are plain Python,
    or Entry for a nested call such as a warm-up's `after=`)."""

    name: str
    kwargs: dict
    pos: ast.Pos = ast.NOWHERE


@dataclass(frozen=True)
class LayerSpec:
    """One layer: its registry name, complete engine arguments, and shapes per example."""

    kind: str
    kwargs: dict
    label: str | None
    in_shape: tuple
    out_shape: tuple
    pos: ast.Pos = ast.NOWHERE
    implicit: bool = False  # added by the checker (the image fold in front of a conv net)
    body: tuple[LayerSpec, ...] = ()  # a block's layers (`residual { ... }`, `concat { ... }`)
    shortcut: tuple[LayerSpec, ...] | None = None  # a residual block's `shortcut { ... }`

    @property
    def is_block(self) -> bool:
        return bool(self.body)

    @property
    def sources(self) -> tuple[str, ...]:
        """The earlier layers a merge (`add(stem)`, `concat(a, b)`) joins with; () otherwise."""
        return tuple(self.kwargs.get("sources", ())) if not self.body else ()

    def walk(self):
        """This layer and every layer inside it, depth first (body, then shortcut)."""
        yield self
        for inner in (*self.body, *(self.shortcut or ())):
            yield from inner.walk()


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    layers: tuple[LayerSpec, ...]
    scalar: bool
    dtype: str
    input_shape: tuple
    output_shape: tuple
    pos: ast.Pos = ast.NOWHERE
    weights: str | None = None  # a model-only checkpoint the network starts from
    weights_pos: ast.Pos = ast.NOWHERE

    def all_layers(self):
        """Every layer, those inside blocks included, depth first."""
        for layer in self.layers:
            yield from layer.walk()

    def paths(self) -> dict[str, tuple[str, LayerSpec]]:
        """Each layer by the engine module's path ("4.body.0") -> (the path with the file's
        labels in place of indexes, "4.body.fc" or "stem", and its LayerSpec)."""
        found = {}

        def visit(layers, path, shown):
            for index, layer in enumerate(layers):
                here = f"{path}{index}"
                named = f"{shown}{layer.label or index}"
                found[here] = (named, layer)
                visit(layer.body, f"{here}.body.", f"{named}.body.")
                visit(layer.shortcut or (), f"{here}.shortcut.", f"{named}.shortcut.")

        visit(self.layers, "", "")
        return found

    @property
    def branches(self) -> bool:
        """Whether any layer is a block or a merge (the network is not a plain chain)."""
        return any(layer.is_block or layer.sources for layer in self.all_layers())


@dataclass(frozen=True)
class GraphSpec:
    """A graph keeps its items as syntax: the builder evaluates them in order."""

    name: str
    items: tuple[ast.GraphItem, ...]
    constants: dict
    pos: ast.Pos = ast.NOWHERE


@dataclass(frozen=True)
class DataSpec:
    dataset: Entry  # a DATASETS name with options, or name "file" with kwargs {"path": ...}
    val: float
    test: float
    stratify: bool
    split_seed: int
    preprocess: tuple[Entry, ...]
    augment: tuple[Entry, ...]
    features: int
    classes: int
    image_shape: tuple | None
    pos: ast.Pos = ast.NOWHERE


@dataclass(frozen=True)
class TrainSpec:
    loss: Entry
    optimizers: tuple[Entry, ...]  # more than one: compare them on the same start
    schedule: Entry | None
    l2: float
    decay: str  # "all" or "weights": which parameters the optimizer's weight_decay touches
    epochs: int
    batch_size: int
    seed: int
    checkpoint: str | None
    early_stopping: int | None
    ensemble: Entry | None
    fit_options: dict
    pos: ast.Pos = ast.NOWHERE
    schedule_per: str = "step"  # when the schedule steps: after every batch, or every epoch


@dataclass(frozen=True)
class SearchSpec:
    space: dict  # name -> Entry of DISTRIBUTIONS
    trials: int
    stages: int
    shrink: float
    top: float
    seed: int
    metric: str
    minimize: bool
    epochs: int | None
    pos: ast.Pos = ast.NOWHERE


@dataclass(frozen=True)
class RangeTestSpec:
    options: dict
    pos: ast.Pos = ast.NOWHERE


@dataclass(frozen=True)
class Spec:
    """Everything a file declares, checked. At most one network; any number of graphs."""

    constants: dict
    graphs: tuple[GraphSpec, ...] = ()
    network: NetworkSpec | None = None
    data: DataSpec | None = None
    train: TrainSpec | None = None
    search: SearchSpec | None = None
    range_test: RangeTestSpec | None = None
    positions: dict = field(default_factory=dict)  # let name -> Pos, for search overrides

    @property
    def kind(self) -> str:
        """ "network" when the file trains something, else "graph"."""
        return "network" if self.network is not None else "graph"
