"""Behaviour of the autodiff core, checked against closed forms and independent computations:
deep graphs, shared nodes, accumulation, modes, dtypes, errors, anomaly detection, the
topological order, the Graph view and its stepper, and gradcheck itself."""

from __future__ import annotations

import inspect
import math
import sys

import networkx as nx
import numpy as np
import pytest

from topograd import Graph, Op, Tensor, engine, nn
from topograd import functional as F


def scalar(value, requires_grad=True, name=None):
    return Tensor(value, requires_grad=requires_grad, name=name)


# --- deep graphs ---------------------------------------------------------------------------
@pytest.mark.slow
def test_million_node_chain_backward_has_no_recursion_and_closed_form_gradient():
    n = 1_000_000
    factor = 1.0000001
    x = scalar(1.5)
    c = scalar(factor)
    y = x
    for _ in range(n):
        y = y * c
    y.backward()
    # y = x * c^n: dy/dx = c^n, and c is used n times, dy/dc = n * x * c^(n-1).
    assert float(x.grad) == pytest.approx(factor**n, rel=1e-9)
    assert float(c.grad) == pytest.approx(n * 1.5 * factor ** (n - 1), rel=1e-9)
    assert float(y.data) == pytest.approx(1.5 * factor**n, rel=1e-9)


# --- shared nodes and accumulation ---------------------------------------------------------
def test_reused_node_gradients_add_up():
    a = scalar(3.0)
    b = a + a
    c = b + b
    c.backward()
    assert float(a.grad) == 4.0


def test_square_by_self_multiplication():
    a = scalar(-1.25)
    (a * a).backward()
    assert float(a.grad) == -2.5


def test_diamond_sums_both_branches():
    a = scalar(0.7)
    b = a * 2.0
    c = a * 3.0
    (b * c).backward()  # 6 a^2
    assert float(a.grad) == pytest.approx(12 * 0.7)

    x = scalar(0.3)
    y = x.tanh()
    (y * y + y).backward()  # z = y^2 + y, dz/dx = (2y + 1)(1 - y^2)
    t = math.tanh(0.3)
    assert float(x.grad) == pytest.approx((2 * t + 1) * (1 - t * t), rel=1e-12)


def test_diamond_over_arrays_with_broadcasting():
    w = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    m = Tensor(np.ones((4, 3)))
    left = m * w  # (4, 3), broadcast over rows
    right = w.exp()
    (left + right).sum().backward()
    # both branches are summed over the 4 rows that w was broadcast to
    np.testing.assert_allclose(w.grad, 4.0 + 4.0 * np.exp([1.0, 2.0, 3.0]), rtol=1e-12)


def test_backward_twice_accumulates_and_none_resets():
    x = scalar(3.0)
    y = x * x
    y.backward(retain_graph=True)
    assert float(x.grad) == 6.0
    y.backward(retain_graph=True)
    assert float(x.grad) == 12.0  # accumulated, as PyTorch does across backward calls
    (x * 2.0).backward()  # a second graph adds in as well
    assert float(x.grad) == 14.0
    x.grad = None
    y.backward()
    assert float(x.grad) == 6.0


def test_intermediate_grad_only_when_retained():
    x = scalar(2.0)
    hidden = x * 3.0
    kept = (x + 1.0).retain_grad()
    (hidden * kept).backward()
    assert hidden.grad is None
    assert float(kept.grad) == 6.0
    assert float(x.grad) == 3.0 * 3.0 + 6.0


# --- modes ---------------------------------------------------------------------------------
def test_no_grad_records_nothing():
    x = scalar(2.0)
    with engine.no_grad():
        assert not engine.is_grad_enabled()
        y = x * x + 1.0
    assert engine.is_grad_enabled()
    assert not y.requires_grad
    assert y.op is None
    assert y.inputs == ()
    assert float(y.data) == 5.0


def test_no_grad_as_decorator_and_enable_grad_inside():
    @engine.no_grad()
    def double(t):
        return t * 2.0

    x = scalar(1.0)
    y = double(x)
    assert not y.requires_grad and y.op is None
    assert engine.is_grad_enabled()

    with engine.no_grad():
        with engine.enable_grad():
            z = x * 2.0
        w = x * 2.0
    assert z.requires_grad and z.op is engine.OPS["mul"]
    assert not w.requires_grad
    z.backward()
    assert float(x.grad) == 2.0


def test_no_grad_restores_state_after_exception():
    with pytest.raises(KeyError), engine.no_grad():
        raise KeyError("boom")
    assert engine.is_grad_enabled()


