"""`engine.define_op`: a user's primitive works wherever a built-in one does, checked against
closed forms, central differences (the kit), an independent eager run for the stepper, and
the registries a model file resolves names through; bad definitions are refused whole."""

from __future__ import annotations

import numpy as np
import pytest
from topograd.engine import OPS, Graph, Stepper, Tensor, define_op, nn, unregister_op
from topograd.engine.custom_ops import CUSTOM
from topograd.engine.registry import UnknownNameError

from topograd import engine
from topograd.functional import FUNCTIONS
from topograd.optim import SGD
from topograd.testing import (
    GradientMismatchError,
    arrays,
    assert_gradients,
    assert_op_gradients,
    gradients_hold,
)

LAYERS = nn.LAYERS
X = np.array([[-2.0, -0.5, 0.0], [0.25, 1.0, 3.0]])


@pytest.fixture(autouse=True)
def clean_registries():
    """Each test's ops are unregistered afterwards: the registries are process-wide."""
    before = set(CUSTOM)
    yield
    for name in set(CUSTOM) - before:
        unregister_op(name)


# --- ops the tests define ---------------------------------------------------------------------
def softsign(x):
    return x / (1.0 + np.abs(x))


def softsign_vjp(g, out, x):
    return (g / (1.0 + np.abs(x)) ** 2,)


def define_softsign(name="softsign_test", vjp=softsign_vjp):
    return define_op(
        name, softsign, vjp, formula="x / (1 + |x|)", vjp_formula="dx = g / (1 + |x|)^2"
    )


def logaddexp(x, y):
    return np.logaddexp(x, y)


def logaddexp_vjp(g, out, x, y):
    # gradients in the broadcast shape of out: define_op's caller sums them back
    return g * np.exp(x - out), g * np.exp(y - out)


class Recorded:
    """An op `a * tanh(b * x)` whose forward and VJP note the attributes they were given."""

    def __init__(self):
        self.calls = []

    def forward(self, x, a=1.0, b=1.0):
        self.calls.append(("forward", a, b))
        return a * np.tanh(b * x)

    def vjp(self, g, out, x, a=1.0, b=1.0):
        self.calls.append(("vjp", a, b))
        return (g * a * b * (1.0 - np.tanh(b * x) ** 2),)


# --- values and gradients -------------------------------------------------------------------
def test_forward_and_backward_equal_the_closed_form():
    op = define_softsign()
    x = Tensor(X, requires_grad=True)
    out = op(x)
    np.testing.assert_allclose(out.data, X / (1 + np.abs(X)), rtol=1e-15)
    assert out.op is OPS["softsign_test"]
    out.sum().backward()
    np.testing.assert_allclose(x.grad, 1 / (1 + np.abs(X)) ** 2, rtol=1e-15)


def test_central_differences_agree_through_a_composition():
    op = define_softsign()
    checks = assert_gradients(lambda x, w: (op(x @ w) * op(x).sum()).mean(), X, X.T.copy())
    assert [check.label for check in checks] == ["input 0", "input 1"]


def test_the_kit_property_tests_a_custom_op_like_a_built_in_one():
    assert_op_gradients(define_softsign().op, max_examples=25)
    assert_op_gradients(define_op("lae_test", logaddexp, logaddexp_vjp, kind="binary").op, 25)
    gradients_hold(define_softsign("softsign_again"), arrays(), max_examples=25)()


def test_the_kit_catches_a_custom_op_with_a_wrong_vjp():
    def missing_square(g, out, x):
        return (g / (1.0 + np.abs(x)),)

    op = define_softsign("softsign_wrong", vjp=missing_square)
    with pytest.raises(GradientMismatchError, match="input 0") as caught:
        assert_op_gradients(op.op, max_examples=25, database=None)
    assert caught.value.input_size <= 4  # shrunk to a small counterexample


