"""Every model file in samples/ parses, checks, builds and takes a few training steps (or, for
a graph, a backward pass), and the samples that make a claim are held to it.

The steps run on a small slice of the training split so that each file costs well under
three seconds; the full runs and their accuracies are in each file's header comment.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from topograd.dsl.build import build_graph, distribution

from topograd import Tensor, dsl, nn, no_grad
from topograd.data import batches
from topograd.optim import lr_range_test
from topograd.train import evaluate, fit, snapshot_ensemble

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
TG_SAMPLES = sorted(SAMPLES.glob("*.tg"))


def load(name: str):
    """(spec, source) of samples/<name>, through parse and check as the CLI does."""
    source = dsl.read_source(SAMPLES / name)
    program = dsl.parse(source.text, source.name)
    return dsl.check(program, source), source


def head(dataset, count: int):
    """The first `count` examples of a split, keeping its image shape (augmentation needs it)."""
    return dataclasses.replace(dataset, x=dataset.x[:count], y=dataset.y[:count])


def short_fit(built, train, epochs: int = 1, batch_size: int | None = None):
    """fit with the file's own options, cut to a few steps on `train`."""
    options = built.fit_options()
    options.update(
        epochs=epochs,
        batch_size=batch_size or options["batch_size"],
        checkpoint=None,
        early_stopping=None,
    )
    return fit(built.model, train, built.optimizer, progress=False, log=None, **options)


def all_finite(values) -> bool:
    return len(values) > 0 and all(math.isfinite(v) for v in values)


def test_the_samples_are_there():
    names = {path.name for path in TG_SAMPLES}
    expected = {
        "neuron.tg",
        "moons_scalar.tg",
        "digits.tg",
        "digits_no_bn.tg",
        "optimizers.tg",
        "snapshot.tg",
        "lr_range.tg",
        "search.tg",
        "digits_cnn.tg",
        "softmax_graph.tg",
        "resnet_digits.tg",
    }
    assert expected <= names


