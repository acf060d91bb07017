"""Keeps the graph picture in step with the stepper: each event restyles only its own items.

A forward step colours its node and writes a scalar's value in its box; a backward step
colours the node again, writes its gradient in its box and widens the edges into it by the
gradient they carried back; a node whose value or gradient holds NaN or Inf is flagged red;
a step back puts back what the stepper now says. `refresh` redraws every item from the
stepper's state, after the picture was rebuilt (a group collapsed or expanded).
"""

from __future__ import annotations

from topograd.engine import StepEvent
from topograd.gui.session import Session


class StepPresenter:
    """Applies the stepper's events to a GraphScene."""

    def __init__(self, scene):
        self.scene = scene
        self.session: Session | None = None

    def set_session(self, session: Session | None) -> None:
        self.session = session

    def apply(self, events: list[StepEvent]) -> None:
        session = self.session
        for event in events:
            key = session.key_of(event.node.id)
            self.scene.set_state(key, event.phase)
            self.scene.set_nonfinite(key, session.flagged(key))
            if event.phase == "forward":
                self.scene.set_value_text(key, session.scalar_text(key))
            else:
                self.scene.set_grad_text(key, session.grad_text(key))
                for edge in session.edge_gradients(event):
                    self.scene.set_edge_gradient(
                        edge.source, edge.target, edge.position, edge.magnitude
                    )
        if events:
            self.scene.set_current(session.key_of(events[-1].node.id))

    def undo(self, event: StepEvent) -> None:
        session = self.session
        key = session.key_of(event.node.id)
        self.scene.set_state(key, session.state(key))
        self.scene.set_nonfinite(key, session.flagged(key))
        if event.phase == "forward":
            self.scene.set_value_text(key, session.scalar_text(key))
        else:
            self.scene.set_grad_text(key, session.grad_text(key))
            for position, parent in enumerate(event.node.inputs):
                self.scene.set_edge_gradient(session.key_of(parent.id), key, position, None)
        self._show_current()

    def refresh(self) -> None:
        """Every item from the stepper's state (O(nodes); after the picture was rebuilt)."""
        session = self.session
        self.scene.reset_styles()
        if session is None:
            return
        for node in session.view.nodes:
            self.scene.set_state(node.key, session.state(node.key))
            self.scene.set_value_text(node.key, session.scalar_text(node.key))
            self.scene.set_grad_text(node.key, session.grad_text(node.key))
            if session.flagged(node.key):
                self.scene.set_nonfinite(node.key, True)
        for key in session.breakpoint_keys():
            self.scene.set_breakpoint(key, True)
        for event in session.stepper.done:
            if event.phase == "backward":
                for edge in session.edge_gradients(event):
                    self.scene.set_edge_gradient(
                        edge.source, edge.target, edge.position, edge.magnitude
                    )
        self._show_current()

    def _show_current(self) -> None:
        current = self.session.stepper.current
        self.scene.set_current(None if current is None else self.session.key_of(current.node.id))
