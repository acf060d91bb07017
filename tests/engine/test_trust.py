"""Autograd you can trust: no silent wrong gradients, and PyTorch's semantics where users carry
its habits. Each numbered item and habit of the issue has a test here, against PyTorch where
PyTorch's behaviour is the truth."""

from __future__ import annotations

import gc
import threading
import tracemalloc

import numpy as np
import pytest

import topograd as tg
import topograd.functional as F
from topograd import Graph, Stepper, Tensor, nn, no_grad
from topograd.optim import SGD

torch = pytest.importorskip("torch")


def torch_raises(action) -> str:
    """PyTorch's own verdict on the same misuse: the message of the error it raises."""
    with pytest.raises(RuntimeError) as caught:
        action()
    return str(caught.value)


# --- 1. stale graphs -----------------------------------------------------------------------
def test_the_issues_stale_graph_is_refused_as_pytorch_refuses_it():
    w = Tensor([1.0, 2.0], requires_grad=True)
    optimizer = SGD([w], lr=0.5)
    loss = (w * w * w).sum()
    loss.backward()
    np.testing.assert_array_equal(w.grad, [3.0, 12.0])
    optimizer.step()
    optimizer.zero_grad()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        loss.backward()
    assert w.grad is None  # nothing half-computed was added

    tw = torch.tensor([1.0, 2.0], requires_grad=True)
    tloss = (tw * tw * tw).sum()
    tloss.backward()
    torch_raises(tloss.backward)  # "Trying to backward through the graph a second time"


def test_a_retained_graph_whose_values_an_optimizer_changed_is_refused():
    w = Tensor([1.0, 2.0], requires_grad=True)
    optimizer = SGD([w], lr=0.5)
    loss = (w * w * w).sum()
    loss.backward(retain_graph=True)
    optimizer.step()
    optimizer.zero_grad()
    with pytest.raises(RuntimeError, match="modified in place") as caught:
        loss.backward()
    assert "version 1" in str(caught.value)
    assert w.grad is None

    tw = torch.tensor([1.0, 2.0], requires_grad=True)
    tloss = (tw * tw * tw).sum()
    tloss.backward(retain_graph=True)
    with torch.no_grad():
        tw -= 0.5 * tw.grad
    assert "inplace operation" in torch_raises(tloss.backward)


@pytest.mark.parametrize("change", ["data", "in_place"])
def test_writing_a_saved_value_between_forward_and_backward_is_refused(change):
    x = Tensor([1.0, 2.0, 3.0])  # data, used by mul's VJP for w's gradient
    w = Tensor([0.5, 0.5, 0.5], requires_grad=True)
    loss = (w * x).sum()
    if change == "data":
        x.data = np.array([9.0, 9.0, 9.0])
    else:
        x += 1.0
    assert x.version == 1
    with pytest.raises(RuntimeError, match="modified in place"):
        loss.backward()

    tx, tw = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.5] * 3, requires_grad=True)
    tloss = (tw * tx).sum()
    tx += 1.0
    assert "inplace operation" in torch_raises(tloss.backward)


def test_values_only_shapes_are_read_from_may_change_as_in_pytorch():
    x = Tensor([1.0, 2.0], requires_grad=True)
    b = Tensor([5.0, 5.0])
    loss = (x + b).sum()  # add's VJP reads no value
    b += 1.0
    loss.backward()
    np.testing.assert_array_equal(x.grad, [1.0, 1.0])


