"""One opened model, without Qt: its engine graph, the stepper over it, and what to train.

The window keeps one `Session` per successfully checked file. A network file is stepped on
its loss for a small batch of the training split (dsl.inspect), through the model that the
training panel trains, so stepping after training shows the trained weights. A new
mini-batch rebuilds the graph from the same model on the next batch; the node keys stay the
same, so the layout and the breakpoints carry over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from topograd.dsl.build import Built, build
from topograd.dsl.errors import Source
from topograd.dsl.inspect import Subject, graph_subject, network_subject
from topograd.dsl.spec import Spec
from topograd.engine import Graph, StepEvent, Stepper
from topograd.gui.model import GROUP_PREFIX, LOSS_PATH, PENALTY_PATH, GraphView
from topograd.gui.source_map import SourceMap, loss_layers, network_layers
from topograd.gui.values import ValueView, format_number

# Edge widths show the gradient's root mean square on a log scale over these decades.
GRADIENT_DECADES = (-6.0, 2.0)


@dataclass(frozen=True)
class EdgeGradient:
    """What flowed back along one edge in one backward step, and its width in [0, 1]."""

    source: str
    target: str
    position: int
    rms: float
    magnitude: float


class Session:
    """A checked file made into engine objects: stepping graph, stepper, training run."""

    def __init__(self, spec: Spec, source: Source, batch: int = 4, seed: int = 0):
        self.spec, self.source = spec, source
        self.batch, self.seed = batch, seed
        self.built: Built | None = None
        if spec.network is not None and spec.train is not None and spec.data is not None:
            self.built = build(spec, source)
        self._rebuild()

    @property
    def can_train(self) -> bool:
        """Whether the file describes a training run (a network, data and a train section)."""
        return self.built is not None

    def _rebuild(self, breakpoints: set[str] | None = None) -> None:
        self.subject: Subject = self._subject()
        self.graph: Graph = self.subject.graph()
        network = self.spec.network
        loss, penalty = loss_layers(self.spec)
        self.view: GraphView = GraphView.from_graph(
            self.graph,
            network_layers(network) if network is not None else None,
            loss=loss,
            penalty=penalty,
            container=network.name if network is not None and network.scalar else None,
        )
        self.source_map = SourceMap.of(self.view, self.spec)
        self.stepper = Stepper(self.graph)
        self._key_of = {node.node_id: node.key for node in self.view.nodes}
        for key in breakpoints or ():
            self.stepper.breakpoints.add(self.node_id(key))

    def _subject(self) -> Subject:
        if self.spec.network is not None:
            model = self.built.model if self.built is not None else None
            return network_subject(self.spec, self.batch, self.seed, model=model)
        return graph_subject(self.spec, self.seed)

    def new_batch(self) -> None:
        """Rebuild the graph on the next mini-batch (the next seed), keeping breakpoints."""
        kept = self.breakpoint_keys()
        self.seed += 1
        self._rebuild(kept)

    def refresh(self) -> None:
        """Rebuild the graph on the same mini-batch (after training changed the weights)."""
        self._rebuild(self.breakpoint_keys())

    def opening_collapsed(self, most_boxes: int = 24) -> frozenset[str]:
        """The layers drawn as one box each when the file opens: a network's layers (its
        blocks as frames around theirs, unless that makes more than `most_boxes` boxes) and
        its loss; none for a graph file."""
        if self.spec.network is None:
            return frozenset()
        layers = {GROUP_PREFIX + path for path in network_layers(self.spec.network)}
        layers |= {GROUP_PREFIX + LOSS_PATH, GROUP_PREFIX + PENALTY_PATH}
        groups = [group for group in self.view.groups if group.key in layers]
        leaves = {g.key for g in groups if not any(c in layers for c in g.children)}
        if len(leaves) <= most_boxes:
            return frozenset(leaves)
        return frozenset(g.key for g in groups if g.parent not in layers)

    # --- keys and node ids -------------------------------------------------------------
    def key_of(self, node_id: int) -> str:
        return self._key_of[node_id]

    def node_id(self, key: str) -> int:
        return self.view.node(key).node_id

    def breakpoint_keys(self) -> set[str]:
        return {self._key_of[node_id] for node_id in self.stepper.breakpoints}

    # --- what the window shows -----------------------------------------------------------
    def value_view(self, key: str) -> ValueView | None:
        value = self.stepper.value_of(self.node_id(key))
        return None if value is None else ValueView.from_array(value)

    def grad_view(self, key: str) -> ValueView | None:
        grad = self.stepper.grad_of(self.node_id(key))
        return None if grad is None else ValueView.from_array(grad)

    def state(self, key: str) -> str:
        return self.stepper.state_of(self.node_id(key))

    def takes_grad(self, key: str) -> bool:
        return self.stepper.has_backward and self.graph[self.node_id(key)].requires_grad

    def scalar_text(self, key: str) -> str | None:
        """The value of a one-element node, for its box; None for tensors or before it is
        computed."""
        value = self.stepper.value_of(self.node_id(key))
        if value is None or np.size(value) != 1:
            return None
        return format_number(float(np.asarray(value).reshape(())))

    def grad_text(self, key: str) -> str | None:
        """The gradient that reached a node, for its box once its backward step is done: a
        one-element gradient as its number, a tensor's as its norm; None before."""
        grad = self.stepper.grad_of(self.node_id(key))
        if grad is None:
            return None
        grad = np.asarray(grad, dtype=np.float64)
        if grad.size == 1:
            return format_number(float(grad.reshape(())))
        return f"norm {format_number(float(np.linalg.norm(grad)))}"

    def nonfinite_in(self, event: StepEvent) -> int:
        """How many entries of a step's value (forward) or gradient (backward) are NaN or
        infinite."""
        return _nonfinite_count(event.value if event.phase == "forward" else event.grad)

    def flagged(self, key: str) -> bool:
        """Whether a node's value or gradient, as the steps so far show them, holds a NaN
        or an infinity."""
        node_id = self.node_id(key)
        return bool(
            _nonfinite_count(self.stepper.value_of(node_id))
            or _nonfinite_count(self.stepper.grad_of(node_id))
        )

    def edge_gradients(self, event: StepEvent) -> list[EdgeGradient]:
        """The gradient each input edge of a backward step's node carried back."""
        target = self.key_of(event.node.id)
        edges = []
        low, high = GRADIENT_DECADES
        for position, (parent, grad) in enumerate(
            zip(event.node.inputs, self.stepper.input_gradients(event))
        ):
            if grad is None:
                continue
            grad = np.asarray(grad, dtype=np.float64)
            rms = float(np.sqrt(np.mean(grad * grad))) if grad.size else 0.0
            if not math.isfinite(rms):
                magnitude = 1.0
            elif rms <= 0.0:
                magnitude = 0.0
            else:
                magnitude = min(1.0, max(0.0, (math.log10(rms) - low) / (high - low)))
            edges.append(EdgeGradient(self.key_of(parent.id), target, position, rms, magnitude))
        return edges


def _nonfinite_count(array) -> int:
    """NaN and infinite entries of an array (0 for None and for integer arrays)."""
    if array is None:
        return 0
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.inexact):
        return 0
    return int(array.size - np.count_nonzero(np.isfinite(array)))
