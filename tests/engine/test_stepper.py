"""The `Stepper` that the window's step controls drive, checked against independent truths:
the executor's own event stream (`Graph.steps`), `Tensor.backward()` on an identically built
graph, central differences in float64, micrograd's hand-worked neuron, the chain rule's
bookkeeping (what a node receives is the sum of what its users send), and, for random graphs
and random sequences of actions, a fresh stepper that only ever steps forward.
"""

from __future__ import annotations

import operator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from topograd import Graph, Stepper, Tensor

STEP = 1e-6  # central-difference step


# --- graphs, each buildable twice from the same recipe ---------------------------------------
class Built:
    """A graph and its leaves by name, as a test builds it."""

    def __init__(self, output, **leaves):
        self.graph = Graph(output)
        self.output = output
        self.leaves = leaves

    def position_of(self, node) -> int:
        return next(i for i, n in enumerate(self.graph.nodes) if n is node)


def mlp_arrays(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "x": rng.normal(size=(4, 3)),
        "w": rng.normal(size=(3, 5)),
        "b": rng.normal(size=(5,)),
        "v": rng.normal(size=(5,)),
    }


def mlp(seed=0) -> Built:
    """relu(x @ w + b), used twice, with a broadcast (5,) vector, reduced by a mean."""
    arrays = mlp_arrays(seed)
    x = Tensor(arrays["x"], name="x")
    w = Tensor(arrays["w"], requires_grad=True, name="w")
    b = Tensor(arrays["b"], requires_grad=True, name="b")
    v = Tensor(arrays["v"], requires_grad=True, name="v")
    h = (x @ w + b).relu().named("h")
    out = ((h * v + h) * 0.5).tanh().mean()
    return Built(out, x=x, w=w, b=b, v=v)


def mlp_numpy(x, w, b, v):
    h = np.maximum(x @ w + b, 0.0)
    return np.tanh((h * v + h) * 0.5).mean()


NEURON = {"x1": 2.0, "x2": 0.0, "w1": -3.0, "w2": 1.0, "b": 6.8813735870195432}


def neuron() -> Built:
    """micrograd's neuron (samples/neuron.tg): o = tanh(x1*w1 + x2*w2 + b)."""
    t = {name: Tensor(value, requires_grad=True, name=name) for name, value in NEURON.items()}
    n = (t["x1"] * t["w1"] + t["x2"] * t["w2"] + t["b"]).named("n")
    return Built(n.tanh().named("o"), **t)


def neuron_numpy(x1, x2, w1, w2, b):
    return np.tanh(x1 * w1 + x2 * w2 + b)


def square_sum() -> Built:
    """x * x (one node used on both edges) plus a constant-only branch."""
    x = Tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True, name="x")
    c = Tensor(np.array([0.5, 0.25, 2.0]), name="c")
    return Built((x * x + (c * c).exp() * x).sum(), x=x, c=c)


def central_differences(fn, arrays: dict, name: str) -> np.ndarray:
    """d fn / d arrays[name], one element at a time, in float64."""
    base = np.array(arrays[name], dtype=np.float64)
    grad = np.zeros_like(base)
    for index in np.ndindex(base.shape):
        plus, minus = base.copy(), base.copy()
        plus[index] += STEP
        minus[index] -= STEP
        high = fn(**{**arrays, name: plus})
        low = fn(**{**arrays, name: minus})
        grad[index] = (high - low) / (2 * STEP)
    return grad


def run_all(stepper: Stepper) -> list:
    return list(iter(stepper.step, None))


def event_record(built: Built, event) -> tuple:
    return (event.phase, event.index, built.position_of(event.node), event.value, event.grad)


def assert_same_arrays(left, right):
    if left is None or right is None:
        assert left is None and right is None
    else:
        np.testing.assert_array_equal(np.asarray(left), np.asarray(right))


def assert_close_arrays(left, right):
    if left is None or right is None:
        assert left is None and right is None
    else:
        np.testing.assert_allclose(left, right, rtol=1e-12, atol=1e-15)


