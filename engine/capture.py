"""Capture a training step's graph once and replay it without building nodes.

An eager step spends most of its time at small batches on bookkeeping, not arithmetic:
creating a node per op, counting users, claiming nodes for the backward pass. A step whose
graph has the same shape every time (the usual training loop) can skip it: `replay(loss_fn)`
runs `loss_fn` eagerly once, keeps the graph's structure as a flat program (which op reads
which slots, the order backward visited the nodes in), writes that program out as one Python
function (engine/replay_code.py), and from then on runs the ops' own forward and VJP functions
over plain arrays in that order. The arithmetic is the same function calls in the same order,
so the results are bit for bit the eager ones.

Replaying cannot see Python that ran beside the graph, so what the engine computes outside
it registers here while a capture is running: dropout draws a fresh mask (`note_draw`),
batch norm updates its running statistics (`note_effect`), constants read from buffers are
read again (`note_fresh`), and what cannot be replayed says so (`note_unreplayable`). For the
rest (user code deriving numbers from the inputs outside the graph) the second call is a
check: it runs the program and the eager function on the same inputs and random states and
compares the loss, every gradient and every effect; any difference and the step stays eager
for good, with a warning naming the first node that differed. As with `torch.jit.trace`,
Python control flow is frozen at capture: a function that takes another path later (another
loss after epoch 10) must be a new `replay` object.
"""

from __future__ import annotations

import gc
import threading
import warnings

import numpy as np
from topograd.engine.executor import (
    RELEASE_BYTES,
    iter_backward,
    store_grad,
    topological_order,
)
from topograd.engine.modes import current_modes
from topograd.engine.replay_code import (
    DERIVED,
    DRAW,
    FRESH,
    INPUT,
    LEAF,
    OP,
    _fill,
    compile_program,
)
from topograd.engine.tensor import Tensor, _as_value, unit_gradient

MAX_PROGRAMS = 8  # input signatures kept per function (a last short batch is a second one)


class ReplayWarning(UserWarning):
    """A replayed step fell back to eager execution (the message says why)."""


# --- what the engine registers while a capture runs ---------------------------------------
class _Recording:
    """The side channel of one capture: draws, effects, fresh constants, modules called."""

    def __init__(self):
        self.draws = []  # (node, generator(), make(generator) -> array)
        self.fresh = []  # (node, read() -> array)
        self.effects = []  # (apply(*values), [(node, part)], buffers it changes)
        self.modules = {}  # id -> module whose __call__ ran
        self.unreplayable = []  # reasons
        self.checks = []  # (check(array), array): validation replays run on new inputs
        self.derived = []  # (node, source array, make(array)): constants made from an input


thread_state = threading.local()
"""Holds `recording` while a capture runs in this thread; empty otherwise, so that a hot path
(Module.__call__) can test `thread_state.__dict__` without a function call."""


def recording() -> _Recording | None:
    """The capture running in this thread, if any (the hooks below do nothing otherwise)."""
    return getattr(thread_state, "recording", None)


def note_draw(node, generator, make) -> None:
    """`node` (a constant leaf) holds random numbers: replays draw them again with
    `make(generator())`, from the generator `generator()` names at that moment."""
    rec = recording()
    if rec is not None:
        rec.draws.append((node, generator, make))


def note_derived(node, source, make) -> None:
    """`node` (a constant leaf) is `make(source)`, numbers computed in Python from an input
    array `source` (a loss's targets recoded): replays compute `make` of the new input."""
    rec = recording()
    if rec is not None:
        rec.derived.append((node, source, make))


def note_fresh(node, read) -> None:
    """`node` (a constant leaf) is a copy of state that changes between steps (running
    statistics in evaluation mode): replays take `read()` instead of the captured value."""
    rec = recording()
    if rec is not None:
        rec.fresh.append((node, read))


def note_effect(apply, sources, buffers=()) -> None:
    """A side effect of the forward pass: replays call `apply(*values)` where each source is
    `(node, "value")` or `(node, "ctx")`. `buffers` are the arrays it changes in place (the
    second call's check compares and restores them)."""
    rec = recording()
    if rec is not None:
        rec.effects.append((apply, list(sources), list(buffers)))


def note_check(check, array) -> None:
    """`check(array)` validates an input the function read outside the graph (class labels):
    replays run it on the new input before any arithmetic."""
    rec = recording()
    if rec is not None:
        rec.checks.append((check, array))


def note_module(module) -> None:
    rec = recording()
    if rec is not None:
        rec.modules[id(module)] = module


