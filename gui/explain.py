"""The notebook inspector's text for one node: what it is, its numbers, and its VJP worked out.

The formula of a VJP says little until it is written out with the node's own numbers, so
`explain` fills it in from what a `Stepper` has shown: the incoming gradient `g`, the input
values, the output value and the gradient each input received. It returns HTML (every piece
of text escaped) and needs neither Qt nor IPython, so the notebook widget and any other
front end can show it.

>>> import topograd as tg
>>> x = tg.Tensor(0.8813735870195432, requires_grad=True, name="x")
>>> stepper = tg.Stepper(tg.Graph(x.tanh()))
>>> _ = stepper.run_to_end_of("backward")
>>> vjp_arithmetic(stepper, stepper.graph.outputs[0].id)
'dx = g * (1 - tanh(x)^2) with g = 1, x = 0.8814, tanh(x) = 0.7071 -> dx = 0.5'
"""

from __future__ import annotations

import html
import re

import numpy as np
from topograd.engine.graph import leaf_role, shape_text
from topograd.gui.values import format_number

SHOWN_ELEMENTS = 4  # how many leading numbers a tensor's summary writes out
# The names an op's formulas give its tensor inputs, by Op.kind; other ops get x, or x0, x1...
INPUT_NAMES = {
    "binary": ("x", "y"),
    "matmul": ("a", "b"),
    "where": ("condition", "x", "y"),
    "batch_norm": ("x", "gamma", "beta"),
    "conv2d": ("x", "w"),
}
# Ops whose output element i depends only on element i of each (broadcast) input: their VJP
# can be worked out for one element with plain numbers.
ELEMENTWISE_KINDS = ("unary", "binary", "power", "clip", "where")
# Attributes that an op's formulas call by a shorter name.
ATTR_SYMBOLS = {"c": "exponent", "slope": "negative_slope"}
# Symbols that an op's VJP formula uses for its output.
OUTPUT_SYMBOLS = ("s",)
# A VJP formula is one clause per input, "dx = ...", separated by ", " or "; ".
CLAUSE = re.compile(r"^(d\w+) = (.+)$")
CLAUSE_SPLIT = re.compile(r"[,;] (?=d\w+ = )")
REMARK = re.compile(r"\s*\([^()]*\b(?:where|summed)\b[^()]*\)")
STATES = {
    "pending": "pending: not computed yet",
    "forward": "forward: value computed",
    "backward": "backward: gradient computed",
}


def explain(stepper, node_id: int) -> str:
    """The inspector's HTML for `node_id`: name and op, shape, state, forward formula and
    attributes, value, gradient, and the VJP formula with this node's numbers."""
    node = stepper.graph[node_id]
    rows = [
        ("Shape", shape_text(node.shape)),
        ("State", STATES[stepper.state_of(node_id)]),
        *_forward_rows(node),
        ("Value", _maybe_number(stepper.value_of(node_id), "not computed yet")),
        ("Gradient", _gradient_text(stepper, node)),
        *_vjp_rows(stepper, node),
    ]
    cells = "".join(
        f"<dt>{html.escape(label)}</dt><dd>{html.escape(text)}</dd>" for label, text in rows
    )
    return (
        f'<div class="tg-inspector"><div class="tg-title">{html.escape(title(node))}</div>'
        f"<dl>{cells}</dl></div>"
    )


def title(node) -> str:
    """'#9 tanh', '#0 x1 (parameter)', '#7 add h': id, then op and name, or a leaf's name and
    role."""
    if node.op is None:
        return f"#{node.id} {node.name or 'leaf'} ({leaf_role(node)})"
    return f"#{node.id} {node.op.name}" + (f" {node.name}" if node.name else "")


def _forward_rows(node) -> list[tuple[str, str]]:
    if node.op is None:
        return []
    rows = [("Forward", node.op.formula)]
    if node.attrs:
        rows.append(("Attributes", attributes_text(node)))
    return rows


def attributes_text(node) -> str:
    """An op's attributes as 'exponent = 3, axis = (1,), keepdims = False': the numbers a
    formula like `x ** c` leaves out; '' when it has none."""
    return ", ".join(f"{k} = {_attr_text(v)}" for k, v in node.attrs.items())


def _vjp_rows(stepper, node) -> list[tuple[str, str]]:
    if node.op is None and node.requires_grad:
        return [("VJP", "none: a leaf keeps the sum of the gradients its users send back")]
    if node.op is None:
        return [("VJP", "none: this leaf takes no gradient")]
    if not node.requires_grad:
        return [("VJP", f"{node.op.vjp_formula} (no gradient flows through this node)")]
    rows = [("VJP", node.op.vjp_formula)]
    worked = vjp_arithmetic(stepper, node.id)
    rows.append(
        ("Worked out", worked or "the numbers appear once this node's backward step is done")
    )
    return rows