def assert_same_records(left: tuple, right: tuple):
    assert left[:3] == right[:3]
    assert_same_arrays(left[3], right[3])
    assert_same_arrays(left[4], right[4])


# --- the event stream is the executor's -------------------------------------------------------
@pytest.mark.parametrize("make", [mlp, neuron, square_sum], ids=["mlp", "neuron", "square_sum"])
def test_full_step_sequence_is_graph_steps(make):
    stepped, reference = make(), make()
    events = run_all(Stepper(stepped.graph))
    expected = list(reference.graph.steps())
    assert len(events) == len(expected)
    for event, truth in zip(events, expected):
        assert_same_records(event_record(stepped, event), event_record(reference, truth))
    forward = [e for e in events if e.phase == "forward"]
    assert [e.node for e in forward] == stepped.graph.op_nodes
    assert [e.index for e in forward] == list(range(len(forward)))


def test_tensor_graph_gradients_match_backward_and_central_differences():
    stepped, reference = mlp(), mlp()
    stepper = Stepper(stepped.graph)
    run_all(stepper)
    reference.output.backward()
    arrays = mlp_arrays()
    for name in ("w", "b", "v"):
        leaf = stepped.leaves[name]
        np.testing.assert_array_equal(leaf.grad, reference.leaves[name].grad)
        np.testing.assert_array_equal(stepper.grad_of(leaf.id), leaf.grad)
        numeric = central_differences(mlp_numpy, arrays, name)
        np.testing.assert_allclose(leaf.grad, numeric, rtol=1e-6, atol=1e-9)
    assert stepper.grad_of(stepped.leaves["x"].id) is None  # an input takes no gradient
    assert float(stepper.value_of(stepped.output.id)) == pytest.approx(mlp_numpy(**arrays))


def test_neuron_gradients_are_the_lecture_ones():
    built, reference = neuron(), neuron()
    stepper = Stepper(built.graph)
    run_all(stepper)
    reference.output.backward()
    assert float(stepper.value_of(built.output.id)) == pytest.approx(2**-0.5, rel=1e-12)
    lecture = {"x1": -1.5, "w1": 1.0, "x2": 0.5, "w2": 0.0, "b": 0.5}
    for name, expected in lecture.items():
        leaf = built.leaves[name]
        assert float(stepper.grad_of(leaf.id)) == pytest.approx(expected, rel=1e-9, abs=1e-12)
        assert float(leaf.grad) == float(reference.leaves[name].grad)
        numeric = central_differences(neuron_numpy, NEURON, name)
        assert float(leaf.grad) == pytest.approx(float(numeric), rel=1e-6, abs=1e-9)


