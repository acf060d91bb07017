"""`StepperWidget`: step through a graph's forward and backward passes inside a notebook.

Built on anywidget: the front end is one ES module (widget.js, with widget.css) and the state
is a handful of traitlets, so it works in JupyterLab, Notebook 7, VS Code and Colab with no
separate front-end extension to install or build. Python does all the work: it steps the
engine's `Stepper`, draws the picture (`graph_svg`) and writes the inspector (`explain`);
the front end only shows those strings and sends back what the person clicked.

Messages from the front end (custom widget messages, handled by `_handle_message`):
``{"action": "step"}``, ``{"action": "back"}``, ``{"action": "end_of_pass"}``,
``{"action": "reset"}`` and ``{"action": "select", "node": id}``. A message that fails sets
`error` instead of raising, since a comm handler's exception reaches only the kernel's log.

>>> import topograd as tg
>>> x = tg.Tensor(3.0, requires_grad=True, name="x")
>>> widget = StepperWidget(x * x)
>>> widget.step(); widget.phase, widget.position, widget.total
('forward', 1, 1)
>>> widget.run_to_end_of_pass(); widget.phase, widget.position, widget.total
('finished', 3, 3)
"""

from __future__ import annotations

import pathlib

import anywidget
import traitlets
from topograd.engine.graph import Graph
from topograd.engine.stepper import Stepper
from topograd.engine.tensor import Tensor
from topograd.gui.explain import explain
from topograd.gui.svg import graph_svg

HINT = '<div class="tg-inspector">Step, or click a node to see its numbers.</div>'


class StepperWidget(anywidget.AnyWidget):
    """A stepper over `x` (a Tensor, its Graph, or a Stepper) with buttons, the graph's
    picture and an inspector; `grad` is the output gradient (default: 1, or ones)."""

    _esm = pathlib.Path(__file__).with_name("widget.js")
    _css = pathlib.Path(__file__).with_name("widget.css")

    svg = traitlets.Unicode("").tag(sync=True)
    inspector = traitlets.Unicode("").tag(sync=True)
    phase = traitlets.Unicode("ready").tag(sync=True)
    position = traitlets.Int(0).tag(sync=True)
    total = traitlets.Int(0).tag(sync=True)  # the steps known so far (see `_total`)
    current = traitlets.Int(-1).tag(sync=True)  # the node of the last step, -1 before any
    selected = traitlets.Int(-1).tag(sync=True)  # the node clicked, -1: follow `current`
    can_step = traitlets.Bool(False).tag(sync=True)
    can_back = traitlets.Bool(False).tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)

    def __init__(self, x, grad=None, **kwargs):
        super().__init__(**kwargs)
        self.stepper = as_stepper(x, grad)
        self._reached = self.stepper.position  # the furthest step taken since the last reset
        self.on_msg(self._handle_message)
        self._refresh()

    # --- what the buttons do ---------------------------------------------------------------
    def step(self) -> None:
        """One step forward (then backward)."""
        self.stepper.step()
        self._moved()

    def step_back(self) -> None:
        """Undo the last step."""
        self.stepper.step_back()
        self._moved()

    def run_to_end_of_pass(self) -> None:
        """Finish the pass under way; at the end of the forward pass, run the backward pass."""
        self.stepper.run_to_end_of("backward" if self.stepper.forward_complete else "forward")
        self._moved()

    def reset(self) -> None:
        """Back to before the first step."""
        self.stepper.reset()
        self._reached = 0
        self._moved()

    def select(self, node_id: int) -> None:
        """Show `node_id` in the inspector until the next move."""
        node_id = int(node_id)
        try:
            self.stepper.graph[node_id]
        except KeyError:
            raise ValueError(f"StepperWidget: the graph has no node #{node_id}") from None
        self.selected = node_id
        self.error = ""
        self.inspector = explain(self.stepper, node_id)

    # --- the front end's messages ------------------------------------------------------------
    def _handle_message(self, _widget, content, _buffers=None) -> None:
        """Do what a front-end message asks; a failure shows in `error`."""
        try:
            self._dispatch(content)
        except Exception as exc:  # any engine error: shown in the widget, not lost in a log
            self.error = f"{type(exc).__name__}: {exc}"

    def _dispatch(self, content) -> None:
        action = content.get("action") if isinstance(content, dict) else None
        if action == "select":
            self.select(content.get("node"))
            return
        moves = {
            "step": self.step,
            "back": self.step_back,
            "end_of_pass": self.run_to_end_of_pass,
            "reset": self.reset,
        }
        if action not in moves:
            known = ", ".join([*moves, "select"])
            raise ValueError(f"StepperWidget: unknown action {action!r} (known: {known})")
        moves[action]()

    # --- keeping the traitlets in step with the stepper --------------------------------------
    def _moved(self) -> None:
        self._reached = max(self._reached, self.stepper.position)
        self.selected = -1
        self.error = ""
        self._refresh()

    def _refresh(self) -> None:
        """Every synced trait from the stepper, sent to the front end as one update."""
        stepper = self.stepper
        current = stepper.current
        with self.hold_sync():
            self.phase = stepper.phase
            self.position = stepper.position
            self.total = self._total()
            self.current = -1 if current is None else current.node.id
            self.can_step = not stepper.finished
            self.can_back = stepper.position > 0
            self.svg = self._picture()
            shown = self.selected if self.selected >= 0 else self.current
            self.inspector = HINT if shown < 0 else explain(stepper, shown)

    def _total(self) -> int:
        """The steps known so far: the forward pass, plus the backward pass once the stepper
        has computed it (whole, at its first backward step), which left one entry per
        backward step in `Graph.grads`."""
        stepper = self.stepper
        if self._reached <= stepper.forward_total:
            return stepper.forward_total
        return stepper.forward_total + len(stepper.graph.grads)

    def _picture(self) -> str:
        """The graph as SVG, each box showing what the steps so far have shown."""
        stepper = self.stepper
        ids = [node.id for node in stepper.graph.nodes]
        return graph_svg(
            stepper.graph,
            current=None if self.current < 0 else self.current,
            states={i: stepper.state_of(i) for i in ids},
            values={i: stepper.value_of(i) for i in ids},
            grads={i: stepper.grad_of(i) for i in ids},
        )


def as_stepper(x, grad=None) -> Stepper:
    """A Stepper over a Tensor's graph, over a Graph, or the Stepper itself."""
    if isinstance(x, Stepper):
        if grad is not None:
            raise ValueError("StepperWidget: pass grad to the Stepper, not with one")
        return x
    if isinstance(x, Tensor):
        x = Graph(x)
    if not isinstance(x, Graph):
        raise TypeError(
            f"StepperWidget needs a Tensor, a Graph or a Stepper, got {type(x).__name__}"
        )
    return Stepper(x, grad)
