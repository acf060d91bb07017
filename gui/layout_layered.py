"""A layered drawing in pure Python, for when graphviz dot is absent or too slow.

Sugiyama's recipe: break cycles, put every box in a layer (longest path from the sources,
then boxes such as weights slid next to their user), give each long edge a waypoint in every
layer it crosses, order each layer by the barycentre of its neighbours, and place boxes as
near their neighbours as the spacing allows. A layer group is laid out the same way inside
its frame and then placed as one box, so frames never overlap each other or other boxes;
edges enter a frame at one port on its front side and leave it at one port on its back side.
The work is done in (rank, cross) coordinates: rank runs across the layers (x for "LR",
y for "TB") and cross along them.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from itertools import pairwise

from topograd.gui.layout import LINE_HEIGHT, PADDING_X, Layout, LayoutInput, text_width

RANK_GAP = 48.0  # between layers, where edges bend
PORT_GAP = 20.0  # between a frame's port and its first or last layer
CROSS_GAP = 16.0  # between boxes of one layer
WAYPOINT_SIZE = 6.0  # the room one edge takes where it crosses a layer
WAYPOINT_GAP = 4.0
GROUP_PADDING = 12.0
GROUP_LABEL = LINE_HEIGHT + 6.0  # room for the frame's title, on its top side
SELF_LOOP = 12.0
MARGIN = 12.0
ORDER_SWEEPS = 4  # barycentre sweeps, each down and up
PLACE_ROUNDS = 3  # coordinate passes, each down and up
WAYPOINT_BUDGET = 3  # waypoints per box; the longest edges beyond it run in lanes outside
LANE_GAP = 8.0

Pair = tuple[int, int]


@dataclass
class _Level:
    """One layered drawing: where every box and waypoint of it goes, in (rank, cross)."""

    layer: list[int]
    rank: list[float]  # centres
    cross: list[float]
    rank_size: list[float]
    cross_size: list[float]
    band: list[tuple[float, float]]  # each layer's rank extent
    chains: dict[Pair, list[int]]  # the waypoints of each edge that spans several layers
    lanes: dict[Pair, float]  # the cross of the lane, outside all boxes, of each long edge
    flipped: set[Pair]  # edges drawn against the flow, to break cycles

    def route(self, source: int, target: int, start: float, end: float) -> list[tuple]:
        """Points from `source`'s back side (at cross `start`) to `target`'s front side (at
        cross `end`), straight across layers and bending only in the gaps between them."""
        if (source, target) in self.flipped:
            return self.route(target, source, end, start)[::-1]
        band, layer, rank = self.band, self.layer, self.rank
        points = [(rank[source] + self.rank_size[source] / 2, start)]
        lane = self.lanes.get((source, target))
        if lane is None:
            points.append((band[layer[source]][1], start))
            for waypoint in self.chains.get((source, target), ()):
                low, high = band[layer[waypoint]]
                points += [(low, self.cross[waypoint]), (high, self.cross[waypoint])]
            points.append((band[layer[target]][0], end))
        else:
            after, before = _gap_after(band, layer[source]), _gap_after(band, layer[target] - 1)
            points += [(after, start), (after, lane), (before, lane), (before, end)]
        points.append((rank[target] - self.rank_size[target] / 2, end))
        return points


def layered_layout(graph: LayoutInput) -> Layout:
    """Lay `graph` out without graphviz; `note` and `seconds` are left for the caller."""
    if graph.rankdir not in ("LR", "TB"):
        raise ValueError(f"rankdir must be 'LR' or 'TB', got {graph.rankdir!r}")
    across = graph.rankdir == "LR"
    index = {node.key: i for i, node in enumerate(graph.nodes)}
    edges = []
    for edge in graph.edges:
        if edge.source not in index or edge.target not in index:
            raise ValueError(f"edge {edge} names a box that is not in the graph")
        edges.append((index[edge.source], index[edge.target], edge))
    rank_size = [node.width if across else node.height for node in graph.nodes]
    cross_size = [node.height if across else node.width for node in graph.nodes]

    labels = {group.key: group.label for group in graph.groups}
    items, members, item_of = _nest(graph, labels)
    top_pairs = {(item_of[s], item_of[t]) for s, t, _ in edges if item_of[s] != item_of[t]}
    top_sequence, top_dag, top_flipped = _orient(len(items), top_pairs)
    inner, entering, leaving = _frame_edges(edges, items, item_of, top_flipped, members)
    frames = {
        group: _Frame(
            labels[group],
            inside,
            inner[group],
            entering[group],
            leaving[group],
            rank_size,
            cross_size,
            across,
        )
        for group, inside in members.items()
    }
    top_rank_size = [
        frames[item].rank_size if item in frames else rank_size[item] for item in items
    ]
    top_cross_size = [
        frames[item].cross_size if item in frames else cross_size[item] for item in items
    ]
    top = _lay_out_level(top_sequence, top_dag, top_flipped, top_rank_size, top_cross_size)

    rank, cross = [0.0] * len(graph.nodes), [0.0] * len(graph.nodes)
    for n, item in enumerate(items):
        if item in frames:
            frame = frames[item]
            frame.move_to(top.rank[n] - top.rank_size[n] / 2, top.cross[n] - top.cross_size[n] / 2)
            for i in members[item]:
                rank[i], cross[i] = frame.position(i)
        else:
            rank[item], cross[item] = top.rank[n], top.cross[n]
    drawing = _Drawing(items, item_of, top, frames, rank, cross, rank_size, cross_size)
    slot = _slots(edges, cross_size)
    routes = {}
    for s, t, edge in edges:
        key = (edge.source, edge.target, edge.position)
        routes[key] = drawing.route(s, t, cross[t] + slot[key])
    return _finish(graph, across, drawing, routes)


def _nest(graph: LayoutInput, labels: dict) -> tuple[list, dict[str, list[int]], list[int]]:
    """The top level's boxes (a group's key for each group with members, a node's index for
    every other node), each group's members, and the top-level box of each node."""
    items: list[str | int] = []
    members: dict[str, list[int]] = {}
    for i, node in enumerate(graph.nodes):
        if node.group not in labels:
            items.append(i)
        elif node.group in members:
            members[node.group].append(i)
        else:
            members[node.group] = [i]
            items.append(node.group)
    number = {item: n for n, item in enumerate(items)}
    item_of = [
        number[node.group] if node.group in labels else number[i]
        for i, node in enumerate(graph.nodes)
    ]
    return items, members, item_of


