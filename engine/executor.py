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
from topograd.engine.modes import STATE, AnomalyError
from topograd.engine.ops import unbroadcast


def evaluate(op, inputs, attrs):
    """Run `op` forward on the input nodes' data; return (value, saved context or None)."""
    if op.floats_ok and len(inputs) == 2 and not attrs:
        return op.forward(inputs[0]._data, inputs[1]._data), None
    out = op.forward(*_arguments(op, inputs), **attrs)
    return out if op.saves else (out, None)


def _arguments(op, inputs):
    """The inputs' data as the op takes it: Python floats become numpy scalars unless the op
    declares `floats_ok`."""
    if op.floats_ok:
        return [t._data for t in inputs]
    return [np.float64(t._data) if type(t._data) is float else t._data for t in inputs]


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
    add, push, pop = seen.add, stack.append, stack.pop
    if requiring_grad:
        while stack:
            for parent in pop().inputs:
                if parent.requires_grad and parent not in seen:
                    add(parent)
                    push(parent)
    else:
        while stack:
            for parent in pop().inputs:
                if parent not in seen:
                    add(parent)
                    push(parent)
    return sorted(seen, key=_creation_order)


_creation_order = attrgetter("id")


def vjp_of(node, g):
    """Apply `node`'s VJP to its output gradient `g`: one gradient per input (None where an
    input needs none), possibly still in the broadcast shape of the op."""
    op = node.op
    inputs = node.inputs
    attrs = node.attrs
    if op.floats_ok and op.plain and not attrs:
        return op.vjp(g, node._data, *[t._data for t in inputs])
    args = _arguments(op, inputs)
    out = np.float64(node._data) if type(node._data) is float else node._data
    if type(g) is float and not op.floats_ok:
        g = np.float64(g)
    if op.plain and not attrs:
        return op.vjp(g, out, *args)
    kwargs = dict(attrs)
    if op.saves:
        kwargs["ctx"] = node.ctx
    if op.takes_needs:
        kwargs["needs"] = tuple(t.requires_grad for t in inputs)
    return op.vjp(g, out, *args, **kwargs)


def store_grad(node, g):
    """Accumulate `g` into `node.grad` for leaves and nodes that asked to retain it.

    A gradient is stored as it is when it owns its writable buffer (VJPs return fresh arrays;
    passed-through ones are copied before they reach a leaf); views and broadcasts are
    copied, so `.grad` can always be modified in place.
    """
    if node._grad is not None:
        g = node._grad + g
    elif type(g) is np.ndarray and not (g.flags.owndata and g.flags.writeable):
        g = g.copy()
    node._grad = g


def count_users(root):
    """Every node that needs a gradient and is reachable from `root`; afterwards each one's
    `_users` holds how many edges lead into it from the others (an explicit-stack walk, so
    a chain of a million nodes needs no recursion)."""
    reached = [root]
    stack = [root]
    push, pop, keep = stack.append, stack.pop, reached.append
    while stack:
        for parent in pop().inputs:
            if parent.requires_grad:
                if parent._users == 0:
                    push(parent)
                    keep(parent)
                parent._users += 1
    return reached


def iter_backward(root, grad):
    """Run backward from `root` one node at a time, yielding (node, gradient) as it goes.

    Nodes come in reverse topological order (Kahn's algorithm: a node is ready once every
    node that uses it has passed its gradient back), so a node's gradient is complete, every
    branch summed, when it is yielded. Each VJP result is summed back to its input's shape
    here, the one place where broadcasting is undone. Leaves accumulate into `.grad`, as in
    PyTorch. Counters and pending gradients live on the nodes and are cleared even if the
    pass stops early.
    """
    reached = count_users(root)
    anomaly = STATE.anomaly
    root._pending = grad
    ready = [root]
    push, pop = ready.append, ready.pop
    try:
        while ready:
            node = pop()
            g = node._pending
            node._pending = None
            op = node.op
            if op is None:
                if g is not None:
                    store_grad(node, g)
                    yield node, g
                continue
            inputs = node.inputs
            if g is None:  # no branch sent a gradient: only release the inputs
                for parent in inputs:
                    if parent.requires_grad:
                        parent._users -= 1
                        if not parent._users:
                            push(parent)
                continue
            if node.retains_grad:
                store_grad(node, g)
            if op.floats_ok and len(inputs) == 2:  # scalar-mode arithmetic, dispatched inline
                a, b = inputs
                if op.takes_needs:
                    needs = (a.requires_grad, b.requires_grad)
                    in_grads = op.vjp(g, node._data, a._data, b._data, needs=needs)
                else:
                    in_grads = op.vjp(g, node._data, a._data, b._data)
            else:
                in_grads = vjp_of(node, g)
            for parent, pg in zip(inputs, in_grads):
                if not parent.requires_grad:
                    continue
                if pg is not None:
                    if type(pg) is np.ndarray:
                        data = parent._data
                        shape = () if type(data) is float else data.shape
                        if pg.shape != shape:
                            pg = unbroadcast(pg, shape)
                        if pg is g and parent.op is None:
                            pg = pg.copy()  # a passed-through gradient may reach several leaves
                    if anomaly:
                        _check_finite_gradient(node, parent, pg)
                    previous = parent._pending
                    parent._pending = pg if previous is None else previous + pg
                users = parent._users - 1
                parent._users = users
                if not users:
                    push(parent)
            yield node, g
    finally:
        for node in reached:
            node._pending = None
            node._users = 0


def _check_finite_gradient(node, parent, pg):
    if not np.all(np.isfinite(pg)):
        raise AnomalyError(
            f"backward: the VJP of {describe(node)} produced a non-finite gradient for its "
            f"input {describe(parent)}",
            node=node,
            phase="backward",
        )


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