def note_unreplayable(reason: str, expected: bool = False) -> None:
    """What the function did cannot be replayed (the step stays eager, with this reason).
    `expected`: a layer that is never replayed by design (no ReplayWarning, `status` says
    why)."""
    rec = recording()
    if rec is not None:
        rec.unreplayable.append((reason, expected))


# --- the program -----------------------------------------------------------------------------


class Program:
    """One captured step: slots in topological order, how each is computed, and the order
    backward visits them in. Holds parameters and constants, never activations."""

    def __init__(self, root, inputs, rec: _Recording):
        order = topological_order([root])
        slot = {id(node): position for position, node in enumerate(order)}
        input_slots = {id(t): position for position, t in enumerate(inputs)}
        draws = {id(node): (generator, make) for node, generator, make in rec.draws}
        fresh = {id(node): read for node, read in rec.fresh}
        arrays = {id(t._data): position for position, t in enumerate(inputs)}
        derived = {
            id(node): (make, arrays[id(source)])
            for node, source, make in rec.derived
            if id(source) in arrays
        }
        self.steps = []
        self.shapes = []
        self.floats = []  # whether the slot's value is a Python float (a 0-d float64)
        self.large = []  # whether it is an array worth releasing early
        self.needs_grad = [node.requires_grad for node in order]
        self.leaves = {}  # slot -> the Tensor whose .grad it accumulates into (parameters)
        for position, node in enumerate(order):
            data = node._data
            self.shapes.append(() if type(data) is float else tuple(data.shape))
            self.floats.append(type(data) is float)
            self.large.append(type(data) is not float and _nbytes(data) >= RELEASE_BYTES)
            key = id(node)
            if node.op is None:
                if key in input_slots:
                    self.steps.append((INPUT, input_slots[key]))
                elif key in draws:
                    self.steps.append((DRAW, draws[key]))
                elif key in fresh:
                    self.steps.append((FRESH, fresh[key]))
                elif key in derived:
                    self.steps.append((DERIVED, derived[key]))
                else:
                    self.steps.append((LEAF, node))
                    if node.requires_grad:
                        self.leaves[position] = node
                continue
            op = node.op
            attrs, substituted = _substitute(node.attrs, arrays)
            needs = tuple(t.requires_grad for t in node.inputs)
            self.steps.append(
                (OP, op, [slot[id(t)] for t in node.inputs], attrs, substituted, needs)
            )
        self.root = slot[id(root)]
        self.input_requires = [t.requires_grad for t in inputs]
        self._slot = slot
        self.order = []
        self.checks = [
            (check, arrays[id(array)]) for check, array in rec.checks if id(array) in arrays
        ]
        self.effects = [
            (apply, [(slot[id(node)], part) for node, part in sources], buffers)
            for apply, sources, buffers in rec.effects
        ]
        self.generators = [generator for _, generator, _ in rec.draws]
        self.buffers = [buffer for _, _, buffers in rec.effects for buffer in buffers]
        self.modules = list(rec.modules.values())
        self.training = [m.training for m in self.modules]
        self.leaf_layout = [
            (step[1], self.shapes[position], _dtype(step[1]._data))
            for position, step in enumerate(self.steps)
            if step[0] == LEAF
        ]
        self.size = len(order)
        self._plan_release()

    def still_valid(self) -> bool:
        """Whether what the capture took for granted still holds: every module in the same
        training mode, every leaf's value of the same shape and dtype (a weight replaced by
        `.data =` with another dtype, `model.float()`, would otherwise mix dtypes silently:
        the layers' own dtype checks do not run in a replay)."""
        for module, training in zip(self.modules, self.training):
            if module.training != training:
                return False
        for node, shape, dtype in self.leaf_layout:
            data = node._data
            if type(data) is float:
                if shape != ():
                    return False
            elif data.shape != shape or data.dtype != dtype:
                return False
        return True

    def set_backward(self, nodes) -> None:
        """The order the eager backward pass visited the nodes in (its sums of several
        branches then happen in the same order: the same bits)."""
        slot = self._slot
        self.order = [slot[id(node)] for node in nodes if id(node) in slot]
        self._slot = None
        self._compile()

    def _plan_release(self):
        """Which values the forward pass can drop as soon as their last reader has run:
        those no VJP reads (PyTorch keeps only what backward needs, too)."""
        kept = set()
        last = {}
        for position, step in enumerate(self.steps):
            if step[0] != OP:
                continue
            op, sources = step[1], step[2]
            if op.reads_out and self.needs_grad[position]:
                kept.add(position)
            for index, source in enumerate(sources):
                last[source] = position
                if self.needs_grad[position] and (
                    op.reads_inputs is None or index in op.reads_inputs
                ):
                    kept.add(source)
        for _, sources, _ in self.effects:
            kept.update(source for source, _ in sources)
        kept.add(self.root)
        self.release_after = [[] for _ in self.steps]
        for source, position in last.items():
            if source not in kept and self.steps[source][0] == OP and self.large[source]:
                self.release_after[position].append(source)

    # --- running ---------------------------------------------------------------------------
    def _compile(self) -> None:
        """Per step, a tuple with just what running it takes (no per-call decisions), written
        out as one function (engine/replay_code.py)."""
        floats = self.floats
        forward_plan = []
        for position, step in enumerate(self.steps):
            kind = step[0]
            if kind != OP:
                forward_plan.append((kind, position, step[1]))
                continue
            _, op, sources, attrs, substituted, _ = step
            convert = not op.floats_ok and any(floats[s] for s in sources)
            releases = self.release_after[position]
            forward_plan.append(
                (OP, position, op.forward, sources, attrs, substituted, op.saves, convert, releases)
            )
        backward_plan = []
        for position in self.order:
            step = self.steps[position]
            if step[0] != OP:
                backward_plan.append((position, None, (), None, (), False, False, (), False))
                continue
            _, op, sources, attrs, substituted, needs = step
            static = dict(attrs)
            if op.takes_needs:
                static["needs"] = needs
            convert = not op.floats_ok and (floats[position] or any(floats[s] for s in sources))
            targets = tuple(
                (index, source, self.shapes[source], self.steps[source][0] != OP)
                for index, source in enumerate(sources)
                if self.needs_grad[source]
            )
            overwrites = op.overwrites and not op.saves
            backward_plan.append(
                (
                    position,
                    op.vjp,
                    sources,
                    static,
                    substituted,
                    op.saves,
                    convert,
                    targets,
                    overwrites,
                )
            )
        self._code = compile_program(self, forward_plan, backward_plan)

    def run(self, arguments, input_tensors, store=store_grad):
        """Forward and backward (the compiled function, see engine/replay_code.py); returns
        the loss value."""
        for check, position in self.checks:
            check(arguments[position])
        grad_tensors = self.leaves
        if any(self.input_requires):
            grad_tensors = dict(grad_tensors)
            for position, step in enumerate(self.steps):
                if step[0] == INPUT and self.input_requires[step[1]]:
                    grad_tensors[position] = input_tensors[step[1]]
        return self._code(arguments, grad_tensors, store)