def _frame_edges(edges, items, item_of, top_flipped, members):
    """For each group: the edges between its members, and the members that edges from
    outside enter or edges to outside leave through the frame's ports (edges the top level
    drew against the flow go straight instead)."""
    inner: dict[str, set[Pair]] = {group: set() for group in members}
    entering: dict[str, set[int]] = {group: set() for group in members}
    leaving: dict[str, set[int]] = {group: set() for group in members}
    for s, t, _ in edges:
        source, target = items[item_of[s]], items[item_of[t]]
        if source == target:
            if s != t and isinstance(source, str):
                inner[source].add((s, t))
        elif (item_of[s], item_of[t]) not in top_flipped:
            if isinstance(source, str):
                leaving[source].add(s)
            if isinstance(target, str):
                entering[target].add(t)
    return inner, entering, leaving


class _Frame:
    """A layer group laid out on its own, with a port on its front side for the edges that
    come in from the rest of the graph and one on its back side for the edges that go out."""

    def __init__(self, label, inside, inner, entering, leaving, rank_size, cross_size, across):
        self.local = {node: n for n, node in enumerate(inside)}
        pairs = {(self.local[s], self.local[t]) for s, t in inner}
        sizes_rank = [rank_size[i] for i in inside]
        sizes_cross = [cross_size[i] for i in inside]
        self.entry = self.exit = None
        if entering:
            self.entry = len(sizes_rank)
            pairs.update((self.entry, self.local[t]) for t in entering)
            sizes_rank.append(0.0)
            sizes_cross.append(0.0)
        if leaving:
            self.exit = len(sizes_rank)
            pairs.update((self.local[s], self.exit) for s in leaving)
            sizes_rank.append(0.0)
            sizes_cross.append(0.0)
        sequence, dag, flipped = _orient(len(sizes_rank), pairs)
        self.level = _lay_out_level(
            sequence, dag, flipped, sizes_rank, sizes_cross, self.entry, self.exit
        )
        self._fit(label, across)
        self.shift = (0.0, 0.0)

    def _fit(self, label: str, across: bool) -> None:
        """The frame: around the members, their waypoints and lanes, with room for the
        label on top, at least as wide as the label, and the ports on its edges."""
        level, ports = self.level, (self.entry, self.exit)
        inner = [i for i in range(len(level.rank)) if i not in ports]
        lanes = list(level.lanes.values())
        low_rank = min(level.rank[i] - level.rank_size[i] / 2 for i in inner) - GROUP_PADDING
        high_rank = max(level.rank[i] + level.rank_size[i] / 2 for i in inner) + GROUP_PADDING
        low_cross = min([level.cross[i] - level.cross_size[i] / 2 for i in inner] + lanes)
        high_cross = max([level.cross[i] + level.cross_size[i] / 2 for i in inner] + lanes)
        low_cross, high_cross = low_cross - GROUP_PADDING, high_cross + GROUP_PADDING
        if self.entry is not None:
            low_rank = min(low_rank, level.rank[self.entry])
        if self.exit is not None:
            high_rank = max(high_rank, level.rank[self.exit])
        if across:
            low_cross -= GROUP_LABEL
        else:
            low_rank -= GROUP_LABEL
        wanted = text_width(label) + 2 * PADDING_X
        if across and high_rank - low_rank < wanted:
            grow = (wanted - (high_rank - low_rank)) / 2
            low_rank, high_rank = low_rank - grow, high_rank + grow
        if not across and high_cross - low_cross < wanted:
            grow = (wanted - (high_cross - low_cross)) / 2
            low_cross, high_cross = low_cross - grow, high_cross + grow
        if self.entry is not None:
            level.rank[self.entry] = low_rank
        if self.exit is not None:
            level.rank[self.exit] = high_rank
        self.low_rank, self.low_cross = low_rank, low_cross
        self.rank_size = high_rank - low_rank
        self.cross_size = high_cross - low_cross

    def move_to(self, rank: float, cross: float) -> None:
        """Put the frame's corner (its lowest rank and cross) at `rank`, `cross`."""
        self.shift = (rank - self.low_rank, cross - self.low_cross)

    def box(self) -> tuple[float, float, float, float]:
        """Lowest rank, lowest cross, rank size, cross size."""
        return (
            self.low_rank + self.shift[0],
            self.low_cross + self.shift[1],
            self.rank_size,
            self.cross_size,
        )

    def position(self, node: int) -> tuple[float, float]:
        local = self.local[node]
        return self.level.rank[local] + self.shift[0], self.level.cross[local] + self.shift[1]

    def entry_cross(self) -> float:
        return self.level.cross[self.entry] + self.shift[1]

    def route(self, source: int, target: int, start: float, end: float) -> list[tuple]:
        """Between two members."""
        return self._route(self.local[source], self.local[target], start, end)

    def leave(self, source: int) -> list[tuple]:
        """From a member to the exit port on the frame's back side."""
        exit_cross = self.level.cross[self.exit] + self.shift[1]
        return self._route(self.local[source], self.exit, self.position(source)[1], exit_cross)

    def enter(self, target: int, end: float) -> list[tuple]:
        """From the entry port on the frame's front side to a member."""
        return self._route(self.entry, self.local[target], self.entry_cross(), end)

    def _route(self, source: int, target: int, start: float, end: float) -> list[tuple]:
        shift_rank, shift_cross = self.shift
        points = self.level.route(source, target, start - shift_cross, end - shift_cross)
        return [(r + shift_rank, c + shift_cross) for r, c in points]