# --- the chain rule's bookkeeping -------------------------------------------------------------
@pytest.mark.parametrize("make", [mlp, neuron, square_sum], ids=["mlp", "neuron", "square_sum"])
def test_input_gradients_sum_to_what_each_node_receives(make):
    built = make()
    stepper = Stepper(built.graph)
    stepper.run_to_end_of("forward")
    assert stepper.input_gradients(stepper.current) == ()  # a forward step sends nothing back
    sent: dict[int, np.ndarray] = {}
    while (event := stepper.step()) is not None:
        node = event.node
        if node.id != built.output.id:  # every user has sent its part before the node's step
            np.testing.assert_allclose(sent[node.id], event.grad, rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(stepper.grad_of(node.id), event.grad)
        edges = stepper.input_gradients(event)
        assert len(edges) == len(node.inputs)
        for parent, g in zip(node.inputs, edges):
            if not parent.requires_grad:
                assert g is None
                continue
            assert np.shape(g) == parent.shape
            sent[parent.id] = sent.get(parent.id, 0.0) + np.asarray(g)
    for leaf in built.graph.leaves:
        if leaf.requires_grad:
            np.testing.assert_allclose(leaf.grad, sent[leaf.id], rtol=1e-12, atol=1e-15)
            np.testing.assert_array_equal(stepper.grad_of(leaf.id), leaf.grad)


# --- moving the cursor: random graphs, random actions, one truth ------------------------------
SHAPES = ((), (3,), (2, 3))  # mutually broadcastable, so any two nodes can be combined
UNARY = {"tanh": Tensor.tanh, "relu": Tensor.relu, "sigmoid": Tensor.sigmoid, "neg": operator.neg}
BINARY = {"add": operator.add, "sub": operator.sub, "mul": operator.mul}


@st.composite
def recipes(draw):
    """Leaves (shape, requires_grad) and op steps over earlier nodes (reuse allowed)."""
    leaves = draw(
        st.lists(st.tuples(st.sampled_from(SHAPES), st.booleans()), min_size=1, max_size=3)
    )
    shapes = [shape for shape, _ in leaves]
    steps = []
    for _ in range(draw(st.integers(1, 7))):
        kind = draw(st.sampled_from(("unary", "binary", "binary", "reduce")))
        pick = st.integers(0, len(shapes) - 1)
        if kind == "unary":
            operand = draw(pick)
            steps.append((draw(st.sampled_from(sorted(UNARY))), (operand,)))
            shapes.append(shapes[operand])
        elif kind == "binary":
            left, right = draw(pick), draw(pick)
            steps.append((draw(st.sampled_from(sorted(BINARY))), (left, right)))
            shapes.append(max(shapes[left], shapes[right], key=len))
        else:
            operand = draw(pick)
            name = draw(st.sampled_from(("sum", "mean")))
            axis = draw(st.sampled_from((None, 0))) if shapes[operand] else None
            steps.append((name, (operand,), axis))
            shapes.append(() if axis is None else shapes[operand][1:])
    return leaves, steps, draw(st.integers(0, 2**16))


def build(recipe) -> Built:
    leaves, steps, seed = recipe
    rng = np.random.default_rng(seed)
    nodes = [Tensor(rng.normal(size=shape), requires_grad=grad) for shape, grad in leaves]
    for name, operands, *axis in steps:
        args = [nodes[i] for i in operands]
        if name in UNARY:
            node = UNARY[name](*args)
        elif name in BINARY:
            node = BINARY[name](*args)
        else:
            node = getattr(args[0], name)(axis=axis[0])
        nodes.append(node)
    return Built(nodes[-1])


PHASES = (None, "forward", "backward")
ACTIONS = st.one_of(
    st.sampled_from(
        [("step",)] * 3
        + [("step_back",)] * 2
        + [("step_forward",), ("step_backward",), ("reset",), ("reset",), ("run",), ("run",)]
        + [("run_to_end_of", None), ("run_to_end_of", "forward"), ("run_to_end_of", "backward")]
    ),
    st.tuples(st.just("run_to"), st.integers(0, 63), st.sampled_from(PHASES)),
    st.tuples(st.just("toggle"), st.integers(0, 63)),
)


def perform(stepper: Stepper, action: tuple):
    """Do one action and check what it promises on its own."""
    nodes = stepper.graph.nodes
    name, *args = action
    before = stepper.position
    if name == "step_back":
        last = stepper.current
        undone = stepper.step_back()
        assert undone is last
        assert stepper.position == max(before - 1, 0)
    elif name == "step_forward":
        complete = stepper.forward_complete
        event = stepper.step_forward()
        assert (event is None) == complete
        assert event is None or event.phase == "forward"
    elif name == "step_backward":
        event = stepper.step_backward()
        if not stepper.has_backward:
            assert event is None and stepper.position == before
        elif event is not None:
            assert event.phase == "backward" and stepper.forward_complete
    elif name == "run_to":
        target = nodes[args[0] % len(nodes)]
        phase = args[1] or ("forward" if stepper.state_of(target.id) == "pending" else "backward")
        taken = stepper.run_to(target.id, args[1])
        assert taken == stepper.done[before:]
        assert not any(e.node.id in stepper.breakpoints - {target.id} for e in taken[:-1])
        reached = stepper.state_of(target.id)
        assert (
            (bool(taken) and taken[-1].node.id in stepper.breakpoints)
            or stepper.finished
            or reached == "backward"
            or (phase == "forward" and reached == "forward")
        )
    elif name == "toggle":
        node_id = nodes[args[0] % len(nodes)].id
        assert stepper.toggle_breakpoint(node_id) == (node_id in stepper.breakpoints)
    elif name == "run_to_end_of":
        taken = stepper.run_to_end_of(args[0])
        assert taken == stepper.done[before:]
    elif name == "run":
        taken = stepper.run()
        assert taken == stepper.done[before:]
        assert not any(e.node.id in stepper.breakpoints for e in taken[:-1])
        assert stepper.finished or taken[-1].node.id in stepper.breakpoints
    elif name == "step":
        finished = stepper.finished
        assert (stepper.step() is None) == finished
    else:
        stepper.reset()
    assert stepper.position >= 0


def state(built: Built, stepper: Stepper) -> dict:
    """Everything the window reads from a stepper, with nodes named by graph position."""
    return {
        "position": stepper.position,
        "phase": stepper.phase,
        "finished": stepper.finished,
        "forward_complete": stepper.forward_complete,
        "events": [event_record(built, e) for e in stepper.done],
        "nodes": [
            (stepper.state_of(n.id), stepper.value_of(n.id), stepper.grad_of(n.id))
            for n in built.graph.nodes
        ],
    }


def assert_same_state(left: dict, right: dict):
    for key in ("position", "phase", "finished", "forward_complete"):
        assert left[key] == right[key], key
    assert len(left["events"]) == len(right["events"])
    for a, b in zip(left["events"], right["events"]):
        assert_same_records(a, b)
    for (state_a, value_a, grad_a), (state_b, value_b, grad_b) in zip(
        left["nodes"], right["nodes"]
    ):
        assert state_a == state_b
        assert_same_arrays(value_a, value_b)
        assert_same_arrays(grad_a, grad_b)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recipe=recipes(), actions=st.lists(ACTIONS, max_size=25))
