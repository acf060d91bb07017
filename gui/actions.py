"""The window's stepping, view, training and file actions with their keyboard shortcuts, in one
table.

The README's shortcut list is this table; a test checks that every action has its shortcut.
F10 and F11 are left to the desktop (menu bar, full screen), as IDEs on Linux do. `short` is
the toolbar's word for an action, so that the toolbar fits a 1280-pixel-wide screen.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtGui import QAction, QKeySequence


@dataclass(frozen=True)
class ActionSpec:
    name: str  # attribute name on the window's `actions`
    text: str
    shortcut: str
    tip: str
    short: str = ""  # the toolbar's text (default: `text`)
    checkable: bool = False


STEPPING = (
    ActionSpec(
        "step_forward",
        "Step &forward",
        "F7",
        "compute the next node of the forward pass",
        "Forward",
    ),
    ActionSpec(
        "step_backward",
        "Step &backward",
        "F8",
        "backpropagate through the next node (completes the forward pass first)",
        "Backward",
    ),
    ActionSpec("step_back", "Step bac&k", "Shift+F7", "undo the last step", "Back"),
    ActionSpec("run", "&Run", "F5", "run to the next breakpoint or to the end", "Run"),
    ActionSpec(
        "run_to_end", "Run to end of &pass", "Shift+F5", "finish the pass under way", "End of pass"
    ),
    ActionSpec(
        "run_to_selected", "Run to &selected node", "F4", "run until it is computed", "To selected"
    ),
    ActionSpec(
        "toggle_breakpoint", "Toggle &breakpoint", "F9", "on the selected node", "Breakpoint"
    ),
    ActionSpec("play", "&Play / pause", "F6", "take steps at the chosen speed", "Play"),
    ActionSpec("reset", "R&eset", "Ctrl+R", "back to before the first step", "Reset"),
    ActionSpec(
        "new_batch", "&New mini-batch", "Ctrl+B", "step the same model on the next batch", "Batch"
    ),
    ActionSpec(
        "break_nonfinite",
        "Break at first &non-finite value",
        "Ctrl+Shift+N",
        "running and playing stop at the first value or gradient holding NaN or Inf",
        "Break on NaN",
        checkable=True,
    ),
)

VIEW = (
    ActionSpec("find", "&Find node...", "Ctrl+F", "search nodes by name, op or layer"),
    ActionSpec("fit", "&Fit to view", "Ctrl+0", "show the whole graph"),
    ActionSpec("zoom_in", "Zoom &in", "Ctrl+=", "zoom in"),
    ActionSpec("zoom_out", "Zoom &out", "Ctrl+-", "zoom out"),
    ActionSpec("collapse_all", "&Collapse all layers", "Ctrl+Shift+C", "one box per layer"),
    ActionSpec("expand_all", "E&xpand all layers", "Ctrl+Shift+X", "every primitive op"),
    ActionSpec(
        "legend",
        "&Legend",
        "Ctrl+L",
        "what the colours, stripes and edge widths mean",
        "Legend",
        checkable=True,
    ),
    ActionSpec("export", "&Export picture...", "Ctrl+E", "save the graph as SVG or PNG"),
)

TRAINING = (
    ActionSpec("train", "&Train", "Ctrl+T", "train as the training panel says", "Train"),
    ActionSpec("stop", "&Stop training", "Ctrl+.", "stop after the current step", "Stop"),
    ActionSpec(
        "reinitialize",
        "&Reinitialize weights",
        "Ctrl+Shift+I",
        "draw the weights afresh as the file says and clear the curves",
        "Reinitialize",
    ),
)

FILE = (
    ActionSpec("new", "&New", "Ctrl+N", "an empty model file"),
    ActionSpec("open", "&Open...", "Ctrl+O", "open a model file"),
    ActionSpec("save", "&Save", "Ctrl+S", "save the model file"),
    ActionSpec("save_as", "Save &as...", "Ctrl+Shift+S", "save under another name"),
    ActionSpec("reload", "&Reload from disk", "Ctrl+Shift+R", "discard edits, read the file"),
    ActionSpec("quit", "&Quit", "Ctrl+Q", "close the window"),
)

ALL = STEPPING + VIEW + TRAINING + FILE


class Actions:
    """Every action of the window as an attribute (`actions.step_forward`)."""

    def __init__(self, parent):
        for spec in ALL:
            action = QAction(spec.text, parent)
            action.setShortcut(QKeySequence(spec.shortcut))
            action.setStatusTip(spec.tip)
            action.setToolTip(f"{spec.text.replace('&', '')} ({spec.shortcut}): {spec.tip}")
            if spec.short:
                action.setIconText(spec.short)
            action.setCheckable(spec.checkable)
            setattr(self, spec.name, action)

    def of(self, specs) -> list[QAction]:
        return [getattr(self, spec.name) for spec in specs]
