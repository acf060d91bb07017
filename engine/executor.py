"""The one executor: evaluate a node, propagate a gradient through a node, order a graph.

Eager tensor operations, `Tensor.backward()`, a training step and the GUI's stepper all run
through `evaluate` and `iter_backward` here, so stepping through a pass shows exactly what
training computes.

A backward pass keeps its bookkeeping (how many users of each node are still to send their
gradient, the gradients pending) on nodes it has claimed or in records of its own (see
`Claim`), so passes never see each other's: two threads backpropagating through a shared
parameter, a stepper paused half-way and a `backward()` are independent. Adding into a
leaf's `.grad` is done under a lock.
"""

from __future__ import annotations

import gc
import threading
from collections import deque
from operator import attrgetter

import numpy as np
from topograd.engine.modes import AnomalyError, current_modes
from topograd.engine.ops import unbroadcast


class _Freed:
    """The `ctx` of a node whose graph a backward pass freed (see `iter_backward`)."""

    __slots__ = ()

    def __repr__(self):
        return "FREED"


FREED = _Freed()
_GRAD_LOCK = threading.Lock()
_CHANGE_LOCK = threading.Lock()
_latest_change = [0]  # the clock time of the latest in-place change of any tensor


def note_change(time: int) -> None:
    """Remember an in-place change made at `time` (the node clock): a backward pass whose
    nodes all read their inputs after the latest change can skip checking them one by one."""
    with _CHANGE_LOCK:
        if time > _latest_change[0]:
            _latest_change[0] = time