def test_any_action_sequence_equals_plain_steps_from_a_fresh_stepper(recipe, actions):
    built, once = build(recipe), build(recipe)
    if once.output.requires_grad:  # the leaves' gradients after one plain backward pass
        once.output.backward(np.ones(once.output.shape))
    stepper = Stepper(built.graph)
    first_seen: dict[int, object] = {}  # position -> the event object first computed there
    for action in actions:
        perform(stepper, action)
        if action[0] == "reset":
            assert stepper.position == 0 and stepper.phase == "ready"
            first_seen.clear()
        for position, event in enumerate(stepper.done):
            assert first_seen.setdefault(position, event) is event  # replayed, not recomputed
        if stepper.finished:  # one pass's gradients, however many passes it took
            for mine, truth in zip(built.graph.leaves, once.graph.leaves):
                assert_close_arrays(mine.grad, truth.grad)

    fresh_built = build(recipe)
    fresh = Stepper(fresh_built.graph)
    for _ in range(stepper.position):
        assert fresh.step() is not None
    assert_same_state(state(built, stepper), state(fresh_built, fresh))


def test_step_back_undoes_one_step_and_stops_at_the_start():
    built = neuron()
    stepper = Stepper(built.graph)
    assert stepper.step_back() is None and stepper.position == 0
    events = run_all(stepper)
    assert stepper.finished and stepper.step() is None
    for position in reversed(range(len(events))):
        assert stepper.step_back() is events[position]
        assert stepper.position == position
        assert stepper.current is (events[position - 1] if position else None)
    assert stepper.step_back() is None and stepper.position == 0
    assert [stepper.step() for _ in events] == events  # the same objects, replayed
    assert all(a is b for a, b in zip(stepper.done, events))