def _dtype(data):
    return None if type(data) is float else data.dtype


def _nbytes(data) -> int:
    return data.size * data.dtype.itemsize  # an array or a Released stand-in


def _substitute(attrs, arrays):
    """Attributes with each array that is an input's own data replaced by a marker (labels
    picked by index): (attrs, [(key, index or None, input position)])."""
    found = []
    for key, value in attrs.items():
        if isinstance(value, tuple):
            for index, part in enumerate(value):
                if type(part) is np.ndarray and id(part) in arrays:
                    found.append((key, index, arrays[id(part)]))
        elif type(value) is np.ndarray and id(value) in arrays:
            found.append((key, None, arrays[id(value)]))
    return dict(attrs), found


# --- the public face -------------------------------------------------------------------------
class ReplayedStep:
    """`loss_fn` run as forward and backward in one call, replayed after the first calls.

    Calling it with the step's inputs (arrays, lists, floats or Tensors: the data; other
    arguments, such as ints, reach `loss_fn` as they are) returns the loss as a Tensor
    without a graph and leaves every parameter's gradient accumulated in `.grad`, as
    `loss_fn(...).backward()` would. The first call with a new input signature (the data's
    shapes and dtypes, the other arguments' values) runs eagerly and captures;
    the second checks the capture against an eager run; later calls replay. `status` says
    which it is doing and why.
    """

    def __init__(self, loss_fn):
        self.loss_fn = loss_fn
        self.__name__ = getattr(loss_fn, "__name__", type(loss_fn).__name__)
        self.__doc__ = getattr(loss_fn, "__doc__", None)
        self._programs = {}  # signature -> [Program, checked]
        self.disabled = None  # the reason replaying stopped for good
        self.replays = 0
        self.eager_calls = 0

    @property
    def status(self) -> str:
        if self.disabled is not None:
            return f"eager: {self.disabled}"
        checked = sum(1 for _, ok in self._programs.values() if ok)
        return (
            f"{len(self._programs)} program(s) captured, {checked} checked; "
            f"{self.replays} replayed step(s), {self.eager_calls} eager"
        )

    def __call__(self, *args):
        tensors = [a if isinstance(a, Tensor) else None for a in args]
        arguments = [
            a._data if isinstance(a, Tensor) else _as_value(a) if _is_array(a) else a for a in args
        ]
        modes = current_modes()
        if self.disabled is not None or not modes.grad_enabled or modes.anomaly:
            return self._eager(args, tensors, arguments, capture=False)
        signature = tuple(_signature(a) for a in arguments)
        entry = self._programs.get(signature)
        if entry is not None and not entry[0].still_valid():
            entry = None  # a module switched mode or a weight changed: capture again
        if entry is None:
            if len(self._programs) >= MAX_PROGRAMS:
                self._programs.clear()
            program = self._eager(args, tensors, arguments, capture=True)
            if isinstance(program, Program):
                self._programs[signature] = [program, False]
                return self._last_loss
            return program
        program, checked = entry
        if not checked:
            return self._check(signature, program, args, tensors, arguments)
        self.replays += 1
        collecting = gc.isenabled()
        gc.disable()  # a replay makes no reference cycles: nothing for the collector to find
        try:
            loss = program.run(arguments, tensors)
        finally:
            if collecting:
                gc.enable()
        return _detached(loss)

    # --- eager runs ------------------------------------------------------------------------
    def _eager(self, args, tensors, arguments, capture):
        """Run `loss_fn` eagerly and backpropagate; with `capture`, return the Program (the
        loss in `_last_loss`) or the loss when the function cannot be replayed."""
        self.eager_calls += 1
        inputs = [
            t if t is not None else Tensor._const(a) if _is_array(args[i]) else None
            for i, (t, a) in enumerate(zip(tensors, arguments))
        ]
        call_args = [t if t is not None else a for t, a in zip(inputs, args)]
        if not capture:
            loss = self._loss(call_args)
            loss.backward()
            return _detached(loss._data)
        rec = _Recording()
        thread_state.recording = rec
        try:
            loss = self._loss(call_args)
        finally:
            thread_state.__dict__.pop("recording", None)
        if rec.unreplayable:
            reasons = dict.fromkeys(reason for reason, _ in rec.unreplayable)
            quiet = all(expected for _, expected in rec.unreplayable)
            self._disable("; ".join(reasons), warn=not quiet)
        if not loss.requires_grad:
            self._disable("the loss does not require grad")
        if self.disabled is not None:
            if loss.requires_grad:
                loss.backward()
            return _detached(loss._data)
        slots = [t if t is not None else _Placeholder() for t in inputs]
        program = Program(loss, slots, rec)  # before backward frees the graph's links
        program.set_backward(
            [node for node, _ in iter_backward(loss, unit_gradient(loss._data), False)]
        )
        self._last_loss = _detached(loss._data)
        return program

    def _loss(self, call_args):
        loss = self.loss_fn(*call_args)
        if not isinstance(loss, Tensor):
            raise TypeError(
                f"replay: {self.__name__} must return the loss as a Tensor, got "
                f"{type(loss).__name__}"
            )
        if loss.size != 1:
            raise RuntimeError(f"replay: {self.__name__} must return a one-element loss")
        return loss

    def _disable(self, reason: str, warn: bool = True) -> None:
        if self.disabled is None:
            self.disabled = reason
            if warn:
                warnings.warn(
                    f"replay({self.__name__}) runs eagerly: {reason}", ReplayWarning, stacklevel=4
                )

    # --- the second call: replay and eager on the same inputs, compared --------------------
    def _check(self, signature, program, args, tensors, arguments):
        states = [g.bit_generator.state for g in (gen() for gen in program.generators)]
        buffers = [b.copy() for b in program.buffers]
        grads = {}

        def keep(tensor, g):
            grads[id(tensor)] = np.array(g, copy=True)

        failure = None
        try:
            replayed = program.run(arguments, tensors, store=keep)
        except Exception as error:  # the eager run below raises a user's own error again
            failure = f"replaying it raised {type(error).__name__}: {error}"
        after = [b.copy() for b in program.buffers]
        for generator, state in zip(program.generators, states):
            generator().bit_generator.state = state
        for buffer, before in zip(program.buffers, buffers):
            np.copyto(buffer, before)
        before_grads = {id(t): _grad_copy(t) for t in _grad_targets(program, tensors)}
        result = self._eager(args, tensors, arguments, capture=True)
        if not isinstance(result, Program):
            return result
        eager_loss = self._last_loss
        problem = failure or _difference(
            program, result, replayed, eager_loss._data, grads, before_grads
        )
        if problem is None:
            for buffer, value in zip(program.buffers, after):
                if not np.array_equal(buffer, value, equal_nan=True):
                    problem = "a side effect (running statistics) differs"
                    break
        if problem is not None:
            self._programs.pop(signature, None)
            self._disable(
                f"its second call computed something the captured graph does not ({problem}); "
                "numbers derived from the inputs outside the graph (numpy on the data, "
                "Python branches) cannot be replayed"
            )
        else:
            self._programs[signature] = [result, True]
        return eager_loss