def test_recomputing_the_forward_pass_after_an_update_is_fine():
    w = Tensor([1.0, 2.0], requires_grad=True)
    optimizer = SGD([w], lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        (w * w).sum().backward()
        optimizer.step()
    tw = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    topt = torch.optim.SGD([tw], lr=0.1)
    for _ in range(3):
        topt.zero_grad()
        (tw * tw).sum().backward()
        topt.step()
    np.testing.assert_allclose(w.data, tw.detach().numpy(), rtol=1e-15)


# --- 2. threads ------------------------------------------------------------------------------
def _tanh_stack(W, x, depth=5):
    h = x
    for _ in range(depth):
        h = (h @ W).tanh()
    return (h * h).sum()


def _shared_weights():
    rng = np.random.default_rng(0)
    return rng.standard_normal((8, 8)) / np.sqrt(8), rng.standard_normal((4, 8))


def _train(W, x_leaf, steps):
    for _ in range(steps):
        _tanh_stack(W, x_leaf).backward()


def test_two_threads_backpropagating_through_a_shared_parameter_equal_the_serial_run():
    weights, inputs = _shared_weights()
    steps = 200

    serial_W = Tensor(weights, requires_grad=True)
    serial_x = [Tensor(inputs * (k + 1), requires_grad=True) for k in range(2)]
    for x in serial_x:
        _train(serial_W, x, steps)

    W = Tensor(weights, requires_grad=True)
    xs = [Tensor(inputs * (k + 1), requires_grad=True) for k in range(2)]
    threads = [threading.Thread(target=_train, args=(W, x, steps)) for x in xs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for x, reference in zip(xs, serial_x, strict=True):  # each thread's own leaf, bit for bit
        np.testing.assert_array_equal(x.grad, reference.grad)
    # the shared weight gets 400 contributions whose order differs from the serial run's
    np.testing.assert_allclose(W.grad, serial_W.grad, rtol=1e-12, atol=1e-12)


def test_many_threads_with_short_passes_through_shared_leaves_lose_nothing():
    """Short passes make claims and releases interleave often: a pass that is counting while
    another gives its nodes back must still count every edge of the shared leaves."""
    rng = np.random.default_rng(3)
    weights, bias = rng.standard_normal((3, 3)), rng.standard_normal(3)
    inputs = [rng.standard_normal((2, 3)) for _ in range(4)]
    steps = 600

    def run(W, b, x, count):
        for _ in range(count):
            h = (x @ W + b).tanh()
            (h * h + h @ W).sum().backward()

    serial = [Tensor(weights, requires_grad=True), Tensor(bias, requires_grad=True)]
    serial_x = [Tensor(v, requires_grad=True) for v in inputs]
    for x in serial_x:
        run(*serial, x, steps)
    shared = [Tensor(weights, requires_grad=True), Tensor(bias, requires_grad=True)]
    xs = [Tensor(v, requires_grad=True) for v in inputs]
    threads = [threading.Thread(target=run, args=(*shared, x, steps)) for x in xs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for x, reference in zip(xs, serial_x, strict=True):
        np.testing.assert_array_equal(x.grad, reference.grad)
    for ours, reference in zip(shared, serial, strict=True):
        np.testing.assert_allclose(ours.grad, reference.grad, rtol=1e-12, atol=1e-12)


def test_two_threads_with_the_same_input_sum_into_a_shared_weight_bit_for_bit():
    weights, inputs = _shared_weights()
    steps = 200
    serial_W = Tensor(weights, requires_grad=True)
    for _ in range(2):
        _train(serial_W, Tensor(inputs), steps)
    W = Tensor(weights, requires_grad=True)
    threads = [threading.Thread(target=_train, args=(W, Tensor(inputs), steps)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # every contribution is the same array, so any order of the 400 additions gives one sum
    np.testing.assert_array_equal(W.grad, serial_W.grad)


# --- 3. modes are per thread ------------------------------------------------------------------
def test_no_grad_in_one_thread_does_not_stop_another_from_recording():
    inside, leave = threading.Event(), threading.Event()

    def evaluate_without_grad():
        with no_grad():
            inside.set()
            leave.wait(timeout=10)

    other = threading.Thread(target=evaluate_without_grad)
    other.start()
    inside.wait(timeout=10)
    try:
        assert tg.is_grad_enabled()
        x = Tensor(3.0, requires_grad=True)
        (x * x).backward()
        assert float(x.grad) == 6.0
    finally:
        leave.set()
        other.join()

    seen = []
    thread = threading.Thread(target=lambda: seen.append(tg.is_grad_enabled()))
    with no_grad():
        thread.start()
        thread.join()
    assert seen == [True]  # a new thread starts recording, as PyTorch's threads do


def test_error_messages_name_the_calling_threads_layer():
    inside, leave = threading.Event(), threading.Event()

    class Waiting(nn.Module):
        def forward(self, x):
            inside.set()
            leave.wait(timeout=10)
            return x

    other = threading.Thread(target=lambda: Waiting()(Tensor(1.0)))
    other.start()
    inside.wait(timeout=10)
    try:
        layer = nn.Linear(3, 2)
        out = layer(Tensor(np.ones((1, 3))))
        assert str(out.layer) == "linear (Linear)"
        assert tg.engine.modes.current_layer() is None
    finally:
        leave.set()
        other.join()


# --- 4. a half-consumed backward_steps --------------------------------------------------------
def test_a_half_consumed_backward_steps_leaves_the_next_backward_whole():
    x = Tensor([1.0, 2.0], requires_grad=True)
    loss = (x * x).sum()
    graph = Graph(loss)
    steps = graph.backward_steps()
    next(steps)  # paused after the first node
    x.grad = None
    loss.backward()
    np.testing.assert_array_equal(x.grad, [2.0, 4.0])
    del steps


# --- 5. zero base -----------------------------------------------------------------------------
@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0, 3.0, np.int64(2), np.float32(0.0)])
def test_a_constant_power_at_zero_has_pytorchs_gradient(exponent):
    x = Tensor([0.0, 1.5], requires_grad=True)
    out = x**exponent
    assert out.op.name == "power"  # numpy numbers are constants too: no log(x)
    out.sum().backward()
    tx = torch.tensor([0.0, 1.5], dtype=torch.float64, requires_grad=True)
    (tx ** float(exponent)).sum().backward()
    np.testing.assert_array_equal(x.grad, tx.grad.numpy())


def test_zero_to_a_tensor_power_has_pytorchs_gradients_and_no_nan_spreads():
    x = Tensor([0.0, 0.0, 2.0], requires_grad=True)
    y = Tensor([0.0, 2.0, 0.5], requires_grad=True)
    upstream = Tensor(1.0, requires_grad=True)
    loss = (x**y).sum() * upstream + (x * 0.0).sum()
    loss.backward()
    tx = torch.tensor([0.0, 0.0, 2.0], dtype=torch.float64, requires_grad=True)
    ty = torch.tensor([0.0, 2.0, 0.5], dtype=torch.float64, requires_grad=True)
    tu = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    ((tx**ty).sum() * tu + (tx * 0.0).sum()).backward()
    for ours, theirs in ((x, tx), (y, ty), (upstream, tu)):
        np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), rtol=1e-15)
        assert np.all(np.isfinite(ours.grad))


# --- habits: saved values are freed after backward --------------------------------------------
def _kept_bytes(make_losses) -> int:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = make_losses()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del kept
    return after - before


def test_a_list_of_past_losses_no_longer_holds_every_activation():
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
    x = Tensor(np.random.default_rng(0).standard_normal((64, 64)))
    labels = np.arange(64) % 10

    def losses(retain):
        kept = []
        for _ in range(20):
            loss = F.cross_entropy(model(x), labels)
            loss.backward(retain_graph=retain)
            kept.append(loss)
        return kept

    freed, retained = _kept_bytes(lambda: losses(False)), _kept_bytes(lambda: losses(True))
    # what each retained graph holds: the ReLU's output (its VJP reads it) and the small
    # arrays of the loss; x @ W1 and + b1 were released during the forward pass, as no VJP
    # reads them and nothing else held them
    activations = 20 * (64 * 256 + 64 * 10 * 4) * 8
    assert retained > activations
    assert freed < retained / 10  # the losses and the parameters' last gradients


def test_a_graph_and_its_stepper_keep_what_they_show_after_a_plain_backward():
    x = Tensor([1.0, -2.0], requires_grad=True, name="x")
    loss = (x.tanh() * x).sum()
    graph = Graph(loss)
    loss.backward()  # frees the links of the nodes it passed through
    with pytest.raises(RuntimeError, match="build the Graph before"):
        Graph(loss * 2.0)
    first = x.grad.copy()
    x.grad = None
    stepper = Stepper(graph)
    while stepper.step() is not None:
        pass
    np.testing.assert_allclose(stepper.grad_of(x.id), first, rtol=1e-15)
    np.testing.assert_allclose(x.grad, first, rtol=1e-15)


# --- habits: Python's protocol ----------------------------------------------------------------
def test_truth_values_comparisons_and_conversions_follow_pytorch():
    assert not bool(Tensor([0.0])) and bool(Tensor([1.0]))
    assert bool(torch.tensor([0.0])) is False
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(Tensor([1.0, 2.0]))
    torch_raises(lambda: bool(torch.tensor([1.0, 2.0])))

    x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    for compare in (
        lambda a: a == 2.0,
        lambda a: a != 2.0,
        lambda a: a < 2.0,
        lambda a: a <= 2.0,
        lambda a: a > 2.0,
        lambda a: a >= 2.0,
    ):
        ours, theirs = compare(x), compare(torch.tensor([1.0, 2.0, 3.0]))
        assert ours.dtype == np.bool_ and not ours.requires_grad
        np.testing.assert_array_equal(ours.data, theirs.numpy())
    assert float(Tensor([2.5])) == 2.5 and int(Tensor(7.9)) == 7
    assert [10, 20, 30][Tensor(1)] == 20  # __index__ for an integer tensor
    with pytest.raises(ValueError, match="one element"):
        float(Tensor([1.0, 2.0]))
    array = np.asarray(x)
    assert array.dtype == np.float64 and array.tolist() == [1.0, 2.0, 3.0]
    assert x.tolist() == [1.0, 2.0, 3.0] and Tensor(2.0).tolist() == 2.0


def test_hashing_stays_identity():
    a, b = Tensor([1.0]), Tensor([1.0])
    assert len({a, b}) == 2 and a in {a} and b not in {a}
    assert {a: 1}[a] == 1


# --- habits: in place -------------------------------------------------------------------------
def test_in_place_on_a_leaf_that_requires_grad_is_refused():
    w = Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf that requires grad"):
        w += 1.0
    tw = torch.tensor([1.0, 2.0], requires_grad=True)

    def torch_in_place():
        nonlocal tw
        tw += 1.0

    assert "leaf Variable" in torch_raises(torch_in_place)
    optimizer_view = w
    with no_grad():
        w -= 0.5  # an optimizer's update: in place, the same object
    assert w is optimizer_view and w.version == 1
    np.testing.assert_array_equal(w.data, [0.5, 1.5])


def test_in_place_on_data_keeps_aliases_and_dtype():
    x = Tensor(np.array([1.0, 2.0], dtype=np.float32))
    alias = x.data
    x *= 2.0
    assert x.dtype == np.float32 and alias.tolist() == [2.0, 4.0]
    s = Tensor(3.0)
    s += 1.0
    assert s.item() == 4.0 and s.version == 1


def test_in_place_with_history_binds_a_new_node():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = x * 3.0
    before = y
    y += x
    assert y is not before and y.op.name == "add"
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [4.0, 4.0])


