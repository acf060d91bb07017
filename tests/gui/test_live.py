"""gui.live: a Module and a History as notebook HTML, and LiveCurves redrawing one output in
place inside a real IPython shell (no kernel, no Qt, no screen)."""

import base64
import importlib
import math
import subprocess
import sys
from html.parser import HTMLParser

import pytest
from topograd.gui.live import LiveCurves, history_figure, history_html, module_html

import topograd as tg

pytest.importorskip("matplotlib")

TIMES = "\N{MULTIPLICATION SIGN}"  # how the table writes a shape: 4×8


class _Cells(HTMLParser):
    """The text of each table row's cells: what a reader of the table sees."""

    def __init__(self):
        super().__init__()
        self.rows: list[list[str]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.rows[-1].append("")

    def handle_data(self, data):
        if self.rows and self.rows[-1]:
            self.rows[-1][-1] += data


def table_rows(html: str) -> list[list[str]]:
    parser = _Cells()
    parser.feed(html)
    return parser.rows


def small_model():
    return tg.nn.Sequential(
        tg.nn.Linear(4, 8), tg.nn.BatchNorm1d(8), tg.nn.ReLU(), tg.nn.Linear(8, 3)
    )


def moons_run(epochs=2, callback=None):
    tg.manual_seed(0)
    train, val, _ = tg.data.split(tg.data.make_moons(200, noise=0.1, seed=0), val=0.2, test=0)
    model = tg.nn.Sequential(tg.nn.Linear(2, 16), tg.nn.Tanh(), tg.nn.Linear(16, 2))
    optimizer = tg.optim.Adam(model.parameters(), lr=1e-2)
    return tg.fit(
        model, train, optimizer, epochs=epochs, val=val, progress=False, log=None,
        callback=callback,
    )  # fmt: skip


# --- module_html -----------------------------------------------------------------------------
def test_module_html_lists_every_layer_with_its_own_parameter_counts_and_the_total():
    rows = table_rows(module_html(small_model()))
    assert rows[0] == ["layer", "type", "options", "parameters", "shapes"]
    assert rows[1][:2] == ["", "Sequential"] and rows[1][3] == ""
    assert rows[2] == [
        "0",
        "Linear",
        "4, 8, bias=True",
        str(4 * 8 + 8),
        f"weight 4{TIMES}8, bias 8",
    ]
    assert rows[3][:2] == ["1", "BatchNorm1d"] and rows[3][3:] == [str(8 + 8), "weight 8, bias 8"]
    assert rows[4][:2] == ["2", "ReLU"] and rows[4][3] == ""
    assert rows[5] == [
        "3",
        "Linear",
        "8, 3, bias=True",
        str(8 * 3 + 3),
        f"weight 8{TIMES}3, bias 3",
    ]
    assert rows[6] == ["total", str(40 + 16 + 27), "83 trainable"]


def test_module_html_indents_nested_layers_counts_shared_and_frozen_weights_and_escapes():
    class Tagged(tg.nn.Module):
        def extra_repr(self):
            return "<b>not markup</b>"

    inner = tg.nn.Sequential(tg.nn.Linear(2, 2), Tagged())
    model = tg.nn.Sequential(inner, inner[0])  # the Linear twice: one set of weights
    inner[0].bias.requires_grad_(False)
    html = module_html(model)
    assert "&lt;b&gt;not markup&lt;/b&gt;" in html and "<b>not markup" not in html
    names = [row[0] for row in table_rows(html)[1:-1]]
    assert names == ["", "0", "0.0", "0.1", "1"]
    assert 'padding-left: 2.9em">0.0<' in html  # one level deeper than "0"
    assert "bias 2 (frozen)" in html
    assert table_rows(html)[-1] == ["total", "6", "4 trainable"]


# --- history_html and its figure -----------------------------------------------------------
def test_history_html_shows_the_final_numbers_and_the_curves_as_an_inline_png():
    history = moons_run()
    html = history_html(history)
    assert "2 epochs" in html and f"{history.steps} steps" in html
    assert f"train loss {history.train_loss[-1]:.4f}" in html
    assert f"val acc {history.val_acc[-1]:.4f}" in html
    prefix = '<img src="data:image/png;base64,'
    assert prefix in html
    encoded = html.split(prefix, 1)[1].split('"', 1)[0]
    assert base64.b64decode(encoded).startswith(b"\x89PNG\r\n\x1a\n")


def test_steps_are_plotted_against_steps_and_epoch_values_against_epochs():
    history = moons_run()
    step_axes, loss_axes, accuracy_axes = history_figure(history).axes
    (batch_loss,) = step_axes.get_lines()
    assert step_axes.get_xlabel() == "step"
    assert list(batch_loss.get_xdata()) == list(range(1, history.steps + 1))
    assert list(batch_loss.get_ydata()) == history.step_loss
    for axes, train_values in ((loss_axes, history.train_loss), (accuracy_axes, history.train_acc)):
        assert axes.get_xlabel() == "epoch"
        train = axes.get_lines()[0]
        assert list(train.get_xdata()) == [1, 2]
        assert list(train.get_ydata()) == train_values


def test_a_history_without_steps_is_text_without_axes():
    html = history_html(tg.History())
    assert "no training steps yet" in html and "<img" not in html and "<svg" not in html
    with pytest.raises(ValueError, match="no steps"):
        history_figure(tg.History())


def test_the_html_needs_no_ipython_and_leaves_no_pyplot_state():
    script = (
        "import sys; sys.modules['IPython'] = None\n"  # as if IPython were not installed
        "import topograd as tg\n"
        "from topograd.gui.live import history_html, module_html\n"
        "model = tg.nn.Sequential(tg.nn.Linear(2, 2))\n"
        "data = tg.data.make_moons(40)\n"
        "history = tg.fit(model, data, tg.optim.SGD(model.parameters(), lr=0.1), epochs=1,"
        " progress=False, log=None)\n"
        "assert 'Linear' in module_html(model) and 'base64' in history_html(history)\n"
        "print('pyplot' if 'matplotlib.pyplot' in sys.modules else 'no pyplot')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "no pyplot"


# --- LiveCurves ------------------------------------------------------------------------------
@pytest.fixture
def shell():
    """A real IPython shell (history in memory), torn down so no other test sees it."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    yield shell
    InteractiveShell.clear_instance()


def run_cell(shell, code: str, **names):
    """Run `code` as a cell and return what it displayed (the cell's end hooks included)."""
    from IPython.utils.capture import capture_output

    shell.user_ns.update(names, moons_run=moons_run)
    with capture_output() as captured:
        shell.run_cell(code).raise_error()
    return captured.outputs


def test_live_curves_display_once_then_update_that_output_a_bounded_number_of_times(shell):
    live = LiveCurves(every_seconds=0, every_steps=3)
    outputs = run_cell(shell, "history = moons_run(callback=live)", live=live)
    history = shell.user_ns["history"]
    first, *updates = outputs
    display_id = first.transient["display_id"]
    assert not first.update and display_id
    assert updates and all(o.update and o.transient["display_id"] == display_id for o in updates)
    # a redraw every 3 steps at most, one per epoch, one at the cell's end
    assert len(updates) <= math.ceil(history.steps / 3) + len(history.epochs) + 1
    last = updates[-1].data
    assert last["text/plain"] == history.summary()  # after the final step, with the diagnosis
    assert f"{history.steps} steps" in last["text/html"] and "diagnosis" in last["text/plain"]


def test_live_curves_throttle_by_time_and_give_each_run_its_own_output(shell):
    live = LiveCurves(every_seconds=3600)
    outputs = run_cell(
        shell, "first = moons_run(callback=live)\nsecond = moons_run(1, live)", live=live
    )
    ids = [o.transient["display_id"] for o in outputs]
    # each run: its first picture, then (the hour never passes) its final state, drawn when
    # the next run starts and when the cell ends
    assert [o.update for o in outputs] == [False, True, False, True]
    assert ids[0] == ids[1] != ids[2] == ids[3]
    assert outputs[1].data["text/plain"] == shell.user_ns["first"].summary()
    assert outputs[3].data["text/plain"] == shell.user_ns["second"].summary()


def test_live_curves_outside_ipython_warn_and_draw_nothing():
    with pytest.warns(RuntimeWarning, match="draw nothing"):
        live = LiveCurves()
    assert live("step", tg.History()) is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"every_seconds": -1}, "every_seconds must be >= 0"),
        ({"every_seconds": math.nan}, "every_seconds must be >= 0"),
        ({"every_steps": 0}, "every_steps must be an integer >= 1"),
        ({"every_steps": 2.5}, "every_steps must be an integer >= 1"),
    ],
)
def test_live_curves_refuse_bad_throttles(options, message):
    with pytest.raises(ValueError, match=message):
        LiveCurves(**options)