class _Placeholder:
    """An argument slot that is not an array (an option passed through)."""

    requires_grad = False
    _data = None


def _is_array(value) -> bool:
    """Whether an argument is data (an input slot whose value changes from call to call):
    arrays, lists and floats are; ints, strings and other options are passed to the function
    as they are, and a new value is a new signature (captured anew), as jit.trace treats
    non-tensor arguments."""
    return isinstance(value, np.ndarray | list | float | np.floating)


def _signature(value):
    if type(value) is np.ndarray:
        return ("array", value.shape, value.dtype.str)
    if type(value) is float or isinstance(value, np.floating):
        return ("float", np.result_type(value).str)
    try:
        hash(value)
    except TypeError:
        return ("object", id(value))
    return ("value", value)


def _detached(value) -> Tensor:
    return Tensor._node(value, False)


def _grad_targets(program, tensors):
    targets = list(program.leaves.values())
    targets += [t for t in tensors if t is not None and t.requires_grad]
    return targets


def _grad_copy(tensor):
    g = tensor._grad
    return None if g is None else np.array(g, copy=True)


def _difference(program, eager, replayed_loss, eager_loss, grads, before):
    """The first way the replayed run differs from the eager one, or None."""
    if program.size != eager.size or [s[0] for s in program.steps] != [s[0] for s in eager.steps]:
        return "the graph has another shape"
    for mine, theirs in zip(program.steps, eager.steps):
        if mine[0] == OP and (
            mine[1] is not theirs[1]
            or mine[4] != theirs[4]
            or not _same_attrs(_fill(mine[3], mine[4], _BLANK), _fill(theirs[3], theirs[4], _BLANK))
        ):
            return f"the attributes of a {mine[1].name} op differ"
        if mine[0] == LEAF and not mine[1].requires_grad:
            other = theirs[1]
            if not _same_value(mine[1]._data, other._data):
                return f"a constant the function made ({_where(other)}) has another value"
    if not _same_value(replayed_loss, eager_loss):
        return "the loss differs"
    for tensor in _grad_targets(eager, []):
        now = tensor._grad
        was = before.get(id(tensor))
        mine = grads.get(id(tensor))
        expected = None if now is None else (now if was is None else now - was)
        if (mine is None) != (expected is None):
            return f"the gradient of {_where(tensor)} differs"
        if mine is not None and was is None and not _same_value(mine, expected):
            return f"the gradient of {_where(tensor)} differs"
    return None