def test_two_inputs_broadcast_and_gradients_are_summed_back():
    op = define_op("lae_test", logaddexp, logaddexp_vjp, kind="binary")
    a_value, b_value = np.array([[0.5], [-1.0], [2.0]]), np.array([0.0, 1.0, -3.0, 0.25])
    a, b = Tensor(a_value, requires_grad=True), Tensor(b_value, requires_grad=True)
    out = op(a, b)
    np.testing.assert_allclose(out.data, np.logaddexp(a_value, b_value), rtol=1e-15)
    out.sum().backward()
    weight_a = np.exp(a_value) / (np.exp(a_value) + np.exp(b_value))  # softmax of the pair
    np.testing.assert_allclose(a.grad, weight_a.sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(b.grad, (1 - weight_a).sum(axis=0), rtol=1e-12)
    assert_gradients(lambda x, y: op(x, y), a_value, b_value)
    assert "lae_test" in FUNCTIONS and "lae_test" not in LAYERS  # two inputs: no layer


@pytest.mark.parametrize("shapes", [((3, 1), (4,)), ((), (2, 3)), ((2, 1, 3), (4, 1))])
def test_broadcast_gradients_match_central_differences(shapes):
    op = define_op("lae_test", logaddexp, logaddexp_vjp, kind="binary")
    rng = np.random.default_rng(0)
    checks = assert_gradients(op, *(rng.normal(size=shape) for shape in shapes))
    assert [check.shape for check in checks] == list(shapes)


def test_attributes_reach_forward_and_vjp():
    recorded = Recorded()
    op = define_op("scaled_tanh_test", recorded.forward, recorded.vjp)
    assert list(op.attributes) == ["a", "b"]
    x = Tensor(X, requires_grad=True)
    out = op(x, a=3.0, b=0.5)
    assert out.attrs == {"a": 3.0, "b": 0.5}
    out.sum().backward()
    assert recorded.calls == [("forward", 3.0, 0.5), ("vjp", 3.0, 0.5)]
    np.testing.assert_allclose(x.grad, 1.5 * (1 - np.tanh(0.5 * X) ** 2), rtol=1e-14)
    assert_gradients(lambda t: op(t, b=2.0), X)


def test_an_op_that_saves_hands_its_context_to_the_vjp():
    contexts = []

    def forward(x):
        denominator = 1.0 + np.abs(x)
        return x / denominator, denominator

    def vjp(g, out, x, ctx):
        contexts.append(ctx)
        return (g / ctx**2,)

    op = define_op("softsign_saved", forward, vjp, saves=True)
    x = Tensor(X, requires_grad=True)
    out = op(x)
    np.testing.assert_allclose(out.data, softsign(X), rtol=1e-15)
    np.testing.assert_array_equal(out.ctx, 1 + np.abs(X))
    out.sum().backward(retain_graph=True)
    assert contexts[0] is out.ctx
    np.testing.assert_allclose(x.grad, 1 / (1 + np.abs(X)) ** 2, rtol=1e-15)
    assert_op_gradients(op.op, max_examples=15)


def test_kind_and_domain_tell_the_kit_where_to_draw_and_layer_false_keeps_it_a_function():
    def ln(x):
        return np.log(x)

    def ln_vjp(g, out, x):
        return (g / x,)

    op = define_op("ln_test", ln, ln_vjp, domain="positive", layer=False)
    assert (op.op.kind, op.op.domain) == ("unary", "positive")
    assert "ln_test" in FUNCTIONS and "ln_test" not in LAYERS
    assert_op_gradients(op.op, max_examples=25)  # only positive inputs drawn: no NaN


def test_numbers_and_arrays_become_constants():
    op = define_op("lae_test", logaddexp, logaddexp_vjp, kind="binary")
    x = Tensor(np.array([0.0, 1.0]), requires_grad=True)
    op(x, 2.0).sum().backward()
    np.testing.assert_allclose(x.grad, np.exp(x.data - np.logaddexp(x.data, 2.0)))
    assert not op(np.zeros(2), np.ones(2)).requires_grad


# --- graphs, the stepper, DOT ---------------------------------------------------------------
def build(op, values):
    """h = op(x @ w); loss = mean(h * h), its leaves named."""
    x = Tensor(values["x"], name="x")
    w = Tensor(values["w"], requires_grad=True, name="w")
    h = op(x @ w).named("h")
    return (h * h).mean(), {"x": x, "w": w, "h": h}


def test_a_graph_shows_the_op_and_the_stepper_matches_an_eager_run():
    op = define_softsign()
    rng = np.random.default_rng(1)
    values = {"x": rng.normal(size=(4, 3)), "w": rng.normal(size=(3, 2))}
    loss, nodes = build(op, values)
    graph = Graph(loss)
    info = graph.info(nodes["h"])
    assert (info.op, info.formula, info.vjp_formula) == (
        "softsign_test",
        "x / (1 + |x|)",
        "dx = g / (1 + |x|)^2",
    )
    assert '"h: softsign_test\\n4x2"' in graph.to_dot()

    stepper = Stepper(graph)
    events = stepper.run()
    assert stepper.finished
    forward = {e.node.id: e.value for e in events if e.phase == "forward"}
    backward = {e.node.id: e.grad for e in events if e.phase == "backward"}

    eager, eager_nodes = build(op, values)  # the same recipe, run eagerly
    eager_nodes["h"].retain_grad()
    eager.backward()
    z = values["x"] @ values["w"]
    np.testing.assert_allclose(forward[nodes["h"].id], softsign(z), rtol=1e-15)
    np.testing.assert_allclose(backward[nodes["h"].id], eager_nodes["h"].grad, rtol=1e-15)
    np.testing.assert_allclose(backward[nodes["w"].id], eager_nodes["w"].grad, rtol=1e-15)
    dz = 2 * softsign(z) / z.size / (1 + np.abs(z)) ** 2
    np.testing.assert_allclose(backward[nodes["w"].id], values["x"].T @ dz, rtol=1e-12)
    (h_step,) = [e for e in events if e.phase == "backward" and e.node is nodes["h"]]
    (edge,) = stepper.input_gradients(h_step)  # what the custom VJP sends to x @ w
    np.testing.assert_allclose(edge, dz, rtol=1e-12)


# --- as a layer -----------------------------------------------------------------------------
def test_a_one_input_op_is_a_layer_whose_options_are_its_attributes():
    recorded = Recorded()
    op = define_op("scaled_tanh_test", recorded.forward, recorded.vjp)
    layer_class = LAYERS.get("scaled_tanh_test")
    assert layer_class.__name__ == "ScaledTanhTest"
    layer = layer_class(b=2.0)
    assert layer.options == {"a": 1.0, "b": 2.0}
    assert repr(layer) == "ScaledTanhTest(a=1.0, b=2.0)"
    assert layer.parameters() == []
    out = layer(Tensor(X))
    assert out.op is op.op and out.attrs == {"a": 1.0, "b": 2.0}
    np.testing.assert_allclose(out.data, np.tanh(2.0 * X), rtol=1e-15)
    assert layer_class(3.0).options == {"a": 3.0, "b": 1.0}  # positional, in the forward's order
    with pytest.raises(TypeError, match="c"):
        layer_class(c=1.0)


def test_a_sequential_with_the_layer_trains_and_its_gradients_hold():
    define_softsign()
    rng = np.random.default_rng(0)
    model = nn.Sequential(
        nn.Linear(2, 8, rng=rng), LAYERS.get("softsign_test")(), nn.Linear(8, 1, rng=rng)
    )
    x = rng.normal(size=(32, 2))
    y = np.sin(x[:, :1]) + x[:, 1:] ** 2
    assert_gradients(model, x[:4])  # every parameter, through the custom layer

    optimizer = SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = engine.functional.mse_loss(model(Tensor(x)), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


# --- refused definitions --------------------------------------------------------------------
def forward_args(*xs):
    return xs[0]


def forward_kwargs(x, **options):
    return x


def forward_keyword_without_default(x, a=1.0, *, b):
    return x


def forward_no_input(a=1.0):
    return a


def two_inputs(x, y):
    return x + y


@pytest.mark.parametrize(
    ("name", "forward", "options", "error", "message"),
    [
        ("2fast", softsign, {}, ValueError, "valid identifier"),
        ("my-op", softsign, {}, ValueError, "valid identifier"),
        ("", softsign, {}, ValueError, "valid identifier"),
        ("tanh", softsign, {}, ValueError, "already a registered op"),
        ("cross_entropy", softsign, {}, ValueError, "already a registered function"),
        ("linear", softsign, {}, ValueError, "already a registered layer"),
        ("custom_test", forward_args, {}, TypeError, r"no \*args"),
        ("custom_test", forward_kwargs, {}, TypeError, r"no \*args/\*\*kwargs"),
        ("custom_test", forward_keyword_without_default, {}, TypeError, "'b' needs a default"),
        ("custom_test", forward_no_input, {}, TypeError, "no tensor input"),
        ("custom_test", two_inputs, {"layer": True}, ValueError, "only a one-input op"),
        ("custom_test", softsign, {"kind": "ternary"}, ValueError, "kind must be one of"),
        ("custom_test", softsign, {"domain": "complex"}, ValueError, "domain must be one of"),
        ("custom_test", "softsign", {}, TypeError, "forward must be callable"),
    ],
)
def test_a_bad_definition_is_refused_and_registers_nothing(name, forward, options, error, message):
    before = (set(OPS), set(FUNCTIONS.names()), set(LAYERS.names()), set(CUSTOM))
    with pytest.raises(error, match=message):
        define_op(name, forward, softsign_vjp, **options)
    assert (set(OPS), set(FUNCTIONS.names()), set(LAYERS.names()), set(CUSTOM)) == before


def test_a_second_op_of_the_same_name_is_refused():
    define_softsign()
    with pytest.raises(ValueError, match="already a registered op"):
        define_softsign()


def test_wrong_inputs_and_unknown_options_are_refused_at_the_call():
    op = define_op("scaled_tanh_test", Recorded().forward, Recorded().vjp)
    x = Tensor(X)
    with pytest.raises(TypeError, match="takes 1 tensor input"):
        op(x, x)
    with pytest.raises(TypeError, match="takes 1 tensor input"):
        op()
    with pytest.raises(TypeError, match=r"no option 'c' \(options: a, b\)"):
        op(x, c=2.0)


# --- unregistering --------------------------------------------------------------------------
def test_unregister_removes_every_entry_and_frees_the_name():
    define_softsign()
    assert {"softsign_test"} <= set(OPS) & set(FUNCTIONS.names()) & set(LAYERS.names())
    unregister_op("softsign_test")
    assert "softsign_test" not in OPS and "softsign_test" not in CUSTOM
    with pytest.raises(UnknownNameError):
        FUNCTIONS.get("softsign_test")
    with pytest.raises(UnknownNameError):
        LAYERS.get("softsign_test")
    define_softsign()  # the name is free again
    assert OPS["softsign_test"] is CUSTOM["softsign_test"].op


def test_unregister_refuses_built_ins_and_unknown_names():
    with pytest.raises(ValueError, match="'tanh' is built in"):
        unregister_op("tanh")
    assert "tanh" in OPS and "tanh" in FUNCTIONS and "tanh" in LAYERS
    with pytest.raises(KeyError, match="no custom op"):
        unregister_op("no_such_op")
