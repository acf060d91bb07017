"""The checker: every problem of a file in one pass, names suggested on a typo, ranges at
their boundaries, sizes inferred from the data and the previous layer, repeat blocks,
overrides, the search section, constant folding, and no Python ever evaluated."""

from __future__ import annotations

import builtins
import math

import pytest
from topograd.dsl.check import check
from topograd.dsl.errors import DslCheckError, Source
from topograd.dsl.options import RANGES, range_problem
from topograd.dsl.parser import parse

NAME = "model.tg"


def checked(text: str, overrides=None):
    return check(parse(text, NAME), Source(NAME, text), overrides)


def problems_of(text: str, overrides=None) -> list:
    with pytest.raises(DslCheckError) as caught:
        checked(text, overrides)
    return caught.value.problems


def only_problem(text: str):
    (problem,) = problems_of(text)
    return problem


def line_of(text: str, snippet: str) -> int:
    """The 1-based line where `snippet` first appears, read from the text."""
    return text[: text.index(snippet)].count("\n") + 1


def column_of(text: str, snippet: str) -> int:
    start = text.index(snippet)
    return start - (text.rfind("\n", 0, start) + 1) + 1


MOONS = "data { dataset moons(n=200) }\n"
TRAIN = "train {\n  loss %s\n  optimizer %s\n}\n"


def with_optimizer(optimizer: str, loss: str = "cross_entropy") -> str:
    return MOONS + "network n { linear(8) relu linear }\n" + TRAIN % (loss, optimizer)


def with_layer(layer: str) -> str:
    return MOONS + f"network n {{ linear(16) relu {layer} linear }}\n"


# --- many problems, one pass ----------------------------------------------------------------------
MANY = """let width = 16
let learning_rate = 0.1
data {
  dataset moons(n=200)
  val 0.95
}
network net(clases=2) {
  linear(width, init=hee)
  relu
  linear
}
train {
  loss cross_entropi
  optimizer sgd(lr=lerning_rate, momentun=0.9)
  schedule cosin(T_max=10)
  epoch 3
  batch 0
}
"""


def test_every_problem_is_reported_in_one_pass_in_file_order():
    problems = problems_of(MANY)
    found = [(p.pos.line, p.pos.column) for p in problems]
    expected = [
        (line_of(MANY, "0.95"), column_of(MANY, "0.95")),  # val + test leaves no training data
        (line_of(MANY, "clases"), column_of(MANY, "clases")),
        (line_of(MANY, "hee"), column_of(MANY, "hee")),
        (line_of(MANY, "cross_entropi"), column_of(MANY, "cross_entropi")),
        (line_of(MANY, "lerning_rate,"), column_of(MANY, "lerning_rate,")),
        (line_of(MANY, "momentun"), column_of(MANY, "momentun")),
        (line_of(MANY, "cosin("), column_of(MANY, "cosin(")),
        (line_of(MANY, "epoch 3"), column_of(MANY, "epoch 3")),
        (line_of(MANY, "batch 0"), column_of(MANY, "0\n}")),
    ]
    assert found == expected
    assert len(problems) == 9


def test_the_rendered_error_quotes_each_line():
    with pytest.raises(DslCheckError) as caught:
        checked(MANY)
    text = str(caught.value)
    assert text.count(f"{NAME}:") == 9
    assert f"{NAME}:{line_of(MANY, 'batch 0')}:9: error: batch must be >= 1, got 0" in text
    assert "      batch 0\n            ^" in text


def test_a_wrong_option_is_reported_once_not_again_by_the_layer_probe():
    text = MOONS + "network n { linear(widht) relu linear }"
    problem = only_problem(text)
    assert problem.message == "unknown name 'widht'"
    assert problem.pos.column == column_of(text, "widht")


