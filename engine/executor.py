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
import math
import threading
from collections import deque
from operator import attrgetter
from sys import getrefcount
from weakref import ref

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


# --- values released during the forward pass ----------------------------------------------
class Released:
    """What a node holds instead of a value that the forward pass released: its shape and
    dtype, which is all a VJP that does not read the value needs. Any arithmetic on it fails
    loudly; `restore` computes the value again from the node's inputs."""

    __slots__ = ("dtype", "shape")
    __array_ufunc__ = None  # numpy refuses it instead of making an object array

    def __init__(self, value):
        self.shape = value.shape
        self.dtype = value.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def __array__(self, dtype=None, copy=None):
        raise RuntimeError("a released value was read without restore(): an engine bug")

    def __repr__(self):
        return f"Released(shape={self.shape}, dtype={self.dtype})"


RELEASE_BYTES = 16384  # smaller values are not worth the bookkeeping
_POOL_LIMIT = 256  # nodes watched at once; the oldest are forgotten beyond it
# Nodes whose value nothing will read during backward, watched until only their users' links
# hold them: node -> [links counted so far, weak references to its users]. One pool for all
# threads: reference counts are global facts, and every check below only ever keeps a value
# it is unsure of.
_POOL: dict = {}


def release_unheld() -> None:
    """Release the value of every watched node that nothing but its users' input links
    holds: no code can reach it except by walking the graph, and no VJP will read it, so it
    is dropped now instead of when backward frees the graph (PyTorch frees such
    intermediates the same way). `Tensor.data`, `Graph` and the stepper compute a released
    value again on demand (`restore`). A node that nothing holds at all is just forgotten."""
    for node in list(_POOL):
        entry = _POOL.get(node)
        if entry is None or getrefcount(node) - entry[0] > _HELD_BY_POOL:
            continue  # someone else holds it (a variable, a list, a hook, a Graph)
        links = _count_links(node, entry[1])  # exact, in case a user died since
        if getrefcount(node) - links != _HELD_BY_POOL:
            entry[0] = links
            continue
        if _POOL.pop(node, None) is not None and links:  # (another thread may have been first)
            node._data = Released(node._data)


def _count_links(node, users) -> int:
    """How many input slots of the live `users` (weak references) hold `node`."""
    links = 0
    for user_ref in users:
        user = user_ref()
        if user is not None:
            for parent in user.inputs:
                if parent is node:
                    links += 1
    return links


def watch(node, op, inputs) -> None:
    """Bookkeeping for a node just recorded: an input whose value its VJP reads is never
    released; one that it only links to gains a counted user; the node itself is watched
    when its own VJP does not read its value and the value is big enough to matter."""
    if _POOL:
        reads = op.reads_inputs
        for position, parent in enumerate(inputs):
            entry = _POOL.get(parent)
            if entry is not None:
                if reads is None or position in reads:
                    _POOL.pop(parent, None)
                else:
                    entry[0] += 1
                    entry[1].append(ref(node))
    if not op.reads_out:
        value = node._data
        if type(value) is np.ndarray and value.nbytes >= RELEASE_BYTES:
            if len(_POOL) >= _POOL_LIMIT:
                _POOL.pop(next(iter(_POOL)), None)
            _POOL[node] = [0, []]


def forget_watched() -> None:
    """Stop watching every node (a backward pass is about to free the links anyway)."""
    _POOL.clear()


def restore(node):
    """The value of `node`, computed again from its inputs if the forward pass released it
    (inputs first, without recursion). Refused when an input changed in place since."""
    if type(node._data) is not Released:
        return node._data
    order = [node]
    stack = [node]
    while stack:
        for parent in stack.pop().inputs:
            if type(parent._data) is Released:
                order.append(parent)
                stack.append(parent)
    for released in sorted(set(order), key=_creation_order):
        if released.ctx is FREED or any(t._changed > released._saved for t in released.inputs):
            raise RuntimeError(
                f"the value of {describe(released)} was released during the forward pass "
                "(nothing held the node and backward does not need it) and can no longer be "
                "computed again: "
                + (
                    "backward() freed its graph"
                    if released.ctx is FREED
                    else "an input changed in place since"
                )
                + ". Keep a reference to the tensor (or build a Graph) before that happens."
            )
        value, _ = evaluate(released.op, released.inputs, released.attrs)
        released._data = value
    return node._data


