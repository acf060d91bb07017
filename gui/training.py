"""The training panel: train the opened model off the UI thread and watch it learn.

`TrainingController` runs engine.train.fit on a QThread through a `TrainingWorker` and turns
fit's callback into Qt signals. The signals carry plain copies (`StepProgress`,
`EpochResult`), never the History, which the worker thread is still changing; a progress
report goes out at most every `REPORT_INTERVAL` seconds and carries every step since the
last one, so the curves miss nothing and a fast run does not flood the UI thread.
`TrainingPanel` is the widget: how long to train, Train and Stop, a status line, fit's log
and four live plots (loss, accuracy, learning rate, update/weight ratios).

The panel trains the window's Built in place (the model the window steps through), so the
window stops stepping on `trainingStarted` and rebuilds its stepping graph on
`trainingFinished`: the engine's grad mode and shared generator are process-wide, so
nothing else may run the engine while a run is going. Nothing is written to disk: the train
section's checkpoint is ignored here (`topograd run` keeps it).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from topograd.dsl.build import Built
from topograd.dsl.training import fit_arguments
from topograd.engine.train.fit import fit
from topograd.engine.train.history import INTERRUPTED, History

REPORT_INTERVAL = 0.05  # seconds between progress reports from the worker
REDRAW_MS = 400  # the plots redraw at most this often while training (a draw takes ~0.1 s)
RATIO_GUIDE = 1e-3  # the notes' healthy update/weight ratio
COMPLETED, STOPPED = "completed", "stopped"  # TrainingOutcome.how besides History.stopped


# --- what to train, and what comes back (plain data) ---------------------------------------------
def steps_per_epoch(built: Built) -> int:
    """Optimizer steps in one epoch of `built`'s training split (as fit batches it)."""
    options = built.fit_options()
    rows, batch = len(built.data.splits.train), options["batch_size"]
    return rows // batch if options.get("drop_last") else -(-rows // batch)


