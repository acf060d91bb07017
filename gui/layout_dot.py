"""graphviz dot as the layout engine: our graph as DOT text in, positions from `dot -Tjson0` out.

Boxes have fixed sizes (the scene draws their text, dot only places them) and edges have no
labels, which keeps dot fast; groups are clusters. dot works in points with y growing
upwards and gives centres; the Layout wants Qt's top-left corners with y growing downwards.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess

from topograd.gui.layout import Layout, LayoutInput

POINTS_PER_INCH = 72.0
BIG_GRAPH = 500  # boxes from which dot is told to spend less effort (x positions, crossings)
CURVE_STEPS = 8
# Inches between ranks: room for the edges' shape labels; a top-to-bottom drawing is read
# down a column, so its ranks sit closer.
RANK_SEP = {"LR": 0.6, "TB": 0.35}  # points per Bézier piece that is not already straight


class DotError(RuntimeError):
    """dot exited with an error or wrote something that is not a layout."""


class DotTimeoutError(RuntimeError):
    """dot did not finish in time (and was killed)."""


@functools.cache
def graphviz_version(dot: str) -> str:
    """'2.43' for the dot at path `dot`, or '?' when it does not say."""
    try:
        result = subprocess.run([dot, "-V"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    found = re.search(r"version (\d+\.\d+)", result.stderr + result.stdout)
    return found.group(1) if found else "?"


def dot_text(graph: LayoutInput) -> str:
    """The DOT description of `graph`: fixed-size boxes, clusters for groups (nested as the
    groups are), edges by index."""
    lines = [
        "digraph topograd {",
        f"  graph [rankdir={graph.rankdir}, nodesep=0.25, ranksep={RANK_SEP[graph.rankdir]}];",
        '  node [shape=box, fixedsize=true, label=""];',
    ]
    members: dict[str | None, list[str]] = {group.key: [] for group in graph.groups}
    members[None] = []
    for node in graph.nodes:
        width = node.width / POINTS_PER_INCH
        height = node.height / POINTS_PER_INCH
        line = f"{_quote(node.key)} [width={width:.4f}, height={height:.4f}];"
        members[node.group if node.group in members else None].append(line)
    inside: dict[str | None, list[int]] = {}
    for number, group in enumerate(graph.groups):
        parent = group.parent if group.parent in members and group.parent != group.key else None
        inside.setdefault(parent, []).append(number)
    filled: dict[int, bool] = {}

    def holds_nodes(number: int) -> bool:
        """Whether a group has a box in it or in a group inside it (dot drops empty ones)."""
        if number not in filled:
            filled[number] = False
            key = graph.groups[number].key
            filled[number] = bool(members[key]) or any(map(holds_nodes, inside.get(key, ())))
        return filled[number]

    def cluster(number: int, indent: str) -> None:
        group = graph.groups[number]
        lines.append(f'{indent}subgraph "cluster_{number}" {{')
        lines.append(f"{indent}  graph [label={_quote(group.label)}, fontsize=11, margin=12];")
        lines.extend(f"{indent}  {line}" for line in members[group.key])
        for inner in inside.get(group.key, ()):
            if holds_nodes(inner):
                cluster(inner, indent + "  ")
        lines.append(f"{indent}}}")

    for number in inside.get(None, ()):
        if holds_nodes(number):
            cluster(number, "  ")
    lines += [f"  {line}" for line in members[None]]
    for number, edge in enumerate(graph.edges):
        lines.append(f'  {_quote(edge.source)} -> {_quote(edge.target)} [id="e{number}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def dot_layout(graph: LayoutInput, dot: str, timeout: float) -> Layout:
    """Run the dot at path `dot` on `graph`; `note` and `seconds` are left for the caller.

    Raises DotTimeoutError after `timeout` seconds (dot is killed) and DotError when dot fails.
    """
    command = [dot, "-Tjson0"]
    if len(graph.nodes) >= BIG_GRAPH:
        command += ["-Gnslimit=0.2", "-Gnslimit1=2", "-Gmclimit=0.5"]
    try:
        result = subprocess.run(
            command, input=dot_text(graph), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as error:
        raise DotTimeoutError(f"dot did not finish in {timeout:g} s") from error
    except OSError as error:
        raise DotError(str(error)) from error
    if result.returncode != 0:
        message = result.stderr.strip().splitlines()
        raise DotError(message[-1] if message else f"exit status {result.returncode}")
    try:
        return read_layout(graph, json.loads(result.stdout))
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise DotError(f"unreadable output ({error})") from error


def read_layout(graph: LayoutInput, data: dict) -> Layout:
    """Boxes and edge polylines from dot's JSON, in Qt's coordinates (y down, top-left)."""
    left, bottom, right, top = (float(v) for v in data["bb"].split(","))

    def point(x: float, y: float) -> tuple[float, float]:
        return x - left, top - y

    centres, names, clusters = {}, {}, {}
    for item in data.get("objects", []):
        if "pos" in item:
            x, y = (float(v) for v in item["pos"].rstrip("!").split(","))
            centres[item["name"]] = point(x, y)
            names[item["_gvid"]] = item["name"]
        elif item.get("name", "").startswith("cluster_") and "bb" in item:
            clusters[int(item["name"].removeprefix("cluster_"))] = item["bb"]
    nodes = {}
    for node in graph.nodes:
        x, y = centres[node.key]
        nodes[node.key] = (x - node.width / 2, y - node.height / 2, node.width, node.height)
    groups = {}
    for number, box in sorted(clusters.items()):  # outer frames first, as graph.groups
        x0, y0, x1, y1 = (float(v) for v in box.split(","))
        (qx0, qy1), (qx1, qy0) = point(x0, y0), point(x1, y1)
        groups[graph.groups[number].key] = (qx0, qy0, qx1 - qx0, qy1 - qy0)
    edges = {}
    for item in data.get("edges", []):
        edge = graph.edges[int(item["id"].removeprefix("e"))]
        if (names[item["tail"]], names[item["head"]]) != (edge.source, edge.target):
            raise ValueError(f"dot's edge {item['id']} joins other boxes than {edge}")
        points = [point(x, y) for x, y in _spline(item["pos"])]
        edges[edge.source, edge.target, edge.position] = tuple(points)
    if len(edges) != len(graph.edges):
        raise ValueError(f"dot drew {len(edges)} of {len(graph.edges)} edges")
    return Layout("dot", "", nodes, groups, edges, right - left, top - bottom, 0.0)


def _spline(pos: str) -> list[tuple[float, float]]:
    """The points of dot's edge `pos` ("s,x,y e,x,y p0 p1 ... p3n", a piecewise cubic
    Bézier whose ends are clipped for arrowheads) as a polyline from start to end."""
    start = end = None
    control = []
    for token in pos.split(";")[0].split():
        if token.startswith(("s,", "e,")):
            x, y = token[2:].split(",")
            if token[0] == "s":
                start = (float(x), float(y))
            else:
                end = (float(x), float(y))
        else:
            x, y = token.split(",")
            control.append((float(x), float(y)))
    points = [start] if start else []
    points.append(control[0])
    for n in range(0, len(control) - 3, 3):
        points += _flatten(*control[n : n + 4])
    if end:
        points.append(end)
    return points


def _flatten(p0, p1, p2, p3) -> list[tuple[float, float]]:
    """A cubic Bézier piece as points after p0: just p3 when the piece is straight."""
    chord_x, chord_y = p3[0] - p0[0], p3[1] - p0[1]
    length = max((chord_x**2 + chord_y**2) ** 0.5, 1e-9)
    bend = max(abs(chord_x * (p[1] - p0[1]) - chord_y * (p[0] - p0[0])) / length for p in (p1, p2))
    if bend < 0.5:
        return [p3]
    points = []
    for step in range(1, CURVE_STEPS + 1):
        t = step / CURVE_STEPS
        a, b, c, d = (1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t * t * (1 - t), t**3
        points.append(
            (
                a * p0[0] + b * p1[0] + c * p2[0] + d * p3[0],
                a * p0[1] + b * p1[1] + c * p2[1] + d * p3[1],
            )
        )
    return points


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