# --- habits: aliasing -------------------------------------------------------------------------
def test_retained_gradients_are_separate_arrays():
    x = Tensor([1.0, 2.0], requires_grad=True)
    a = (x * 2.0).retain_grad()
    b = (a + 0.0).retain_grad()
    c = (b + 0.0).retain_grad()
    c.sum().backward()
    assert a.grad is not b.grad and b.grad is not c.grad
    b.grad[0] = 99.0
    assert a.grad[0] == 1.0 and c.grad[0] == 1.0


# --- habits: dtype ----------------------------------------------------------------------------
def test_one_dtype_rule():
    f32 = Tensor(np.ones(3, dtype=np.float32))
    assert (f32 + 1.5).dtype == np.float32  # Python numbers do not promote
    assert (f32 + Tensor(np.ones(3))).dtype == np.float64  # tensors promote, as in PyTorch
    assert (f32 + np.ones(3)).dtype == np.float64  # arrays too, now the same rule
    assert (f32 + np.ones(3, dtype=np.int64)).dtype == np.float32  # integers take the floats'
    torch_sum = torch.ones(3, dtype=torch.float32) + torch.ones(3, dtype=torch.float64)
    assert torch_sum.dtype == torch.float64

    layer = nn.Linear(3, 2)  # float64 parameters
    with pytest.raises(TypeError, match=r"input's dtype float32 does not match .* float64"):
        layer(Tensor(np.ones((1, 3), dtype=np.float32)))
    torch_layer = torch.nn.Linear(3, 2).double()
    torch_raises(lambda: torch_layer(torch.ones(1, 3)))
    layer.float()
    out = layer(Tensor(np.ones((1, 3), dtype=np.float32)))
    assert out.dtype == np.float32 and layer.weight.dtype == np.float32


