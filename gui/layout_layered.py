"""A layered drawing in pure Python, for when graphviz dot is absent or too slow.

Sugiyama's recipe: break cycles, put every box in a layer (longest path from the sources,
then boxes such as weights slid next to their user), give each long edge a waypoint in every
layer it crosses, order each layer by the barycentre of its neighbours, and place boxes as
near their neighbours as the spacing allows. A layer group is laid out the same way inside
its frame and then placed as one box, so frames never overlap each other or other boxes;
frames nest (a residual block's frame holds its layers' frames and its join, the inner ones
laid out first); edges enter a frame at one port on its front side and leave it at one port
on its back side, so a block's skip edge runs from its entry port around its layers.
The work is done in (rank, cross) coordinates: rank runs across the layers (x for "LR",
y for "TB") and cross along them.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass
from itertools import pairwise

from topograd.gui.layout import LINE_HEIGHT, PADDING_X, Layout, LayoutInput, text_width

RANK_GAP = {True: 48.0, False: 28.0}  # between layers, where edges bend (LR: True, TB: False)
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

    chains, frames = _nest(graph)
    passages = _orient_frames(edges, chains, frames)
    for frame in reversed(frames.values()):  # inner frames first: the outer ones need sizes
        frame.lay_out(frames, rank_size, cross_size, across)
    for frame in frames.values():  # outer frames first: the inner ones are placed in them
        for item in frame.items:
            if isinstance(item, str):
                frames[item].place_in(frame)
    rank, cross = [0.0] * len(graph.nodes), [0.0] * len(graph.nodes)
    for i, chain in enumerate(chains):
        rank[i], cross[i] = frames[chain[0]].position(i)
    drawing = _Drawing(frames, passages, rank, cross, rank_size, cross_size)
    slot = _slots(edges, cross_size)
    routes = {}
    for s, t, edge in edges:
        key = (edge.source, edge.target, edge.position)
        routes[key] = drawing.route(s, t, cross[t] + slot[key])
    return _finish(graph, across, drawing, routes)


def _nest(graph: LayoutInput) -> tuple[list[tuple], dict]:
    """Each node's frames, innermost first and ending with the top level (None); and every
    frame that holds something, outer ones before the ones inside them, the top level first,
    each with its boxes (a node's index, or an inner frame's key) in the order of their
    first nodes. A group whose parent is not a group of the graph sits at the top level."""
    labels = {group.key: group.label for group in graph.groups}
    parents = {
        group.key: group.parent if group.parent in labels else None for group in graph.groups
    }
    chain_of: dict[str | None, tuple] = {None: (None,)}
    for group in labels:
        found = [group]
        while parents[found[-1]] is not None and parents[found[-1]] not in found:
            found.append(parents[found[-1]])
        chain_of[group] = (*found, None)
    chains = [chain_of[node.group if node.group in labels else None] for node in graph.nodes]
    items: dict[str | None, list] = {None: []}
    for i, chain in enumerate(chains):
        items.setdefault(chain[0], []).append(i)
        for inner, outer in pairwise(chain):
            if outer in items and inner in items[outer]:
                break
            items.setdefault(outer, []).append(inner)
    frames: dict[str | None, _Frame] = {}
    waiting = deque([None])
    while waiting:
        key = waiting.popleft()
        frames[key] = _Frame(key, labels.get(key, ""), items[key])
        waiting += [item for item in items[key] if isinstance(item, str)]
    return chains, frames


@dataclass(frozen=True)
class _Passage:
    """How an edge runs between frames: out of the frames around its source (innermost
    first) by their exit ports, across the frame that holds both ends, and into the frames
    around its target (outermost first) by their entry ports."""

    out_of: tuple
    across: str | None
    into: tuple
    straight: bool  # drawn against the flow between frames: one straight line, no ports


def _orient_frames(edges, chains, frames) -> dict[Pair, _Passage]:
    """Each frame's edges between its boxes and its ports, turned to follow one order, and
    the passage of each edge. Frames are oriented outer ones first, since an edge that the
    frame holding both its ends draws against the flow uses no ports of the frames inside."""
    crossing: dict[str | None, list] = {}
    seen: set[Pair] = set()
    for s, t, _ in edges:
        if s == t or (s, t) in seen:
            continue
        seen.add((s, t))
        up, down = chains[s], chains[t]
        common = set(down)
        k = next(n for n, frame in enumerate(up) if frame in common)
        m = down.index(up[k])
        frame = frames[up[k]]
        pair = (frame.local[up[k - 1] if k else s], frame.local[down[m - 1] if m else t])
        frame.pairs.add(pair)
        crossing.setdefault(up[k], []).append((s, t, pair, up[:k], down[:m]))
    passages = {}
    for key, frame in frames.items():
        flipped = frame.orient()
        for s, t, pair, out_of, into in crossing.get(key, ()):
            straight = pair in flipped and bool(out_of or into)
            if not straight:
                for inner, outer in pairwise((s, *out_of)):
                    frames[outer].leaving.add(frames[outer].local[inner])
                for inner, outer in pairwise((t, *into)):
                    frames[outer].entering.add(frames[outer].local[inner])
            passages[s, t] = _Passage(out_of, key, into[::-1], straight)
    return passages


class _Frame:
    """A layer group, or the top level (key None), laid out on its own: its nodes and the
    frames inside it as boxes, with a port on its front side for the edges that come in from
    the rest of the graph and one on its back side for the edges that go out."""

    def __init__(self, key: str | None, label: str, items: list):
        self.key, self.label, self.items = key, label, items
        self.local = {item: n for n, item in enumerate(items)}
        self.pairs: set[Pair] = set()  # edges between its boxes, by local number
        self.entering: set[int] = set()  # the boxes that edges from outside enter
        self.leaving: set[int] = set()  # the boxes that edges to outside leave
        self.entry = self.exit = None
        self.oriented = None
        self.level: _Level | None = None
        self.shift = (0.0, 0.0)

    def orient(self) -> set[Pair]:
        """Give the ports their numbers and turn the edges to follow one order; the edges
        that were turned."""
        pairs, count = set(self.pairs), len(self.items)
        if self.entering:
            self.entry, count = count, count + 1
            pairs.update((self.entry, n) for n in self.entering)
        if self.leaving:
            self.exit, count = count, count + 1
            pairs.update((n, self.exit) for n in self.leaving)
        self.oriented = _orient(count, pairs)
        return self.oriented[2]

    def lay_out(self, frames: dict, rank_size: list, cross_size: list, across: bool) -> None:
        """Place the boxes (the frames inside already laid out) and fit the frame to them."""
        sizes_rank, sizes_cross = [], []
        for item in self.items:
            if isinstance(item, str):
                sizes_rank.append(frames[item].rank_size)
                sizes_cross.append(frames[item].cross_size)
            else:
                sizes_rank.append(rank_size[item])
                sizes_cross.append(cross_size[item])
        ports = len(self.oriented[0]) - len(self.items)
        sizes_rank += [0.0] * ports
        sizes_cross += [0.0] * ports
        self.level = _lay_out_level(
            *self.oriented, sizes_rank, sizes_cross, self.entry, self.exit, RANK_GAP[across]
        )
        if self.key is not None:
            self._fit(self.label, across)

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

    def place_in(self, outer: _Frame) -> None:
        """Move the frame to where the frame around it (already placed) put its box."""
        n, level = outer.local[self.key], outer.level
        rank = level.rank[n] - level.rank_size[n] / 2 + outer.shift[0]
        cross = level.cross[n] - level.cross_size[n] / 2 + outer.shift[1]
        self.shift = (rank - self.low_rank, cross - self.low_cross)

    def box(self) -> tuple[float, float, float, float]:
        """Lowest rank, lowest cross, rank size, cross size."""
        return (
            self.low_rank + self.shift[0],
            self.low_cross + self.shift[1],
            self.rank_size,
            self.cross_size,
        )

    def position(self, item) -> tuple[float, float]:
        """The centre of one of its boxes (a node's index or a frame's key)."""
        local = self.local[item]
        return self.level.rank[local] + self.shift[0], self.level.cross[local] + self.shift[1]

    def entry_cross(self) -> float:
        return self.level.cross[self.entry] + self.shift[1]

    def exit_cross(self) -> float:
        return self.level.cross[self.exit] + self.shift[1]

    def route(self, source: int, target: int, start: float, end: float) -> list[tuple]:
        """Between two of its boxes or ports (local numbers), from cross `start` to `end`."""
        shift_rank, shift_cross = self.shift
        points = self.level.route(source, target, start - shift_cross, end - shift_cross)
        return [(r + shift_rank, c + shift_cross) for r, c in points]


@dataclass
class _Drawing:
    """The frames placed, the top level first: where each node is, and each edge's path."""

    frames: dict  # frame key (None: the top level) -> _Frame
    passages: dict[Pair, _Passage]
    rank: list[float]  # node centres
    cross: list[float]
    rank_size: list[float]
    cross_size: list[float]

    def route(self, s: int, t: int, end: float) -> list[tuple]:
        """From node `s`'s back side to node `t`'s front side at cross `end`: out of the
        frames around `s` by their exit ports, across the frame that holds both, into the
        frames around `t` by their entry ports."""
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
        passage = self.passages[s, t]
        if passage.straight:
            return [
                (rank[s] - self.rank_size[s] / 2, cross[s]),
                (rank[t] + self.rank_size[t] / 2, end),
            ]
        points, item, start = [], s, cross[s]
        for key in passage.out_of:
            frame = self.frames[key]
            points += frame.route(frame.local[item], frame.exit, start, frame.exit_cross())
            item, start = key, points[-1][1]
        targets = (*passage.into, t)
        for outer, inner in zip((passage.across, *passage.into), targets):
            frame = self.frames[outer]
            arrive = end if inner == t else self.frames[inner].entry_cross()
            source = frame.local[item] if outer == passage.across else frame.entry
            if outer != passage.across:
                start = frame.entry_cross()
            points += frame.route(source, frame.local[inner], start, arrive)
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


def _lay_out_level(
    sequence, dag, flipped, rank_size, cross_size, first=None, last=None, gap=RANK_GAP[True]
):
    """Layers, waypoints, order and coordinates for one acyclic graph of boxes; `first` and
    `last` (ports) get layers of their own before and after all others; `gap` between
    layers."""
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
    band, rank = _bands(rows, layer, rank_size, {first, last} - {None}, gap)
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


def _bands(rows, layer, rank_size, ports, gap) -> tuple[list[tuple[float, float]], list[float]]:
    """Each layer's rank extent, as thick as its thickest box, and each box's rank centre."""
    band, start = [], 0.0
    port_rows = {layer[port] for port in ports}
    for number, row in enumerate(rows):
        if number:
            near_port = number in port_rows or number - 1 in port_rows
            start += PORT_GAP if near_port else gap
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
        if key is None:
            continue
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
