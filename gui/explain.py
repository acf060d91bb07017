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
        rows.append(
            ("Attributes", ", ".join(f"{k} = {_attr_text(v)}" for k, v in node.attrs.items()))
        )
    return rows


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