class _Blank:
    """Every input position reads as None: attributes compared without the inputs' arrays."""

    def __getitem__(self, position):
        return None


_BLANK = _Blank()


def _where(node) -> str:
    parts = [node.name or ("constant" if node.op is None else node.op.name), f"#{node.id}"]
    if node.layer is not None:
        parts.append(f"in layer {node.layer}")
    return " ".join(parts)


def _same_value(a, b) -> bool:
    """Equal to the last bit (NaN equal to NaN); arrays, numbers, slices, tuples, None."""
    if isinstance(a, tuple | list) or isinstance(b, tuple | list):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same_value, a, b))
    if isinstance(a, np.ndarray | np.generic | float) or isinstance(
        b, np.ndarray | np.generic | float
    ):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or a.dtype.kind != b.dtype.kind:
            return False
        return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    return type(a) is type(b) and a == b


def _same_attrs(a, b) -> bool:
    return a.keys() == b.keys() and all(_same_value(a[key], b[key]) for key in a)


def replay(loss_fn) -> ReplayedStep:
    """Wrap `loss_fn(*inputs) -> loss` so that calling it runs forward and backward, captured
    on the first call, checked on the second and replayed after (see the module docstring).

    >>> import topograd as tg
    >>> w = tg.Tensor([1.0, 2.0], requires_grad=True)
    >>> step = tg.replay(lambda x: (w * x).sum())
    >>> for _ in range(3):
    ...     w.grad = None
    ...     loss = step(np.array([3.0, 4.0]))
    >>> w.grad.tolist(), step.replays
    ([3.0, 4.0], 1)
    """
    return ReplayedStep(loss_fn)


__all__ = ["ReplayWarning", "ReplayedStep", "replay"]
