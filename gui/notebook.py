"""Graphs inline in Jupyter: `draw` for one picture, `register` to show every Graph as one.

Display hooks live here, outside the engine, so that the engine never imports IPython.
Nothing here needs Qt or a screen.

>>> import topograd as tg
>>> from topograd.gui.notebook import draw
>>> x = tg.Tensor(2.0, requires_grad=True, name="x")
>>> graph = tg.Graph((x * x).named("y"))
>>> graph.backward()  # keeps every node's gradient in graph.grads
>>> draw(graph, use_dot=False)  # doctest: +ELLIPSIS
<GraphPicture: 2 nodes, ...x... px; save('graph.svg') writes it>
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from topograd.engine import Graph, Tensor
from topograd.gui.svg import document_size, graph_svg


@dataclass(frozen=True)
class GraphPicture:
    """An SVG picture of a graph; Jupyter shows it inline (`_repr_svg_`)."""

    svg: str = field(repr=False)
    nodes: int

    def _repr_svg_(self) -> str:
        return self.svg

    def save(self, path) -> Path:
        """Write the picture to `path`, which must end in .svg; return the path."""
        path = Path(path)
        if path.suffix.lower() != ".svg":
            raise ValueError(
                f"GraphPicture.save writes SVG only, got {str(path)!r}: use a name ending in "
                ".svg (a browser or rsvg-convert turns it into a PNG)"
            )
        path.write_text(self.svg, encoding="utf-8")
        return path

    def __repr__(self) -> str:
        width, height = document_size(self.svg)
        return (
            f"<GraphPicture: {self.nodes} nodes, {width:.0f}x{height:.0f} px; "
            "save('graph.svg') writes it>"
        )


def draw(x: Tensor | Graph, **options) -> GraphPicture:
    """A picture of `x`'s graph (a Tensor's: Graph(x)), every box saying name, op, shape,
    `data` and `grad`; `options` are graph_svg's (current, states, values, grads, collapsed,
    rankdir, use_dot).

    Draw a Graph after `graph.backward()` to see every node's gradient; a Tensor's graph shows
    the gradients its leaves hold. A plain `x.backward()` frees the graph it ran through, so
    drawing `x` afterwards needs `x.backward(retain_graph=True)`.
    """
    if isinstance(x, Tensor):
        x = Graph(x)
    if not isinstance(x, Graph):
        raise TypeError(f"draw takes a Tensor or a Graph, got {type(x).__name__}")
    return GraphPicture(graph_svg(x, **options), len(x))


def register(ipython=None) -> None:
    """Let IPython show every Graph as its SVG picture, and Modules and training Histories
    as HTML (gui.live) when that part is installed; without a running shell, do nothing."""
    if ipython is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return
        ipython = get_ipython()
        if ipython is None:
            return
    formatters = ipython.display_formatter.formatters
    formatters["image/svg+xml"].for_type(Graph, graph_svg)
    try:
        from topograd.gui.live import history_html, module_html
    except ImportError:
        return
    from topograd.engine.nn import Module
    from topograd.engine.train import History

    formatters["text/html"].for_type(Module, module_html)
    formatters["text/html"].for_type(History, history_html)