# --- tensor basics and dtypes --------------------------------------------------------------
def test_detach_item_shape():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x * 3.0
    d = y.detach()
    assert not d.requires_grad and d.op is None and d.is_leaf
    np.testing.assert_array_equal(d.data, [3.0, 6.0])
    (d * x).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 6.0])  # no path through y

    assert Tensor([[3.5]]).item() == 3.5
    assert isinstance(Tensor(2.0).item(), float)
    with pytest.raises(ValueError, match=r"\(2,\)"):
        x.item()
    assert Tensor(np.zeros((2, 3))).shape == (2, 3)
    assert Tensor(1.0).shape == ()
    assert (Tensor(np.zeros((2, 3))) @ Tensor(np.zeros(3))).shape == (2,)


def test_default_dtype_is_float64_and_integers_stay_integers():
    assert Tensor([1.0, 2]).dtype == np.float64
    assert Tensor(2.5).dtype == np.float64
    assert Tensor([1, 2]).dtype == np.int64  # PyTorch's torch.tensor([1, 2]) is int64 too
    assert Tensor([True, False]).dtype == np.bool_
    assert Tensor([1, 2], dtype=np.float64).dtype == np.float64
    assert (Tensor([1.0]) + 1).dtype == np.float64


FLOAT32_CASES = {
    "t + 2.0": lambda t: t + 2.0,
    "2.0 + t": lambda t: 2.0 + t,
    "t - 1": lambda t: t - 1,
    "3 - t": lambda t: 3 - t,
    "t * 2.5": lambda t: t * 2.5,
    "2.5 * t": lambda t: 2.5 * t,
    "t / 3.0": lambda t: t / 3.0,
    "3.0 / t": lambda t: 3.0 / t,
    "t ** 2": lambda t: t**2,
    "t ** 0.5": lambda t: t**0.5,
    "2.0 ** t": lambda t: 2.0**t,
    "-t": lambda t: -t,
    "t * t": lambda t: t * t,
    "exp": lambda t: t.exp(),
    "log": lambda t: t.log(),
    "sqrt": lambda t: t.sqrt(),
    "abs": lambda t: t.abs(),
    "tanh": lambda t: t.tanh(),
    "sigmoid": lambda t: t.sigmoid(),
    "relu": lambda t: t.relu(),
    "softplus": lambda t: F.softplus(t),
    "leaky_relu": lambda t: F.leaky_relu(t),
    "elu": lambda t: F.elu(t),
    "sum": lambda t: t.sum(),
    "mean": lambda t: t.mean(),
    "max": lambda t: t.max(),
    "maximum(t, 1.5)": lambda t: F.maximum(t, 1.5),
    "softmax": lambda t: F.softmax(t.reshape(1, -1)),
    "getitem": lambda t: t.reshape(-1)[[0, 0]],
}


@pytest.mark.parametrize("shape", [(3,), ()], ids=["vector", "scalar"])
@pytest.mark.parametrize("label", sorted(FLOAT32_CASES))
def test_float32_is_preserved_through_ops_and_python_numbers(label, shape):
    t = Tensor(np.full(shape, 2.0, dtype=np.float32), requires_grad=True)
    out = FLOAT32_CASES[label](t)
    assert out.dtype == np.float32, f"{label}: value dtype {out.dtype}"
    out.sum().backward()
    assert t.grad.dtype == np.float32, f"{label}: gradient dtype {t.grad.dtype}"


def test_numpy_values_on_the_left_make_tensors():
    t = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    cases = [
        np.ones(3) + t,
        np.ones(3) - t,
        np.full(3, 2.0) * t,
        np.ones(3) / t,
        2.0 * t,
        np.float64(2.0) * t,
        np.float32(2.0) * t,
        np.eye(3) @ t,
    ]
    assert all(isinstance(c, Tensor) for c in cases), [type(c) for c in cases]
    np.testing.assert_array_equal((np.ones(3) + t).data, [2.0, 3.0, 4.0])
    (np.full(3, 2.0) * t + np.eye(3) @ t).sum().backward()
    np.testing.assert_array_equal(t.grad, [3.0, 3.0, 3.0])


# --- errors --------------------------------------------------------------------------------
def test_add_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError) as info:
        Tensor(np.ones((2, 3))) + Tensor(np.ones(4))
    assert "(2, 3)" in str(info.value) and "(4,)" in str(info.value)