@dataclass
class _Drawing:
    """The top level placed and the frames in it: where each node is, and each edge's path."""

    items: list  # the top level's boxes: a group's key, or a node's index
    item_of: list[int]  # node -> its top-level box
    top: _Level
    frames: dict[str, _Frame]
    rank: list[float]  # node centres
    cross: list[float]
    rank_size: list[float]
    cross_size: list[float]

    def route(self, s: int, t: int, end: float) -> list[tuple]:
        """From node `s`'s back side to node `t`'s front side at cross `end`: out of `s`'s
        frame by its exit port, across the top level, into `t`'s frame by its entry port."""
        rank, cross = self.rank, self.cross
        if s == t:
            back = rank[s] + self.rank_size[s] / 2
            quarter = self.cross_size[s] / 4
            return [
                (back, cross[s] - quarter),
                (back + SELF_LOOP, cross[s] - quarter),
                (back + SELF_LOOP, cross[s] + quarter),
                (back, cross[s] + quarter),
            ]
        source_item, target_item = self.item_of[s], self.item_of[t]
        source_frame = self.frames.get(self.items[source_item])
        target_frame = self.frames.get(self.items[target_item])
        if source_item == target_item:
            return source_frame.route(s, t, cross[s], end)
        if (source_item, target_item) in self.top.flipped and (source_frame or target_frame):
            return [
                (rank[s] - self.rank_size[s] / 2, cross[s]),
                (rank[t] + self.rank_size[t] / 2, end),
            ]
        points, start = [], cross[s]
        if source_frame:
            points = source_frame.leave(s)
            start = points[-1][1]
        entry = target_frame.entry_cross() if target_frame else end
        points += self.top.route(source_item, target_item, start, entry)
        if target_frame:
            points += target_frame.enter(t, end)
        return points