# --- suggestions ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "typo", "message", "suggested"),
    [
        (MOONS + "network n { linaer(8) relu linear }", "linaer", "unknown layer", "linear"),
        (
            "let learning_rate = 0.1\n" + with_optimizer("sgd(lr=lerning_rate)"),
            "lerning_rate",
            "unknown name",
            "learning_rate",
        ),
        (with_optimizer("sgd(lr=0.1, momentun=0.9)"), "momentun", "has no option", "momentum"),
        (with_optimizer("adamm(lr=0.1)"), "adamm", "unknown optimizer", "adam"),
        (with_optimizer("sgd(lr=0.1)", loss="hinje"), "hinje", "unknown loss", "hinge"),
        ("data { dataset digitz }", "digitz", "unknown dataset", "digits"),
        ("data { dataset moons(n=200)  preprocess standardise }", "standardise", "unknown", None),
        (MOONS + "network n(clases=2) { linear }", "clases", "unknown network option", "classes"),
        (MOONS + "network n { linear(8, init=hee) linear }", "hee", "initializer", "he"),
        (MOONS + "network n { linear(8) relu linear(bais=false) }", "bais", "no option", "bias"),
    ],
)
def test_typos_are_located_and_suggest_the_closest_name(text, typo, message, suggested):
    problems = [p for p in problems_of(text) if message in p.message]
    assert len(problems) == 1, problems
    (problem,) = problems
    assert (problem.pos.line, problem.pos.column) == (line_of(text, typo), column_of(text, typo))
    if suggested is not None:
        assert problem.hint == f"did you mean {suggested!r}?"


def test_an_unknown_setting_suggests_the_setting_or_lists_them_all():
    text = with_optimizer("sgd(lr=0.1)").replace("train {", "train {\n  epoch 3\n  lerning_rate 1")
    by_key = {p.message.split("'")[1]: p for p in problems_of(text)}
    assert by_key["epoch"].hint == "did you mean 'epochs'?"
    assert by_key["lerning_rate"].hint.startswith("settings: loss, optimizer, schedule")


def test_a_nested_schedule_name_is_checked_too():
    text = with_optimizer("sgd(lr=0.1)").replace(
        "optimizer", "schedule warmup(warmup_steps=5, after=cosin(T_max=9))\n  optimizer"
    )
    problem = only_problem(text)
    assert problem.message == "unknown schedule 'cosin'"
    assert problem.pos.column == column_of(text, "cosin(")


# --- ranges ---------------------------------------------------------------------------------------
def _rejected(name, value) -> bool:
    return range_problem(name, value) is not None


@pytest.mark.parametrize("name", sorted(RANGES))
def test_every_range_rule_holds_at_its_boundaries(name):
    rule = RANGES[name]
    step = 1 if rule.integer else 1e-9
    if rule.low is not None:
        assert _rejected(name, rule.low) == rule.low_open
        assert _rejected(name, rule.low - step)
        assert not _rejected(name, rule.low + step)
    if rule.high is not None:
        assert _rejected(name, rule.high) == rule.high_open
        assert _rejected(name, rule.high + step)
        assert not _rejected(name, rule.high - step)
    if rule.integer:
        assert _rejected(name, (rule.low or 0) + 1.5)
    assert _rejected(name, math.nan)


@pytest.mark.parametrize(
    ("optimizer", "bad"),
    [
        ("sgd(lr=0)", "lr=0"),
        ("sgd(lr=1e-9)", None),
        ("sgd(lr=-1)", "lr=-1"),
        ("sgd(lr=0.1, momentum=1.0)", "momentum=1.0"),
        ("sgd(lr=0.1, momentum=0.999)", None),
        ("sgd(lr=0.1, momentum=0)", None),
        ("adam(lr=1e-3, betas=(0.9, 1.0))", "betas=(0.9, 1.0)"),
        ("adam(lr=1e-3, betas=(1.0, 0.999))", "betas=(1.0, 0.999)"),
        ("adam(lr=1e-3, betas=(0.9, 0.999))", None),
        ("adam(lr=1e-3, eps=0)", "eps=0"),
        ("adam(lr=1e-3, weight_decay=0)", None),
        ("adam(lr=1e-3, weight_decay=-1e-9)", "weight_decay=-1e-9"),
    ],
)
def test_optimizer_ranges_at_the_boundary(optimizer, bad):
    text = with_optimizer(optimizer)
    if bad is None:
        spec = checked(text)
        assert spec.train.optimizers[0].name == optimizer.split("(")[0]
        return
    problem = only_problem(text)
    assert problem.pos.column == column_of(text, bad)
    assert "must be" in problem.message


