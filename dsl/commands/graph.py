"""`topograd graph FILE -o OUT`: draw the computation graph (DOT text, or SVG/PNG through
graphviz's `dot`), layers drawn as clusters, or as single boxes with `--collapse`; blocks
(residual, concat) are clusters around their layers, their skip edges drawn in blue."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from topograd.dsl.commands.common import FAILED, OK, fail
from topograd.dsl.inspect import open_subject
from topograd.dsl.training import replace_atomically
from topograd.engine import Graph
from topograd.engine.graph import shape_text
from topograd.engine.nn import Merge

FORMATS = {".dot": None, ".svg": "svg", ".png": "png"}  # suffix -> dot's -T format
LARGE = 1000  # boxes beyond which dot's layout takes long enough to warn about
NODE_FILLS = {"parameter": "#dbe8ff", "input": "#e6f5e6", "constant": "#eeeeee"}
OP_FILL = "#fff6dd"
LAYER_FILL = "#e8e0ff"
LAYER_STYLE = 'style=rounded; color="#8888aa";'
BLOCK_STYLE = 'style="rounded,filled"; color="#5c6bc0"; fillcolor="#f4f5fb"; penwidth=1.5;'
SKIP_EDGE = 'color="#1e88e5", penwidth=2'  # an edge that skips layers (a residual's x)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "graph",
        help="draw the computation graph (.dot, .svg or .png)",
        description="Draw the computation graph of a file: a graph file's outputs, or a "
        "network's loss on a small batch. .dot writes the DOT text; .svg and .png need "
        "graphviz's `dot` program.",
    )
    parser.add_argument("file", help="a model file (.tg)")
    parser.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="where to write: .dot, .svg or .png"
    )
    parser.add_argument(
        "--batch", type=int, default=4, metavar="N", help="examples in the batch (default 4)"
    )
    parser.add_argument(
        "--collapse", action="store_true", help="draw each layer as one box instead of its ops"
    )


def run(args) -> int:
    out = Path(args.output)
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        return fail(f"cannot write {out}: the output must end in .dot, .svg or .png")
    if not out.parent.is_dir():
        return fail(f"cannot write {out}: there is no folder {out.parent}")
    program = FORMATS[suffix] and shutil.which("dot")
    if FORMATS[suffix] and program is None:
        return fail(
            f"writing {suffix} needs graphviz's `dot` program: install graphviz "
            "(apt-get install graphviz), or write .dot text with -o graph.dot"
        )
    looked_at, code = open_subject(args.file, args.batch)
    if looked_at is None:
        return code
    graph = looked_at.graph()
    text, boxes = layer_dot(graph, args.collapse, rest=next(iter(looked_at.outputs)))
    if program is not None and boxes > LARGE:
        print(
            f"note: {boxes} boxes to lay out; dot may take minutes "
            "(--collapse or a smaller --batch draws fewer)",
            file=sys.stderr,
        )
    try:
        if program is None:
            replace_atomically(out, lambda path: Path(path).write_text(text, encoding="utf-8"))
        else:
            replace_atomically(out, lambda path: _render(program, FORMATS[suffix], text, path))
    except OSError as error:
        return fail(f"cannot write {out}: {error.strerror or error}")
    except RuntimeError as error:
        print(f"topograd: {error}", file=sys.stderr)
        return FAILED
    drawn = f" in {boxes} boxes" if args.collapse else ""
    print(f"wrote {out} ({len(graph)} nodes{drawn})")
    return OK


def _render(program: str, format_: str, text: str, path: str) -> None:
    """Run `dot -T<format>` on the DOT text into `path`."""
    try:
        done = subprocess.run(
            [program, f"-T{format_}", "-o", path],
            input=text,
            text=True,
            capture_output=True,
            check=False,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError("graphviz's dot took more than 120 s") from None
    if done.returncode != 0:
        raise RuntimeError(f"graphviz's dot failed: {done.stderr.strip()}")


def _layers(graph: Graph, rest: str | None) -> dict[int, str | None]:
    """The layer each node is drawn in: the innermost one that made it (`net.4.body.0` for a
    convolution in a residual block's body). A parameter that something outside its layer
    also uses (an L2 penalty) still sits in the first layer that uses it. With `rest`, when
    there are layers, what is computed outside them (the loss) is one more layer of that
    name; data inputs stay apart (None)."""
    layers = {}
    for node in graph.nodes:
        layer = graph.layer_of(node)
        layers[node.id] = None if layer is None else getattr(layer, "path", str(layer))
    for node in graph.nodes:
        for parent in node.inputs:
            if parent.op is None and parent.requires_grad and layers[parent.id] is None:
                layers[parent.id] = layers[node.id]
    if rest is not None and any(layer is not None for layer in layers.values()):
        for node in graph.nodes:
            if layers[node.id] is None and (node.op is not None or node.constant):
                layers[node.id] = rest
    return layers


def _parents(paths) -> dict[str, str | None]:
    """Each layer's block: the nearest layer whose path starts its own (`net.4` holds
    `net.4.body.0`), or None."""
    known = set(paths)
    parents = {}
    for path in paths:
        parts = path.split(".")
        enclosing = (".".join(parts[:end]) for end in range(len(parts) - 1, 0, -1))
        parents[path] = next((p for p in enclosing if p in known), None)
    return parents


def _node_box(graph: Graph, node) -> tuple[str, str]:
    """A node's label (name: op, shape, and a one-number value) and fill colour."""
    info = graph.info(node)
    title = info.op if info.name is None else f"{info.name}: {info.op}"
    label = f"{title}\\n{shape_text(node.shape)}"
    if node.size == 1:
        label += f"\\n{float(np.asarray(node.data).reshape(())):.4g}"
    return label, NODE_FILLS.get(info.op, OP_FILL)


