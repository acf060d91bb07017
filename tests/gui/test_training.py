"""The training panel trains samples/digits.tg on a worker thread: the UI thread keeps running,
the plots show exactly the numbers a direct engine fit of the same seeded run produces against
epochs, a second run continues the epoch count, Stop ends a run after its step, progress
reports are throttled without losing a step; a placeholder stands until there is data, nothing
warns on stderr, Reinitialize starts again, and a 2-D classifier's decision boundary follows
the training. No assertion depends on how fast this machine is."""

import threading
import time
import warnings

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
    limits,
    renumber,
    steps_per_epoch,
)

from topograd import gui
from topograd.train import fit

SAMPLE = "samples/digits.tg"
WAIT = 300_000  # ms: a loaded two-core machine trains slowly; nothing here is about speed
MOONS = """
data {
  dataset moons(n=80, noise=0.1)
  val 0.25
  test 0
}

network tiny {
  linear(8)
  tanh
  linear
}

train {
  loss cross_entropy
  optimizer adam(lr=0.05)
  epochs 3
  batch 20
  seed 0
}
"""


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
    with qtbot.waitSignal(panel.trainingFinished, timeout=WAIT) as finished:
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
    per_epoch = steps_per_epoch(panel.built)  # 20: the plots count in epochs
    np.testing.assert_array_equal(lines["step loss"].get_xdata(), np.arange(1, 31) / per_epoch)
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
        np.testing.assert_array_equal(lines[name].get_xdata(), [1.0])  # epoch 1 ends
        np.testing.assert_array_equal(lines[name].get_ydata(), [value])

    # a second run continues the trained weights, and its curve continues the first one
    again = train_with_panel(qtbot, panel, 10, "steps")
    np.testing.assert_array_equal(lines["step loss"].get_xdata(), np.arange(1, 41) / per_epoch)
    np.testing.assert_array_equal(lines["step loss"].get_ydata()[30:], again.step_loss)
    assert again.initial_loss < 0.5 * direct.initial_loss
    assert again.warnings == []  # the initial-loss check is for fresh weights only


def test_stop_ends_a_long_run_after_its_step_and_the_buttons_follow(qtbot, panel):
    assert panel.train_button.isEnabled() and not panel.stop_button.isEnabled()
    panel.unit.setCurrentText("epochs")
    panel.amount.setValue(1000)
    with qtbot.waitSignal(panel.controller.progress, timeout=WAIT):
        panel.train_button.click()
    assert panel.controller.running
    assert panel.stop_button.isEnabled() and not panel.train_button.isEnabled()
    assert not panel.amount.isEnabled() and not panel.reinitialize_button.isEnabled()
    with qtbot.waitSignal(panel.controller.finished, timeout=WAIT) as finished:
        panel.stop_button.click()
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
    with qtbot.waitSignal(controller.finished, timeout=WAIT) as finished:
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
    assert [e.epoch for e in epochs] == [1, 2, 3, 4, 5]
    assert [e.val_acc for e in epochs] == outcome.history.val_acc


def test_a_failing_run_is_reported_and_the_panel_is_ready_again(qtbot, panel, monkeypatch):
    def broken_fit(*args, **kwargs):
        raise ValueError("fit: batch_size must be an integer >= 1, got 0")

    monkeypatch.setattr(gui.training, "fit", broken_fit)
    with qtbot.waitSignal(panel.trainingFinished, timeout=WAIT) as finished:
        panel.train_button.click()
    assert finished.args == [None]
    assert "ValueError: fit: batch_size must be" in panel.status.text()
    assert panel.train_button.isEnabled() and not panel.stop_button.isEnabled()


def test_a_new_built_stops_the_run_and_clears_the_curves(qtbot, panel, loaded):
    panel.amount.setValue(1000)
    with qtbot.waitSignal(panel.controller.progress, timeout=WAIT):
        panel.train_button.click()
    other = build(*loaded)
    with qtbot.waitSignal(panel.trainingFinished, timeout=WAIT) as finished:
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


