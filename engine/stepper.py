"""`Stepper`: a cursor over a graph's forward pass and then its backward pass, one node per
step, that can also step back, run to a node and stop at breakpoints.

The events come from `Graph.forward_steps` and `Graph.backward_steps`, the executor that
training runs; the stepper only remembers them. The forward pass is computed one node per
step. The backward pass is computed whole when its first step is asked for and then shown
one node per step: a backward pass left half-way would keep its bookkeeping on the nodes
(and on parameters a training step shares), so none is ever left paused. Stepping back
moves the cursor back over the remembered events, and stepping on again replays them
instead of recomputing (the forward pass is deterministic: dropout masks are part of the
captured graph), so the values shown after a step back and forth are the ones the executor
computed.

>>> from topograd.engine import Tensor, Graph
>>> x = Tensor(3.0, requires_grad=True, name="x")
>>> stepper = Stepper(Graph(x * x + x))
>>> [stepper.step().phase for _ in range(5)], stepper.step(), stepper.finished
(['forward', 'forward', 'backward', 'backward', 'backward'], None, True)
>>> float(stepper.grad_of(x.id)), stepper.step_back().phase, stepper.grad_of(x.id)
(7.0, 'backward', None)
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from topograd.engine.executor import vjp_of
from topograd.engine.graph import Graph, StepEvent
from topograd.engine.ops import unbroadcast

FORWARD, BACKWARD = "forward", "backward"


class Stepper:
    """Step through `graph`: every op node forward in topological order, then every node
    that takes a gradient in reverse order, backpropagating from the first output (from
    `grad`, or ones when that output is not a scalar). A graph whose output needs no
    gradient has a forward pass only."""

    def __init__(self, graph: Graph, grad=None):
        self.graph = graph
        root = graph.outputs[0]
        self.has_backward = bool(root.requires_grad)
        if grad is None and self.has_backward and root.size != 1:
            grad = np.ones(root.shape, dtype=root.dtype)
        if grad is not None:
            grad = np.asarray(grad, dtype=root.dtype)
            if grad.shape != tuple(root.shape):
                raise ValueError(
                    f"Stepper: the output gradient must have the output's shape "
                    f"{tuple(root.shape)}, got {grad.shape}"
                )
        self._grad = grad
        self.forward_total = len(graph.op_nodes)
        self.breakpoints: set[int] = set()  # node ids where running stops
        self.reset()

    # --- where the cursor is -----------------------------------------------------------
    def reset(self) -> None:
        """Back to before the first step: nothing computed, nothing remembered."""
        self._events: list[StepEvent] = []
        self._position = 0
        self._source: Iterator[StepEvent] | None = None
        self._backward_total: int | None = None  # known once the backward pass is computed
        self._forward_done: dict[int, int] = {}  # node id -> position of its forward event
        self._backward_done: dict[int, int] = {}

    @property
    def position(self) -> int:
        """How many steps are done."""
        return self._position

    @property
    def done(self) -> list[StepEvent]:
        """The steps done so far, in order."""
        return self._events[: self._position]

    @property
    def current(self) -> StepEvent | None:
        """The last step done, or None before the first."""
        return self._events[self._position - 1] if self._position else None

    @property
    def phase(self) -> str:
        """'ready' before the first step, 'forward' or 'backward' while a pass is under way
        (or complete and waiting for the next), 'finished' after the last step."""
        if self.finished:
            return "finished"
        current = self.current
        return "ready" if current is None else current.phase

    @property
    def forward_complete(self) -> bool:
        return len(self._forward_done) == self.forward_total

    @property
    def finished(self) -> bool:
        """Every step of both passes is done."""
        if not self.forward_complete:
            return False
        if not self.has_backward:
            return True
        return self._backward_total is not None and (
            self._position == self.forward_total + self._backward_total
        )

    # --- moving ------------------------------------------------------------------------
    def step(self) -> StepEvent | None:
        """The next step (forward, then backward); None when every step is done."""
        if self._position < len(self._events):
            event = self._events[self._position]
        else:
            event = self._next_event()
            if event is None:
                return None
            self._events.append(event)
        self._position += 1
        self._mark(event)
        return event

    def step_forward(self) -> StepEvent | None:
        """The next forward step; None once the forward pass is complete."""
        if self.forward_complete:
            return None
        return self.step()

    def step_backward(self) -> StepEvent | None:
        """The next backward step, completing the forward pass first if it is not (a backward
        pass needs every value); None when there is no backward step left."""
        if not self.has_backward:
            return None
        self.run_to_end_of(FORWARD)
        return self.step()

    def step_back(self) -> StepEvent | None:
        """Undo the last step; the event undone, or None before the first step."""
        if self._position == 0:
            return None
        self._position -= 1
        event = self._events[self._position]
        done = self._forward_done if event.phase == FORWARD else self._backward_done
        done.pop(event.node.id, None)
        return event

    def run_to_end_of(self, phase: str | None = None) -> list[StepEvent]:
        """Step until `phase` (default: the phase under way, forward before any step) is
        complete, ignoring breakpoints; the events done."""
        phase = phase or (FORWARD if self.current is None else self.current.phase)
        taken = []
        while True:
            if phase == FORWARD and self.forward_complete:
                break
            event = self.step()
            if event is None:
                break
            taken.append(event)
        return taken

    def run(self) -> list[StepEvent]:
        """Step until a breakpoint's node has just been computed or every step is done
        (always at least one step when one is left)."""
        taken = []
        while (event := self.step()) is not None:
            taken.append(event)
            if event.node.id in self.breakpoints:
                break
        return taken

    def run_to(self, node_id: int, phase: str | None = None) -> list[StepEvent]:
        """Step until `node_id`'s step in `phase` is done (default: its next step not yet
        done, forward before backward); stops early at a breakpoint or at the end."""
        if phase is None:
            phase = BACKWARD if node_id in self._forward_done or self._is_leaf(node_id) else FORWARD
        done = self._forward_done if phase == FORWARD else self._backward_done
        taken = []
        while node_id not in done:
            event = self.step()
            if event is None:
                break
            taken.append(event)
            if event.node.id in self.breakpoints and event.node.id != node_id:
                break
        return taken

    def toggle_breakpoint(self, node_id: int) -> bool:
        """Set or clear a breakpoint; True when it is now set."""
        if node_id in self.breakpoints:
            self.breakpoints.discard(node_id)
            return False
        self.breakpoints.add(node_id)
        return True

    # --- what the steps have shown --------------------------------------------------------
    def value_of(self, node_id: int):
        """A node's value as the steps so far know it: a leaf's value always, an op node's
        once its forward step is done, else None."""
        node = self.graph[node_id]
        if node.op is None:
            return node.data
        position = self._forward_done.get(node_id)
        return None if position is None else self._events[position].value

    def grad_of(self, node_id: int):
        """The gradient that reached a node, once its backward step is done, else None."""
        position = self._backward_done.get(node_id)
        return None if position is None else self._events[position].grad

    def state_of(self, node_id: int) -> str:
        """'backward' once its gradient is computed, else 'forward' once its value is known
        (a leaf's always is), else 'pending'."""
        if node_id in self._backward_done:
            return BACKWARD
        if node_id in self._forward_done or self._is_leaf(node_id):
            return FORWARD
        return "pending"

    def input_gradients(self, event: StepEvent) -> tuple:
        """For a backward step, the gradient its node's VJP sent to each of its inputs
        (None where an input takes none), each in that input's shape: what flows back along
        each edge."""
        if event.phase != BACKWARD or event.node.op is None:
            return ()
        node = event.node
        grads = vjp_of(node, event.grad)
        return tuple(
            None if g is None or not parent.requires_grad else unbroadcast(g, parent.shape)
            for parent, g in zip(node.inputs, grads)
        )

    # --- internals -----------------------------------------------------------------------
    def _is_leaf(self, node_id: int) -> bool:
        return self.graph[node_id].op is None

    def _mark(self, event: StepEvent) -> None:
        done = self._forward_done if event.phase == FORWARD else self._backward_done
        done[event.node.id] = self._position - 1

    def _next_event(self) -> StepEvent | None:
        if self._source is None:
            self._source = self._events_from_executor()
        return next(self._source, None)

    def _events_from_executor(self) -> Iterator[StepEvent]:
        yield from self.graph.forward_steps()
        if not self.has_backward:
            return
        for node in self.graph.nodes:  # this pass's gradients, not added to an earlier pass's
            if node.requires_grad and (node.op is None or node.retains_grad):
                node.grad = None
        backward = list(self.graph.backward_steps(self._grad))
        self._backward_total = len(backward)
        yield from backward