def test_matmul_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError) as info:
        Tensor(np.ones((2, 3))) @ Tensor(np.ones((4, 5)))
    assert "(2, 3)" in str(info.value) and "(4, 5)" in str(info.value)


def test_backward_errors():
    x = Tensor(np.ones(2), requires_grad=True)
    with pytest.raises(RuntimeError, match="one-element"):
        (x * 2.0).backward()
    with pytest.raises(RuntimeError, match="does not require grad"):
        (Tensor(np.ones(2)) * 2.0).sum().backward()
    with pytest.raises(ValueError, match="shape"):
        (x * 2.0).backward(np.ones(3))


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5])
def test_dropout_probability_out_of_range(p):
    with pytest.raises(ValueError, match=str(p)):
        nn.Dropout(p)


def test_dropout_probability_in_range():
    for p in (0.0, 0.5, 0.99):
        assert nn.Dropout(p).p == p


def test_batchnorm_training_on_batch_of_one_explains():
    bn = nn.BatchNorm1d(3)
    with pytest.raises(ValueError) as info:
        bn(Tensor(np.ones((1, 3))))
    message = str(info.value)
    assert "(1, 3)" in message
    assert "one value per channel" in message
    bn.eval()
    assert bn(Tensor(np.ones((1, 3)))).shape == (1, 3)


@pytest.mark.parametrize("bad", [3, -1])
def test_cross_entropy_label_out_of_range_names_label(bad):
    with pytest.raises(ValueError, match=f"label {bad}"):
        F.cross_entropy(Tensor(np.zeros((2, 3))), [0, bad])


# --- anomaly detection ---------------------------------------------------------------------
def test_anomaly_forward_names_the_first_bad_node():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    with np.errstate(all="ignore"), engine.detect_anomaly():
        diff = (x - x).named("diff")
        with pytest.raises(engine.AnomalyError) as info:
            diff.log() * 2.0
    error = info.value
    assert error.phase == "forward"
    assert error.node.op is engine.OPS["log"]
    assert error.node.inputs == (diff,)
    assert "log" in str(error) and "'diff'" in str(error)


def test_anomaly_zero_over_zero():
    with np.errstate(all="ignore"), engine.detect_anomaly():
        zero = scalar(0.0)
        with pytest.raises(engine.AnomalyError, match="div") as info:
            zero / zero
    assert info.value.node.op is engine.OPS["div"]
    assert np.isnan(info.value.node.data)


def test_no_anomaly_error_outside_the_mode():
    with np.errstate(all="ignore"):
        y = (scalar(0.0) - 0.0).log()
    assert np.isneginf(y.data)


def test_anomaly_backward_phase():
    x = scalar(0.0)
    root = x.sqrt().named("root")  # finite forward, infinite derivative at 0
    with (
        np.errstate(all="ignore"),
        engine.detect_anomaly(),
        pytest.raises(engine.AnomalyError) as info,
    ):
        (root * 2.0).backward()
    error = info.value
    assert error.phase == "backward"
    assert error.node is root
    assert "sqrt" in str(error) and "'root'" in str(error)


def test_first_nonfinite_in_topological_order():
    a = Tensor(np.array([1.0, 0.0]), requires_grad=True)
    scaled = a * 2.0
    with np.errstate(all="ignore"):
        logged = scaled.log()  # -inf in the second slot
        nan = logged * 0.0  # -inf * 0 = nan, later in the order
        out = nan.sum()
    assert Graph(out).first_nonfinite() is logged
    assert Graph((a * 3.0).sum()).first_nonfinite() is None


# --- topological order -----------------------------------------------------------------------
def _random_dag(rng, leaves=4, ops=40):
    nodes = [scalar(float(v), requires_grad=bool(rng.integers(2))) for v in rng.random(leaves)]
    for _ in range(ops):
        kind = rng.integers(4)
        a = nodes[rng.integers(len(nodes))]
        b = nodes[rng.integers(len(nodes))]
        nodes.append([a + b, a * b, a - b, a.tanh()][kind])
    return nodes


def _reachable(roots):
    """Independent of the engine: a plain breadth-first walk over `inputs`."""
    seen = {}
    frontier = list(roots)
    while frontier:
        node = frontier.pop()
        if id(node) not in seen:
            seen[id(node)] = node
            frontier.extend(node.inputs)
    return seen