@pytest.mark.parametrize(
    ("layer", "p"),
    [
        ("dropout(keep=1)", 0.0),
        ("dropout(keep=0.8)", 0.2),
        ("dropout(keep=1e-9)", 1 - 1e-9),
        ("dropout(drop=0)", 0.0),
        ("dropout(drop=0.3)", 0.3),
    ],
)
def test_dropout_keep_and_drop_accepted(layer, p):
    spec = checked(with_layer(layer))
    dropout = spec.network.layers[2]
    assert dropout.kind == "dropout"
    assert dropout.kwargs["p"] == pytest.approx(p, abs=1e-15)


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ("dropout(keep=0)", "keep must be in (0, 1], got 0"),
        ("dropout(keep=1.5)", "keep must be in (0, 1], got 1.5"),
        ("dropout(drop=1)", "drop must be in [0, 1), got 1"),
        ("dropout(keep=0.5, drop=0.5)", "give only one of keep, drop"),
        ("dropout", "needs keep= or drop="),
    ],
)
def test_dropout_rejected_once(layer, message):
    text = with_layer(layer)
    problem = only_problem(text)
    assert message in problem.message


def test_integer_options_refuse_fractions():
    text = with_optimizer("sgd(lr=0.1)").replace(
        "optimizer", "schedule cosine(T_max=2.5)\n  optimizer"
    )
    assert "T_max must be a whole number" in only_problem(text).message


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("epochs 0", "epochs must be >= 1"),
        ("batch -1", "batch must be >= 1"),
        ("l2 -0.1", "l2 must be >= 0"),
        ("explosion_factor 1", "explosion_factor must be > 1"),
        ("epochs 2.5", "epochs must be a whole number"),
        ("drop_last 1", "drop_last must be true or false"),
    ],
)
def test_train_settings_ranges(setting, message):
    text = with_optimizer("sgd(lr=0.1)").replace("train {", "train {\n  " + setting)
    problem = only_problem(text)
    assert message in problem.message
    assert problem.pos.line == line_of(text, setting)


@pytest.mark.parametrize(("val", "ok"), [("0", True), ("0.99", True), ("1", False)])
def test_validation_fraction(val, ok):
    text = f"data {{ dataset moons(n=200) val {val} test 0 }}"
    if ok:
        assert checked(text).data.val == float(val)
    else:
        assert "val is a fraction in [0, 1), got 1" in only_problem(text).message


# --- shapes ---------------------------------------------------------------------------------------
def test_sizes_are_inferred_from_the_data_and_the_previous_layer():
    spec = checked(MOONS + "network n { linear(16) layernorm relu linear(8) batchnorm linear }")
    layers = spec.network.layers
    assert [layer.kind for layer in layers] == [
        "linear",
        "layernorm",
        "relu",
        "linear",
        "batchnorm",
        "linear",
    ]
    assert layers[0].kwargs == {"in_features": 2, "out_features": 16}
    assert layers[1].kwargs["normalized_shape"] == (16,)
    assert layers[3].kwargs == {"in_features": 16, "out_features": 8}
    assert layers[4].kwargs["num_features"] == 8
    assert layers[5].kwargs == {"in_features": 8, "out_features": 2}  # moons: 2 classes
    assert [layer.in_shape for layer in layers] == [(2,), (16,), (16,), (16,), (8,), (8,)]
    assert spec.network.input_shape == (2,)
    assert spec.network.output_shape == (2,)


def test_the_last_linear_gets_the_class_count_of_the_data():
    spec = checked("data { dataset digits }\nnetwork n { linear(32) relu linear }")
    assert spec.data.features == 64
    assert spec.data.classes == 10
    assert spec.network.layers[0].kwargs["in_features"] == 64
    assert spec.network.layers[-1].kwargs["out_features"] == 10


def test_only_the_last_sized_layer_is_filled_in():
    spec = checked(MOONS + "network n { linear(8) relu linear relu }")
    assert spec.network.layers[2].kwargs["out_features"] == 2
    problem = only_problem(MOONS + "network n { linear relu linear }")
    assert problem.pos.column == column_of(MOONS + "network n { linear relu", "linear relu")
    assert "needs its output size" in problem.message


