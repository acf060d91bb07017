"""`topograd graph FILE -o OUT`: draw the computation graph (DOT text, or SVG/PNG through
graphviz's `dot`), layers drawn as clusters, or as single boxes with `--collapse`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from topograd.dsl.commands.common import FAILED, OK, fail
from topograd.dsl.inspect import open_subject
from topograd.dsl.training import replace_atomically
from topograd.engine import Graph
from topograd.engine.graph import shape_text

FORMATS = {".dot": None, ".svg": "svg", ".png": "png"}  # suffix -> dot's -T format
LARGE = 1000  # boxes beyond which dot's layout takes long enough to warn about


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
    if args.collapse:
        text, boxes = collapsed_dot(graph, rest=next(iter(looked_at.outputs)))
    else:
        text, boxes = graph.to_dot(), len(graph)
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


def _groups(graph: Graph, rest: str) -> dict[int, str | None]:
    """The box each node is drawn in when collapsed: its top-level layer (`net.fc1` for a
    node made in `net.fc1.n0`). A parameter that something outside its layer also uses (an
    L2 penalty) still sits in the first layer that uses it. When there are layers, what is
    computed outside them (the loss) is one box named `rest`; data inputs stay apart (None).
    """
    groups = {}
    for node in graph.nodes:
        layer = graph.layer_of(node)
        path = None if layer is None else getattr(layer, "path", str(layer))
        groups[node.id] = None if path is None else ".".join(path.split(".")[:2])
    for node in graph.nodes:
        for parent in node.inputs:
            if parent.op is None and parent.requires_grad and groups[parent.id] is None:
                groups[parent.id] = groups[node.id]
    if any(group is not None for group in groups.values()):
        for node in graph.nodes:
            if groups[node.id] is None and (node.op is not None or node.constant):
                groups[node.id] = rest
    return groups


def collapsed_dot(graph: Graph, rest: str = "loss") -> tuple[str, int]:
    """DOT text with one box per layer (and one, `rest`, for what follows them); the number
    of boxes drawn. An edge between boxes is labelled with the shape that crosses it."""
    box_of: dict[int, str] = {}  # node id -> the DOT node it is drawn in
    keys: dict[str, str] = {}  # layer -> its box's DOT node
    members: dict[str, list] = {}
    order: list[str] = []
    groups = _groups(graph, rest)
    for node in graph.nodes:
        group = groups[node.id]
        if group is None:
            key = f"n{node.id}"
            order.append(key)
        else:
            if group not in keys:
                keys[group] = f"layer{len(keys)}"
                order.append(keys[group])
            key = keys[group]
            members.setdefault(group, []).append(node)
        box_of[node.id] = key
    labels = {}
    for group, nodes in members.items():
        infos = [graph.info(n) for n in nodes]
        own = {i.layer_kind for i in infos if i.layer == group} - {None}
        kinds = own or {i.layer_kind for i in infos} - {None}  # else its sublayers' kinds
        title = f"{group} ({', '.join(sorted(kinds))})" if kinds else group
        count = f"{len(nodes)} node{'s' if len(nodes) != 1 else ''}"
        labels[keys[group]] = (f"{title}\\n{count}", "#e8e0ff")
    for node in graph.nodes:
        if box_of[node.id] not in labels:
            info = graph.info(node)
            title = info.op if info.name is None else f"{info.name}: {info.op}"
            labels[box_of[node.id]] = (f"{title}\\n{shape_text(node.shape)}", "#f4f4f4")
    lines = [
        "digraph topograd {",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    for key in order:
        label, fill = labels[key]
        lines.append(f"  {key} [label={_quote(label)}, fillcolor={_quote(fill)}];")
    edges = {}
    for node in graph.nodes:
        for parent in node.inputs:
            start, end = box_of[parent.id], box_of[node.id]
            if start != end:
                edges.setdefault((start, end), shape_text(parent.shape))
    for (start, end), shape in edges.items():
        lines.append(f"  {start} -> {end} [label={_quote(shape)}];")
    lines.append("}")
    return "\n".join(lines) + "\n", len(order)


def _quote(text: str) -> str:
    return '"' + text.replace('"', '\\"') + '"'
