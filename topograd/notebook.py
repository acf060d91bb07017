"""Notebook tools (`pip install 'topograd[notebook]'`): pictures of graphs, the stepper widget
and live training curves.

>>> import topograd as tg
>>> from topograd.notebook import StepperWidget, LiveCurves, draw
"""

from topograd.gui.live import LiveCurves, history_html, module_html
from topograd.gui.notebook import GraphPicture, draw, register
from topograd.gui.widget import StepperWidget

__all__ = [
    "GraphPicture",
    "LiveCurves",
    "StepperWidget",
    "draw",
    "history_html",
    "module_html",
    "register",
]