@pytest.mark.parametrize(
    ("loss", "outputs"), [("hinge", 1), ("mse", 1), ("bce_with_logits", 1), ("cross_entropy", 2)]
)
def test_the_loss_decides_the_output_size_of_a_two_class_problem(loss, outputs):
    spec = checked(with_optimizer("sgd(lr=0.1)", loss=loss))
    assert spec.network.output_shape == (outputs,)


def test_hinge_on_many_classes_keeps_one_score_per_class():
    text = "data { dataset digits }\nnetwork n { linear }\n" + TRAIN % ("hinge", "sgd(lr=0.1)")
    assert checked(text).network.output_shape == (10,)


def test_network_options_without_data():
    spec = checked("network n(input=3, classes=4) { linear(5) tanh linear }")
    assert spec.network.layers[0].kwargs["in_features"] == 3
    assert spec.network.layers[-1].kwargs["out_features"] == 4
    image = checked(
        "network n(input=(1, 8, 8), classes=3) { conv2d(4, 3, padding=1) flatten linear }"
    )
    assert [layer.out_shape for layer in image.network.layers] == [(4, 8, 8), (256,), (3,)]
    assert image.network.layers[0].kwargs["in_channels"] == 1


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ("batchnorm(8)", "batchnorm: num_features=8 does not match its input"),
        ("batchnorm(num_features=8)", "batchnorm: num_features=8 does not match its input"),
        ("layernorm(4)", "layernorm: normalized_shape=(4,) does not match its input"),
        ("linear(5, in_features=3)", "linear: in_features=3 does not match its input"),
        ("groupnorm(4, 8)", "groupnorm: num_channels=8 does not match its input"),
    ],
)
def test_explicit_sizes_that_do_not_match_are_rejected_at_their_layer(layer, message):
    text = MOONS + f"network n {{\n  linear(16)\n  relu\n  {layer}\n  linear\n}}"
    problem = only_problem(text)
    assert message in problem.message
    assert "(16,)" in problem.message
    assert (problem.pos.line, problem.pos.column) == (line_of(text, layer), 3)


@pytest.mark.parametrize("layer", ["batchnorm(16)", "layernorm(16)", "groupnorm(4, 16)"])
def test_explicit_sizes_that_match_are_accepted(layer):
    spec = checked(with_layer(layer))
    assert spec.network.layers[2].out_shape == (16,)


def test_cross_entropy_needs_one_score_per_class():
    text = (
        MOONS
        + "network n {\n  linear(8)\n  relu\n  linear(3)\n}\n"
        + TRAIN
        % (
            "cross_entropy",
            "sgd(lr=0.1)",
        )
    )
    problem = only_problem(text)
    assert problem.pos.line == line_of(text, "linear(3)")
    assert "cross_entropy needs one score per class (2)" in problem.message


def test_a_size_mismatch_from_an_input_option():
    text = "data { dataset moons(n=200) }\nnetwork n(input=3) { linear }"
    problem = only_problem(text)
    assert problem.pos.column == column_of(text, "input=3")
    assert "does not match the data's 2" in problem.message


# --- repeat ---------------------------------------------------------------------------------------
def test_repeat_unrolls_with_label_suffixes():
    text = (
        "network n(input=2, classes=2) {\n"
        "  repeat 2 { fc = linear(4) repeat 3 { act = relu } }\n"
        "  linear\n}"
    )
    layers = checked(text).network.layers
    assert [(layer.kind, layer.label) for layer in layers] == [
        ("linear", "fc_0"),
        ("relu", "act_0_0"),
        ("relu", "act_1_0"),
        ("relu", "act_2_0"),
        ("linear", "fc_1"),
        ("relu", "act_0_1"),
        ("relu", "act_1_1"),
        ("relu", "act_2_1"),
        ("linear", None),
    ]
    assert layers[4].kwargs["in_features"] == 4


