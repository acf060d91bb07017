"""Models and training runs in a notebook, without Qt: a Module as an HTML table, a History
as its summary and curves, and `LiveCurves`, a `fit` callback that redraws those curves in
place while the run goes on.

>>> import topograd as tg
>>> from topograd.gui.live import module_html
>>> "Linear" in module_html(tg.nn.Sequential(tg.nn.Linear(2, 3)))
True

Only `LiveCurves` needs IPython, and it imports it when it is made: the HTML functions need
nothing beyond the engine (and matplotlib for the curves), so they serve any HTML page too.
The curves are drawn on a `matplotlib.figure.Figure` of its own (engine.train.plots'
`new_figure`): pyplot's current figure and backend are never touched.
"""

from __future__ import annotations

import base64
import html
import io
import math
import time
import warnings

import numpy as np
from topograd.engine.train.history import History
from topograd.engine.train.plots import finish_loss_axes, new_figure

PANEL_WIDTH, PANEL_HEIGHT = 3.6, 2.9  # inches (at 100 dpi) per curve panel
# fixed margins in inches: tight_layout would find much the same ones at twice the cost of
# drawing, which LiveCurves pays on fit's thread at every redraw
MARGINS = {"left": 0.75, "right": 0.15, "bottom": 0.5, "top": 0.6}
INDENT_EM = 1.2  # indentation of a nested layer's name, per level

# Jupyter right-aligns table cells by default: text is aligned left explicitly
_LEFT, _RIGHT = 'style="text-align: left"', 'style="text-align: right"'


# --- a Module ------------------------------------------------------------------------------
def module_html(module) -> str:
    """An HTML table of `module`: one row per layer (dotted name, indented by depth), with its
    type, its options (`extra_repr`), its own parameters' count and shapes, then the totals.

    A parameter shared by two layers is counted in each row but once in the totals, so the
    total matches what an optimizer updates.
    """
    titles = ("layer", "type", "options", "parameters", "shapes")
    header = "".join(f"<th {_LEFT}>{title}</th>" for title in titles)
    rows = [_layer_row(name, layer) for name, layer in module.named_modules()]
    return (
        '<table class="topograd-module">'
        f"<thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody>"
        f"<tfoot>{_totals_row(module)}</tfoot></table>"
    )


def _own_parameters(layer) -> list:
    """(name, Parameter) of the parameters `layer` holds itself, not its children's: their
    names are the only ones without a dot."""
    return [(name, p) for name, p in layer.named_parameters() if "." not in name]


def _layer_row(name: str, layer) -> str:
    depth = name.count(".") + 1 if name else 0
    own = _own_parameters(layer)
    count = f"{sum(p.size for _, p in own):,}" if own else ""
    shapes = ", ".join(_shape_text(parameter_name, p) for parameter_name, p in own)
    indent = f'style="text-align: left; padding-left: {0.5 + INDENT_EM * depth:.1f}em"'
    return (
        f"<tr><td {indent}>{html.escape(name)}</td>"
        f"<td {_LEFT}>{html.escape(type(layer).__name__)}</td>"
        f"<td {_LEFT}>{html.escape(layer.extra_repr())}</td>"
        f"<td {_RIGHT}>{count}</td>"
        f"<td {_LEFT}>{html.escape(shapes)}</td></tr>"
    )


def _shape_text(name: str, parameter) -> str:
    """'weight 4×8': the parameter's shape as people write it, marked when frozen."""
    shape = "\N{MULTIPLICATION SIGN}".join(str(n) for n in parameter.shape) or "scalar"
    frozen = "" if parameter.requires_grad else " (frozen)"
    return f"{name} {shape}{frozen}"


def _totals_row(module) -> str:
    unique = {id(p): p for p in module.parameters()}.values()
    total = sum(p.size for p in unique)
    trainable = sum(p.size for p in unique if p.requires_grad)
    return (
        f'<tr style="border-top: 1px solid #999"><td {_LEFT} colspan="3"><b>total</b></td>'
        f"<td {_RIGHT}><b>{total:,}</b></td><td {_LEFT}>{trainable:,} trainable</td></tr>"
    )


# --- a History -----------------------------------------------------------------------------
def history_html(history: History) -> str:
    """The run's summary (epochs, last and best numbers, why it stopped, the diagnosis) and
    its curves as one inline PNG; before the first step, the summary and a line saying there
    is nothing to plot yet."""
    lines = "<br>".join(html.escape(line) for line in history.summary().splitlines())
    if not history.steps:
        picture = "<em>no training steps yet: no curves to draw</em>"
    else:
        picture = f'<img src="{_png_data_uri(history_figure(history))}" alt="training curves">'
    return f'<div class="topograd-history">{lines}<br>{picture}</div>'


def history_figure(history: History):
    """The curves as a matplotlib Figure: the loss of every step against steps, then the
    epoch losses and the accuracies (when measured) against epochs, each on its own axes so
    that no per-epoch value is placed on the step axis."""
    if not history.steps:
        raise ValueError("history_figure: the History has no steps yet, so there is no curve")
    panels = [_draw_step_loss]
    if history.epochs:
        panels.append(_draw_epoch_loss)
    if _any_finite(history.train_acc) or _any_finite(history.val_acc):
        panels.append(_draw_accuracy)
    width = PANEL_WIDTH * len(panels)
    figure = new_figure(width, PANEL_HEIGHT)
    figure.subplots_adjust(
        left=MARGINS["left"] / width,
        right=1 - MARGINS["right"] / width,
        bottom=MARGINS["bottom"] / PANEL_HEIGHT,
        top=1 - MARGINS["top"] / PANEL_HEIGHT,
        wspace=0.4,
    )
    for index, draw in enumerate(panels, start=1):
        draw(history, figure.add_subplot(1, len(panels), index))
    return figure