def _orient(count: int, pairs) -> tuple[list[int], list[Pair], set[Pair]]:
    """A topological order (Kahn's, lowest index first, taking the lowest waiting box when
    a cycle blocks), the edges turned to follow it, and the set of edges that were turned."""
    following: list[list[int]] = [[] for _ in range(count)]
    waiting = [0] * count
    for source, target in pairs:
        following[source].append(target)
        waiting[target] += 1
    ready = [i for i in range(count) if waiting[i] == 0]
    heapq.heapify(ready)
    place = [-1] * count
    sequence = []
    next_forced = 0
    while len(sequence) < count:
        if ready:
            box = heapq.heappop(ready)
        else:
            while place[next_forced] >= 0:
                next_forced += 1
            box = next_forced
        if place[box] >= 0:
            continue
        place[box] = len(sequence)
        sequence.append(box)
        for target in following[box]:
            waiting[target] -= 1
            if waiting[target] == 0 and place[target] < 0:
                heapq.heappush(ready, target)
    flipped = {(s, t) for s, t in pairs if place[s] > place[t]}
    dag = {(t, s) if (s, t) in flipped else (s, t) for s, t in pairs}
    return sequence, sorted(dag, key=lambda pair: (place[pair[0]], place[pair[1]])), flipped


def _lay_out_level(sequence, dag, flipped, rank_size, cross_size, first=None, last=None):
    """Layers, waypoints, order and coordinates for one acyclic graph of boxes; `first` and
    `last` (ports) get layers of their own before and after all others."""
    count = len(sequence)
    layer = _assign_layers(sequence, dag, first, last)
    rank_size, cross_size = list(rank_size), list(cross_size)
    waypoint_room = WAYPOINT_BUDGET * count
    chains, long_edges = {}, []
    above: list[list[int]] = [[] for _ in range(count)]
    below: list[list[int]] = [[] for _ in range(count)]
    for source, target in sorted(dag, key=lambda pair: layer[pair[1]] - layer[pair[0]]):
        span = layer[target] - layer[source]
        if span - 1 > waypoint_room:
            long_edges.append((source, target))
            continue
        if span > 1:
            waypoint_room -= span - 1
            chain = list(range(len(layer), len(layer) + span - 1))
            layer += range(layer[source] + 1, layer[target])
            rank_size += [0.0] * len(chain)
            cross_size += [WAYPOINT_SIZE] * len(chain)
            above += [[] for _ in chain]
            below += [[] for _ in chain]
            chains[source, target] = chain
            path = [source, *chain, target]
        else:
            path = [source, target]
        for upper, lower in pairwise(path):
            below[upper].append(lower)
            above[lower].append(upper)
    rows: list[list[int]] = [[] for _ in range(max(layer, default=-1) + 1)]
    for box in sequence:
        rows[layer[box]].append(box)
    for waypoint in range(count, len(layer)):
        rows[layer[waypoint]].append(waypoint)
    _order(rows, above, below)
    cross = _place(rows, above, below, cross_size, count)
    band, rank = _bands(rows, layer, rank_size, {first, last} - {None})
    lanes = _lanes(long_edges, layer, band, cross, cross_size)
    return _Level(layer, rank, cross, rank_size, cross_size, band, chains, lanes, flipped)