@pytest.mark.parametrize("seed", range(8))
def test_topological_order_on_random_dags(seed):
    rng = np.random.default_rng(seed)
    nodes = _random_dag(rng)
    roots = [nodes[-1], nodes[int(rng.integers(len(nodes)))]]
    order = engine.topological_order(roots)
    position = {id(node): i for i, node in enumerate(order)}
    assert len(position) == len(order), "a node appears twice"
    assert set(position) == set(_reachable(roots))
    for node in order:
        for parent in node.inputs:
            assert position[id(parent)] < position[id(node)]

    # Every consumer of a node that requires grad requires grad too, so the nodes that need
    # a gradient are exactly the reachable ones that require it.
    needing = engine.topological_order(roots, requiring_grad=True)
    assert [id(n) for n in needing] == [id(n) for n in order if n.requires_grad]


def test_topological_order_is_iterative():
    x = scalar(1.0)
    y = x
    for _ in range(5000):
        y = y + 1.0
    depth = len(inspect.stack(0))
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + 60)
    try:
        order = engine.topological_order([y])
    finally:
        sys.setrecursionlimit(limit)
    assert len(order) == 1 + 2 * 5000  # x, the 5000 constants and the 5000 sums
    assert order[0] is x and order[-1] is y


# --- Graph: inspection, export, stepping -------------------------------------------------------
def _model():
    return nn.Sequential(
        nn.Linear(3, 4, rng=1), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2, rng=2)
    )


def _inputs(seed=0):
    return np.random.default_rng(seed).standard_normal((5, 3))


def _loss(model, x):
    return (model(x) * Tensor(np.arange(10.0).reshape(5, 2))).sum()


def test_graph_nodes_info_and_layers():
    model = _model()
    x = Tensor(_inputs(), name="x")
    graph = Graph(_loss(model, x))
    seen = set()
    for node in graph.nodes:
        assert all(parent.id in seen for parent in node.inputs)
        seen.add(node.id)
    assert graph.nodes[-1] is graph.outputs[0]
    infos = [graph.info(node) for node in graph.nodes]
    by_kind = {}
    for info in infos:
        by_kind.setdefault(info.layer_kind, []).append(info)
    assert {"Linear", "BatchNorm1d", "Tanh"} <= set(by_kind)
    for info in by_kind["BatchNorm1d"]:
        assert info.layer.split(".")[-1] == "1"
    assert {info.op for info in by_kind["Tanh"]} == {"tanh"}
    first_weight = graph.info(model[0].weight)
    assert first_weight.op == "parameter" and first_weight.name == "weight"
    assert first_weight.shape == (3, 4) and first_weight.layer.split(".")[-1] == "0"
    assert graph.info(graph.outputs[0]).op == "sum"
    assert graph.info(graph.outputs[0]).layer is None
    assert graph.info(x).name == "x" and graph.info(x).op == "input"

    graph.backward()
    assert float(graph.grad_of(graph.outputs[0])) == 1.0
    for node in graph.nodes:
        if node.requires_grad:
            assert np.shape(graph.grad_of(node)) == node.shape
    np.testing.assert_array_equal(graph.grad_of(model[0].weight), model[0].weight.grad)


def test_to_networkx_is_the_same_dag():
    graph = Graph(_loss(_model(), Tensor(_inputs())))
    dag = graph.to_networkx()
    assert nx.is_directed_acyclic_graph(dag)
    assert dag.number_of_nodes() == len(graph.nodes)
    edges = {edge[:2] for edge in dag.edges}  # (u, v), or (u, v, key) in a multigraph
    assert edges == {(p.id, n.id) for n in graph.nodes for p in n.inputs}
    for node in graph.nodes:
        assert dag.nodes[node.id]["op"] == graph.info(node).op


def test_to_networkx_has_one_edge_per_input():
    # Batch norm squares the centered values (`centered * centered`): both input positions
    # of that node must survive the export, or the exported graph cannot be re-evaluated.
    graph = Graph(_loss(_model(), Tensor(_inputs())))
    dag = graph.to_networkx()
    assert dag.number_of_edges() == sum(len(node.inputs) for node in graph.nodes)


def test_to_dot_has_layer_clusters_and_every_node():
    graph = Graph(_loss(_model(), Tensor(_inputs())))
    dot = graph.to_dot()
    assert dot.startswith("digraph")
    assert dot.count("subgraph cluster_") == 4  # the four layers of the Sequential
    for node in graph.nodes:
        assert f"n{node.id} [" in dot


