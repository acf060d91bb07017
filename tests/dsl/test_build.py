"""The builder against truths that do not go through it: models made directly from engine
classes, engine optimizers and schedules constructed by hand, closed forms computed with
numpy, micrograd's published numbers and central differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
from topograd.dsl.build import build, build_graph, build_model
from topograd.dsl.check import check
from topograd.dsl.errors import DslBuildError, DslError, Source
from topograd.dsl.parser import parse

from topograd import Tensor, nn
from topograd.data import make_moons, split
from topograd.functional import cross_entropy, hinge_loss
from topograd.optim import SGD
from topograd.optim.schedules import CosineAnnealingLR, LinearWarmup

NAME = "model.tg"


def spec_of(text: str):
    return check(parse(text, NAME), Source(NAME, text))


def built(text: str, **options):
    return build(spec_of(text), Source(NAME, text), **options)


def randomize(model, seed=1):
    """Every parameter and running statistic set to random values (norm scales away from 1),
    so that copying them proves the copy covers everything."""
    rng = np.random.default_rng(seed)
    for parameter in model.parameters():
        parameter.data = rng.standard_normal(parameter.shape)
    for _, buffer in model.named_buffers():
        if buffer.dtype.kind == "f":
            buffer[...] = rng.uniform(0.5, 1.5, buffer.shape)


# --- the model ------------------------------------------------------------------------------------
NETWORK = """network n(input=5, classes=3) {
  linear(8)
  layernorm
  tanh
  dropout(keep=0.8)
  linear(6, bias=false, init=he)
  batchnorm(eps=1e-3, momentum=0.2)
  relu
  linear
}"""


def by_hand(dropout=True):
    """NETWORK written directly with engine classes (its own weights, to be overwritten)."""
    layers = [
        nn.Linear(5, 8, rng=7),
        nn.LayerNorm(8),
        nn.Tanh(),
        *([nn.Dropout(p=1 - 0.8)] if dropout else []),
        nn.Linear(8, 6, bias=False, rng=7),
        nn.BatchNorm1d(6, eps=1e-3, momentum=0.2),
        nn.ReLU(),
        nn.Linear(6, 3, rng=7),
    ]
    return nn.Sequential(*layers)


def test_the_built_model_equals_one_made_directly_from_engine_classes():
    model = built(NETWORK).model
    hand = by_hand()
    assert [type(m) for m in model] == [type(m) for m in hand]
    assert [m.extra_repr() for m in model] == [m.extra_repr() for m in hand]
    randomize(model)
    hand.load_state_dict(model.state_dict())  # strict: the same names and shapes
    x = np.random.default_rng(2).standard_normal((7, 5))
    model.eval()
    hand.eval()
    np.testing.assert_allclose(model(Tensor(x)).data, hand(Tensor(x)).data, rtol=1e-12)


def test_the_built_model_equals_the_hand_made_one_in_training_mode():
    text = NETWORK.replace("  dropout(keep=0.8)\n", "")
    model, hand = built(text).model, by_hand(dropout=False)
    randomize(model, seed=3)
    hand.load_state_dict(model.state_dict())
    x = np.random.default_rng(4).standard_normal((9, 5))
    out, expected = model(Tensor(x)), hand(Tensor(x))  # batch statistics, running stats move
    np.testing.assert_allclose(out.data, expected.data, rtol=1e-12)
    for (name, mine), (_, theirs) in zip(model.named_buffers(), hand.named_buffers(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12, err_msg=name)


def test_the_weights_come_from_the_seed():
    first, again, other = (built(NETWORK, seed=s).model for s in (5, 5, 6))
    for a, b, c in zip(first.parameters(), again.parameters(), other.parameters(), strict=True):
        np.testing.assert_array_equal(a.data, b.data)
        if a.ndim == 2:
            assert not np.array_equal(a.data, c.data)


def test_dropout_keep_is_one_minus_p_and_keeps_that_fraction():
    model = built("network n(input=200, classes=2) { dropout(keep=0.8) linear }").model
    dropout = model[0]
    assert isinstance(dropout, nn.Dropout)
    assert dropout.p == pytest.approx(0.2, abs=1e-15)
    model.train()
    out = dropout(Tensor(np.ones((500, 200)))).data
    kept = out != 0
    # 100,000 draws: the kept fraction's standard deviation is 0.0013
    assert kept.mean() == pytest.approx(0.8, abs=0.006)
    np.testing.assert_allclose(out[kept], 1 / 0.8, rtol=1e-12)  # inverted dropout
    model.eval()
    np.testing.assert_array_equal(dropout(Tensor(np.ones((3, 200)))).data, 1.0)


# --- optimizer, decay, schedule -------------------------------------------------------------------
def trained(optimizer: str, extra: str = "", network: str = "") -> str:
    network = network or "network n { linear(8) batchnorm relu linear(4) layernorm linear }"
    return (
        "data { dataset moons(n=60) }\n"
        + network
        + f"\ntrain {{\n  loss cross_entropy\n  optimizer {optimizer}\n{extra}}}\n"
    )


def test_optimizer_hyperparameters_reach_the_param_groups():
    result = built(
        trained("adam(lr=0.003, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01, amsgrad=true)")
    )
    (group,) = result.optimizer.param_groups
    assert type(result.optimizer).__name__ == "Adam"
    assert group["lr"] == 0.003
    assert tuple(group["betas"]) == (0.8, 0.99)
    assert (group["eps"], group["weight_decay"], group["amsgrad"]) == (1e-6, 0.01, True)
    assert [id(p) for p in group["params"]] == [id(p) for p in result.model.parameters()]


def test_a_list_of_optimizers_builds_the_one_asked_for():
    text = trained("[sgd(lr=0.1, momentum=0.9, nesterov=true), rmsprop(lr=0.01, alpha=0.9)]")
    first, second = built(text), built(text, optimizer_index=1)
    (group,) = first.optimizer.param_groups
    assert isinstance(first.optimizer, SGD)
    assert (group["lr"], group["momentum"], group["nesterov"]) == (0.1, 0.9, True)
    assert type(second.optimizer).__name__ == "RMSprop"
    assert second.optimizer.param_groups[0]["alpha"] == 0.9


def test_decay_weights_leaves_biases_and_norm_parameters_undecayed():
    result = built(trained("sgd(lr=0.5, weight_decay=0.1)", "  decay weights\n"))
    decayed, plain = result.optimizer.param_groups
    matrices = [p for p in result.model.parameters() if p.ndim == 2]
    others = [p for p in result.model.parameters() if p.ndim != 2]
    assert {id(p) for p in decayed["params"]} == {id(p) for p in matrices}
    assert {id(p) for p in plain["params"]} == {id(p) for p in others}
    assert (decayed["weight_decay"], plain["weight_decay"]) == (0.1, 0.0)
    # one step with zero gradients: only the matrices shrink, by (1 - lr * weight_decay)
    before = {id(p): p.data.copy() for p in result.model.parameters()}
    for p in result.model.parameters():
        p.grad = np.zeros(p.shape)
    result.optimizer.step()
    for p in matrices:
        np.testing.assert_allclose(p.data, before[id(p)] * (1 - 0.5 * 0.1), rtol=1e-14)
    for p in others:
        np.testing.assert_array_equal(p.data, before[id(p)])


def test_decay_all_is_one_group():
    result = built(trained("sgd(lr=0.5, weight_decay=0.1)", "  decay all\n"))
    (group,) = result.optimizer.param_groups
    assert group["weight_decay"] == 0.1
    assert len(group["params"]) == len(result.model.parameters())


def lrs(schedule, optimizer, steps):
    out = []
    for _ in range(steps):
        out.append(schedule.get_last_lr()[0])
        assert optimizer.param_groups[0]["lr"] == out[-1]
        schedule.step()
    return out


def test_a_schedule_from_the_file_gives_the_engine_schedule_sequence():
    result = built(trained("sgd(lr=0.1)", "  schedule cosine(T_max=10, eta_min=0.001)\n"))
    assert isinstance(result.schedule, CosineAnnealingLR)
    from_file = lrs(result.schedule, result.optimizer, 25)
    optimizer = SGD(result.model.parameters(), lr=0.1)
    direct = lrs(CosineAnnealingLR(optimizer, T_max=10, eta_min=0.001), optimizer, 25)
    np.testing.assert_allclose(from_file, direct, rtol=1e-15)
    # and the closed form of cosine annealing (a period of 2 T_max)
    closed = [0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * t / 10)) / 2 for t in range(25)]
    np.testing.assert_allclose(from_file, closed, rtol=1e-10)


def test_warmup_after_cosine_is_linear_warmup_around_cosine_annealing():
    extra = "  schedule warmup(warmup_steps=5, after=cosine(T_max=20))\n"
    result = built(trained("sgd(lr=0.1)", extra))
    assert isinstance(result.schedule, LinearWarmup)
    assert isinstance(result.schedule.after, CosineAnnealingLR)
    from_file = lrs(result.schedule, result.optimizer, 30)
    optimizer = SGD(result.model.parameters(), lr=0.1)
    direct = LinearWarmup(optimizer, 5, after=CosineAnnealingLR(optimizer, T_max=20))
    np.testing.assert_allclose(from_file, lrs(direct, optimizer, 30), rtol=1e-15)
    np.testing.assert_allclose(from_file[:6], [0.0, 0.02, 0.04, 0.06, 0.08, 0.1], rtol=1e-12)
    assert from_file[25] == pytest.approx(0.0, abs=1e-15)  # T_max steps after the warm-up


# --- the loss -------------------------------------------------------------------------------------
def test_the_l2_term_is_half_l2_times_the_squared_weight_matrices():
    result = built(trained("sgd(lr=0.1)", "  l2 0.01\n"))
    randomize(result.model, seed=8)
    x = Tensor(np.random.default_rng(9).standard_normal((6, 2)))
    y = np.array([0, 1, 1, 0, 1, 0])
    outputs = result.model(x)
    total, data_loss = result.loss(outputs, y), cross_entropy(outputs, y)
    matrices = [p.data for p in result.model.parameters() if p.ndim == 2]
    assert len(matrices) == 3
    penalty = 0.5 * 0.01 * sum(float(np.sum(w**2)) for w in matrices)
    assert total.item() - data_loss.item() == pytest.approx(penalty, rel=1e-12)
    # its gradient: l2 * W on each matrix, nothing on biases or norm parameters
    total.backward()
    with_l2 = [p.grad.copy() for p in result.model.parameters()]
    result.model.zero_grad()
    cross_entropy(result.model(x), y).backward()
    for p, grad in zip(result.model.parameters(), with_l2, strict=True):
        expected = 0.01 * p.data if p.ndim == 2 else 0.0
        np.testing.assert_allclose(grad - p.grad, expected, atol=1e-14)


def test_no_l2_is_the_plain_loss():
    result = built(trained("sgd(lr=0.1)"))
    x, y = Tensor(np.ones((2, 2))), np.array([0, 1])
    assert result.loss(result.model(x), y).item() == cross_entropy(result.model(x), y).item()


# --- scalar mode ----------------------------------------------------------------------------------
LAYERS_2_16_16_1 = "linear(16) relu linear(16) relu linear(1)"


def test_the_scalar_network_computes_what_the_tensor_network_computes():
    scalar_spec = spec_of(f"network s(scalar=true, input=2) {{ {LAYERS_2_16_16_1} }}")
    tensor_spec = spec_of(f"network t(input=2) {{ {LAYERS_2_16_16_1} }}")
    scalar, tensor = build_model(scalar_spec.network, 0), build_model(tensor_spec.network, 0)
    assert isinstance(scalar, nn.ScalarSequential)
    scalar_layers = [m for m in scalar if isinstance(m, nn.ScalarLinear)]
    tensor_layers = [m for m in tensor if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in scalar_layers] == [(2, 16), (16, 16), (16, 1)]
    for scalar_layer, linear in zip(scalar_layers, tensor_layers, strict=True):
        neurons = scalar_layer._neurons
        # neuron j's weight w_i is W[i, j]; its bias b is bias[j]
        linear.weight.data = np.array(
            [[getattr(n, f"w{i}").item() for n in neurons] for i in range(linear.in_features)]
        )
        linear.bias.data = np.array([n.b.item() for n in neurons])

    moons = make_moons(n=12, seed=3)
    out_scalar, out_tensor = scalar(Tensor(moons.x)), tensor(Tensor(moons.x))
    np.testing.assert_allclose(out_scalar.data, out_tensor.data, rtol=1e-10)
    assert out_tensor.shape == (12, 1)
    hinge_loss(out_scalar, moons.y).backward()
    hinge_loss(out_tensor, moons.y).backward()
    for scalar_layer, linear in zip(scalar_layers, tensor_layers, strict=True):
        neurons = scalar_layer._neurons
        weight_grads = [
            [getattr(n, f"w{i}").grad for n in neurons] for i in range(linear.in_features)
        ]
        np.testing.assert_allclose(weight_grads, linear.weight.grad, rtol=1e-10, atol=1e-14)
        bias_grads = [n.b.grad for n in neurons]
        np.testing.assert_allclose(bias_grads, linear.bias.grad, rtol=1e-10, atol=1e-14)
    assert np.abs(tensor_layers[0].weight.grad).max() > 0  # the comparison is not all zeros


# --- data -----------------------------------------------------------------------------------------
def test_preprocessing_is_fitted_on_the_training_split_only():
    text = (
        "data {\n  dataset moons(n=200, seed=4)\n  val 0.2\n  test 0.1\n  preprocess standardize\n}"
    )
    text += "\nnetwork n { linear }"
    parts = built(text).data.splits
    raw = split(make_moons(n=200, seed=4), val=0.2, test=0.1, seed=0, stratify=True)
    mean, std = raw.train.x.mean(axis=0), raw.train.x.std(axis=0)
    np.testing.assert_allclose(parts.train.x.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(parts.train.x.std(axis=0), 1.0, rtol=1e-12)
    for mine, theirs in ((parts.val, raw.val), (parts.test, raw.test)):
        np.testing.assert_array_equal(mine.y, theirs.y)
        np.testing.assert_allclose(mine.x, (theirs.x - mean) / std, rtol=1e-12, atol=1e-15)
    # validation used the training statistics, not its own
    assert np.abs(parts.val.x.mean(axis=0)).max() > 1e-3
    assert (len(parts.train), len(parts.val), len(parts.test)) == (140, 40, 20)


def test_a_dimension_reducing_step_drops_the_image_shape():
    text = "data { dataset digits  preprocess pca(components=10) }\nnetwork n { linear }"
    parts = built(text).data.splits
    assert parts.train.x.shape[1] == parts.val.x.shape[1] == 10
    assert parts.train.image_shape is None


def test_an_empty_validation_split_stays_empty():
    text = "data { dataset moons(n=50)  val 0  preprocess standardize }\nnetwork n { linear }"
    parts = built(text).data.splits
    assert parts.val.x.shape == (0, 2)


# --- graphs ---------------------------------------------------------------------------------------
NEURON = """graph neuron {
  input x1 = 2.0
  input x2 = 0.0
  param w1 = -3.0
  param w2 = 1.0
  param b = 6.8813735870195432
  x1w1 = x1 * w1
  x2w2 = x2 * w2
  n = x1w1 + x2w2 + b
  output o = tanh(n)
}"""


def test_the_micrograd_neuron():
    values = build_graph(spec_of(NEURON).graphs[0])
    (output,) = values.outputs.values()
    assert output.item() == pytest.approx(0.7071067811865476, abs=1e-15)
    output.backward()
    grads = {name: tensor.grad for name, tensor in values.leaves.items()}
    expected = {"x1": -1.5, "w1": 1.0, "x2": 0.5, "w2": 0.0, "b": 0.5}
    assert set(grads) == set(expected)
    for name, grad in expected.items():
        assert float(grads[name]) == pytest.approx(grad, abs=1e-12), name
    assert values.roles == {
        "x1": "input",
        "x2": "input",
        "w1": "param",
        "w2": "param",
        "b": "param",
        "x1w1": "value",
        "x2w2": "value",
        "n": "value",
        "o": "output",
    }


MATMUL = """graph layer {
  input x = randn(3, 4)
  param w = randn(4, 2, scale=0.5)
  param b = randn(2)
  h = x @ w + b
  output y = sum(tanh(h) ** 2) / 3 - mean(h * 2)
}"""


def matmul_numpy(x, w, b):
    h = x @ w + b
    return np.sum(np.tanh(h) ** 2) / 3 - np.mean(h * 2)


def test_a_matmul_graph_matches_numpy_and_central_differences():
    graph = spec_of(MATMUL).graphs[0]
    values = build_graph(graph, seed=11)
    leaves = {name: tensor.data.copy() for name, tensor in values.leaves.items()}
    assert {k: v.shape for k, v in leaves.items()} == {"x": (3, 4), "w": (4, 2), "b": (2,)}
    output = values.outputs["y"]
    assert output.item() == pytest.approx(matmul_numpy(**leaves), rel=1e-13)
    output.backward()
    step = 1e-6
    for name, tensor in values.leaves.items():
        numeric = np.zeros(tensor.shape)
        for index in np.ndindex(tensor.shape):
            up = {k: v.copy() for k, v in leaves.items()}
            down = {k: v.copy() for k, v in leaves.items()}
            up[name][index] += step
            down[name][index] -= step
            numeric[index] = (matmul_numpy(**up) - matmul_numpy(**down)) / (2 * step)
        np.testing.assert_allclose(tensor.grad, numeric, rtol=1e-6, atol=1e-9, err_msg=name)


def test_graph_leaves_come_from_the_seed():
    graph = spec_of(MATMUL).graphs[0]
    first, again, other = (build_graph(graph, seed=s).leaves["w"].data for s in (1, 1, 2))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


# --- what only the engine can refuse --------------------------------------------------------------
def build_error(text: str) -> DslBuildError:
    with pytest.raises(DslBuildError) as caught:
        built(text)
    return caught.value


def line_of(text: str, snippet: str) -> int:
    return text[: text.index(snippet)].count("\n") + 1


def test_an_engine_refusal_in_preprocessing_is_blamed_on_its_line():
    """The checker fits the preprocessing (PCA may change the width), so it is the one that
    reports the engine's refusal, at the step's line."""
    text = (
        "data {\n  dataset digits\n  preprocess standardize\n  preprocess pca(components=1000)\n}\n"
        "network n { linear(8) relu linear }"
    )
    with pytest.raises(DslError) as caught:
        built(text)
    error = caught.value
    (problem,) = error.problems
    assert problem.pos.line == line_of(text, "pca(")
    assert "exceeds min(N, D) = 64" in problem.message
    assert f"{NAME}:{problem.pos.line}:" in str(error)


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("cyclic(base_lr=0.01, max_lr=0.1, mode=triangle)", "invalid mode: 'triangle'"),
        ("cyclic(base_lr=0.2, max_lr=0.1)", "0.2 is above max_lr 0.1"),
    ],
)
def test_an_engine_refusal_in_a_schedule_is_blamed_on_its_line(schedule, message):
    text = trained("sgd(lr=0.1)", f"  schedule {schedule}\n")
    spec_of(text)  # the checker cannot judge these
    (problem,) = build_error(text).problems
    assert problem.pos.line == line_of(text, "schedule")
    assert problem.pos.column == text.splitlines()[problem.pos.line - 1].index("cyclic") + 1
    assert message in problem.message


def test_fit_options_come_from_the_train_section():
    extra = "  epochs 3\n  batch 16\n  seed 5\n  early_stopping 2\n  drop_last true\n"
    result = built(trained("sgd(lr=0.1)", extra))
    options = result.fit_options()
    assert (options["epochs"], options["batch_size"], options["seed"]) == (3, 16, 5)
    assert (options["early_stopping"], options["drop_last"]) == (2, True)
    assert options["loss"] is result.loss
    assert options["schedule"] is None