def test_state_value_and_grad_follow_the_cursor():
    built = neuron()
    stepper = Stepper(built.graph)
    o, n, x1 = built.output, built.graph[built.output.inputs[0].id], built.leaves["x1"]
    assert stepper.state_of(o.id) == "pending" and stepper.value_of(o.id) is None
    assert stepper.state_of(x1.id) == "forward" and float(stepper.value_of(x1.id)) == 2.0
    stepper.run_to(o.id)
    assert stepper.current.node is o and stepper.state_of(o.id) == "forward"
    assert float(stepper.value_of(o.id)) == pytest.approx(2**-0.5)
    assert stepper.grad_of(o.id) is None
    stepper.run_to(n.id)  # already computed forward: the default is its backward step
    assert stepper.current.node is n and stepper.current.phase == "backward"
    assert float(stepper.grad_of(n.id)) == pytest.approx(0.5)
    assert stepper.state_of(n.id) == "backward" and stepper.state_of(x1.id) == "forward"
    stepper.step_back()
    assert stepper.grad_of(n.id) is None and stepper.state_of(n.id) == "forward"
    stepper.run_to(x1.id)  # a leaf: its (only) step is backward
    assert stepper.current.node is x1
    assert float(stepper.grad_of(x1.id)) == pytest.approx(-1.5, rel=1e-12)
    assert stepper.run_to(x1.id) == []  # already there


# --- phases ---------------------------------------------------------------------------------
def test_phases_go_ready_forward_backward_finished_and_back():
    built = neuron()
    stepper = Stepper(built.graph)
    phases = [stepper.phase]
    while stepper.step() is not None:
        phases.append(stepper.phase)
    forward, total = stepper.forward_total, stepper.position
    assert phases == ["ready"] + ["forward"] * forward + ["backward"] * (total - forward - 1) + [
        "finished"
    ]
    stepper.step_back()
    assert stepper.phase == "backward" and not stepper.finished
    stepper.run_to_end_of("backward")
    assert stepper.phase == "finished"
    stepper.reset()
    assert stepper.phase == "ready" and stepper.position == 0 and stepper.current is None


def test_step_backward_completes_the_forward_pass_first():
    built = mlp()
    stepper = Stepper(built.graph)
    stepper.step()
    event = stepper.step_backward()
    assert event.phase == "backward" and event.node is built.output
    assert stepper.position == stepper.forward_total + 1
    assert [e.phase for e in stepper.done[:-1]] == ["forward"] * stepper.forward_total


def test_run_to_end_of_stops_at_the_phase_boundary():
    built = mlp()
    stepper = Stepper(built.graph)
    forward = stepper.run_to_end_of()
    assert len(forward) == stepper.forward_total and stepper.phase == "forward"
    assert all(e.phase == "forward" for e in forward)
    assert stepper.run_to_end_of("forward") == []
    stepper.step()
    backward = stepper.run_to_end_of()  # the phase under way is backward
    assert stepper.finished and all(e.phase == "backward" for e in backward)


# --- breakpoints ----------------------------------------------------------------------------
def test_run_stops_at_a_breakpoint_in_forward_then_in_backward():
    built = mlp()
    stepper = Stepper(built.graph)
    h = built.graph.nodes[next(i for i, n in enumerate(built.graph.nodes) if n.name == "h")]
    assert stepper.toggle_breakpoint(h.id) is True and h.id in stepper.breakpoints
    taken = stepper.run()
    assert taken == stepper.done and taken[-1] is stepper.current
    assert stepper.current.node is h and stepper.current.phase == "forward"
    taken = stepper.run()  # the breakpoint just hit does not hold the cursor
    assert taken[0].node is not h
    assert stepper.current.node is h and stepper.current.phase == "backward"
    assert not stepper.finished
    stepper.run()
    assert stepper.finished
    assert stepper.toggle_breakpoint(h.id) is False and not stepper.breakpoints
    stepper.reset()
    assert stepper.run() == stepper.done and stepper.finished


def test_run_with_no_breakpoints_goes_to_the_end():
    built, reference = mlp(), mlp()
    stepper = Stepper(built.graph)
    taken = stepper.run()
    assert stepper.finished and len(taken) == len(list(reference.graph.steps()))
    assert stepper.run() == []