def _lanes(long_edges, layer, band, cross, cross_size) -> dict[Pair, float]:
    """Lanes beyond the boxes for edges too long for waypoints: above the boxes for edges
    that start in the upper half, below for the others; edges that do not overlap along the
    layers share a lane (greedy interval colouring)."""
    if not long_edges:
        return {}
    top = min(c - size / 2 for c, size in zip(cross, cross_size))
    bottom = max(c + size / 2 for c, size in zip(cross, cross_size))
    middle = (top + bottom) / 2
    lanes = {}
    for upper in (True, False):
        side = [pair for pair in long_edges if (cross[pair[0]] < middle) == upper]
        side.sort(key=lambda pair: layer[pair[0]])
        free: list[tuple[int, int]] = []  # (the layer a lane is busy until, lane number)
        for source, target in side:
            reuse = free and free[0][0] <= layer[source]
            number = heapq.heappop(free)[1] if reuse else len(free)
            heapq.heappush(free, (layer[target], number))
            away = (number + 1) * LANE_GAP
            lanes[source, target] = top - away if upper else bottom + away
    return lanes


def _gap_after(band, number: int) -> float:
    """The middle of the gap between layer `number` and the next one."""
    return (band[number][1] + band[number + 1][0]) / 2


def _assign_layers(sequence, dag, first, last) -> list[int]:
    """Longest path from the sources; then, from the sinks back, a box with at least as many
    users as inputs moves next to its nearest user (weights sit beside their matmul)."""
    count = len(sequence)
    users: list[list[int]] = [[] for _ in range(count)]
    inputs = [0] * count
    for source, target in dag:
        users[source].append(target)
        inputs[target] += 1
    layer = [0] * count
    for box in sequence:
        for user in users[box]:
            if layer[user] <= layer[box]:
                layer[user] = layer[box] + 1
    for box in reversed(sequence):
        if users[box] and box != first and len(users[box]) >= inputs[box]:
            layer[box] = min(layer[user] for user in users[box]) - 1
    others = [layer[box] for box in range(count) if box not in (first, last)]
    if first is not None:
        layer[first] = min(others, default=0) - 1
    if last is not None:
        layer[last] = max(others, default=0) + 1
    used = {number: n for n, number in enumerate(sorted(set(layer)))}
    return [used[number] for number in layer]


def _order(rows, above, below) -> None:
    """Reorder each layer by the mean position of its neighbours, sweeping down and up."""
    position = [0] * sum(len(row) for row in rows)
    for row in rows:
        for n, box in enumerate(row):
            position[box] = n
    for _ in range(ORDER_SWEEPS):
        for rows_in_turn, neighbours in ((rows[1:], above), (rows[-2::-1], below)):
            for row in rows_in_turn:
                keyed = []
                for n, box in enumerate(row):
                    near = neighbours[box]
                    count = len(near)
                    if count == 1:
                        keyed.append((position[near[0]], n, box))
                    elif count:
                        keyed.append((sum(map(position.__getitem__, near)) / count, n, box))
                    else:
                        keyed.append((n, n, box))
                keyed.sort()
                for n, (_, _, box) in enumerate(keyed):
                    row[n] = box
                    position[box] = n


def _place(rows, above, below, cross_size, box_count) -> list[float]:
    """Cross coordinates: each box as near the mean of its neighbours as the gaps allow
    (an isotonic regression per layer, so order is kept and boxes never overlap)."""
    cross = [0.0] * len(cross_size)
    offsets = []
    for row in rows:
        offset, previous = [], None
        total = 0.0
        for box in row:
            if previous is not None:
                thin = previous >= box_count and box >= box_count
                total += (cross_size[previous] + cross_size[box]) / 2
                total += WAYPOINT_GAP if thin else CROSS_GAP
            offset.append(total)
            previous = box
        offsets.append(offset)
        for box, value in zip(row, offset):
            cross[box] = value - total / 2
    for _ in range(PLACE_ROUNDS):
        for order, neighbours in (
            (range(1, len(rows)), above),
            (range(len(rows) - 2, -1, -1), below),
        ):
            for number in order:
                _settle(rows[number], offsets[number], neighbours, cross, box_count)
    return cross


def _settle(row, offset, neighbours, cross, box_count) -> None:
    """Move one layer's boxes towards their neighbours, keeping order and gaps: pool
    adjacent boxes into blocks while a block wants to sit left of the one before it."""
    means, weights, lengths = [], [], []
    for box, shift in zip(row, offset):
        near = neighbours[box]
        count = len(near)
        if count == 1:
            mean, weight = cross[near[0]] - shift, 4.0 if box >= box_count else 1.0
        elif count:
            mean, weight = sum(map(cross.__getitem__, near)) / count - shift, 1.0
        else:
            mean, weight = cross[box] - shift, 0.05
        length = 1
        while means and means[-1] >= mean:
            before = weights.pop()
            mean = (means.pop() * before + mean * weight) / (before + weight)
            weight += before
            length += lengths.pop()
        means.append(mean)
        weights.append(weight)
        lengths.append(length)
    n = 0
    for mean, length in zip(means, lengths):
        for _ in range(length):
            cross[row[n]] = mean + offset[n]
            n += 1


