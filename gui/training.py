"""The training panel: train the opened model off the UI thread and watch it learn.

`TrainingController` runs engine.train.fit on a QThread through a `TrainingWorker` and turns
fit's callback into Qt signals. The signals carry plain copies (`StepProgress`,
`EpochResult`), never the History, which the worker thread is still changing; a progress
report goes out at most every `REPORT_INTERVAL` seconds and carries every step since the
last one, so the curves miss nothing and a fast run does not flood the UI thread.
`TrainingPanel` is the widget: how long to train, Train, Stop and Reinitialize, a status line,
fit's log and four live plots against epochs (loss, accuracy, learning rate, update/weight
ratios), with a placeholder until there is something to plot; for a classifier of two input
features, its decision boundary, which the training thread recomputes while it trains. The
runs of one model count on: a second Train continues the epochs, in the plots and the log.

The panel trains the window's Built in place (the model the window steps through), so the
window stops stepping on `trainingStarted` and rebuilds its stepping graph on
`trainingFinished`: the engine's grad mode and shared generator are process-wide, so
nothing else may run the engine while a run is going. Nothing is written to disk: the train
section's checkpoint is ignored here (`topograd run` keeps it).
"""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from PySide6.QtCore import QCoreApplication, QObject, Qt, QThread, QTimer, Signal, Slot
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QBoxLayout,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)
from topograd.dsl.build import Built
from topograd.dsl.training import fit_arguments
from topograd.engine.train.fit import fit
from topograd.engine.train.history import INTERRUPTED, History
from topograd.gui.boundary import BoundaryJob
from topograd.gui.boundary_view import BoundaryWidget

