"""The one executor: evaluate a node, propagate a gradient through a node, order a graph.

Eager tensor operations, `Tensor.backward()`, a training step and the GUI's stepper all run
through `evaluate` and `iter_backward` here, so stepping through a pass shows exactly what
training computes.
"""

from __future__ import annotations

import gc
from collections import deque
from operator import attrgetter

import numpy as np

from engine.modes import STATE, AnomalyError
from engine.ops import unbroadcast


def evaluate(op, inputs, attrs):
    """Run `op` forward on the input nodes' data; return (value, saved context or None)."""
    if len(inputs) == 2 and not attrs and not op.saves:
        return op.forward(inputs[0]._data, inputs[1]._data), None
    out = op.forward(*[t._data for t in inputs], **attrs)
    return out if op.saves else (out, None)


def topological_order(roots, requiring_grad=False):
    """Every node reachable from `roots`, each after all of its inputs.

    A node is always created after its inputs, so its `id` (a creation counter) is larger
    than theirs and sorting the reachable nodes by id is a topological order. Reaching them is
    an explicit-stack walk, so a chain of a million nodes needs no recursion. With
    `requiring_grad`, nodes that need no gradient (and what lies behind them) are skipped.
    """
    seen = set()
    stack = []
    for root in roots:
        if root not in seen and (root.requires_grad or not requiring_grad):
            seen.add(root)
            stack.append(root)
    while stack:
        for parent in stack.pop().inputs:
            if parent not in seen and (parent.requires_grad or not requiring_grad):
                seen.add(parent)
                stack.append(parent)
    return sorted(seen, key=_creation_order)


_creation_order = attrgetter("id")


def propagate(node, g):
    """Call `node`'s VJP with its output gradient `g` and add the results into its inputs'
    pending gradients (the sum over every branch that uses an input).

    A VJP may return a gradient in the broadcast shape of the op; it is summed back to the
    input's shape here, the one place where broadcasting is undone. Returns the per-input
    gradients (None where an input needs none).
    """
    op = node.op
    inputs = node.inputs
    attrs = node.attrs
    if op.plain and not attrs:
        if len(inputs) == 2:
            in_grads = op.vjp(g, node._data, inputs[0]._data, inputs[1]._data)
        elif len(inputs) == 1:
            in_grads = op.vjp(g, node._data, inputs[0]._data)
        else:
            in_grads = op.vjp(g, node._data, *[t._data for t in inputs])
    elif op.takes_needs and not op.saves and not attrs and len(inputs) == 2:
        a, b = inputs
        in_grads = op.vjp(g, node._data, a._data, b._data, needs=(a.requires_grad, b.requires_grad))
    else:
        kwargs = dict(attrs)
        if op.saves:
            kwargs["ctx"] = node.ctx
        if op.takes_needs:
            kwargs["needs"] = tuple(t.requires_grad for t in inputs)
        in_grads = op.vjp(g, node._data, *[t._data for t in inputs], **kwargs)
    for parent, pg in zip(inputs, in_grads):
        if pg is None or not parent.requires_grad:
            continue
        if type(pg) is np.ndarray and pg.shape != parent._data.shape:
            pg = unbroadcast(pg, parent._data.shape)
        if STATE.anomaly and not np.all(np.isfinite(pg)):
            raise AnomalyError(
                f"backward: the VJP of {describe(node)} produced a non-finite gradient for its "
                f"input {describe(parent)}",
                node=node,
                phase="backward",
            )
        if pg is g and parent.op is None and type(pg) is np.ndarray:
            pg = pg.copy()  # a passed-through gradient may reach several leaves: never share
        previous = parent._pending
        parent._pending = pg if previous is None else previous + pg
    return in_grads


def store_grad(node, g):
    """Accumulate `g` into `node.grad` for leaves and nodes that asked to retain it.

    A gradient is stored as it is when it owns its writable buffer (VJPs return fresh arrays;
    `propagate` copies passed-through ones); views and broadcasts are copied, so `.grad` can
    always be modified in place.
    """
    if node._grad is not None:
        g = node._grad + g
    elif type(g) is np.ndarray and not (g.flags.owndata and g.flags.writeable):
        g = g.copy()
    node._grad = g


def iter_backward(root, grad):
    """Run backward from `root` one node at a time, yielding (node, gradient) as it goes.

    Nodes come in reverse topological order; a node's gradient is complete (every branch
    summed) when it is yielded. Leaves accumulate into `.grad`, as in PyTorch. Gradients in
    flight live on the nodes (`_pending`) and are cleared even if the pass stops early.
    """
    order = topological_order([root], requiring_grad=True)
    root._pending = grad
    try:
        for node in reversed(order):
            g = node._pending
            if g is None:
                continue
            node._pending = None
            if node.op is None:
                store_grad(node, g)
            else:
                if node.retains_grad:
                    store_grad(node, g)
                propagate(node, g)
            yield node, g
    finally:
        for node in order:
            node._pending = None


def run_backward(root, grad):
    """Consume `iter_backward` without keeping anything: what `Tensor.backward` does.

    The pass allocates many short-lived objects but creates no reference cycles, so the
    cyclic garbage collector is paused while it runs: otherwise it would repeatedly scan the
    whole graph for nothing (that scanning is most of micrograd's time per step).
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        deque(iter_backward(root, grad), maxlen=0)
    finally:
        if collecting:
            gc.enable()


def describe(node) -> str:
    """A short human label for error messages: op, name, id, layer and shape."""
    parts = [node.op.name if node.op is not None else "leaf"]
    if node.name:
        parts.append(repr(node.name))
    parts.append(f"#{node.id}")
    if node.layer is not None:
        parts.append(f"in layer {node.layer}")
    parts.append(f"shape {tuple(np.shape(node._data))}")
    return " ".join(parts)
