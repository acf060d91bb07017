"""The training panel trains samples/digits.tg on a worker thread: the UI thread keeps running,
the plots show exactly the numbers a direct engine fit of the same seeded run produces, Stop
ends a run within a second, and progress reports are throttled without losing a step."""

import threading
import time

import numpy as np
import pytest
from PySide6.QtCore import QTimer
from topograd.dsl.build import build
from topograd.dsl.commands.common import load_spec
from topograd.dsl.training import fit_arguments
from topograd.engine.train.history import INTERRUPTED
from topograd.gui.training import (
    COMPLETED,
    REPORT_INTERVAL,
    STOPPED,
    TrainingController,
    TrainingPanel,
    TrainingRun,
    steps_per_epoch,
)

from topograd import gui
from topograd.train import fit

SAMPLE = "samples/digits.tg"


@pytest.fixture(scope="module")
def loaded():
    spec, source = load_spec(SAMPLE)
    assert spec is not None
    return spec, source


@pytest.fixture
def built(loaded):
    """A fresh build (seeded weights) of the sample for each test."""
    return build(*loaded)


@pytest.fixture
def panel(qtbot, built):
    widget = TrainingPanel()
    qtbot.addWidget(widget)
    widget.set_built(built)
    yield widget
    widget.shutdown()


def train_with_panel(qtbot, panel, amount, unit):
    panel.unit.setCurrentText(unit)
    panel.amount.setValue(amount)
    with qtbot.waitSignal(panel.trainingFinished, timeout=20_000) as finished:
        panel.train_button.click()
    return finished.args[0]


def test_training_runs_off_the_ui_thread_while_the_ui_keeps_running(qtbot, panel, monkeypatch):
    fit_thread, inside = [], threading.Event()

    def watched_fit(*args, **kwargs):
        fit_thread.append(threading.get_ident())
        inside.set()
        try:
            return fit(*args, **kwargs)
        finally:
            inside.clear()

    monkeypatch.setattr(gui.training, "fit", watched_fit)
    ticks = []
    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(lambda: inside.is_set() and ticks.append(time.monotonic()))
    timer.start()
    history = train_with_panel(qtbot, panel, 2, "epochs")
    timer.stop()
    assert fit_thread and fit_thread[0] != threading.get_ident()
    assert len(ticks) > 3  # the UI thread's timer fired while fit ran on the worker
    assert history.steps == 2 * steps_per_epoch(panel.built) and history.stopped is None


def test_steps_mode_trains_exactly_n_steps_and_plots_what_a_direct_fit_measures(
    qtbot, panel, loaded
):
    history = train_with_panel(qtbot, panel, 30, "steps")  # 1.5 epochs of 20 steps
    assert history.steps == 30 and history.stopped == INTERRUPTED
    assert panel.status.text().startswith("done: 30 steps, 1 epochs")

    direct_built = build(*loaded)
    direct = fit(
        direct_built.model,
        direct_built.data.splits.train,
        direct_built.optimizer,
        **fit_arguments(direct_built, False, checkpoint=None, log=None, epochs=2),
    )
    lines = panel.lines
    np.testing.assert_array_equal(lines["step loss"].get_xdata(), np.arange(1, 31))
    np.testing.assert_array_equal(lines["step loss"].get_ydata(), direct.step_loss[:30])
    np.testing.assert_array_equal(lines["step loss"].get_ydata(), history.step_loss)
    np.testing.assert_array_equal(lines["lr"].get_ydata(), direct.lr[:30])
    assert list(panel.ratio_lines) == direct.weight_matrices()
    for name, line in panel.ratio_lines.items():
        np.testing.assert_array_equal(line.get_ydata(), direct.update_ratios[name][:30])
    first_epoch = {
        "train loss": direct.train_loss[0],
        "val loss": direct.val_loss[0],
        "train acc": direct.train_acc[0],
        "val acc": direct.val_acc[0],
    }
    for name, value in first_epoch.items():
        np.testing.assert_array_equal(lines[name].get_xdata(), [20])
        np.testing.assert_array_equal(lines[name].get_ydata(), [value])

    # a second run continues the trained weights, and its curve continues the first one
    again = train_with_panel(qtbot, panel, 10, "steps")
    np.testing.assert_array_equal(lines["step loss"].get_xdata(), np.arange(1, 41))
    np.testing.assert_array_equal(lines["step loss"].get_ydata()[30:], again.step_loss)
    assert again.initial_loss < 0.5 * direct.initial_loss
    assert again.warnings == []  # the initial-loss check is for fresh weights only