def vjp_arithmetic(stepper, node_id: int) -> str | None:
    """The VJP formula with the numbers of `node_id`'s backward step: the incoming gradient,
    the inputs, the output and what each input received; None before that step is done."""
    event = backward_event(stepper, node_id)
    if event is None or event.node.op is None:
        return None
    node = event.node
    names = input_names(node)
    known = [f"g = {number_text(event.grad)}"]
    known += [f"{n} = {number_text(stepper.value_of(x.id))}" for n, x in zip(names, node.inputs)]
    known.append(f"{node.op.formula} = {number_text(event.value)}")
    received = [
        f"d{n} = {number_text(g)}" if g is not None else f"d{n}: none"
        for n, g in zip(names, stepper.input_gradients(event))
    ]
    return f"{node.op.vjp_formula} with {', '.join(known)} -> {', '.join(received)}"


def backward_event(stepper, node_id: int):
    """The backward step of `node_id` among the steps done, or None."""
    return next((e for e in stepper.done if e.phase == "backward" and e.node.id == node_id), None)


def input_names(node) -> tuple[str, ...]:
    """What the op's formulas call each input: x, y for a binary op, a, b for matmul..."""
    count = len(node.inputs)
    names = INPUT_NAMES.get(node.op.kind, ("x",))
    if len(names) == count:
        return names
    return tuple(f"x{i}" for i in range(count))


def number_text(array) -> str:
    """A number in 4 significant digits, or a tensor as its shape, first elements and mean:
    '0.7071', '2x3 [1, 2, 3, 4, ...] mean 3.5'."""
    values = np.asarray(array)
    if values.size == 1:
        return format_number(values.reshape(()))
    if values.size == 0:
        return f"{shape_text(values.shape)} (empty)"
    flat = values.reshape(-1)
    first = ", ".join(format_number(v) for v in flat[:SHOWN_ELEMENTS])
    more = ", ..." if flat.size > SHOWN_ELEMENTS else ""
    mean = format_number(flat.astype(np.float64).mean())
    return f"{shape_text(values.shape)} [{first}{more}] mean {mean}"


def _maybe_number(array, missing: str) -> str:
    return missing if array is None else number_text(array)


def _gradient_text(stepper, node) -> str:
    if not node.requires_grad:
        return "none: this node takes no gradient"
    return _maybe_number(stepper.grad_of(node.id), "not computed yet")


def _attr_text(value) -> str:
    """An attribute as short text: a float in 4 digits, anything else as str, cut to 40."""
    text = format_number(value) if isinstance(value, (float, np.floating)) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def chosen_element(stepper, node_id: int, picked: tuple | None = None) -> tuple | None:
    """The element of a tensor node to work out: `picked` when given, else the one with the
    largest |gradient| (the first such); None for a one-element node or before its gradient."""
    grad = stepper.grad_of(node_id)
    if picked is not None:
        return tuple(picked)
    if grad is None or np.size(grad) <= 1:
        return None
    grad = np.asarray(grad)
    return tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(grad)), grad.shape))


def worked_out(stepper, node_id: int, picked: tuple | None = None) -> list[str]:
    """The VJP with this node's numbers, one line each: what the symbols are, then each
    clause written out (`dx = g * (1 - tanh(x)^2) = 1 * (1 - 0.7071^2) = 0.5`). A tensor node
    is worked out for one element (see `chosen_element`); [] before its backward step."""
    event = backward_event(stepper, node_id)
    if event is None or event.node.op is None:
        return []
    index = chosen_element(stepper, node_id, picked)
    if index is None:
        clauses = _clauses(stepper, event, ())
        if not clauses:
            return [vjp_arithmetic(stepper, node_id)]
        return [_known_line(stepper, event, ()), *clauses]
    how = "picked" if picked is not None else "largest |g|"
    lines = [f"element {_index_text(index)} ({how})", _known_line(stepper, event, index)]
    if event.node.op.kind in ELEMENTWISE_KINDS:
        return lines + _clauses(stepper, event, index)
    mixes = f"{event.node.op.name} mixes elements: {event.node.op.vjp_formula}"
    return [*lines, mixes + "; each input's whole gradient is listed under Received"]


def received(stepper, node_id: int) -> list[tuple[str, str]]:
    """What each input got from this node's backward step: (input's name and op, its gradient's
    shape and numbers); [] before that step."""
    event = backward_event(stepper, node_id)
    if event is None:
        return []
    return [
        (_short_title(stepper.graph, x), "takes no gradient" if g is None else number_text(g))
        for x, g in zip(event.node.inputs, stepper.input_gradients(event))
    ]


