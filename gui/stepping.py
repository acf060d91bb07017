"""The thin adapter between the engine's stepper and Qt: actions in, signals out.

`StepController` drives `engine.Stepper` (through the session) and announces every change
as a signal carrying the engine's own `StepEvent`s; it computes nothing itself. Play is a
QTimer that takes one step per tick, at a speed in steps per second, and pauses at a
breakpoint or at the end. With `break_on_nonfinite`, running and playing also stop right after
the first step whose value (forward) or gradient (backward) holds a NaN or an infinity.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Signal
from topograd.gui.session import Session

MIN_SPEED, MAX_SPEED = 1, 200  # steps per second while playing


class StepController(QObject):
    """Step, step back, run, run to a node, breakpoints and play for one session."""

    advanced = Signal(list)  # the StepEvents just done, in order
    stoppedAtNonfinite = Signal(object)  # the StepEvent whose value or gradient is not finite
    undone = Signal(object)  # the StepEvent just undone
    wasReset = Signal()  # nothing is computed any more
    breakpointChanged = Signal(str, bool)  # node key, set
    playingChanged = Signal(bool)
    changed = Signal()  # after any of the above: position, phase or playing changed

    def __init__(self, parent=None):
        super().__init__(parent)
        self.session: Session | None = None
        self.break_on_nonfinite = False
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._tick)
        self.set_speed(10)

    # --- the session ---------------------------------------------------------------------
    def set_session(self, session: Session | None) -> None:
        self.pause()
        self.session = session
        self.wasReset.emit()
        self.changed.emit()

    @property
    def stepper(self):
        return None if self.session is None else self.session.stepper

    @property
    def playing(self) -> bool:
        return self._timer.isActive()

    # --- actions ----------------------------------------------------------------------------
    def step_forward(self) -> None:
        self._advance(lambda s: _listed(s.step_forward()))

    def step_backward(self) -> None:
        self._advance(lambda s: s.run_to_end_of("forward") + _listed(s.step_backward()))

    def step(self) -> None:
        """The next step of either pass."""
        self._advance(lambda s: _listed(s.step()))

    def run(self) -> None:
        """Run to the next breakpoint or the end."""
        if not self.break_on_nonfinite:
            self._advance(lambda s: s.run())
            return
        self._advance(lambda s: self._run_until(lambda event: event.node.id in s.breakpoints))

    def run_to_end_of_pass(self) -> None:
        if not self.break_on_nonfinite:
            self._advance(lambda s: s.run_to_end_of())
            return
        stepper = self.stepper
        if stepper is None:
            return
        phase = "forward" if stepper.current is None else stepper.current.phase
        if phase == "forward" and stepper.forward_complete:
            return
        self._advance(
            lambda s: self._run_until(lambda _: phase == "forward" and s.forward_complete)
        )

    def run_to(self, key: str) -> None:
        """Run until the node's next step is done (its forward, then its backward)."""
        if self.session is None:
            return
        node_id = self.session.node_id(key)
        if not self.break_on_nonfinite:
            self._advance(lambda s: s.run_to(node_id))
            return
        stepper = self.stepper
        leaf = stepper.graph[node_id].op is None
        phase = "backward" if leaf or stepper.state_of(node_id) != "pending" else "forward"

        def reached(event) -> bool:
            stop = event.node.id == node_id and event.phase == phase
            return stop or (event.node.id in stepper.breakpoints and event.node.id != node_id)

        self._advance(lambda s: self._run_until(reached))

    def _run_until(self, stop) -> list:
        """Step until `stop(event)` says so, every step is done, or a step shows a non-finite
        number (with break_on_nonfinite on)."""
        stepper, taken = self.stepper, []
        while (event := stepper.step()) is not None:
            taken.append(event)
            if self._stops_at_nonfinite(event) or stop(event):
                break
        return taken

    def _stops_at_nonfinite(self, event) -> bool:
        return self.break_on_nonfinite and bool(self.session.nonfinite_in(event))

    def step_back(self) -> None:
        if self.stepper is None:
            return
        event = self.stepper.step_back()
        if event is not None:
            self.undone.emit(event)
            self.changed.emit()

    def reset(self) -> None:
        if self.stepper is None:
            return
        self.pause()
        self.stepper.reset()
        self.wasReset.emit()
        self.changed.emit()

    def toggle_breakpoint(self, key: str) -> None:
        if self.session is None:
            return
        on = self.stepper.toggle_breakpoint(self.session.node_id(key))
        self.breakpointChanged.emit(key, on)
        self.changed.emit()

    # --- playing --------------------------------------------------------------------------
    def set_speed(self, steps_per_second: int) -> None:
        speed = max(MIN_SPEED, min(MAX_SPEED, int(steps_per_second)))
        self._timer.setInterval(round(1000 / speed))

    def play(self) -> None:
        if self.stepper is None or self.stepper.finished or self.playing:
            return
        self._timer.start()
        self.playingChanged.emit(True)
        self.changed.emit()

    def pause(self) -> None:
        if self.playing:
            self._timer.stop()
            self.playingChanged.emit(False)
            self.changed.emit()

    def toggle_play(self) -> None:
        self.pause() if self.playing else self.play()

    def _tick(self) -> None:
        event = self.stepper.step() if self.stepper is not None else None
        if event is None:
            self.pause()
            return
        self.advanced.emit([event])
        at_nonfinite = self._stops_at_nonfinite(event)
        if at_nonfinite or event.node.id in self.stepper.breakpoints or self.stepper.finished:
            self.pause()
        if at_nonfinite:
            self.stoppedAtNonfinite.emit(event)
        self.changed.emit()

    def _advance(self, action) -> None:
        if self.stepper is None:
            return
        events = action(self.stepper)
        if events:
            self.advanced.emit(events)
            if self._stops_at_nonfinite(events[-1]):
                self.stoppedAtNonfinite.emit(events[-1])
            self.changed.emit()


def _listed(event) -> list:
    return [] if event is None else [event]