def test_repeat_count_from_a_constant():
    text = "let depth = 3\nnetwork n(input=2, classes=2) { repeat depth { linear(4) tanh } linear }"
    assert len(checked(text).network.layers) == 3 * 2 + 1
    spec = checked(text, overrides={"depth": 5})
    assert len(spec.network.layers) == 5 * 2 + 1


@pytest.mark.parametrize(
    ("count", "message"),
    [("0", "repeat count must be in [1, 10000]"), ("1.5", "repeat needs a whole number")],
)
def test_repeat_count_is_checked(count, message):
    text = f"network n(input=2, classes=2) {{ repeat {count} {{ relu }} linear }}"
    problem = only_problem(text)
    assert message in problem.message
    assert problem.pos.column == column_of(text, count + " {")


def test_a_label_used_twice_is_rejected():
    text = "network n(input=2, classes=2) {\n  a = linear(4)\n  a = relu\n  linear\n}"
    problem = only_problem(text)
    assert problem.pos.line == 3
    assert "'a' is already used" in problem.message


# --- constants and overrides ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("2 * 32", 64),
        ("2 ** 3 ** 2", 512),
        ("-2 ** 2", -4),
        ("10 - 4 - 3", 3),
        ("7 / 2", 3.5),
        ("(1 + 2) * 3", 9),
        ("1e-3 * 10", 1e-2),
        ("[1, 2.5]", (1, 2.5)),
        ('"text"', "text"),
        ("true", True),
        ("none", None),
    ],
)
def test_constants_are_folded(expression, value):
    assert checked(f"let x = {expression}").constants["x"] == pytest.approx(value)


def test_a_folded_constant_sizes_a_layer():
    spec = checked("let w = 2 * 32\nnetwork n(input=2, classes=2) { linear(w) relu linear }")
    assert spec.constants["w"] == 64
    assert spec.network.layers[0].kwargs["out_features"] == 64


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("1 / 0", "division by zero"),
        ('"a" * 2', "'*' needs two numbers here"),
        ("10 ** 30", "the number is too large"),
        ("(-8) ** 0.5", "is not a real number"),
        ("-true", "cannot negate"),
    ],
)
def test_bad_arithmetic_is_located(expression, message):
    text = f"let ok = 1\nlet x = {expression}"
    problem = only_problem(text)
    assert message in problem.message
    assert (problem.pos.line, problem.pos.column) == (2, 9)


def test_lets_see_only_earlier_lets_and_are_defined_once():
    problems = problems_of("let a = b\nlet b = 1\nlet b = 2")
    assert [(p.pos.line, p.message) for p in problems] == [
        (1, "unknown name 'b'"),
        (3, "'b' is already defined"),
    ]


def test_overrides_replace_let_values_and_flow_into_later_lets():
    text = (
        "let width = 16\nlet double = width * 2\nlet lr = 0.1\n"
        "network n(input=2, classes=2) { linear(width) relu linear(double) relu linear }\n"
    )
    spec = checked(text, overrides={"width": 8, "lr": 0.5})
    assert spec.constants == {"width": 8, "double": 16, "lr": 0.5}
    assert [layer.out_shape for layer in spec.network.layers] == [(8,), (8,), (16,), (16,), (2,)]
    assert checked(text).constants == {"width": 16, "double": 32, "lr": 0.1}


def test_an_override_reaches_the_optimizer():
    text = "let lr = 0.1\n" + with_optimizer("adam(lr=lr)")
    assert checked(text, overrides={"lr": 0.003}).train.optimizers[0].kwargs["lr"] == 0.003


def test_positions_of_lets_are_kept_for_search_overrides():
    spec = checked("\nlet a = 1\n\nlet b = 2")
    assert (spec.positions["a"].line, spec.positions["b"].line) == (2, 4)


# --- search ---------------------------------------------------------------------------------------
SEARCHABLE = (
    "let lr = 0.01\nlet width = 16\n"
    + MOONS
    + "network n { linear(width) relu linear }\n"
    + TRAIN % ("cross_entropy", "sgd(lr=lr)")
)