def _require_count(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"TrainingRun {name} must be an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class TrainingRun:
    """What to train: `built` for `epochs` epochs, stopping early after `max_steps` steps.

    `continuing` says the model was trained before: fit's initial-loss check, which is about
    freshly initialized weights, is skipped.
    """

    built: Built
    epochs: int
    max_steps: int | None = None
    continuing: bool = False

    def __post_init__(self):
        if self.built.data is None or self.built.optimizer is None:
            raise ValueError("a training run needs a file with data and a train section")
        if self.max_steps is not None:
            _require_count("max_steps", self.max_steps)
        _require_count("epochs", self.epochs)

    @classmethod
    def for_steps(cls, built: Built, steps: int, continuing: bool = False) -> TrainingRun:
        """Train exactly `steps` optimizer steps: enough epochs to hold them."""
        return cls(built, max(1, -(-steps // steps_per_epoch(built))), steps, continuing)

    def done_after(self, steps: int) -> bool:
        """Whether the run must be cut short after `steps` steps (not at a whole number of
        epochs: those end by themselves, after the last epoch's measurements)."""
        if self.max_steps is None:
            return False
        return self.max_steps <= steps < self.epochs * steps_per_epoch(self.built)

    def fit_arguments(self) -> dict:
        """fit's keyword arguments: the file's, as `topograd run` has them, without a
        checkpoint (the window writes no files) and without a progress bar."""
        options = fit_arguments(
            self.built, False, epochs=self.epochs, checkpoint=None, resume=False, log=None
        )
        if self.continuing:
            options["check_initial_loss"] = False
        return options


@dataclass(frozen=True)
class StepProgress:
    """The steps trained since the last report, copied: numbered within the run from 1."""

    first_step: int
    epoch: int
    losses: tuple[float, ...]
    lrs: tuple[float, ...]
    ratios: dict[str, tuple[float, ...]]  # update/weight ratio per step, per weight matrix

    @property
    def step(self) -> int:
        """The last step reported."""
        return self.first_step + len(self.losses) - 1


@dataclass(frozen=True)
class EpochResult:
    """One epoch's measurements (NaN where there is no accuracy or no validation split)."""

    epoch: int
    step: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float

    @classmethod
    def last_of(cls, history: History) -> EpochResult:
        """The epoch that has just ended, copied out of the History."""
        return cls(
            epoch=history.epochs[-1],
            step=history.steps,
            train_loss=history.train_loss[-1],
            train_acc=history.train_acc[-1],
            val_loss=history.val_loss[-1] if history.val_loss else math.nan,
            val_acc=history.val_acc[-1] if history.val_acc else math.nan,
        )


@dataclass(frozen=True)
class TrainingOutcome:
    """How a run ended: `how` is "completed", "stopped" (asked to), or fit's own reason
    ("early stopping", "exploded", "non-finite loss"); the History is the worker's, done."""

    history: History
    how: str
    seconds: float


# --- the worker and its thread -------------------------------------------------------------------
class TrainingWorker(QObject):
    """Runs one `fit` on the thread it is moved to and reports through signals."""

    progress = Signal(object)  # StepProgress
    epochEnded = Signal(object)  # EpochResult
    logLine = Signal(str)
    finished = Signal(object)  # TrainingOutcome
    failed = Signal(str)

    def __init__(self, training: TrainingRun, stop: threading.Event, interval=REPORT_INTERVAL):
        super().__init__()
        self.training, self.stop_requested, self.interval = training, stop, interval
        self._reported = 0  # steps already sent
        self._epoch = 1  # the epoch being trained
        self._last_report = time.monotonic()

    @Slot()
    def run(self) -> None:
        """Train, then emit `finished` (or `failed`) and hand this object back to the UI thread."""
        built = self.training.built
        options = self.training.fit_arguments()
        options.update(log=self.logLine.emit, callback=self._observe)
        started = time.perf_counter()
        try:
            history = fit(built.model, built.data.splits.train, built.optimizer, **options)
            self._report(history)
            outcome = TrainingOutcome(history, self._how(history), time.perf_counter() - started)
        except Exception as error:  # any failure must reach the window, not die with the thread
            self.failed.emit(f"{type(error).__name__}: {error}")
        else:
            self.finished.emit(outcome)
        finally:
            self.moveToThread(QCoreApplication.instance().thread())  # deleted there, later

    def _observe(self, event: str, history: History) -> bool:
        if event == "epoch":
            self._report(history)
            self.epochEnded.emit(EpochResult.last_of(history))
            self._epoch += 1
        elif time.monotonic() - self._last_report >= self.interval:
            self._report(history)
        return self.stop_requested.is_set() or self.training.done_after(history.steps)

    def _report(self, history: History) -> None:
        start = self._reported
        if history.steps == start:
            return
        self.progress.emit(
            StepProgress(
                first_step=start + 1,
                epoch=self._epoch,
                losses=tuple(history.step_loss[start:]),
                lrs=tuple(history.lr[start:]),
                ratios={
                    name: tuple(history.update_ratios[name][start:])
                    for name in history.weight_matrices()
                    if name in history.update_ratios
                },
            )
        )
        self._reported = history.steps
        self._last_report = time.monotonic()

    def _how(self, history: History) -> str:
        if history.stopped == INTERRUPTED:
            return STOPPED if self.stop_requested.is_set() else COMPLETED
        return history.stopped or COMPLETED


class TrainingController(QObject):
    """Owns the training thread: start a run, stop it, and relay the worker's signals."""

    progress = Signal(object)  # StepProgress
    epochEnded = Signal(object)  # EpochResult
    logLine = Signal(str)
    finished = Signal(object)  # TrainingOutcome
    failed = Signal(str)

    def __init__(self, parent=None, interval: float = REPORT_INTERVAL):
        super().__init__(parent)
        self.interval = interval
        self._thread: QThread | None = None
        self._worker: TrainingWorker | None = None  # held here: nothing else keeps it alive
        self._stop = threading.Event()

    @property
    def running(self) -> bool:
        """True from `start` until `finished` or `failed` is emitted."""
        return self._thread is not None

    def start(self, training: TrainingRun) -> None:
        """Train `training` on a new thread; the signals tell what happens."""
        if self.running:
            raise RuntimeError("a training run is already going: stop it first")
        self._stop = threading.Event()
        worker = TrainingWorker(training, self._stop, self.interval)
        thread = QThread()
        worker.moveToThread(thread)
        worker.progress.connect(self.progress)
        worker.epochEnded.connect(self.epochEnded)
        worker.logLine.connect(self.logLine)
        worker.finished.connect(self._finished)
        worker.failed.connect(self._failed)
        thread.started.connect(worker.run)
        self._thread, self._worker = thread, worker
        thread.start()

    def stop(self) -> None:
        """Ask the run to stop after the step it is taking (it keeps the current weights)."""
        self._stop.set()

    def wait(self, milliseconds: int = 10_000) -> bool:
        """Block until the training thread has ended (say, before the window closes)."""
        return self._thread is None or self._thread.wait(milliseconds)

    @Slot(object)
    def _finished(self, outcome: TrainingOutcome) -> None:
        self._release()
        self.finished.emit(outcome)

    @Slot(str)
    def _failed(self, message: str) -> None:
        self._release()
        self.failed.emit(message)

    def _release(self) -> None:
        self._thread.quit()
        self._thread.wait()
        self._thread = self._worker = None


# --- the curves (plain data) ---------------------------------------------------------------------
class Curves:
    """What the plots show, over all the runs of one Built: x is the step counted across runs."""

    def __init__(self):
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.lrs: list[float] = []
        self.ratios: dict[str, tuple[list[int], list[float]]] = {}
        self.epoch_steps: list[int] = []
        self.train_loss: list[float] = []
        self.val_loss: list[float] = []
        self.train_acc: list[float] = []
        self.val_acc: list[float] = []
        self.offset = 0  # steps of the earlier runs

    def start_run(self) -> None:
        """A new run of the same Built: its steps are numbered on after the earlier ones."""
        self.offset = len(self.steps)

    def add_progress(self, progress: StepProgress) -> None:
        """Append the reported steps' loss, lr and update/weight ratios."""
        first = self.offset + progress.first_step
        steps = range(first, first + len(progress.losses))
        self.steps.extend(steps)
        self.losses.extend(progress.losses)
        self.lrs.extend(progress.lrs)
        for name, ratios in progress.ratios.items():
            xs, ys = self.ratios.setdefault(name, ([], []))
            xs.extend(steps)
            ys.extend(ratios)

    def add_epoch(self, result: EpochResult) -> None:
        """Append an epoch's measurements, placed at the step it ended on."""
        self.epoch_steps.append(self.offset + result.step)
        self.train_loss.append(result.train_loss)
        self.val_loss.append(result.val_loss)
        self.train_acc.append(result.train_acc)
        self.val_acc.append(result.val_acc)


def _number(value: float, form: str) -> str:
    return format(value, form) if math.isfinite(value) else "-"


def progress_text(progress: StepProgress, epoch: EpochResult | None) -> str:
    """The status line while training."""
    parts = [
        f"step {progress.step}",
        f"epoch {progress.epoch}",
        f"loss {_number(progress.losses[-1], '.4f')}",
        f"lr {_number(progress.lrs[-1], '.3g')}",
    ]
    if epoch is not None and math.isfinite(epoch.val_acc):
        parts.append(f"val acc {epoch.val_acc:.4f}")
    return "   ".join(parts)


def outcome_text(outcome: TrainingOutcome) -> str:
    """The status line after a run."""
    history = outcome.history
    if outcome.how == COMPLETED:
        text = f"done: {history.steps} steps, {len(history.epochs)} epochs"
    elif outcome.how == STOPPED:
        text = f"stopped after step {history.steps}"
    else:
        return f"{outcome.how}: {history.stop_message}"
    text += f" in {outcome.seconds:.1f} s"
    if history.val_acc and math.isfinite(history.val_acc[-1]):
        text += f"; val acc {history.val_acc[-1]:.4f}"
    return text


# --- the panel -----------------------------------------------------------------------------------
class TrainingPanel(QWidget):
    """Train the window's Built for N steps or epochs and watch the curves live.

    The window hands the panel what to train with `set_built(built)` (None: nothing to
    train). A new Built clears the curves; the runs of one Built continue its weights and
    their curves continue too. A Built set while a run is going stops that run and takes
    its place when it has stopped.
    """

    trainingStarted = Signal()
    trainingFinished = Signal(object)  # the History; None when the run failed

    def __init__(self, parent=None):
        super().__init__(parent)
        self.built: Built | None = None
        self._waiting: tuple[Built | None] | None = None  # (the next Built,) while a run stops
        self.curves = Curves()
        self.controller = TrainingController(self)
        self._last_epoch: EpochResult | None = None

        self.amount = QSpinBox()
        self.amount.setRange(1, 1_000_000)
        self.unit = QComboBox()
        self.unit.addItems(["epochs", "steps"])
        self.train_button = QPushButton("Train")
        self.stop_button = QPushButton("Stop")
        self.status = QLabel("nothing to train")
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(1000)
        self.figure = Figure(figsize=(10, 2.6))  # fixed margins: a layout engine triples draw time
        self.canvas = FigureCanvasQTAgg(self.figure)
        self._build_plots()
        self._redraw = QTimer(self)
        self._redraw.setSingleShot(True)
        self._redraw.setInterval(REDRAW_MS)
        self._redraw.timeout.connect(self.refresh_plots)

        controls = QHBoxLayout()
        for widget in (QLabel("Train"), self.amount, self.unit, self.train_button):
            controls.addWidget(widget)
        controls.addWidget(self.stop_button)
        self.status.setWordWrap(True)
        side = QVBoxLayout()
        side.addLayout(controls)
        side.addWidget(self.status)
        side.addWidget(self.log, 1)
        column = QWidget()
        column.setLayout(side)
        column.setMaximumWidth(380)
        layout = QHBoxLayout(self)
        layout.addWidget(column)
        layout.addWidget(self.canvas, 1)

        self.train_button.clicked.connect(self.train)
        self.stop_button.clicked.connect(self.controller.stop)
        self.controller.progress.connect(self._progress)
        self.controller.epochEnded.connect(self._epoch_ended)
        self.controller.logLine.connect(self.log.appendPlainText)
        self.controller.finished.connect(self._finished)
        self.controller.failed.connect(self._failed)
        self._enable()

    def _build_plots(self) -> None:
        self.figure.subplots_adjust(left=0.05, right=0.99, top=0.88, bottom=0.16, wspace=0.3)
        loss, accuracy, lr, ratio = self.figure.subplots(1, 4).ravel()
        self.lines = {
            "step loss": loss.plot([], [], lw=0.8, alpha=0.6, label="batch")[0],
            "train loss": loss.plot([], [], "o-", ms=3, label="train")[0],
            "val loss": loss.plot([], [], "s-", ms=3, label="val")[0],
            "train acc": accuracy.plot([], [], "o-", ms=3, label="train")[0],
            "val acc": accuracy.plot([], [], "s-", ms=3, label="val")[0],
            "lr": lr.plot([], [], lw=1.0)[0],
        }
        self.ratio_lines: dict[str, object] = {}
        for axes, title in (
            (loss, "loss"),
            (accuracy, "accuracy (per epoch)"),
            (lr, "learning rate"),
            (ratio, "update / weight"),
        ):
            axes.set_title(title, fontsize=9)
            axes.tick_params(labelsize=7)
        for axes in (lr, ratio):
            axes.set_xlabel("step", fontsize=8)
        loss.legend(fontsize=7)
        accuracy.legend(fontsize=7)
        ratio.set_yscale("log")
        ratio.axhline(RATIO_GUIDE, color="grey", ls="--", lw=0.8, label="1e-3")
        self.axes = {"loss": loss, "accuracy": accuracy, "lr": lr, "ratio": ratio}

    # --- what to train ---------------------------------------------------------------------
    def set_built(self, built: Built | None) -> None:
        """Train `built` from now on (None: nothing); clears the curves."""
        if self.controller.running:
            self._waiting = (built,)
            self.controller.stop()
            return
        self.built = built
        self.curves = Curves()
        self._last_epoch = None
        self.log.clear()
        self.figure.clear()
        self._build_plots()
        if built is not None and built.spec.train is not None:
            self.unit.setCurrentText("epochs")
            self.amount.setValue(built.spec.train.epochs)
        self.status.setText("ready" if self._trainable() else "nothing to train")
        self.refresh_plots()
        self._enable()

    def _trainable(self) -> bool:
        built = self.built
        return built is not None and built.data is not None and built.optimizer is not None

    def training_run(self) -> TrainingRun:
        """The run the controls ask for (continuing the weights of earlier runs, if any)."""
        continuing = bool(self.curves.steps)
        if self.unit.currentText() == "steps":
            return TrainingRun.for_steps(self.built, self.amount.value(), continuing)
        return TrainingRun(self.built, self.amount.value(), continuing=continuing)

    # --- running ---------------------------------------------------------------------------
    def train(self) -> None:
        """Start training as the controls say (the window stops stepping first)."""
        if self.controller.running or not self._trainable():
            return
        run = self.training_run()
        self.curves.start_run()
        self.trainingStarted.emit()
        self.controller.start(run)
        self.status.setText("training...")
        self._enable()

    @property
    def running(self) -> bool:
        """Whether a run is going (from `trainingStarted` to `trainingFinished`)."""
        return self.controller.running

    def stop(self) -> None:
        """Stop the run after its current step."""
        self.controller.stop()

    def shutdown(self) -> None:
        """Stop a run and wait for its thread to end: call it before the window closes."""
        self.controller.stop()
        self.controller.wait()

    def _enable(self) -> None:
        running = self.controller.running
        self.train_button.setEnabled(not running and self._trainable())
        self.stop_button.setEnabled(running)
        self.amount.setEnabled(not running)
        self.unit.setEnabled(not running)

    def _progress(self, progress: StepProgress) -> None:
        self.curves.add_progress(progress)
        self.status.setText(progress_text(progress, self._last_epoch))
        if not self._redraw.isActive():
            self._redraw.start()

    def _epoch_ended(self, result: EpochResult) -> None:
        self.curves.add_epoch(result)
        self._last_epoch = result

    def _finished(self, outcome: TrainingOutcome) -> None:
        self.status.setText(outcome_text(outcome))
        self._after_run(outcome.history)

    def _failed(self, message: str) -> None:
        self.status.setText(f"training failed: {message}")
        self.log.appendPlainText(f"training failed: {message}")
        self._after_run(None)

    def _after_run(self, history: History | None) -> None:
        self._redraw.stop()
        self.refresh_plots()
        self._enable()
        self.trainingFinished.emit(history)
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            self.set_built(waiting[0])

    # --- drawing ---------------------------------------------------------------------------
    def refresh_plots(self) -> None:
        """Put the curves' data into the plots and redraw when Qt is idle."""
        curves, lines = self.curves, self.lines
        lines["step loss"].set_data(curves.steps, curves.losses)
        lines["lr"].set_data(curves.steps, curves.lrs)
        for name in ("train loss", "val loss", "train acc", "val acc"):
            lines[name].set_data(curves.epoch_steps, getattr(curves, name.replace(" ", "_")))
        ratio_axes = self.axes["ratio"]
        new = [name for name in curves.ratios if name not in self.ratio_lines]
        for name in new:
            self.ratio_lines[name] = ratio_axes.plot([], [], lw=0.8, label=name)[0]
        if new:
            ratio_axes.legend(fontsize=7)
        for name, (xs, ys) in curves.ratios.items():
            self.ratio_lines[name].set_data(xs, ys)
        if curves.steps:  # (autoscaling no data at all would warn)
            for axes in self.axes.values():
                axes.relim()
                axes.autoscale_view()
        self.canvas.draw_idle()