REPORT_INTERVAL = 0.05  # seconds between progress reports from the worker
REDRAW_MS = 400  # the plots redraw at most this often while training (a draw takes ~0.1 s)
RATIO_GUIDE = 1e-3  # the notes' healthy update/weight ratio
# The training thread redraws the decision boundary at most this often, and never spends more
# than a fifth of its time on it (it waits four times as long as a boundary took).
BOUNDARY_INTERVAL = 0.5
BOUNDARY_SHARE = 4.0
BOUNDARY_DELAY_MS = 100  # a model's first boundary is drawn after the window has painted
PLACEHOLDER = (
    "No curves yet.\nTrain runs the file's train section here; the batch loss, the accuracy, "
    "the learning rate and each weight matrix's update/weight ratio are plotted against "
    "epochs as the model learns."
)
EPOCH_LINE = re.compile(r"^epoch\s+(\d+)/(\d+)")
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
    """Runs one `fit` on the thread it is moved to and reports through signals; with a
    BoundaryJob, it redraws the decision boundary between steps, now and then."""

    progress = Signal(object)  # StepProgress
    epochEnded = Signal(object)  # EpochResult
    boundaryReady = Signal(object)  # gui.boundary.Boundary
    logLine = Signal(str)
    finished = Signal(object)  # TrainingOutcome
    failed = Signal(str)

    def __init__(
        self,
        training: TrainingRun,
        stop: threading.Event,
        interval=REPORT_INTERVAL,
        boundary: BoundaryJob | None = None,
    ):
        super().__init__()
        self.training, self.stop_requested, self.interval = training, stop, interval
        self.boundary = boundary
        self._reported = 0  # steps already sent
        self._epoch = 1  # the epoch being trained
        self._last_report = time.monotonic()
        self._next_boundary = time.monotonic() + BOUNDARY_INTERVAL

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
            self._draw_boundary()
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
        if self.boundary is not None and time.monotonic() >= self._next_boundary:
            self._draw_boundary()
        return self.stop_requested.is_set() or self.training.done_after(history.steps)

    def _draw_boundary(self) -> None:
        """The boundary of the weights as they are now (between two steps)."""
        if self.boundary is None:
            return
        started = time.monotonic()
        picture = self.boundary.compute(self.training.built.model)
        took = time.monotonic() - started
        self._next_boundary = time.monotonic() + max(BOUNDARY_INTERVAL, BOUNDARY_SHARE * took)
        self.boundaryReady.emit(picture)

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
    boundaryReady = Signal(object)  # gui.boundary.Boundary
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

    def start(self, training: TrainingRun, boundary: BoundaryJob | None = None) -> None:
        """Train `training` on a new thread (drawing `boundary` now and then); the signals
        tell what happens."""
        if self.running:
            raise RuntimeError("a training run is already going: stop it first")
        self._stop = threading.Event()
        worker = TrainingWorker(training, self._stop, self.interval, boundary)
        thread = QThread()
        worker.moveToThread(thread)
        worker.progress.connect(self.progress)
        worker.epochEnded.connect(self.epochEnded)
        worker.boundaryReady.connect(self.boundaryReady)
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
    """What the plots show, over all the runs of one Built, against epochs counted across
    runs: a step's x is the steps trained so far over the steps in an epoch, and an epoch's
    measurements sit at the step it ended on."""

    def __init__(self, steps_per_epoch: int = 1):
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.lrs: list[float] = []
        self.ratios: dict[str, tuple[list[float], list[float]]] = {}
        self.epoch_steps: list[int] = []
        self.epoch_numbers: list[int] = []
        self.train_loss: list[float] = []
        self.val_loss: list[float] = []
        self.train_acc: list[float] = []
        self.val_acc: list[float] = []
        self.offset = 0  # steps of the earlier runs
        self.epoch_offset = 0  # epochs the earlier runs completed

    def start_run(self) -> None:
        """A new run of the same Built: its steps and epochs are numbered on after the
        earlier ones."""
        self.offset = len(self.steps)
        self.epoch_offset = len(self.epoch_steps)

    def epochs(self, steps) -> list[float]:
        """Steps counted across runs, in epochs."""
        return [step / self.steps_per_epoch for step in steps]

    def add_progress(self, progress: StepProgress) -> None:
        """Append the reported steps' loss, lr and update/weight ratios."""
        first = self.offset + progress.first_step
        steps = range(first, first + len(progress.losses))
        self.steps.extend(steps)
        self.losses.extend(progress.losses)
        self.lrs.extend(progress.lrs)
        for name, ratios in progress.ratios.items():
            xs, ys = self.ratios.setdefault(name, ([], []))
            xs.extend(self.epochs(steps))
            ys.extend(ratios)

    def add_epoch(self, result: EpochResult) -> None:
        """Append an epoch's measurements, placed at the step it ended on."""
        self.epoch_steps.append(self.offset + result.step)
        self.epoch_numbers.append(self.epoch_offset + result.epoch)
        self.train_loss.append(result.train_loss)
        self.val_loss.append(result.val_loss)
        self.train_acc.append(result.train_acc)
        self.val_acc.append(result.val_acc)

    def step(self, step_in_run: int) -> int:
        """A step of the run under way, counted across runs."""
        return self.offset + step_in_run

    def epoch(self, epoch_in_run: int) -> int:
        """An epoch of the run under way, counted across runs."""
        return self.epoch_offset + epoch_in_run


def renumber(line: str, epochs_before: int) -> str:
    """fit's log line 'epoch   3/15 ...' with the epochs of earlier runs counted in:
    'epoch  18/30 ...' after a run of 15."""
    if not epochs_before:
        return line

    def counted(match) -> str:
        epoch, total = int(match.group(1)) + epochs_before, int(match.group(2)) + epochs_before
        return f"epoch {epoch:3d}/{total}"  # as fit writes it

    return EPOCH_LINE.sub(counted, line)


def limits(values, log: bool = False, extra=()) -> tuple[float, float] | None:
    """Axis limits around the finite values (the positive ones on a log axis) and `extra`,
    never a zero-width range; None when there is nothing to show."""
    shown = [v for v in (*values, *extra) if math.isfinite(v) and (v > 0 or not log)]
    if not shown:
        return None
    low, high = min(shown), max(shown)
    if log:
        return low / 1.6, high * 1.6
    pad = (high - low) * 0.06 or max(abs(high) * 0.1, 1e-3)
    return low - pad, high + pad