def test_run_to_stops_at_a_breakpoint_before_the_target():
    built = mlp()
    stepper = Stepper(built.graph)
    first, output = built.graph.op_nodes[0], built.output
    stepper.toggle_breakpoint(first.id)
    stepper.run_to(output.id, "forward")
    assert stepper.current.node is first and stepper.state_of(output.id) == "pending"
    stepper.run_to(output.id, "forward")  # on past the breakpoint just hit
    assert stepper.current.node is output and stepper.phase == "forward"
    stepper.toggle_breakpoint(output.id)  # a breakpoint on the target does not stop it early
    stepper.reset()
    stepper.run_to(output.id, "forward")
    assert stepper.current.node is first  # the earlier breakpoint still does
    stepper.run_to(output.id, "forward")
    assert stepper.current.node is output and stepper.current.phase == "forward"
    taken = stepper.run_to(output.id, "backward")
    assert taken == [stepper.current] and stepper.current.phase == "backward"
    stepper.toggle_breakpoint(first.id)
    stepper.toggle_breakpoint(output.id)
    stepper.run_to(first.id, "backward")  # backward, no breakpoint left: to first's gradient
    assert stepper.current.node is first and stepper.state_of(first.id) == "backward"


# --- graphs without a backward pass, and non-scalar outputs ----------------------------------
def test_output_without_gradient_has_a_forward_pass_only():
    x = Tensor(np.array([1.0, -2.0, 3.0]), name="x")
    out = (x * 2.0).tanh().sum()
    stepper = Stepper(Graph(out))
    assert stepper.has_backward is False
    assert stepper.step_backward() is None and stepper.position == 0
    assert stepper.phase == "ready"
    events = stepper.run()
    assert [e.phase for e in events] == ["forward"] * 3 and stepper.finished
    assert stepper.phase == "finished"
    assert stepper.step() is None and stepper.step_forward() is None
    assert stepper.step_backward() is None
    assert float(stepper.value_of(out.id)) == pytest.approx(np.tanh([2.0, -4.0, 6.0]).sum())
    assert stepper.step_back() is events[-1] and not stepper.finished
    assert stepper.phase == "forward"


@pytest.mark.parametrize("given_grad", [False, True], ids=["ones", "given"])
def test_non_scalar_output_backpropagates_ones_or_the_given_gradient(given_grad):
    def make():
        arrays = mlp_arrays()
        x = Tensor(arrays["x"])
        w = Tensor(arrays["w"], requires_grad=True)
        b = Tensor(arrays["b"], requires_grad=True)
        return Built((x @ w + b).tanh(), w=w, b=b)

    built, reference = make(), make()
    shape = built.output.shape
    seed = np.random.default_rng(7).normal(size=shape) if given_grad else np.ones(shape)
    stepper = Stepper(built.graph, seed if given_grad else None)
    events = run_all(stepper)
    np.testing.assert_array_equal(events[stepper.forward_total].grad, seed)
    reference.output.backward(seed)
    for name in ("w", "b"):
        np.testing.assert_allclose(
            built.leaves[name].grad, reference.leaves[name].grad, rtol=1e-12, atol=1e-15
        )


# --- reset leaves the engine clean ----------------------------------------------------------
def test_reset_mid_backward_neither_double_counts_nor_leaves_counters_behind():
    built, reference = mlp(), mlp()
    reference.output.backward()
    stepper = Stepper(built.graph)
    stepper.run_to_end_of("forward")
    while not (event := stepper.step()).node.is_leaf:
        pass
    assert event.node.grad is not None and not stepper.finished  # a leaf holds a partial sum
    stepper.reset()  # the abandoned pass kept its bookkeeping to itself: nothing to clean
    run_all(stepper)
    stepper.reset()
    run_all(stepper)  # a second full pass replaces the first pass's gradients
    for name in ("w", "b", "v"):
        np.testing.assert_array_equal(built.leaves[name].grad, reference.leaves[name].grad)
    for leaf in built.leaves.values():
        leaf.grad = None
    built.output.backward()  # the engine's own backward on the same graph still works
    for name in ("w", "b", "v"):
        np.testing.assert_array_equal(built.leaves[name].grad, reference.leaves[name].grad)


def test_reading_phase_after_the_forward_pass_leaves_the_graph_usable():
    built, reference = square_sum(), square_sum()
    reference.output.backward()
    stepper = Stepper(built.graph)
    stepper.run_to_end_of("forward")
    assert stepper.phase == "forward"  # a read-only look at where the cursor is
    built.output.backward()
    np.testing.assert_array_equal(built.leaves["x"].grad, reference.leaves["x"].grad)
