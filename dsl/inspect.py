"""The graph the inspection commands (`check`, `graph`, `step`) look at for a model file.

A graph file gives its outputs as `dsl.build.build_graph` makes them. A network file gives
the loss on a few examples of the training split with the model in training mode (batch
statistics, dropout on), the way a training step computes it, in float64 so that central
differences are meaningful. `Subject.recompute` computes the outputs again from the leaves'
current values with the same randomness (the same dropout masks), so a gradient check
compares the engine with differences of one and the same function.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from topograd.dsl.build import build, build_data, build_graph, build_loss, build_model
from topograd.dsl.commands.common import FAILED, USAGE, fail, load_spec
from topograd.dsl.errors import DslError
from topograd.dsl.spec import Spec
from topograd.engine import Graph, Tensor
from topograd.engine.modes import same_randomness
from topograd.engine.nn.module import Module, Parameter


@dataclass
class Subject:
    """Named outputs, the named leaves to differentiate them by, and how to recompute."""

    title: str  # what was built, in words
    outputs: dict[str, Tensor]
    leaves: dict[str, Tensor]  # parameters of a network; inputs and params of a graph file
    recompute: Callable[[], dict[str, Tensor]]
    kinds: dict[str, str] = dataclasses.field(default_factory=dict)  # leaf -> layer kind
    spec: Spec | None = None
    roles: dict = dataclasses.field(default_factory=dict)  # leaf tensor -> "input"/"parameter"

    def graph(self) -> Graph:
        """The engine graph of every output (backward runs from the first one)."""
        return Graph(list(self.outputs.values()), roles=self.roles)


def subject(spec: Spec, batch: int = 4, seed: int = 0) -> Subject:
    """What to look at in a checked file: its network if it has one, else its graphs.

    Raises DslBuildError when the engine refuses something only the build can see.
    """
    if spec.network is not None:
        return network_subject(spec, batch, seed)
    return graph_subject(spec, seed)


def open_subject(path, batch: int = 4, seed: int = 0) -> tuple[Subject | None, int]:
    """Load, check and build `path` for a command: (subject, 0), or (None, exit code) after
    printing why not (a language error: 2; the engine refusing the batch: 1)."""
    if batch < 1:
        return None, fail(f"--batch must be >= 1, got {batch}")
    spec, source = load_spec(path)
    if spec is None:
        return None, USAGE
    try:
        if spec.network is not None and spec.train is not None and spec.data is not None:
            build(spec, source)  # what `run` would refuse (a schedule shorter than the run)
        return subject(spec, batch, seed), 0
    except DslError as error:
        print(error.render(), file=sys.stderr)
        return None, USAGE
    except (ValueError, TypeError, IndexError, FloatingPointError) as error:
        print(f"topograd: {path}: the model could not run on a batch: {error}", file=sys.stderr)
        return None, FAILED


# --- graph files ---------------------------------------------------------------------------------
def graph_subject(spec: Spec, seed: int = 0) -> Subject:
    """Every graph block's outputs; names get the graph's name when the file has several."""
    outputs: dict[str, Tensor] = {}
    leaves: dict[str, Tensor] = {}
    roles: dict[Tensor, str] = {}
    several = len(spec.graphs) > 1
    for graph_spec in spec.graphs:
        values = build_graph(graph_spec, seed)
        prefix = f"{graph_spec.name}." if several else ""
        outputs.update((prefix + name, t) for name, t in values.outputs.items())
        leaves.update((prefix + name, t) for name, t in values.leaves.items())
        roles.update(
            (t, "input" if values.roles[name] == "input" else "parameter")
            for name, t in values.leaves.items()
        )
    names = ", ".join(g.name for g in spec.graphs)
    replay = Graph(list(outputs.values())) if outputs else None

    def recompute() -> dict[str, Tensor]:
        if replay is not None:
            replay.forward()
        return outputs

    return Subject(f"graph {names}", outputs, leaves, recompute, spec=spec, roles=roles)


# --- network files -------------------------------------------------------------------------------
def network_subject(
    spec: Spec,
    batch: int = 4,
    seed: int = 0,
    model: Module | None = None,
    examples: Sequence[int] | None = None,
) -> Subject:
    """The network's loss (or its output when the file has no train section) on `batch`
    examples drawn with `seed` from the training split (random inputs without a data
    section), the model in training mode: a fresh float64 one, or `model` as it is (the
    window steps through the model it trains). `examples` names the training examples
    instead (indices into the split; `topograd check --examples` draws them itself)."""
    network = spec.network
    if model is None:
        network = dataclasses.replace(network, dtype="float64")
        model = build_model(network, spec.train.seed if spec.train else 0)
    model.train()
    object.__setattr__(model, "_local_name", network.name)  # layer paths read `net.fc1`
    rng = np.random.default_rng(seed)
    if examples is not None and spec.data is None:
        raise ValueError(f"network {network.name} has no data section to take examples from")
    if spec.data is not None:
        train = build_data(spec).splits.train
        if examples is None:
            picked = rng.choice(len(train.y), size=min(batch, len(train.y)), replace=False)
        else:
            picked = np.asarray(examples, dtype=np.int64)
        x, y = np.asarray(train.x[picked], dtype=network.dtype), train.y[picked]
        where = f"{len(picked)} training examples"
    else:
        x, y = rng.standard_normal((batch, *network.input_shape)).astype(network.dtype), None
        where = f"{batch} random inputs"
    loss = build_loss(spec, model) if spec.train is not None and y is not None else None
    leaves, kinds = _parameters(model, network)
    generators = model.generators()

    def recompute() -> dict[str, Tensor]:
        with same_randomness(seed, generators):
            out = model(Tensor(x, name="x"))
            return {"loss": loss(out, y)} if loss is not None else {"output": out}

    what = f"{loss.__name__} loss" if loss is not None else "output"
    title = (
        f"network {network.name}: {what} on {where} ({network.dtype}, training mode, seed {seed})"
    )
    return Subject(title, recompute(), leaves, recompute, kinds, spec)


def _parameters(model: Module, network) -> tuple[dict[str, Parameter], dict[str, str]]:
    """Parameters named after the file's layers (`fc1.weight`, or `2.bias` when the layer has
    no label) with each one's layer kind. Each tensor takes its name, so views show it."""
    paths = network.paths()
    named, kind_of = {}, {}
    for name, parameter in model.named_parameters():
        module_path, _, leaf = name.rpartition(".")
        shown, layer = paths.get(module_path, (module_path, None))
        full = f"{shown}.{leaf}" if module_path else name
        parameter.name = full
        named[full] = parameter
        kind_of[full] = layer.kind if layer is not None else ""
    return named, kind_of