def test_a_valid_search():
    text = (
        SEARCHABLE
        + "search {\n  lr ~ loguniform(1e-4, 1e-1)\n  width ~ choice(8, 16)\n"
        + "  trials 3\n  metric val_loss\n}"
    )
    search = checked(text).search
    assert search.space["lr"].name == "loguniform"
    assert search.space["lr"].kwargs == {"low": 1e-4, "high": 1e-1}
    assert search.space["width"].kwargs == {"*": [8, 16]}
    assert (search.trials, search.metric, search.minimize) == (3, "val_loss", True)


def test_search_problems_are_all_reported():
    body = (
        "  depth ~ choice(1, 2)\n"
        "  lr ~ loguniform(1e-1, 1e-4)\n"
        "  width ~ chioce(8, 16)\n"
        "  metric val_acc2\n"
        "  trials 0\n"
        "  top 1.5\n"
    )
    text = SEARCHABLE + "search {\n" + body + "}"
    problems = problems_of(text)
    by_line = {p.pos.line: p for p in problems}
    assert len(problems) == 6  # each where it is written, nothing else
    assert "'depth' is not declared" in by_line[line_of(text, "depth ~")].message
    assert "low < high" in by_line[line_of(text, "lr ~")].message
    assert by_line[line_of(text, "chioce")].hint == "did you mean 'choice'?"
    assert by_line[line_of(text, "val_acc2")].hint == "did you mean 'val_acc'?"
    assert "trials must be >= 1" in by_line[line_of(text, "trials 0")].message
    assert "top is a fraction in (0, 1]" in by_line[line_of(text, "top 1.5")].message


def test_a_variable_searched_twice():
    text = SEARCHABLE + "search {\n  lr ~ uniform(0.1, 0.2)\n  lr ~ uniform(0.3, 0.4)\n}"
    problem = only_problem(text)
    assert problem.pos.line == line_of(text, "lr ~ uniform(0.3")
    assert "searched twice" in problem.message


def test_a_search_needs_a_distribution_and_validation_data():
    assert "at least one" in only_problem(SEARCHABLE + "search { trials 3 }").message
    no_val = SEARCHABLE.replace("moons(n=200)", "moons(n=200) val 0")
    problem = only_problem(no_val + "search { lr ~ uniform(0.1, 0.2) }")
    assert "needs val > 0" in problem.message


def test_a_search_needs_a_network_data_and_train():
    text = "let lr = 0.1\nsearch { lr ~ uniform(0.1, 0.2) }"
    messages = [p.message for p in problems_of(text)]
    assert "a search section needs a network to train" in messages
    assert "a search section needs a data section" in messages
    assert "a search section needs a train section (loss, optimizer)" in messages


def test_a_sample_outside_search_is_refused():
    text = "let a = 1\ndata { dataset moons(n=200)  a ~ uniform(0, 1) }"
    assert "only for search sections" in only_problem(text).message


# --- no Python is ever evaluated ------------------------------------------------------------------
def test_python_names_are_just_unknown_names():
    text = (
        "let x = __import__\n"
        'let y = "__import__(\\"os\\").system(\\"false\\")"\n'
        "graph g { input a = 1.0  output o = eval(a) }\n"
        "data { dataset __import__ }\n"
    )
    problems = problems_of(text)
    assert [p.pos.line for p in problems] == [1, 3, 4]
    assert problems[0].message == "unknown name '__import__'"
    assert problems[1].message.startswith(("unknown name 'eval'", "unknown function 'eval'"))
    assert problems[2].message == "unknown dataset '__import__'"


def test_checking_calls_no_eval_exec_or_compile(monkeypatch):
    text = (
        'let y = __import__("os")\n'
        'let s = "__import__(\\"os\\").system(\\"false\\")"\n'
        "graph g { input a = 1.0  output o = tanh(a * 2) }\n"
        + SEARCHABLE
        + "search { lr ~ loguniform(1e-4, 1e-1) }"
    )
    program = parse(text, NAME)

    def refuse(*args, **kwargs):
        raise AssertionError("the checker evaluated Python")

    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, refuse)
    spec = check(program, Source(NAME, text))
    assert spec.constants["s"] == '__import__("os").system("false")'
    assert spec.constants["y"].name == "__import__"  # a call kept as data, never made
    assert [g.name for g in spec.graphs] == ["g"]