def _any_finite(values) -> bool:
    return bool(values) and bool(np.isfinite(values).any())


def _draw_step_loss(history: History, axes) -> None:
    """The batch loss of every step."""
    steps = np.arange(1, history.steps + 1)
    axes.plot(steps, history.step_loss, color="C0", linewidth=0.8)
    axes.set(xlabel="step", ylabel="loss")
    finish_loss_axes(history, axes, "batch loss")


def _draw_epoch_loss(history: History, axes) -> None:
    axes.plot(history.epochs, history.train_loss, "o-", color="C0", label="train (eval mode)")
    if history.val_loss:
        axes.plot(history.epochs, history.val_loss, "o-", color="C1", label="validation")
    _mark_best_epoch(history, axes)
    axes.set(xlabel="epoch", ylabel="loss", title="loss per epoch")
    axes.legend(fontsize=8)


def _draw_accuracy(history: History, axes) -> None:
    axes.plot(history.epochs, history.train_acc, "o-", color="C0", label="train")
    if history.val_acc:
        axes.plot(history.epochs, history.val_acc, "o-", color="C1", label="validation")
    _mark_best_epoch(history, axes)
    title = "accuracy per epoch"
    if history.diagnosis is not None:
        title += f"\n({history.diagnosis.label})"
    axes.set(xlabel="epoch", ylabel="accuracy", title=title)
    axes.legend(fontsize=8)


def _mark_best_epoch(history: History, axes) -> None:
    """A dotted line at the best epoch (whose weights a stopped run restores), and whole
    epochs on the axis."""
    from matplotlib.ticker import MaxNLocator

    if history.best_epoch:
        axes.axvline(history.best_epoch, color="C2", linestyle=":", label="best epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))


def _png_data_uri(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# --- live, during fit ----------------------------------------------------------------------
class LiveCurves:
    """A `fit` callback that shows the run's summary and curves in one notebook output and
    redraws that output in place as the run goes on.

    >>> history = tg.fit(model, data, opt, epochs=3, callback=LiveCurves())  # doctest: +SKIP

    A redraw (about 0.2 s) happens at most every `every_seconds` seconds and every
    `every_steps` steps (an epoch's new measurements count as due steps), so a fast run
    spends its time training. `fit` tells its callback nothing when a run ends (and nothing
    about an epoch that early stopping ends on, nor about a step that a guard stops), so the
    last picture is drawn when the cell finishes: IPython's `post_execute` event, the hook
    matplotlib's inline backend flushes its figures on. Each new run (a new History) gets a
    new output, so one LiveCurves may serve several `fit` calls.

    Outside IPython there is no output to draw in: it warns once when made and then does
    nothing (the progress bar is the terminal's view of a run).
    """

    def __init__(self, every_seconds: float = 1.0, every_steps: int = 1):
        if not isinstance(every_seconds, (int, float)) or not every_seconds >= 0:
            raise ValueError(f"LiveCurves every_seconds must be >= 0, got {every_seconds!r}")
        if isinstance(every_steps, bool) or not isinstance(every_steps, int) or every_steps < 1:
            raise ValueError(f"LiveCurves every_steps must be an integer >= 1, got {every_steps!r}")
        self.every_seconds, self.every_steps = every_seconds, every_steps
        self._shell = _ipython_shell()
        if self._shell is None:
            warnings.warn(
                "LiveCurves draws in a notebook (IPython) and there is none here: it will "
                "draw nothing",
                RuntimeWarning,
                stacklevel=2,
            )
        self._history: History | None = None
        self._handle = None
        self._drawn = (0, 0)  # (steps, epochs) of the picture shown
        self._drawn_at = -math.inf

    def __call__(self, event: str, history: History) -> None:
        """fit's callback: show a new run, or redraw when one is due; never stops the run."""
        if self._shell is None:
            return
        if history is not self._history:
            self._start(history)
        elif self._due(history):
            self._redraw()

    def _start(self, history: History) -> None:
        from IPython.display import display

        if self._handle is not None:  # a run before this one in the same cell: show its end
            self._redraw()
        self._history = history
        self._drawn, self._drawn_at = _progress(history), time.monotonic()
        self._handle = display(_bundle(history), raw=True, display_id=True)
        self._shell.events.register("post_execute", self._draw_last)

    def _due(self, history: History) -> bool:
        steps, epochs = _progress(history)
        enough = steps - self._drawn[0] >= self.every_steps or epochs > self._drawn[1]
        return enough and time.monotonic() - self._drawn_at >= self.every_seconds

    def _redraw(self) -> None:
        self._drawn, self._drawn_at = _progress(self._history), time.monotonic()
        self._handle.update(_bundle(self._history), raw=True)

    def _draw_last(self) -> None:
        """At the end of the cell: the run's final state, always, since what comes after the
        last callback (the diagnosis, a guard's stop) changes the History but not its steps."""
        self._shell.events.unregister("post_execute", self._draw_last)
        self._redraw()
        self._history = self._handle = None  # that output is final


def _ipython_shell():
    """The running IPython shell, or None (also when IPython is not installed)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _progress(history: History) -> tuple[int, int]:
    return history.steps, len(history.epochs)


def _bundle(history: History) -> dict:
    """What a notebook shows (the HTML) and what a text console prints (the summary)."""
    return {"text/html": history_html(history), "text/plain": history.summary()}