def test_stepper_events_forward_then_backward():
    graph = Graph(_loss(_model(), Tensor(_inputs())))
    events = list(graph.steps())
    forward = [e for e in events if e.phase == "forward"]
    backward = [e for e in events if e.phase == "backward"]
    assert events == forward + backward
    assert [e.node for e in forward] == graph.op_nodes
    assert [e.index for e in forward] == list(range(len(forward)))
    assert [e.index for e in backward] == list(range(len(backward)))
    # A reverse topological order: every node comes after all the nodes that use it.
    seen = set()
    for event in backward:
        node = event.node
        users = [n for n in graph.nodes if n.requires_grad and any(node is i for i in n.inputs)]
        assert all(user.id in seen for user in users)
        seen.add(event.node.id)
    assert backward[0].node is graph.outputs[0]
    assert {e.node.id for e in backward} == {n.id for n in graph.nodes if n.requires_grad}
    for event in forward:
        np.testing.assert_array_equal(event.value, event.node.data)


def test_forward_replay_after_changing_an_input_matches_eager():
    model = _model()
    x = Tensor(_inputs(0))
    graph = Graph(_loss(model, x))
    new = _inputs(1)
    x.data = new
    replayed = graph.forward()
    fresh = _loss(model, Tensor(new))
    np.testing.assert_allclose(replayed.data, fresh.data, rtol=1e-12)
    assert not np.allclose(replayed.data, _loss(model, Tensor(_inputs(0))).data)


def test_stepper_gradients_equal_plain_backward():
    model = _model()
    graph = Graph(_loss(model, Tensor(_inputs())))
    for _ in graph.steps():
        pass
    stepped = {name: p.grad.copy() for name, p in model.named_parameters()}
    for p in model.parameters():
        np.testing.assert_array_equal(graph.grad_of(p), p.grad)
    model.zero_grad()
    _loss(model, Tensor(_inputs())).backward()
    for name, p in model.named_parameters():
        np.testing.assert_allclose(stepped[name], p.grad, rtol=1e-12, err_msg=name)


# --- gradcheck ---------------------------------------------------------------------------------
def _check_inputs():
    rng = np.random.default_rng(3)
    return rng.standard_normal((4, 3)), rng.standard_normal((3, 2))


@pytest.mark.parametrize(
    "fn",
    [
        lambda a, b: (a @ b).tanh().sum(),
        lambda a, b: F.softmax(a, axis=1) * a,
        lambda a, b: F.cross_entropy(a, [0, 2, 1, 1]) + (b * b).sigmoid().mean(),
        lambda a, b: F.batch_norm(a, weight=Tensor(np.ones(3)) + 0.0) @ b,
        lambda a, b: F.maximum(a @ b, (a @ b).exp() - 2.0),
    ],
    ids=["matmul_tanh", "softmax", "cross_entropy", "batch_norm", "maximum"],
)
def test_gradcheck_passes_on_composed_functions(fn):
    result = engine.gradcheck(fn, *_check_inputs())
    assert result.passed(1e-6), result


def _cube(x):
    return x**3


def _cube_vjp_missing_square(g, out, x):
    return (g * 3.0 * x,)  # wrong on purpose: d(x^3)/dx = 3 x^2


def test_gradcheck_detects_wrong_vjp():
    wrong = Op("cube_wrong", _cube, _cube_vjp_missing_square, 1, "x^3", "3 g x")
    result = engine.gradcheck(lambda x: engine.apply(wrong, x).sum(), np.array([0.5, 1.5, -2.0]))
    assert not result.passed(1e-6)
    assert result.max_error > 0.1
    np.testing.assert_allclose(result.numeric[0], 3 * np.array([0.5, 1.5, -2.0]) ** 2, rtol=1e-6)


def test_relative_error_formula():
    a = np.array([1.0, 2.0])
    n = np.array([1.0, 2.5])
    assert engine.relative_error(a, n) == pytest.approx(0.5 / (math.sqrt(5.0) + math.sqrt(7.25)))
    assert engine.relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert engine.relative_error(np.ones(2), -np.ones(2)) == pytest.approx(1.0)


def test_gradcheck_reports_per_input_and_overall_errors():
    rng = np.random.default_rng(5)
    result = engine.gradcheck(
        lambda a, b: (a * b.tanh()).sum(), rng.normal(size=3), rng.normal(size=(2, 3))
    )
    assert len(result.errors) == 2
    assert result.max_error == max(result.errors) < 1e-6
    together = engine.relative_error(
        np.concatenate([g.ravel() for g in result.analytic]),
        np.concatenate([g.ravel() for g in result.numeric]),
    )
    assert result.overall_error == together