def _number(value: float, form: str) -> str:
    return format(value, form) if math.isfinite(value) else "-"


def progress_text(
    progress: StepProgress, epoch: EpochResult | None, curves: Curves | None = None
) -> str:
    """The status line while training (steps and epochs counted across runs by `curves`)."""
    curves = curves or Curves()
    parts = [
        f"step {curves.step(progress.step)}",
        f"epoch {curves.epoch(progress.epoch)}",
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
    their curves and epoch numbers continue too. A Built set while a run is going stops that
    run and takes its place when it has stopped. Reinitialize asks the window for a fresh
    Built (`reinitializeRequested`).
    """

    trainingStarted = Signal()
    trainingFinished = Signal(object)  # the History; None when the run failed
    reinitializeRequested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.built: Built | None = None
        self._waiting: tuple[Built | None] | None = None  # (the next Built,) while a run stops
        self.curves = Curves()
        self.controller = TrainingController(self)
        self._last_epoch: EpochResult | None = None
        self.boundary_job: BoundaryJob | None = None
        self.wide = False

        self.amount = QSpinBox()
        self.amount.setRange(1, 1_000_000)
        self.unit = QComboBox()
        self.unit.addItems(["epochs", "steps"])
        self.train_button = QPushButton("Train")
        self.stop_button = QPushButton("Stop")
        self.reinitialize_button = QPushButton("Reinitialize")
        self.reinitialize_button.setToolTip(
            "draw the weights afresh as the file says (its seed) and clear the curves"
        )
        self.status = QLabel("nothing to train")
        self.status.setWordWrap(True)
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(1000)
        self.log.setPlaceholderText("the training log: one line per epoch")
        self.log.setMinimumHeight(24)
        self.log.setMaximumHeight(80)
        self.figure = Figure(figsize=(4, 3.2))  # fixed margins: a layout engine triples draw time
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumSize(200, 80)
        self.placeholder = QLabel(PLACEHOLDER)
        self.placeholder.setWordWrap(True)
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setMinimumSize(120, 40)
        self.placeholder.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.plots = QStackedWidget()
        self.plots.addWidget(self.placeholder)
        self.plots.addWidget(self.canvas)
        self.boundary = BoundaryWidget()
        self.boundary.hide()
        self._build_plots()
        self._redraw = QTimer(self)
        self._redraw.setSingleShot(True)
        self._redraw.setInterval(REDRAW_MS)
        self._redraw.timeout.connect(self.refresh_plots)
        self._first_boundary = QTimer(self)  # dies with the panel, unlike a bare singleShot
        self._first_boundary.setSingleShot(True)
        self._first_boundary.setInterval(BOUNDARY_DELAY_MS)
        self._first_boundary.timeout.connect(self._draw_boundary_now)

        controls = QGridLayout()
        controls.setContentsMargins(0, 0, 0, 0)
        controls.addWidget(QLabel("Train"), 0, 0)
        controls.addWidget(self.amount, 0, 1)
        controls.addWidget(self.unit, 0, 2)
        buttons = QHBoxLayout()
        for button in (self.train_button, self.stop_button, self.reinitialize_button):
            buttons.addWidget(button)
        side = QVBoxLayout()
        side.setContentsMargins(0, 0, 0, 0)
        side.setSpacing(3)
        side.addLayout(controls)
        side.addLayout(buttons)
        side.addWidget(self.status)
        side.addWidget(self.log)
        self.side = QWidget()
        self.side.setLayout(side)
        self.arrangement = QBoxLayout(QBoxLayout.Direction.TopToBottom, self)
        self.arrangement.setContentsMargins(4, 2, 4, 2)
        self.arrangement.addWidget(self.side)
        self.arrangement.addWidget(self.boundary)
        self.arrangement.addWidget(self.plots, 1)

        self.train_button.clicked.connect(self.train)
        self.stop_button.clicked.connect(self.controller.stop)
        self.reinitialize_button.clicked.connect(self.reinitializeRequested)
        self.controller.progress.connect(self._progress)
        self.controller.epochEnded.connect(self._epoch_ended)
        self.controller.boundaryReady.connect(self.boundary.set_boundary)
        self.controller.logLine.connect(self._log_line)
        self.controller.finished.connect(self._finished)
        self.controller.failed.connect(self._failed)
        self._enable()

    def resizeEvent(self, event) -> None:
        """Side by side when the panel is wide (docked below the graph), stacked when it is
        narrow (beside it); the decision boundary stays square."""
        super().resizeEvent(event)
        wide = self.width() > 1.8 * self.height()
        if wide != self.wide:
            self.wide = wide
            across = QBoxLayout.Direction.LeftToRight
            self.arrangement.setDirection(across if wide else QBoxLayout.Direction.TopToBottom)
            self.side.setMaximumWidth(320 if wide else 16_777_215)
            self.log.setMaximumHeight(16_777_215 if wide else 80)
            self.figure.clear()
            self._build_plots()
            self.refresh_plots()
        if wide:
            side = max(90, self.height() - 8)
            self.boundary.setMinimumSize(side, 90)
            self.boundary.setMaximumSize(side, 16_777_215)
        else:
            side = max(90, min(self.width() - 8, 230, self.height() // 3))
            self.boundary.setMinimumSize(90, side)
            self.boundary.setMaximumSize(16_777_215, side)

    def _build_plots(self) -> None:
        if self.wide:
            self.figure.subplots_adjust(left=0.06, right=0.99, top=0.86, bottom=0.22, wspace=0.32)
            grid = self.figure.subplots(1, 4)
        else:
            self.figure.subplots_adjust(
                left=0.15, right=0.97, top=0.93, bottom=0.11, wspace=0.5, hspace=0.6
            )
            grid = self.figure.subplots(2, 2)
        loss, accuracy, lr, ratio = grid.ravel()
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
            axes.set_title(title, fontsize=8, pad=3)
            axes.tick_params(labelsize=7, pad=1)
            axes.set_xlabel("epoch", fontsize=7, labelpad=1)
        ratio.set_yscale("log")
        ratio.set_ylim(RATIO_GUIDE / 10, RATIO_GUIDE * 10)
        self.guide = ratio.axhline(RATIO_GUIDE, color="grey", ls="--", lw=0.8, label="1e-3")
        for axes in (loss, accuracy, lr, ratio):
            axes.set_autoscale_on(False)  # limits come from the data (`limits`), never equal
        self.notes = {
            name: axes.text(
                0.5, 0.5, "", transform=axes.transAxes, ha="center", va="center", fontsize=7
            )
            for name, axes in (("accuracy", accuracy), ("ratio", ratio))
        }
        self.axes = {"loss": loss, "accuracy": accuracy, "lr": lr, "ratio": ratio}
        self._legends: dict[str, tuple] = {}  # the labels each plot's legend shows
        self._colour_figure()

    def _colour_figure(self) -> None:
        """The figure in the palette's colours (light or dark)."""
        palette = self.palette()
        background = palette.color(QPalette.ColorRole.Window).name()
        text = palette.color(QPalette.ColorRole.WindowText).name()
        self.figure.set_facecolor(background)
        for axes in self.axes.values():
            axes.set_facecolor(palette.color(QPalette.ColorRole.Base).name())
            axes.title.set_color(text)
            axes.xaxis.label.set_color(text)
            axes.tick_params(colors=text)
            for spine in axes.spines.values():
                spine.set_color(text)
        for note in self.notes.values():
            note.set_color(text)

    def apply_palette(self) -> None:
        """Take the colours of the current palette (the window's light or dark one)."""
        self._colour_figure()
        self.boundary.update()
        self.canvas.draw_idle()

    # --- what to train ---------------------------------------------------------------------
    def set_built(self, built: Built | None) -> None:
        """Train `built` from now on (None: nothing); clears the curves and shows the
        decision boundary of its weights when it classifies points of two features."""
        if self.controller.running:
            self._waiting = (built,)
            self.controller.stop()
            return
        self.built = built
        trainable = self._trainable()
        self.curves = Curves(steps_per_epoch(built) if trainable else 1)
        self._last_epoch = None
        self.log.clear()
        self.figure.clear()
        self._build_plots()
        self.plots.setCurrentWidget(self.placeholder)
        if built is not None and built.spec.train is not None:
            self.unit.setCurrentText("epochs")
            self.amount.setValue(built.spec.train.epochs)
        self.status.setText("ready" if trainable else "nothing to train")
        self.boundary_job = BoundaryJob.of(built) if trainable else None
        self.boundary.setVisible(self.boundary_job is not None)
        self.boundary.set_boundary(None)
        if self.boundary_job is not None:
            self._first_boundary.start()
        self._enable()

    def _draw_boundary_now(self) -> None:
        """The boundary of the weights as they are (not while a run changes them)."""
        if self.boundary_job is not None and not self.controller.running:
            self.boundary.set_boundary(self.boundary_job.compute(self.built.model))

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
        self.controller.start(run, self.boundary_job)
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
        self.reinitialize_button.setEnabled(not running and self._trainable())
        self.amount.setEnabled(not running)
        self.unit.setEnabled(not running)

    def _log_line(self, line: str) -> None:
        self.log.appendPlainText(renumber(line, self.curves.epoch_offset))

    def _progress(self, progress: StepProgress) -> None:
        self.curves.add_progress(progress)
        self.status.setText(progress_text(progress, self._last_epoch, self.curves))
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
        """Put the curves' data into the plots, against epochs, and redraw when Qt is idle;
        the placeholder stays up until there is a step to plot."""
        curves, lines, axes = self.curves, self.lines, self.axes
        if not curves.steps:
            self.plots.setCurrentWidget(self.placeholder)
            return
        self.plots.setCurrentWidget(self.canvas)
        step_x, epoch_x = curves.epochs(curves.steps), curves.epochs(curves.epoch_steps)
        lines["step loss"].set_data(step_x, curves.losses)
        lines["lr"].set_data(step_x, curves.lrs)
        for name in ("train loss", "val loss", "train acc", "val acc"):
            lines[name].set_data(epoch_x, getattr(curves, name.replace(" ", "_")))
        new = [name for name in curves.ratios if name not in self.ratio_lines]
        for name in new:
            self.ratio_lines[name] = axes["ratio"].plot([], [], lw=0.8, label=name)[0]
        for name, (xs, ys) in curves.ratios.items():
            self.ratio_lines[name].set_data(xs, ys)
        right = max(step_x[-1], epoch_x[-1] if epoch_x else 0.0)
        for each in axes.values():
            each.set_xlim(0.0, right * 1.02 if right > 0 else 1.0)
        self._set_y(
            "loss",
            limits([*curves.losses, *curves.train_loss, *curves.val_loss]),
        )
        self._set_y("lr", limits(curves.lrs))
        accuracy = limits([*curves.train_acc, *curves.val_acc])
        self._set_y("accuracy", accuracy)
        self.notes["accuracy"].set_text(
            "" if accuracy or not curves.epoch_steps else "no accuracy:\nnot a classifier"
        )
        ratios = [y for _, ys in curves.ratios.values() for y in ys]
        self._set_y("ratio", limits(ratios, log=True, extra=(RATIO_GUIDE,)))
        self.notes["ratio"].set_text("" if curves.ratios else "no weight matrix:\nscalar weights")
        for name in ("loss", "accuracy", "ratio"):
            self._legend(name)
        self.canvas.draw_idle()

    def _set_y(self, name: str, span: tuple[float, float] | None) -> None:
        if span is not None:
            self.axes[name].set_ylim(*span)

    def _legend(self, name: str) -> None:
        """A legend of the curves a plot shows (those with a finite point: no 'val' entry
        without a validation split), redrawn only when that set changes."""
        axes = self.axes[name]
        shown = [
            line
            for line in axes.get_lines()
            if not line.get_label().startswith("_")
            and any(math.isfinite(y) for y in line.get_ydata())
        ]
        labels = tuple(line.get_label() for line in shown)
        if shown and self._legends.get(name) != labels:
            axes.legend(handles=shown, fontsize=6, loc="best")
            self._legends[name] = labels