def layer_dot(graph: Graph, collapse: bool = False, rest: str = "loss") -> tuple[str, int]:
    """DOT text of `graph` and the number of boxes drawn: a box per node, layers as clusters
    nested as blocks nest them (a residual block's cluster holds its layers' clusters and its
    join), and edges that skip layers (a residual's `x`, a merge's earlier output) in blue.
    With `collapse`, a layer is one box (and `rest` one for what follows the layers) while a
    block stays a cluster around its layers' boxes and its join; edges between boxes are
    labelled with the shape that crosses them."""
    layers = _layers(graph, rest if collapse else None)
    paths = list(dict.fromkeys(path for path in layers.values() if path is not None))
    parents = _parents(paths)
    blocks = {parent for parent in parents.values() if parent is not None}
    kinds: dict[str, set] = {path: set() for path in paths}
    for node in graph.nodes:
        info = graph.info(node)
        if info.layer in kinds and info.layer_kind is not None:
            kinds[info.layer].add(info.layer_kind)
    titles = {
        path: f"{path} ({', '.join(sorted(kinds[path]))})" if kinds[path] else path
        for path in paths
    }
    number = {path: n for n, path in enumerate(paths)}
    box_of: dict[int, str] = {}  # node id -> its box's DOT name
    boxes: dict[str, tuple[str, str]] = {}  # DOT name -> label, fill
    home: dict[str, str | None] = {}  # DOT name -> the layer it is drawn in, in drawing order
    folded: dict[str, list] = {}  # a layer drawn as one box -> its nodes
    for node in graph.nodes:
        path = layers[node.id]
        if collapse and path is not None and path not in blocks:
            key = f"layer{number[path]}"
            folded.setdefault(path, []).append(node)
            home[key] = parents[path]
        else:
            key = f"n{node.id}"
            boxes[key] = _node_box(graph, node)
            home[key] = path
        box_of[node.id] = key
    for path, nodes in folded.items():
        count = f"{len(nodes)} node{'s' if len(nodes) != 1 else ''}"
        boxes[f"layer{number[path]}"] = (f"{titles[path]}\\n{count}", LAYER_FILL)
    clusters = [path for path in paths if not collapse or path in blocks]
    inside: dict[str | None, list[str]] = {}
    for key, where in home.items():
        inside.setdefault(where, []).append(key)
    nested: dict[str | None, list[str]] = {}
    for path in clusters:
        nested.setdefault(parents[path], []).append(path)
    lines = [
        "digraph topograd {",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]

    def draw(where: str | None, indent: str) -> None:
        for key in inside.get(where, ()):
            label, fill = boxes[key]
            lines.append(f"{indent}{key} [label={_quote(label)}, fillcolor={_quote(fill)}];")
        for path in nested.get(where, ()):
            style = BLOCK_STYLE if path in blocks else LAYER_STYLE
            lines.append(f"{indent}subgraph cluster_{number[path]} {{")
            lines.append(f"{indent}  label={_quote(titles[path])}; {style}")
            draw(path, indent + "  ")
            lines.append(f"{indent}}}")

    draw(None, "  ")
    drawn = set()
    for node in graph.nodes:
        for position, parent in enumerate(node.inputs):
            start, end = box_of[parent.id], box_of[node.id]
            skip = _skips(layers, kinds, blocks, parent, node, position)
            if start == end or (collapse and (start, end, skip) in drawn):
                continue
            drawn.add((start, end, skip))
            style = f", {SKIP_EDGE}" if skip else ""
            lines.append(f"  {start} -> {end} [label={_quote(shape_text(parent.shape))}{style}];")
    lines.append("}")
    return "\n".join(lines) + "\n", len(boxes)


def _skips(layers, kinds, blocks, parent, node, position: int) -> bool:
    """Whether the edge parent -> node (input `position`) skips layers: it carries a block's
    input past the block's layers to its join, or an earlier layer's output into a merge
    (whose first input is the current value)."""
    layer, source = layers[node.id], layers[parent.id]
    if layer is None or (source is not None and (source + ".").startswith(layer + ".")):
        return False
    return layer in blocks or (Merge.__name__ in kinds.get(layer, ()) and position > 0)


def _quote(text: str) -> str:
    return '"' + text.replace('"', '\\"') + '"'