def layer_rows(stepper, node_ids, name: str, kind: str | None, parts=()) -> list[tuple[str, str]]:
    """A collapsed layer: its name and type, its output (its last op) with value and gradient,
    and the primitive VJPs its backward is made of, in the order the backward pass runs them.
    A block's `parts` are its layers, (title, node ids) each: its backward names each layer
    once, where the pass enters it, instead of listing the layer's ops."""
    graph = stepper.graph
    ops = [graph[i] for i in node_ids if graph[i].op is not None]
    rows = [("Layer", name), ("Type", kind or "none")]
    if not ops:
        return rows
    out = ops[-1]
    part_of, sizes = {}, {}
    for title, ids in parts:
        inside = [i for i in ids if graph[i].op is not None]
        part_of.update((i, title) for i in inside)
        sizes[title] = len(inside)
    vjps, entered = [], set()
    for n in reversed(ops):
        title = part_of.get(n.id)
        if title is None:
            vjps.append(f"{_short_title(graph, n)}: {n.op.vjp_formula}")
        elif title not in entered:
            entered.add(title)
            vjps.append(f"{title}: its {sizes[title]} op{'s' if sizes[title] != 1 else ''}")
    return [
        *rows,
        ("Output", _short_title(graph, out)),
        ("Value", _maybe_number(stepper.value_of(out.id), "not computed yet")),
        ("Gradient", _gradient_text(stepper, out)),
        ("Backward", "\n".join(vjps)),
    ]


def _known_line(stepper, event, index: tuple) -> str:
    """'with g = 1, x = 0.8814, tanh(x) = 0.7071' at `index` (() for the whole node)."""
    node = event.node
    known = [f"g = {_at(event.grad, index)}"]
    if index == () or node.op.kind in ELEMENTWISE_KINDS:
        for name, x in zip(input_names(node), node.inputs):
            known.append(f"{name} = {_at(_spread(stepper.value_of(x.id), node), index)}")
    known += [f"{k} = {v}" for k, v in _attr_symbols(node).items()]
    known.append(f"{node.op.formula} = {_at(event.value, index)}")
    return "with " + ", ".join(known)


def _clauses(stepper, event, index: tuple) -> list[str]:
    """Each clause of an elementwise op's VJP with the numbers put in and its result; []
    for ops whose formula is not plain arithmetic."""
    node = event.node
    if node.op.kind not in ELEMENTWISE_KINDS:
        return []
    names = input_names(node)
    symbols = {"g": _at(event.grad, index)}
    symbols.update(
        (n, _at(_spread(stepper.value_of(x.id), node), index)) for n, x in zip(names, node.inputs)
    )
    symbols.update((s, _at(event.value, index)) for s in OUTPUT_SYMBOLS)
    symbols.update(_attr_symbols(node))
    results = dict(zip(names, stepper.input_gradients(event)))
    lines = []
    for clause in CLAUSE_SPLIT.split(REMARK.sub("", node.op.vjp_formula)):
        match = CLAUSE.match(clause.strip())
        if match is None or match[1][1:] not in results:
            continue
        grad = results[match[1][1:]]
        filled = _fill(match[2], node.op.formula, _at(event.value, index), symbols)
        result = _result(grad, node, index)
        lines.append(f"{match[0]} = {filled}{'' if result == f' = {filled}' else result}")
    return lines


def _attr_symbols(node) -> dict[str, str]:
    """The node's numeric attributes under the names its formulas use (exponent -> c)."""
    names = {attr: symbol for symbol, attr in ATTR_SYMBOLS.items()}
    return {names.get(k, k): _attr_text(v) for k, v in node.attrs.items() if _is_number(v)}


def _fill(expression: str, formula: str, output: str, symbols: dict[str, str]) -> str:
    """`expression` with the forward formula written as the output's number and each symbol
    as its number (negative numbers in brackets), in one pass."""
    numbers = {formula: output, **symbols}
    pattern = "|".join([re.escape(formula), *(rf"\b{re.escape(s)}\b" for s in symbols)])
    return re.sub(pattern, lambda m: _bracketed(numbers[m[0]]), expression)


def _result(grad, node, index: tuple) -> str:
    """' = 0.5', or why this element's share is not the input's gradient."""
    if grad is None:
        return " (takes no gradient)"
    if np.shape(grad) != tuple(node.shape):
        return " (summed over the broadcast axes into this input's gradient)"
    return f" = {_at(grad, index)}"


def _spread(array, node):
    """An input's value broadcast to the node's shape, so an output index reads it."""
    return np.broadcast_to(np.asarray(array), tuple(node.shape))


def _at(array, index: tuple) -> str:
    return number_text(np.asarray(array)[index] if index else array)


def _index_text(index: tuple) -> str:
    return "[" + ", ".join(str(i) for i in index) + "]"


def _bracketed(text: str) -> str:
    return f"({text})" if text.startswith("-") else text


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def _short_title(graph, node) -> str:
    """'x1: input', 'h: tanh', 'tanh': what the window's boxes call a node."""
    info = graph.info(node)
    return info.op if info.name is None else f"{info.name}: {info.op}"
