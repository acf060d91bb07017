"""What a training step keeps alive: values no VJP reads are released during the forward pass,
saved values go as backward passes them, convolutions keep no columns, and none of it changes
a value or a gradient that anyone can see (behaviour only, never timings)."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
from test_trust import _peak_bytes
from topograd.engine import Graph, Stepper, Tensor, no_grad
from topograd.engine import functional as F
from topograd.engine.executor import Released, iter_backward


def _inputs(rng, n=64):
    x = Tensor(rng.standard_normal((n, 32)))
    w = Tensor(rng.standard_normal((32, 128)) / 6, requires_grad=True)
    b = Tensor(rng.standard_normal(128), requires_grad=True)
    return x, w, b


def test_a_value_no_vjp_reads_is_released_once_only_the_graph_holds_it():
    x, w, b = _inputs(np.random.default_rng(0))
    loss = ((x @ w + b).relu() * 2.0).sum()
    relu = loss.inputs[0].inputs[0]
    add = relu.inputs[0]
    product = add.inputs[0]
    # add's VJP reads no value and relu's reads only its own output: x @ w and + b are gone
    assert type(product._data) is Released and type(add._data) is Released
    assert type(relu._data) is np.ndarray
    expected = x.data @ w.data
    np.testing.assert_array_equal(product.data, expected)  # computed again on demand
    np.testing.assert_array_equal(add.data, expected + b.data)


def test_a_tensor_someone_holds_is_never_released():
    x, w, b = _inputs(np.random.default_rng(1))
    product = x @ w
    value = product.data
    loss = (product + b).relu().sum()
    loss.backward()
    assert product._data is value  # the same array, never released or recomputed


def test_released_values_do_not_change_gradients():
    rng = np.random.default_rng(2)
    x, w, b = _inputs(rng)

    def grads(hold):
        w.grad = b.grad = None
        kept = []
        h = x @ w
        kept.append(h) if hold else None
        h = h + b
        kept.append(h) if hold else None
        h = F.batch_norm(h, training=True)
        kept.append(h) if hold else None
        loss = F.cross_entropy(h.relu() @ w.T, np.arange(64) % 32)
        loss.backward()
        return w.grad.copy(), b.grad.copy()

    for released, held in zip(grads(False), grads(True), strict=True):
        np.testing.assert_array_equal(released, held)


def test_a_graph_and_its_stepper_show_released_values():
    x, w, b = _inputs(np.random.default_rng(3))
    loss = (x @ w + b).relu().sum()
    graph = Graph(loss)
    assert not any(type(node._data) is Released for node in graph.nodes)
    stepper = Stepper(graph)
    stepper.run_to_end_of("forward")
    product = next(node for node in graph.nodes if node.op is not None and node.op.name == "matmul")
    np.testing.assert_array_equal(stepper.value_of(product.id), x.data @ w.data)


def test_a_released_value_is_refused_once_an_input_changed_in_place():
    x, w, b = _inputs(np.random.default_rng(4))
    loss = (x @ w + b).relu().sum()
    product = loss.inputs[0].inputs[0].inputs[0]
    assert type(product._data) is Released
    with no_grad():
        w += 1.0
    with pytest.raises(RuntimeError, match="changed in place"):
        _ = product.data


def test_backward_frees_each_value_as_it_passes_its_node():
    x = Tensor(np.random.default_rng(5).standard_normal((128, 128)), requires_grad=True)
    h = x
    for _ in range(6):
        h = h.tanh()  # tanh's VJP reads its output: every value is saved
    loss = h.sum()
    values = []
    node = loss.inputs[0]
    while node.op is not None:
        values.append(weakref.ref(node._data))
        node = node.inputs[0]
    del h, node
    steps = iter_backward(loss, 1.0, retain_graph=False)
    next(steps)  # the sum
    next(steps)  # the last tanh: its value is no longer needed once the next one is done
    next(steps)
    gc.collect()
    assert values[0]() is None
    assert values[-1]() is not None  # the first tanh's value: its node is still to come
    for _ in steps:
        pass
    assert all(value() is None for value in values)


def test_gradients_a_graph_shows_are_not_overwritten_by_later_vjps():
    x, w, b = _inputs(np.random.default_rng(6))
    h = (x @ w + b).relu()
    loss = (h * h * 3.0).sum()
    shown = [
        (event.node.id, event.grad, event.grad.copy()) for event in Graph(loss).backward_steps()
    ]
    for _, grad, copy in shown:
        np.testing.assert_array_equal(grad, copy)


def test_conv2d_keeps_no_columns_when_a_gradient_is_needed():
    rng = np.random.default_rng(7)
    x = Tensor(rng.standard_normal((32, 8, 16, 16)), requires_grad=True)
    w = Tensor(rng.standard_normal((16, 8, 3, 3)), requires_grad=True)
    out = F.conv2d(x, w, padding=1)
    assert out.ctx is None  # only the inputs are kept (by reference), as PyTorch keeps them
    kept = []
    columns = 32 * 8 * 9 * 16 * 16 * 8  # bytes of im2col columns for the whole batch
    recorded = _peak_bytes(lambda: kept.append(F.conv2d(x, w, padding=1)))
    inference = _peak_bytes(lambda: kept.append(_without_grad(F.conv2d, x, w, padding=1)))
    assert abs(recorded - inference) < 0.1 * columns  # the output, one chunk of columns
    out.sum().backward()
    assert x.grad.shape == x.shape and w.grad.shape == w.shape


def _without_grad(fn, *args, **kwargs):
    with no_grad():
        return fn(*args, **kwargs)


def test_a_training_step_peaks_near_its_saved_activations():
    """An MLP step with the composed batch norm at batch 512: what is alive at its peak is
    about what PyTorch saves (five (512, 256) arrays per hidden layer here, against eleven
    when every value was kept), not every intermediate."""
    rng = np.random.default_rng(8)
    from topograd.engine import nn

    model = nn.Sequential(
        nn.Linear(64, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.5, rng=rng),
        nn.Linear(256, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.5, rng=rng),
        nn.Linear(256, 10),
    )  # fmt: skip
    x, labels = rng.standard_normal((512, 64)), rng.integers(0, 10, 512)

    def step():
        for p in model.parameters():
            p.grad = None
        F.cross_entropy(model(x), labels).backward()

    step()
    activation = 512 * 256 * 8
    assert _peak_bytes(step) < 12.5 * activation