class _Probe:
    __slots__ = ("__weakref__",)


def _calibrate() -> int:
    """The reference count `release_unheld` sees for a node that only the pool holds (it
    depends on the interpreter): the value for which a probe held by nothing else goes."""
    global _HELD_BY_POOL
    for count in range(1, 16):
        _HELD_BY_POOL = count
        _POOL[_Probe()] = [0, []]
        release_unheld()
        if not _POOL:
            return count
        _POOL.clear()
    raise RuntimeError("could not calibrate the release of unheld values")


_HELD_BY_POOL = 0
_HELD_BY_POOL = _calibrate()


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


def vjp_of(node, g, overwrite=False):
    """Apply `node`'s VJP to its output gradient `g`: one gradient per input (None where an
    input needs none), possibly still in the broadcast shape of the op. With `overwrite`
    (nothing but the caller holds `g`), an op that can (`Op.overwrites`) writes into `g`."""
    op = node.op
    inputs = node.inputs
    attrs = node.attrs
    if overwrite and op.overwrites:
        kwargs = dict(attrs)
        kwargs["overwrite"] = True
        if op.takes_needs:
            kwargs["needs"] = tuple(t.requires_grad for t in inputs)
        return op.vjp(g, node._data, *_arguments(op, inputs), **kwargs)
    if op.floats_ok and op.plain and not attrs:
        return op.vjp(g, node._data, *[t._data for t in inputs])
    args = _arguments(op, inputs)
    out = np.float64(node._data) if type(node._data) is float else node._data
    if type(g) is float and not op.floats_ok:
        g = np.float64(g)
    if op.plain:
        return op.vjp(g, out, *args, **attrs) if attrs else op.vjp(g, out, *args)
    kwargs = dict(attrs) if attrs else {}
    if op.saves:
        kwargs["ctx"] = node.ctx
    if op.takes_needs:
        kwargs["needs"] = tuple([t.requires_grad for t in inputs])
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
    nobody owns it or its owner has finished, both decided under one lock; a node that a
    running pass owns (a concurrent thread, a stepper paused half-way) gets a record in this
    pass's own `shared` dictionary instead. So passes never see each other's bookkeeping, and
    the common case costs attribute reads, not dictionary lookups (about 5x cheaper on a graph
    of 65,000 nodes). A finished pass gives its nodes back all at once by setting `done`: it
    keeps no list of them, so a node the pass has passed is freed as soon as nothing else
    holds it, not when the pass ends.
    """

    __slots__ = ("done", "shared")

    def __init__(self):
        self.done = False
        self.shared = {}  # node -> [users, pending] for nodes that running passes own

    def take(self, node, count) -> None:
        """Start the bookkeeping of `node` with `count` users (under `_CLAIM_LOCK`)."""
        owner = node._owner
        if owner is None or owner.done:
            node._owner = self
            node._users = count
            node._pending = None
        else:
            self.shared[node] = [count, None]

    def release(self) -> None:
        """Give every claimed node back. Under the lock, like claiming: a pass that is
        counting must see every node's owner stay put, or it could claim a node it already
        keeps a record for (when its owner gives it back half-way through the walk)."""
        with _CLAIM_LOCK:
            self.done = True
        self.shared = {}


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
    push, pop = stack.append, stack.pop
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
                    elif owner is None or owner.done:
                        parent._owner = claim
                        parent._users = 1
                        parent._pending = None
                        push(parent)
                    else:  # a running pass's node: this pass's own record
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


def _owned(g) -> bool:
    """Whether the caller's local is the only reference to the array `g` (and g owns its
    writable buffer): a VJP may then write into it."""
    return getrefcount(g) == 3 and g.base is None and g.flags.writeable


def iter_backward(root, grad, retain_graph=True, overwrite=False):
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

    With `overwrite` (the caller keeps no gradient it is handed: `run_backward`), a VJP may
    write its result into a gradient array that nothing else holds instead of allocating one.
    """
    release_unheld()  # what the forward pass left, then the walk frees the rest as it goes
    forget_watched()
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
            if type(g) is float and op.floats_ok:  # scalar mode: Python floats throughout
                if not retain_graph:
                    node.inputs = ()
                    node.ctx = FREED
                if len(inputs) == 2:  # the parents written out: no zip per node
                    a, b = inputs
                    ga, gb = op.vjp(g, node._data, a._data, b._data)
                else:
                    a, b = inputs[0], None
                    (ga,) = op.vjp(g, node._data, a._data)
                if a.requires_grad:
                    if anomaly:
                        _check_finite_gradient(node, a, ga)
                    if a._owner is claim:
                        previous = a._pending
                        a._pending = ga if previous is None else previous + ga
                        count = a._users - 1
                        a._users = count
                        if not count:
                            push(a)
                    elif _arrived(a, ga, claim):
                        push(a)
                if b is not None and b.requires_grad:
                    if anomaly:
                        _check_finite_gradient(node, b, gb)
                    if b._owner is claim:
                        previous = b._pending
                        b._pending = gb if previous is None else previous + gb
                        count = b._users - 1
                        b._users = count
                        if not count:
                            push(b)
                    elif _arrived(b, gb, claim):
                        push(b)
                yield node, g
                continue
            if op.floats_ok and len(inputs) == 2:  # arithmetic on arrays, dispatched inline
                a, b = inputs
                if op.takes_needs:
                    needs = (a.requires_grad, b.requires_grad)
                    if overwrite and g.nbytes >= RELEASE_BYTES and _owned(g):
                        in_grads = op.vjp(
                            g, node._data, a._data, b._data, needs=needs, overwrite=True
                        )
                    else:
                        in_grads = op.vjp(g, node._data, a._data, b._data, needs=needs)
                else:
                    in_grads = op.vjp(g, node._data, a._data, b._data)
            else:
                mine = (
                    overwrite
                    and op.overwrites
                    and type(g) is np.ndarray
                    and g.nbytes >= RELEASE_BYTES
                    and _owned(g)
                )
                in_grads = vjp_of(node, g, mine)
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
                        if previous is None:
                            parent._pending = pg
                        elif type(previous) is np.ndarray and previous.nbytes >= RELEASE_BYTES:
                            previous = None
                            _accumulate(parent, pg)
                        else:
                            parent._pending = previous + pg
                    count = parent._users - 1
                    parent._users = count
                    if not count:
                        push(parent)
                elif _arrived(parent, pg, claim):
                    push(parent)
            if type(g) is not float:  # let go of arrays: inputs and gradients passed on
                a = b = parent = pg = in_grads = inputs = data = previous = None
            yield node, g
    finally:
        claim.release()


def _accumulate(parent, pg) -> None:
    """parent._pending += pg: in place when the pending array is this pass's alone (a fresh
    array that no node, `.grad`, view or caller holds: three references, the slot, the local
    and getrefcount's argument), which saves an array-sized allocation per extra branch."""
    pending = parent._pending
    if (
        type(pending) is np.ndarray
        and getrefcount(pending) == 3
        and pending.base is None
        and pending.flags.writeable
        and pending.shape == np.shape(pg)
        and pending.dtype == np.result_type(pending, pg)
    ):
        np.add(pending, pg, out=pending)
    else:
        parent._pending = pending + pg


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
        deque(iter_backward(root, grad, retain_graph, overwrite=True), maxlen=0)
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