# --- point 6 of the issue: training that reads right ------------------------------------------
def test_a_placeholder_stands_until_there_is_data_and_the_plots_count_epochs(qtbot, panel):
    assert panel.plots.currentWidget() is panel.placeholder
    assert "No curves yet" in panel.placeholder.text()
    train_with_panel(qtbot, panel, 5, "steps")
    assert panel.plots.currentWidget() is panel.canvas
    assert {axes.get_xlabel() for axes in panel.axes.values()} == {"epoch"}
    low, high = panel.axes["loss"].get_ylim()
    assert high - low > 0.01  # the data's range, not matplotlib's empty -0.05..0.05


def test_a_second_train_continues_the_epoch_numbering(qtbot, panel):
    train_with_panel(qtbot, panel, 1, "epochs")
    first = panel.log.toPlainText()
    assert "epoch   1/1" in first
    train_with_panel(qtbot, panel, 1, "epochs")
    second = panel.log.toPlainText()[len(first) :]
    assert "epoch   2/2" in second and "epoch   1/1" not in second
    assert panel.curves.epoch_numbers == [1, 2]
    np.testing.assert_array_equal(panel.lines["train loss"].get_xdata(), [1.0, 2.0])
    assert panel.status.text().startswith("done:")


def test_renumbering_and_limits_never_give_an_empty_range():
    assert renumber("epoch   3/15  loss 0.1", 15) == "epoch  18/30  loss 0.1"
    assert renumber("epoch   3/15  loss 0.1", 0) == "epoch   3/15  loss 0.1"
    assert renumber("diagnosis (epoch 3): fine", 15) == "diagnosis (epoch 3): fine"
    assert limits([]) is None and limits([float("nan")]) is None
    low, high = limits([0.5])
    assert low < 0.5 < high
    low, high = limits([], log=True, extra=(1e-3,))
    assert 0 < low < 1e-3 < high
    assert limits([0.0, -1.0], log=True) is None


def test_training_and_plotting_print_no_warning(qtbot, panel, capfd):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's identical-ylims warning would raise
        panel.refresh_plots()
        panel.canvas.draw()
        train_with_panel(qtbot, panel, 3, "steps")
        panel.refresh_plots()
        panel.canvas.draw()
    assert "Warning" not in capfd.readouterr().err


@pytest.fixture
def moons(tmp_path):
    from topograd.dsl.build import build as build_file

    path = tmp_path / "moons.tg"
    path.write_text(MOONS, encoding="utf-8")
    return build_file(*load_spec(path))


def test_a_2d_classifier_shows_its_decision_boundary_and_it_follows_training(qtbot, moons):
    widget = TrainingPanel()
    qtbot.addWidget(widget)
    widget.set_built(moons)
    assert widget.boundary_job is not None and not widget.boundary.isHidden()
    qtbot.waitUntil(lambda: widget.boundary.boundary is not None, timeout=WAIT)
    before = widget.boundary.boundary
    assert before.size == (64, 64) and len(before.pixels) == 64 * 64 * 3
    assert len(before.points) == len(moons.data.splits.train.y) and before.classes == 2
    seen = []
    widget.controller.boundaryReady.connect(seen.append)
    train_with_panel(qtbot, widget, 3, "epochs")
    assert seen  # one at least, the last after the last step
    after = widget.boundary.boundary
    assert after is seen[-1] and after.labels != before.labels
    widget.shutdown()


def test_only_2d_classifiers_get_a_boundary(panel):
    assert panel.boundary_job is None and panel.boundary.isHidden()  # digits: 64 features


def test_reinitialize_asks_for_fresh_weights(qtbot, panel):
    with qtbot.waitSignal(panel.reinitializeRequested, timeout=WAIT):
        panel.reinitialize_button.click()


def test_legends_name_only_the_curves_there_are(qtbot, tmp_path):
    path = tmp_path / "no_val.tg"
    path.write_text(MOONS.replace("val 0.25", "val 0"), encoding="utf-8")
    widget = TrainingPanel()
    qtbot.addWidget(widget)
    widget.set_built(build(*load_spec(path)))
    train_with_panel(qtbot, widget, 1, "epochs")
    labels = [text.get_text() for text in widget.axes["loss"].get_legend().get_texts()]
    assert labels == ["batch", "train"]  # no validation split: no "val" entry
    widget.shutdown()