@pytest.mark.parametrize("path", TG_SAMPLES, ids=lambda path: path.name)
def test_sample_checks_builds_and_steps(path):
    text = path.read_text(encoding="utf-8")
    assert text.startswith("#"), "a sample opens with a comment that says what it shows"
    assert "topograd " in text and path.name in text, "and with the command that runs it"
    spec, source = load(path.name)
    if spec.network is None:
        for graph in spec.graphs:
            values = build_graph(graph)
            for output in values.outputs.values():
                output.backward(np.ones(output.shape) if output.shape else None)
            for name, leaf in values.leaves.items():
                assert leaf.grad is not None, f"{name} got no gradient"
                assert np.all(np.isfinite(leaf.grad)), name
        return
    built = dsl.build(spec, source)
    train = built.data.splits.train
    if spec.network.scalar:
        history = short_fit(built, head(train, 4), batch_size=4)
    else:
        size = min(2 * spec.train.batch_size, 128)
        history = short_fit(built, head(train, size), batch_size=size // 2)
    assert history.stopped is None, history.stop_message
    assert all_finite(history.step_loss)
    assert all_finite(history.train_loss)


# --- graphs --------------------------------------------------------------------------------------
def test_neuron_has_micrograds_values_and_gradients():
    spec, _ = load("neuron.tg")
    values = build_graph(spec.graphs[0])
    output = values.outputs["o"]
    assert output.item() == pytest.approx(math.sqrt(0.5), abs=1e-12)
    output.backward()
    expected = {"x1": -1.5, "w1": 1.0, "x2": 0.5, "w2": 0.0, "b": 0.5}
    for name, grad in expected.items():
        assert float(values.tensors[name].grad) == pytest.approx(grad, abs=1e-12), name
    assert {"x1w1", "x2w2", "n"} <= set(values.tensors)


def test_softmax_graph_matches_a_numpy_derivation():
    spec, _ = load("softmax_graph.tg")
    values = build_graph(spec.graphs[0])
    leaf = {name: np.array(t.data, dtype=float) for name, t in values.leaves.items()}
    values.outputs["loss"].backward()
    # The same network by hand: forward, then the textbook backward of softmax + cross-entropy.
    x, y = leaf["x"], leaf["y"]
    pre = x @ leaf["w1"] + leaf["b1"]
    hidden = np.maximum(pre, 0.0)
    scores = hidden @ leaf["w2"] + leaf["b2"]
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    p = shifted / shifted.sum(axis=1, keepdims=True)
    count = len(x)
    assert values.outputs["loss"].item() == pytest.approx(-np.sum(y * np.log(p)) / count)
    d_scores = (p - y) / count
    d_hidden = d_scores @ leaf["w2"].T * (pre > 0)
    expected = {
        "w2": hidden.T @ d_scores,
        "b2": d_scores.sum(axis=0),
        "w1": x.T @ d_hidden,
        "b1": d_hidden.sum(axis=0),
    }
    for name, grad in expected.items():
        np.testing.assert_allclose(values.tensors[name].grad, grad, rtol=1e-10, atol=1e-12)


# --- the digits MLP ------------------------------------------------------------------------------
def test_digits_network_is_what_the_file_says():
    spec, source = load("digits.tg")
    width, keep = spec.constants["width"], spec.constants["keep"]
    model = dsl.build(spec, source).model
    modules = list(model)
    linears = [m for m in modules if isinstance(m, nn.Linear)]
    norms = [m for m in modules if isinstance(m, nn.BatchNorm1d)]
    dropouts = [m for m in modules if isinstance(m, nn.Dropout)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (64, width),
        (width, width),
        (width, 10),
    ]
    # One batch norm and one dropout per hidden layer; keep= is the probability of keeping.
    assert [m.num_features for m in norms] == [width, width]
    assert [m.p for m in dropouts] == [pytest.approx(1 - keep)] * 2
    kinds = [type(m).__name__ for m in modules]
    assert kinds[:4] == ["Linear", "BatchNorm1d", "ReLU", "Dropout"]
    assert spec.data.preprocess[0].name == "standardize"
    assert spec.data.val > 0 and spec.data.test > 0
    assert spec.train.optimizers[0].name == "adam"


def test_digits_loss_falls_in_a_few_steps():
    spec, source = load("digits.tg")
    built = dsl.build(spec, source)
    train = head(built.data.splits.train, 320)
    before, _ = evaluate(built.model, train, built.loss)
    history = short_fit(built, train, epochs=2)
    after, _ = evaluate(built.model, train, built.loss)
    assert history.steps == 10
    assert all_finite(history.step_loss)
    assert after < 0.5 * before
    assert np.mean(history.step_loss[-3:]) < np.mean(history.step_loss[:3])


# --- sections that do more than one fit ---------------------------------------------------------
def test_optimizer_list_trains_each_from_the_same_start():
    spec, source = load("optimizers.tg")
    names = [entry.name for entry in spec.train.optimizers]
    assert names == ["sgd", "sgd", "sgd", "rmsprop", "adam"]
    starts = []
    for index in range(len(names)):
        built = dsl.build(spec, source, optimizer_index=index)
        starts.append([p.data.copy() for p in built.model.parameters()])
        history = short_fit(built, head(built.data.splits.train, 64), batch_size=32)
        assert all_finite(history.step_loss), names[index]
    for other in starts[1:]:
        for first, second in zip(starts[0], other, strict=True):
            np.testing.assert_array_equal(first, second)


def test_snapshot_ensemble_runs_its_cycles():
    spec, source = load("snapshot.tg")
    ensemble = spec.train.ensemble
    assert ensemble.name == "snapshot" and spec.train.schedule is None
    built = dsl.build(spec, source)
    splits = built.data.splits
    result = snapshot_ensemble(
        built.model,
        head(splits.train, 128),
        built.optimizer,
        cycles=2,
        epochs_per_cycle=1,
        lr_max=ensemble.kwargs["lr_max"],
        eval=head(splits.test, 128),
        batch_size=spec.train.batch_size,
        progress=False,
        log=None,
    )
    assert len(result.snapshots) == 2
    assert all(0.0 <= a <= 1.0 for a in result.accuracy_by_last)
    for history in result.histories:
        assert all_finite(history.step_loss)
        assert history.lr[0] == pytest.approx(ensemble.kwargs["lr_max"])


def test_lr_range_test_section_drives_the_test():
    spec, source = load("lr_range.tg")
    options = dict(spec.range_test.options)
    built = dsl.build(spec, source)
    train = built.data.splits.train
    chunks = list(batches(train.x[:256], train.y[:256], 32, rng=np.random.default_rng(0)))
    before = [p.data.copy() for p in built.model.parameters()]
    options["num_steps"] = 8
    result = lr_range_test(
        built.model,
        lambda model, batch: built.loss(model(Tensor(batch[0])), batch[1]),
        chunks,
        built.optimizer,
        **options,
    )
    ratio = (options["end_lr"] / options["start_lr"]) ** (1 / 7)
    np.testing.assert_allclose(result.lrs, options["start_lr"] * ratio ** np.arange(8))
    assert all_finite(list(result.losses))
    for kept, param in zip(before, built.model.parameters(), strict=True):
        np.testing.assert_array_equal(kept, param.data)


def test_search_overrides_the_lets_it_draws():
    spec, _ = load("search.tg")
    assert set(spec.search.space) == {"lr", "width", "keep"}
    assert spec.search.space["lr"].name == "loguniform"
    rng = np.random.default_rng(0)
    drawn = {name: distribution(entry).sample(rng) for name, entry in spec.search.space.items()}
    assert 1e-4 <= drawn["lr"] <= 1e-1 and drawn["width"] in (32, 64, 128, 256)
    source = dsl.read_source(SAMPLES / "search.tg")
    trial = dsl.load(source, overrides=drawn)
    built = dsl.build(trial, source)
    modules = list(built.model)
    assert modules[0].out_features == drawn["width"]
    assert [m.p for m in modules if isinstance(m, nn.Dropout)] == [
        pytest.approx(1 - drawn["keep"])
    ] * 2
    assert built.optimizer.param_groups[0]["lr"] == pytest.approx(drawn["lr"])
    history = short_fit(built, head(built.data.splits.train, 128))
    assert all_finite(history.step_loss)


def test_cnn_sample_folds_images_and_shifts_without_flipping():
    spec, _ = load("digits_cnn.tg")
    layers = spec.network.layers
    assert layers[0].implicit and layers[0].out_shape == (1, 8, 8)
    assert [layer.out_shape for layer in layers if layer.kind == "maxpool2d"] == [
        (16, 4, 4),
        (32, 2, 2),
    ]
    assert [entry.name for entry in spec.data.augment] == ["crop"]


def test_resnet_sample_is_built_of_residual_blocks_and_learns():
    spec, source = load("resnet_digits.tg")
    blocks = [layer for layer in spec.network.layers if layer.kind == "residual"]
    assert [b.out_shape for b in blocks] == [(16, 8, 8), (16, 8, 8), (32, 4, 4)]
    assert [b.shortcut is not None for b in blocks] == [False, False, True]
    assert blocks[2].shortcut[0].kwargs["stride"] == 2  # the projection halves the size
    assert [
        layer.kwargs["out_channels"] for layer in blocks[0].body if "out_channels" in layer.kwargs
    ] == [16, 16]  # the second size inferred from the block's input
    built = dsl.build(spec, source)
    model, splits = built.model, built.data.splits
    assert isinstance(model[4], nn.Residual) and "shortcut" in vars(model[8])
    history = short_fit(built, head(splits.train, 512), epochs=3)
    assert all_finite(history.step_loss)
    assert history.step_loss[-1] < 0.5 * history.step_loss[0]
    # after 24 steps the running statistics still lag the moving weights, so the held-out
    # digits are classified with batch statistics (training mode), 200 at a time
    val = head(splits.val, 200)
    with no_grad():
        predicted = model(Tensor(val.x)).data.argmax(axis=1)
    assert np.mean(predicted == val.y) > 0.7