def test_fit_keeps_the_text_bar_outside_a_notebook():
    from tqdm.notebook import tqdm_notebook

    fit_module = importlib.import_module("topograd.engine.train.fit")
    assert not issubclass(fit_module.tqdm, tqdm_notebook)


@pytest.mark.slow
def test_in_a_jupyter_kernel_the_bar_is_a_widget_and_the_curves_update_in_place():
    """The real thing: a kernel runs fit with the progress bar and LiveCurves."""
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("ipykernel")
    cell = (
        "import topograd as tg\n"
        "from topograd.gui.live import LiveCurves\n"
        "tg.manual_seed(0)\n"
        "data = tg.data.make_moons(200)\n"
        "model = tg.nn.Sequential(tg.nn.Linear(2, 8), tg.nn.Tanh(), tg.nn.Linear(8, 2))\n"
        "history = tg.fit(model, data, tg.optim.Adam(model.parameters(), lr=1e-2), epochs=2,"
        " log=None, callback=LiveCurves(every_seconds=0))\n"
        "print(history.steps)"
    )
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    outputs = notebook.cells[0].outputs
    kinds = [o.output_type for o in outputs]
    assert "error" not in kinds and "stderr" not in [o.get("name") for o in outputs], outputs
    shown = [o.get("data", {}) for o in outputs]
    widgets = [data for data in shown if "application/vnd.jupyter.widget-view+json" in data]
    pictures = [data for data in shown if "text/html" in data]
    assert len(widgets) == 1  # tqdm.auto's notebook bar, not text on stderr
    assert len(pictures) == 1  # one output, updated in place to the end of the run
    steps = next(o.text for o in outputs if o.get("name") == "stdout").strip()
    assert f"{steps} steps" in pictures[0]["text/plain"]
    assert "diagnosis" in pictures[0]["text/plain"]