def test_stop_ends_a_long_run_within_a_second_and_the_buttons_follow(qtbot, panel):
    assert panel.train_button.isEnabled() and not panel.stop_button.isEnabled()
    panel.unit.setCurrentText("epochs")
    panel.amount.setValue(1000)
    with qtbot.waitSignal(panel.controller.progress, timeout=10_000):
        panel.train_button.click()
    assert panel.controller.running
    assert panel.stop_button.isEnabled() and not panel.train_button.isEnabled()
    assert not panel.amount.isEnabled()
    started = time.monotonic()
    with qtbot.waitSignal(panel.controller.finished, timeout=5_000) as finished:
        panel.stop_button.click()
    assert time.monotonic() - started < 1.0
    outcome = finished.args[0]
    assert outcome.how == STOPPED and outcome.history.stopped == INTERRUPTED
    assert outcome.history.steps < 1000 * steps_per_epoch(panel.built)
    assert panel.status.text().startswith(f"stopped after step {outcome.history.steps}")
    assert not panel.controller.running
    assert not panel.stop_button.isEnabled() and panel.train_button.isEnabled()


def test_progress_reports_are_throttled_and_carry_every_step(qtbot, built):
    controller = TrainingController()
    reports, epochs = [], []
    controller.progress.connect(reports.append)
    controller.epochEnded.connect(epochs.append)
    started = time.monotonic()
    with qtbot.waitSignal(controller.finished, timeout=20_000) as finished:
        controller.start(TrainingRun(built, 5))
    seconds = time.monotonic() - started
    outcome = finished.args[0]
    steps = outcome.history.steps
    assert outcome.how == COMPLETED and steps == 5 * steps_per_epoch(built)
    # every step arrives once, in order, in the reports
    assert [loss for r in reports for loss in r.losses] == outcome.history.step_loss
    assert [r.first_step for r in reports] == [1] + [r.step + 1 for r in reports[:-1]]
    # at most one report per interval, plus one at each epoch end and the last one
    assert len(reports) <= seconds / REPORT_INTERVAL + len(epochs) + 1
    assert len(reports) < steps / 2
    assert [e.epoch for e in epochs] == [1, 2, 3, 4, 5]
    assert [e.val_acc for e in epochs] == outcome.history.val_acc


def test_a_failing_run_is_reported_and_the_panel_is_ready_again(qtbot, panel, monkeypatch):
    def broken_fit(*args, **kwargs):
        raise ValueError("fit: batch_size must be an integer >= 1, got 0")

    monkeypatch.setattr(gui.training, "fit", broken_fit)
    with qtbot.waitSignal(panel.trainingFinished, timeout=5_000) as finished:
        panel.train_button.click()
    assert finished.args == [None]
    assert "ValueError: fit: batch_size must be" in panel.status.text()
    assert panel.train_button.isEnabled() and not panel.stop_button.isEnabled()


def test_a_new_built_stops_the_run_and_clears_the_curves(qtbot, panel, loaded):
    panel.amount.setValue(1000)
    with qtbot.waitSignal(panel.controller.progress, timeout=10_000):
        panel.train_button.click()
    other = build(*loaded)
    with qtbot.waitSignal(panel.trainingFinished, timeout=5_000) as finished:
        panel.set_built(other)
    assert finished.args[0].stopped == INTERRUPTED
    assert panel.built is other and panel.curves.steps == []
    assert len(panel.lines["step loss"].get_ydata()) == 0
    assert panel.train_button.isEnabled()


def test_a_steps_run_holds_enough_epochs_and_is_cut_only_inside_an_epoch(built):
    with pytest.raises(ValueError, match="max_steps must be an integer >= 1, got 0"):
        TrainingRun.for_steps(built, 0)
    assert TrainingRun.for_steps(built, 41).epochs == 3
    assert TrainingRun.for_steps(built, 40).done_after(40) is False  # two whole epochs
    assert TrainingRun.for_steps(built, 30).done_after(30) is True