def evaluate(op, inputs, attrs, keep=True):
    """Run `op` forward on the input nodes' data; return (value, saved context or None).

    With `keep=False` (nothing will backpropagate through the node) an op that can skip
    saving its context (`Op.optional_save`: convolution's im2col columns) does not make it.
    """
    if op.floats_ok and len(inputs) == 2 and not attrs:
        return op.forward(inputs[0]._data, inputs[1]._data), None
    if not keep and op.optional_save:
        return op.forward(*_arguments(op, inputs), save=False, **attrs)
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
    copied, so `.grad` can always be modified in place. The lock makes the read-add-write
    atomic when several threads backpropagate into one parameter.
    """
    if type(g) is np.ndarray and not (g.flags.owndata and g.flags.writeable):
        g = g.copy()
    with _GRAD_LOCK:
        previous = node._grad
        node._grad = g if previous is None else previous + g


class Claim:
    """The nodes one backward pass keeps its bookkeeping on.

    A node's `_users` (edges still to send their gradient) and `_pending` (the gradient
    summed so far) belong to the pass named in its `_owner`. A pass claims a node only while
    nobody owns it and gives it back when it ends (or is abandoned), both under one lock; a node
    that another pass owns (a concurrent thread, a stepper paused half-way) gets a record in
    this pass's own `shared` dictionary instead. So passes never see each other's
    bookkeeping, and the common case costs attribute reads, not dictionary lookups (about 5x
    cheaper on a graph of 65,000 nodes).
    """

    __slots__ = ("nodes", "shared")

    def __init__(self):
        self.nodes = []  # claimed: given back by `release`
        self.shared = {}  # node -> [users, pending] for nodes that other passes own

    def take(self, node, count) -> None:
        """Start the bookkeeping of `node` with `count` users (under `_CLAIM_LOCK`)."""
        if node._owner is None:
            node._owner = self
            node._users = count
            node._pending = None
            self.nodes.append(node)
        else:
            self.shared[node] = [count, None]

    def release(self) -> None:
        """Give the claimed nodes back. Under the lock, like claiming: a pass that is counting
        must see every node's owner stay put, or it could claim a node it already keeps a
        record for (when its owner gives it back half-way through the walk)."""
        with _CLAIM_LOCK:
            for node in self.nodes:
                node._pending = None
                node._owner = None
        self.nodes = []


_CLAIM_LOCK = threading.Lock()


def count_users(root, claim: Claim) -> None:
    """Claim every node that needs a gradient and is reachable from `root`, counting how many
    edges lead into it from the others (an explicit-stack walk, so a chain of a million
    nodes needs no recursion).

    The walk also checks, before any gradient is computed (so a refused pass changes no
    `.grad`), that no node's graph was freed by an earlier backward and that no value a VJP
    will read was modified after the forward pass used it.
    """
    stack = [root]
    push, pop, keep = stack.append, stack.pop, claim.nodes.append
    shared = claim.shared
    latest = _latest_change[0]  # nodes made after it read values nobody changed since
    with _CLAIM_LOCK:
        claim.take(root, 0)
        while stack:
            node = pop()
            op = node.op
            if op is None:
                continue
            if node.ctx is FREED:
                raise RuntimeError(_freed_message(node, root))
            if op.uses_values and latest > node._saved:
                _check_unchanged(node)
            for parent in node.inputs:
                if parent.requires_grad:
                    owner = parent._owner
                    if owner is claim:
                        parent._users += 1
                    elif owner is None:
                        parent._owner = claim
                        parent._users = 1
                        parent._pending = None
                        keep(parent)
                        push(parent)
                    else:  # another pass's node: this pass's own record
                        record = shared.get(parent)
                        if record is None:
                            shared[parent] = [1, None]
                            push(parent)
                        else:
                            record[0] += 1


def _check_unchanged(node) -> None:
    saved = node._saved
    if node._changed > saved or any(t._changed > saved for t in node.inputs):
        raise RuntimeError(_modified_message(node))


def _freed_message(node, root) -> str:
    where = "" if node is root else f" (reached from {describe(root)})"
    return (
        f"backward through {describe(node)}{where} a second time: the first backward() "
        "freed its graph to save memory. Call backward(retain_graph=True) the first time to "
        "backpropagate through the same graph again, or compute the forward pass anew."
    )


def _modified_message(node) -> str:
    changed = ", ".join(
        f"{describe(t)} (version {t._version})"
        for t in (*node.inputs, node)
        if t._changed > node._saved
    )
    return (
        f"a value needed to backpropagate through {describe(node)} was modified in place "
        f"after the forward pass used it: {changed or 'one of its inputs'}. An optimizer step, "
        "`.data =` or an in-place operator between forward and backward does this; run the "
        "forward pass again after changing values (or clone a value before changing it)."
    )


def iter_backward(root, grad, retain_graph=True):
    """Run backward from `root` one node at a time, yielding (node, gradient) as it goes.

    Nodes come in reverse topological order (Kahn's algorithm: a node is ready once every
    node that uses it has passed its gradient back), so a node's gradient is complete, every
    branch summed, when it is yielded. Each VJP result is summed back to its input's shape
    here, the one place where broadcasting is undone. Leaves accumulate into `.grad`, as in
    PyTorch. The counters and pending gradients are this pass's own.

    Without `retain_graph`, each op node is freed once its VJP has run: its links to its
    inputs and its saved context are dropped, as PyTorch frees saved tensors after backward.
    Values stay (they are the tensors' own); intermediate values nobody else holds are
    released, so a list of past losses no longer keeps every activation alive.
    """
    claim = Claim()
    try:
        count_users(root, claim)
        if root._owner is claim:
            root._pending = grad
        else:
            claim.shared[root][1] = grad
        anomaly = current_modes().anomaly
        shared = claim.shared
        ready = [root]
        push, pop = ready.append, ready.pop
        while ready:
            node = pop()
            if node._owner is claim:
                g = node._pending
                node._pending = None  # released as soon as it is passed on
            else:
                record = shared[node]
                g, record[1] = record[1], None
            op = node.op
            if op is None:
                if g is not None:
                    store_grad(node, g)
                    yield node, g
                continue
            inputs = node.inputs
            if g is None:  # no branch sent a gradient: only release the inputs
                if not retain_graph:
                    node.inputs = ()
                    node.ctx = FREED
                for parent in inputs:
                    if parent.requires_grad and _arrived(parent, None, claim):
                        push(parent)
                continue
            if node.retains_grad:  # its own copy: no two nodes' .grad are one array
                store_grad(node, g.copy() if type(g) is np.ndarray else g)
            if op.floats_ok and len(inputs) == 2:  # scalar-mode arithmetic, dispatched inline
                a, b = inputs
                if op.takes_needs:
                    needs = (a.requires_grad, b.requires_grad)
                    in_grads = op.vjp(g, node._data, a._data, b._data, needs=needs)
                else:
                    in_grads = op.vjp(g, node._data, a._data, b._data)
            else:
                in_grads = vjp_of(node, g)
            if not retain_graph:  # done with the node: free its links and saved context
                node.inputs = ()
                node.ctx = FREED
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
                if parent._owner is claim:  # the common case, inline
                    if pg is not None:
                        previous = parent._pending
                        parent._pending = pg if previous is None else previous + pg
                    count = parent._users - 1
                    parent._users = count
                    if not count:
                        push(parent)
                elif _arrived(parent, pg, claim):
                    push(parent)
            yield node, g
    finally:
        claim.release()


def _arrived(parent, pg, claim) -> bool:
    """Add `pg` (None: nothing) to `parent`'s pending gradient and count one user done;
    whether every user is done."""
    if parent._owner is claim:
        if pg is not None:
            previous = parent._pending
            parent._pending = pg if previous is None else previous + pg
        parent._users -= 1
        return not parent._users
    record = claim.shared[parent]
    if pg is not None:
        record[1] = pg if record[1] is None else record[1] + pg
    record[0] -= 1
    return not record[0]


def _check_finite_gradient(node, parent, pg):
    if not np.all(np.isfinite(pg)):
        raise AnomalyError(
            f"backward: the VJP of {describe(node)} produced a non-finite gradient for its "
            f"input {describe(parent)}",
            node=node,
            phase="backward",
        )


def run_backward(root, grad, retain_graph=False):
    """Consume `iter_backward` without keeping anything: what `Tensor.backward` does.

    The pass allocates many short-lived objects but creates no reference cycles, so the
    cyclic garbage collector is paused while it runs: otherwise it would repeatedly scan the
    whole graph for nothing (that scanning is most of micrograd's time per step).
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        deque(iter_backward(root, grad, retain_graph), maxlen=0)
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
