"""The window's colours, light or dark as the system's palette is.

Everything the window paints itself (boxes, frames, edges, the canvas, the editor's line
marks, the plots) takes its colours from the current `Theme`; `follow_palette` picks the
light or the dark one from a QPalette (a dark window colour means a dark desktop), and the
window calls it again when the palette changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtGui import QColor, QPalette


@dataclass(frozen=True)
class Theme:
    """One set of colours for everything the window draws."""

    dark: bool
    canvas: QColor  # the graph's background
    text: QColor
    border: QColor
    current_border: QColor
    breakpoint: QColor
    role_stripe: dict[str, QColor]  # a node's role: the stripe down its left side
    pending_fill: dict[str, QColor]  # a node's role: its fill before it is computed
    state_fill: dict[str, QColor]  # "forward", "backward"
    group_pending_fill: QColor
    frame_fill: QColor
    frame_border: QColor
    frame_text: QColor
    edge: QColor
    skip: QColor  # an edge that skips layers (a residual's identity)
    gradient_low: QColor
    gradient_high: QColor
    skip_gradient_low: QColor
    label_background: QColor  # behind an edge's shape label
    nonfinite_fill: QColor  # a node whose value or gradient holds NaN or Inf
    nonfinite_border: QColor
    current_line: QColor  # the editor's line under the cursor
    linked_line: QColor  # the editor's lines of the selected or stepped node
    gutter_background: QColor
    gutter_text: QColor
    error: QColor


def _colours(**names: str) -> dict[str, QColor]:
    return {name: QColor(value) for name, value in names.items()}


LIGHT = Theme(
    dark=False,
    canvas=QColor("#ffffff"),
    text=QColor("#212121"),
    border=QColor("#607d8b"),
    current_border=QColor("#d81b60"),
    breakpoint=QColor("#e53935"),
    role_stripe=_colours(input="#2e7d32", parameter="#7b1fa2", constant="#757575", op="#455a64"),
    pending_fill=_colours(input="#edf7ed", parameter="#f5eef9", constant="#f1f1f1", op="#fcfcfc"),
    state_fill=_colours(forward="#cfe3fa", backward="#ffd8ad"),
    group_pending_fill=QColor("#eceff1"),
    frame_fill=QColor(236, 239, 241, 110),
    frame_border=QColor("#90a4ae"),
    frame_text=QColor("#546e7a"),
    edge=QColor("#8d8d8d"),
    skip=QColor("#1e88e5"),
    gradient_low=QColor("#b4b4b4"),
    gradient_high=QColor("#d84315"),
    skip_gradient_low=QColor("#b3d4f5"),
    label_background=QColor(255, 255, 255, 200),
    nonfinite_fill=QColor("#ffcdd2"),
    nonfinite_border=QColor("#c62828"),
    current_line=QColor("#fff8dc"),
    linked_line=QColor("#dcebfb"),
    gutter_background=QColor("#f3f3f3"),
    gutter_text=QColor("#8c8c8c"),
    error=QColor("#d32f2f"),
)

DARK = Theme(
    dark=True,
    canvas=QColor("#1e1f22"),
    text=QColor("#e6e6e6"),
    border=QColor("#8fa4b0"),
    current_border=QColor("#ff5c93"),
    breakpoint=QColor("#ff5252"),
    role_stripe=_colours(input="#66bb6a", parameter="#ba68c8", constant="#9e9e9e", op="#90a4ae"),
    pending_fill=_colours(input="#243328", parameter="#30263a", constant="#2c2c2c", op="#2a2b2e"),
    state_fill=_colours(forward="#1f3f63", backward="#5a3a17"),
    group_pending_fill=QColor("#2f3438"),
    frame_fill=QColor(70, 80, 90, 90),
    frame_border=QColor("#607d8b"),
    frame_text=QColor("#b0bec5"),
    edge=QColor("#8a8a8a"),
    skip=QColor("#64b5f6"),
    gradient_low=QColor("#5c5c5c"),
    gradient_high=QColor("#ff7043"),
    skip_gradient_low=QColor("#2d4f73"),
    label_background=QColor(30, 31, 34, 210),
    nonfinite_fill=QColor("#6d1f24"),
    nonfinite_border=QColor("#ff5252"),
    current_line=QColor("#2e2b20"),
    linked_line=QColor("#203850"),
    gutter_background=QColor("#26272a"),
    gutter_text=QColor("#8c8c8c"),
    error=QColor("#ff6b6b"),
)

_current = [LIGHT]


def theme() -> Theme:
    """The colours in use now."""
    return _current[0]


def is_dark(palette: QPalette) -> bool:
    """Whether a palette is a dark one: its window colour is darker than mid-grey."""
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


def follow_palette(palette: QPalette) -> Theme:
    """Use the dark colours for a dark palette, the light ones otherwise; the theme now."""
    _current[0] = DARK if is_dark(palette) else LIGHT
    return _current[0]