def _bands(rows, layer, rank_size, ports) -> tuple[list[tuple[float, float]], list[float]]:
    """Each layer's rank extent, as thick as its thickest box, and each box's rank centre."""
    band, start = [], 0.0
    port_rows = {layer[port] for port in ports}
    for number, row in enumerate(rows):
        if number:
            near_port = number in port_rows or number - 1 in port_rows
            start += PORT_GAP if near_port else RANK_GAP
        thickness = max((rank_size[box] for box in row), default=0.0)
        band.append((start, start + thickness))
        start += thickness
    rank = [(band[number][0] + band[number][1]) / 2 for number in layer]
    return band, rank


def _slots(edges, cross_size) -> dict:
    """Where along its target's front side each edge ends, relative to the target's centre:
    spread out in input order, so x * x shows two edges."""
    incoming: dict[int, list] = {}
    for s, t, edge in edges:
        incoming.setdefault(t, []).append((edge.position, s, edge))
    slot = {}
    for target, arriving in incoming.items():
        arriving.sort(key=lambda entry: (entry[0], entry[1]))
        size = cross_size[target]
        for n, (_, _, edge) in enumerate(arriving):
            share = (n + 1) / (len(arriving) + 1) - 0.5
            slot[edge.source, edge.target, edge.position] = size * share
    return slot


def _finish(graph: LayoutInput, across: bool, drawing: _Drawing, routes: dict) -> Layout:
    """Turn (rank, cross) into Qt's (x, y), leave a margin, and drop redundant points."""

    def flip(r: float, c: float) -> tuple[float, float]:
        return (r, c) if across else (c, r)

    boxes = {}
    for i, node in enumerate(graph.nodes):
        half_rank, half_cross = drawing.rank_size[i] / 2, drawing.cross_size[i] / 2
        x, y = flip(drawing.rank[i] - half_rank, drawing.cross[i] - half_cross)
        boxes[node.key] = (x, y, node.width, node.height)
    frames = {}
    for key, frame in drawing.frames.items():
        low_rank, low_cross, rank_size, cross_size = frame.box()
        frames[key] = (*flip(low_rank, low_cross), *flip(rank_size, cross_size))
    lines = {key: [flip(r, c) for r, c in points] for key, points in routes.items()}
    every_box = [*boxes.values(), *frames.values()]
    every_point = [point for points in lines.values() for point in points]
    left = min([x for x, _, _, _ in every_box] + [x for x, _ in every_point], default=0.0)
    top = min([y for _, y, _, _ in every_box] + [y for _, y in every_point], default=0.0)
    right = max([x + w for x, _, w, _ in every_box] + [x for x, _ in every_point], default=0.0)
    bottom = max([y + h for _, y, _, h in every_box] + [y for _, y in every_point], default=0.0)
    dx, dy = MARGIN - left, MARGIN - top
    return Layout(
        "layered",
        "",
        {key: (x + dx, y + dy, w, h) for key, (x, y, w, h) in boxes.items()},
        {key: (x + dx, y + dy, w, h) for key, (x, y, w, h) in frames.items()},
        {key: _simplify([(x + dx, y + dy) for x, y in points]) for key, points in lines.items()},
        right - left + 2 * MARGIN,
        bottom - top + 2 * MARGIN,
        0.0,
    )


def _simplify(points: list[tuple]) -> tuple[tuple[float, float], ...]:
    """Drop repeated points and points in the middle of a straight run."""
    kept: list[tuple] = []
    for point in points:
        if kept and abs(point[0] - kept[-1][0]) < 1e-6 and abs(point[1] - kept[-1][1]) < 1e-6:
            continue
        if len(kept) >= 2:
            (ax, ay), (bx, by) = kept[-2], kept[-1]
            turn = (bx - ax) * (point[1] - ay) - (by - ay) * (point[0] - ax)
            ahead = (bx - ax) * (point[0] - bx) + (by - ay) * (point[1] - by)
            if abs(turn) < 1e-6 and ahead >= 0:
                kept[-1] = point
                continue
        kept.append(point)
    if len(kept) == 1:
        kept.append(kept[0])
    return tuple(kept)