# --- habits: integer and boolean tensors ------------------------------------------------------
def test_index_tensors_and_boolean_masks_work_without_gradient():
    x = Tensor([3.0, -1.0, 2.0, -4.0], requires_grad=True)
    index = Tensor([0, 2, 2])
    assert index.dtype == np.int64 and not index.requires_grad
    picked = x[index]
    mask = x > 0
    masked = x[mask]
    (picked.sum() + (masked * masked).sum()).backward()
    tx = torch.tensor([3.0, -1.0, 2.0, -4.0], dtype=torch.float64, requires_grad=True)
    tpicked = tx[torch.tensor([0, 2, 2])]
    tmasked = tx[tx > 0]
    (tpicked.sum() + (tmasked * tmasked).sum()).backward()
    np.testing.assert_array_equal(x.grad, tx.grad.numpy())
    with pytest.raises(TypeError, match="floating-point"):
        Tensor([1, 2], requires_grad=True)
    with pytest.raises(IndexError, match="integer or boolean"):
        x[Tensor([0.0, 1.0])]


# --- habits: the everyday ops -----------------------------------------------------------------
def test_everyday_ops_match_pytorch():
    values = np.array([[1.0, 5.0, -2.0], [4.0, 0.5, 3.0]])
    x = Tensor(values, requires_grad=True)
    tx = torch.tensor(values, requires_grad=True)

    np.testing.assert_array_equal(x.argmax(axis=1).data, tx.argmax(dim=1).numpy())
    np.testing.assert_array_equal(x.argmin().data, tx.argmin().numpy())
    assert x.argmax(axis=1).dtype == np.int64
    assert x.unsqueeze(0).shape == tuple(tx.unsqueeze(0).shape)
    assert x.unsqueeze(-1).shape == tuple(tx.unsqueeze(-1).shape)
    assert x.unsqueeze(1).squeeze().shape == tuple(tx.unsqueeze(1).squeeze().shape)
    assert x.unsqueeze(1).squeeze(0).shape == tuple(tx.unsqueeze(1).squeeze(0).shape)
    assert x.view(-1).shape == (6,) and x.reshape(3, -1).shape == (3, 2)
    assert x.tolist() == tx.tolist()
    np.testing.assert_array_equal(x.sum(axis=()).data, tx.sum(dim=()).detach().numpy())

    ours = (
        x.min(axis=1).sum()
        + F.stack([x, x * 2.0], axis=1).sum()
        + F.where(x > 1.0, x, x * x).sum()
        + x.where(x < 3.0, 0.0).sum()
        + x.view(-1).unsqueeze(0).squeeze(0).sum()
    )
    theirs = (
        tx.amin(dim=1).sum()
        + torch.stack([tx, tx * 2.0], dim=1).sum()
        + torch.where(tx > 1.0, tx, tx * tx).sum()
        + tx.where(tx < 3.0, 0.0).sum()
        + tx.view(-1).unsqueeze(0).squeeze(0).sum()
    )
    ours.backward()
    theirs.backward()
    np.testing.assert_allclose(ours.item(), theirs.item(), rtol=1e-15)
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-15)


def test_requires_grad_underscore_turns_recording_on_for_a_leaf():
    x = Tensor([1.0, 2.0]).requires_grad_()
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 4.0])
    with pytest.raises(RuntimeError, match="only a leaf"):
        (x * 2.0).requires_grad_(False)


# --- habits: conv2d under no_grad -------------------------------------------------------------
def _peak_bytes(run) -> int:
    gc.collect()
    tracemalloc.start()
    run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_conv2d_keeps_no_columns_when_nothing_will_backpropagate():
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((64, 8, 16, 16)))
    w = Tensor(rng.standard_normal((16, 8, 3, 3)), requires_grad=True)
    with no_grad():
        out = F.conv2d(x, w)
    assert out.ctx is None
    columns = 64 * 8 * 9 * 14 * 14 * 8  # bytes of im2col columns for the whole batch
    # the VJP makes the columns again, so recording keeps none either: the two peaks are the
    # output plus one chunk of columns
    recorded = _peak_bytes(lambda: F.conv2d(x, w))
    inference = _peak_bytes(lambda: _no_grad_conv(x, w))
    assert abs(recorded - inference) < 0.1 * columns
    assert inference < 0.75 * columns


def _no_grad_conv(x, w):
    with no_grad():
        return F.conv2d(x, w)
