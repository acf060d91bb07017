"""Branching networks in model files (`residual { }`, `shortcut { }`, `concat { }`, `add(a)`,
`concat(a)`) against truths that do not go through the checker: the shapes the built engine
model really computes on a batch, its weights' shapes, outputs recomputed with numpy from
those weights, central differences, and the command line on a branching file."""

from __future__ import annotations

import re

import numpy as np
import pytest
from cli_helpers import run_cli
from topograd.dsl.build import build_model
from topograd.dsl.check import check
from topograd.dsl.errors import DslCheckError, Source
from topograd.dsl.parser import parse

from topograd import Tensor, nn
from topograd.testing import assert_gradients

NAME = "model.tg"


def spec_of(text: str):
    return check(parse(text, NAME), Source(NAME, text))


def model_of(text: str, seed: int = 0):
    spec = spec_of(text)
    return spec.network, build_model(spec.network, seed)


def problems_of(text: str) -> list[str]:
    with pytest.raises(DslCheckError) as caught:
        spec_of(text)
    return [problem.message for problem in caught.value.problems]


def pairs(specs, sequence):
    """(layer spec, engine module) for every layer, blocks' bodies and shortcuts included."""
    assert len(specs) == len(sequence)
    for spec, module in zip(specs, sequence, strict=True):
        yield spec, module
        if spec.is_block:
            yield from pairs(spec.body, module.body)
            if spec.shortcut is not None:
                yield from pairs(spec.shortcut, module.shortcut)


def shapes_run(network, model, batch: int = 3) -> list[tuple]:
    """For every layer (depth first): the checker's (in, out) shape per example beside the
    shapes the engine module saw and gave when the model ran on a random batch."""
    seen = []
    for spec, module in pairs(network.layers, model):
        record: list = []
        seen.append((spec, record))

        def forward(*args, _forward=module.forward, _record=record):
            out = _forward(*args)
            _record.append((tuple(args[0].shape[1:]), tuple(out.shape[1:])))
            return out

        object.__setattr__(module, "forward", forward)
    x = np.random.default_rng(0).standard_normal((batch, *network.input_shape))
    out = model(Tensor(x))
    assert tuple(out.shape) == (batch, *network.output_shape)
    return [((s.in_shape, s.out_shape), record) for s, record in seen]


# --- shapes ------------------------------------------------------------------------------------
DENSE = """\
network dense(input=5, classes=3) {
  stem = linear(6)
  tanh
  residual {
    linear(4)
    tanh
    linear
  }
  a = residual {
    linear(9)
    tanh
  } shortcut {
    linear
  }
  residual {
    linear(6)
    tanh
    concat {
      linear(2)
    }
  } shortcut {
    linear(8)
  }
  concat(stem)
  grown = concat {
    linear(3)
    tanh
  }
  linear(17)
  add(grown)
  repeat 2 {
    b = linear(17)
    tanh
    add(b)
  }
  add(b_1, grown)
  linear
}
"""

CONV = """\
network conv(input=(2, 6, 6), classes=4) {
  stem = conv2d(3, 3, padding=1)
  relu
  repeat 2 {
    residual {
      conv2d(3, 3, padding=1)
      batchnorm2d
      relu
      conv2d(kernel_size=3, padding=1)
    }
    relu
  }
  concat(stem)
  residual {
    conv2d(5, 3, stride=2, padding=1)
    relu
    residual {
      conv2d(kernel_size=3, padding=1)
    }
  } shortcut {
    conv2d(kernel_size=1, stride=2)
  }
  dense = concat {
    conv2d(2, 3, padding=1)
    relu
    concat {
      conv2d(1, 1)
    }
  }
  add(dense)
  maxpool2d(2)
  flatten
  linear
}
"""

DIGITS = """\
data {
  dataset digits
  val 0.15
  test 0.15
}

network tiny_resnet {
  stem = conv2d(8, 3, padding=1)
  batchnorm2d
  relu
  repeat 2 {
    residual {
      conv2d(8, 3, padding=1)
      batchnorm2d
      relu
      conv2d(kernel_size=3, padding=1)
      batchnorm2d
    }
    relu
  }
  residual {
    conv2d(16, 3, stride=2, padding=1)
    batchnorm2d
    relu
    conv2d(16, 3, padding=1)
    batchnorm2d
  } shortcut {
    conv2d(kernel_size=1, stride=2)
    batchnorm2d
  }
  relu
  dense = concat {
    conv2d(4, 3, padding=1)
    relu
  }
  add(dense)
  adaptiveavgpool2d(1)
  flatten
  linear
}

train {
  loss cross_entropy
  optimizer adam(lr=1e-2)
  epochs 2
  batch 64
}
"""


@pytest.mark.parametrize("text", [DENSE, CONV, DIGITS], ids=["dense", "conv", "digits"])
def test_every_layers_checked_shapes_are_what_the_engine_computes(text):
    network, model = model_of(text)
    for checked, record in shapes_run(network, model):
        assert record, f"layer {checked} never ran"
        assert set(record) == {checked}


def test_block_and_merge_shapes_by_hand():
    """The joins' rules, written out: a residual keeps its body's shape, a concat block adds
    its body's channels (features) to its input's, a merge joins along the same axis."""
    network, _ = model_of(DENSE)
    kinds = [(layer.kind, layer.out_shape) for layer in network.layers]
    assert kinds[:8] == [
        ("linear", (6,)),
        ("tanh", (6,)),
        ("residual", (6,)),  # the body's bare linear took the input's 6
        ("residual", (9,)),  # the shortcut's bare linear took the body's 9
        ("residual", (8,)),  # linear(6) then a concat of 2 more: 8, as the shortcut's
        ("concat", (14,)),  # concat(stem): 8 + 6
        ("concat", (17,)),  # 14 + 3
        ("linear", (17,)),
    ]
    image, _ = model_of(CONV)
    (dense,) = [layer for layer in image.layers if layer.is_block and layer.kind == "concat"]
    assert dense.in_shape == (5, 3, 3)  # the stride-2 residual's 5 channels
    assert dense.out_shape == (5 + 2 + 1, 3, 3)  # and its body's: 2, then a nested 1 more
    merge = next(layer for layer in image.layers if layer.sources == ("stem",))
    assert merge.in_shape == (3, 6, 6) and merge.out_shape == (6, 6, 6)


# --- sizes inferred ------------------------------------------------------------------------------
def test_a_residual_bodys_last_bare_linear_takes_the_inputs_size():
    network, model = model_of(
        "network n(input=5, classes=3) {\n  linear(6)\n  residual {\n    linear(4)\n"
        "    linear\n    relu\n  }\n  linear\n}\n"
    )
    body = network.layers[1].body
    assert [layer.kwargs.get("out_features") for layer in body] == [4, 6, None]
    assert model[1].body[1].weight.shape == (4, 6)  # the engine's Linear: (in, out)
    assert model[2].weight.shape == (6, 3)  # the network's last size still comes from classes


def test_a_residual_bodys_last_bare_conv_takes_the_inputs_channels():
    network, model = model_of(
        "network n(input=(3, 5, 5), classes=2) {\n  conv2d(7, 3, padding=1)\n  residual {\n"
        "    conv2d(2, 3, padding=1)\n    relu\n    conv2d(kernel_size=3, padding=1)\n  }\n"
        "  flatten\n  linear\n}\n"
    )
    last = network.layers[1].body[-1]
    assert last.kwargs["out_channels"] == 7 and last.out_shape == (7, 5, 5)
    assert model[1].body[2].weight.shape == (7, 2, 3, 3)


def test_a_shortcuts_last_bare_layer_takes_the_bodys_size():
    network, model = model_of(
        "network n(input=(3, 6, 6), classes=2) {\n  residual {\n"
        "    conv2d(8, 3, stride=2, padding=1)\n  } shortcut {\n    relu\n"
        "    conv2d(kernel_size=1, stride=2)\n  }\n  flatten\n  linear\n}\n"
    )
    block = network.layers[0]
    assert block.shortcut[-1].kwargs["out_channels"] == 8
    assert block.out_shape == (8, 3, 3)
    assert model[0].shortcut[1].weight.shape == (8, 3, 1, 1)
    dense, _ = model_of(
        "network n(input=4, classes=2) {\n  residual {\n    linear(6)\n    tanh\n  }"
        " shortcut {\n    linear\n  }\n  linear\n}\n"
    )
    assert dense.layers[0].shortcut[0].kwargs["out_features"] == 6


def test_a_concat_body_and_a_body_with_a_shortcut_need_their_sizes():
    """Neither has a size to infer: a concat body's last size is its growth, and with a
    shortcut the body may change the shape."""
    for block in (
        "concat {\n    linear\n  }",
        "residual {\n    linear\n  } shortcut {\n    relu\n  }",
    ):
        (message,) = problems_of(f"network n(input=4, classes=2) {{\n  {block}\n  linear\n}}\n")
        assert message.startswith("linear needs its output size")


# --- labels in repeats --------------------------------------------------------------------------
def linear_of(module, x):
    return x @ module.weight.data + module.bias.data


def test_a_merge_in_a_repeat_adds_its_own_copys_label():
    network, model = model_of(
        "network n(input=3, classes=2) {\n  repeat 2 {\n    a = linear(3)\n    tanh\n"
        "    add(a)\n  }\n  add(a_0)\n  linear\n}\n"
    )
    labels = [layer.label for layer in network.layers]
    sources = [layer.sources for layer in network.layers]
    assert labels == ["a_0", None, None, "a_1", None, None, None, None]
    assert sources == [(), (), ("a_0",), (), (), ("a_1",), ("a_0",), ()]
    x = np.random.default_rng(1).standard_normal((4, 3))
    a0 = linear_of(model[0], x)
    h = np.tanh(a0) + a0
    a1 = linear_of(model[3], h)
    h = np.tanh(a1) + a1 + a0
    expected = linear_of(model[7], h)
    np.testing.assert_allclose(model(Tensor(x)).data, expected, rtol=1e-12)
    wrong = linear_of(model[7], np.tanh(a1) + a0 + a0)  # the other copy's label
    assert not np.allclose(expected, wrong)


def test_a_labelled_block_in_a_repeat_is_its_copys():
    network, model = model_of(
        "network n(input=3, classes=2) {\n  repeat 2 {\n    r = residual {\n      linear(5)\n"
        "      tanh\n      linear\n    }\n    linear(3)\n    add(r)\n  }\n  linear\n}\n"
    )
    assert [layer.label for layer in network.layers if layer.is_block] == ["r_0", "r_1"]
    assert [layer.sources for layer in network.layers if layer.sources] == [("r_0",), ("r_1",)]
    x = np.random.default_rng(2).standard_normal((4, 3))
    value = x
    for copy in range(2):
        block, after = model[3 * copy], model[3 * copy + 1]
        first, second = block.body[0], block.body[2]
        r = value + linear_of(second, np.tanh(linear_of(first, value)))
        value = linear_of(after, r) + r
    np.testing.assert_allclose(model(Tensor(x)).data, linear_of(model[6], value), rtol=1e-12)


def test_nested_repeats_number_their_labels_per_copy():
    network, _ = model_of(
        "network n(input=3, classes=2) {\n  repeat 2 {\n    a = linear(3)\n    repeat 2 {\n"
        "      b = tanh\n      add(a, b)\n    }\n  }\n  linear\n}\n"
    )
    merges = [layer.sources for layer in network.layers if layer.sources]
    assert merges == [("a_0", "b_0_0"), ("a_0", "b_1_0"), ("a_1", "b_0_1"), ("a_1", "b_1_1")]


def test_a_merge_sees_only_the_labels_of_its_own_sequence():
    inside = problems_of(
        "network n(input=3, classes=2) {\n  a = linear(3)\n  residual {\n    tanh\n"
        "    add(a)\n  }\n  linear\n}\n"
    )
    assert inside == ["add: no earlier layer in this residual block is named 'a'"]
    network, _ = model_of(
        "network n(input=3, classes=2) {\n  a = linear(3)\n  residual {\n    a = tanh\n"
        "    add(a)\n  }\n  add(a)\n  linear\n}\n"
    )
    block, outer = network.layers[1], network.layers[2]
    assert block.body[1].sources == ("a",) and block.body[1].in_shape == (3,)
    assert outer.sources == ("a",)


def test_a_failed_labelled_block_does_not_fail_its_merges_too():
    """Checking goes on after a residual block that does not join (its shape is known: its
    input's), so a merge naming it must not be reported as naming nothing."""
    messages = problems_of(
        "network n(input=3, classes=2) {\n  linear(8)\n  a = residual {\n    linear(4)\n"
        "  }\n  add(a)\n  linear\n}\n"
    )
    assert len(messages) == 1 and messages[0].startswith("residual: the body ends"), messages


# --- gradients -----------------------------------------------------------------------------------
SMALL_CONV = """\
network conv(input=(2, 4, 4), classes=3) {
  stem = conv2d(2, 3, padding=1)
  tanh
  residual {
    conv2d(3, 3, padding=1)
    batchnorm2d
    tanh
    conv2d(kernel_size=3, padding=1)
  }
  concat(stem)
  d = concat {
    conv2d(2, 1)
    tanh
  }
  residual {
    conv2d(3, 3, stride=2, padding=1)
  } shortcut {
    conv2d(kernel_size=1, stride=2)
  }
  flatten
  linear
}
"""


@pytest.mark.parametrize(
    ("text", "shape"), [(DENSE, (4, 5)), (SMALL_CONV, (3, 2, 4, 4))], ids=["dense", "conv"]
)
def test_gradients_of_a_branching_file_match_central_differences(text, shape):
    """Every parameter and the input, in training mode (batch statistics)."""
    _, model = model_of(text, seed=3)
    x = np.random.default_rng(4).standard_normal(shape)
    checks = assert_gradients(model, x)
    names = [check.label for check in checks]
    assert len(names) == 1 + len(list(model.parameters()))  # the input, every parameter
    assert any(".body." in name for name in names) and any(".shortcut." in name for name in names)


def test_the_skip_carries_the_gradient_past_a_dead_body():
    """A residual whose body is zero passes the gradient through unchanged: d sum(out)/dx
    is all ones (the identity), though the body's weights are zero."""
    _, model = model_of(
        "network n(input=3, classes=3) {\n  residual {\n    linear(4)\n"
        "    relu\n    linear\n  }\n}\n"
    )
    for parameter in model.parameters():
        parameter.data = np.zeros(parameter.shape)
    x = Tensor(np.random.default_rng(5).standard_normal((2, 3)), requires_grad=True)
    model(x).sum().backward()
    np.testing.assert_array_equal(x.grad, np.ones((2, 3)))


# --- the command line -----------------------------------------------------------------------------
BRANCHY = """\
data {
  dataset digits
  val 0.15
  test 0.15
}

network branchy {
  stem = conv2d(2, 3, padding=1)
  tanh
  residual {
    conv2d(2, 3, padding=1)
    tanh
    conv2d(kernel_size=3, padding=1)
  }
  concat(stem)
  dense = concat {
    conv2d(2, 3, padding=1)
    tanh
  }
  residual {
    conv2d(3, 3, stride=2, padding=1)
  } shortcut {
    conv2d(kernel_size=1, stride=2)
  }
  maxpool2d(2)
  flatten
  linear
}

train {
  loss cross_entropy
  optimizer sgd(lr=0.1)
  epochs 1
  batch 16
}
"""


@pytest.fixture
def branchy(tmp_path):
    path = tmp_path / "branchy.tg"
    path.write_text(BRANCHY, encoding="utf-8")
    return path


def test_check_compares_the_gradients_of_a_branching_file(branchy, capsys):
    out = run_cli(["check", str(branchy)], capsys).out
    assert "ok:" in out
    # parameters inside blocks are named by their place (0 is the fold of rows into images),
    # a labelled layer or block by its label
    for name in ("stem.weight", "3.body.2.weight", "dense.body.0.weight", "6.shortcut.0.bias"):
        assert f"\n{name} " in out, name


def test_graph_draws_a_branching_file(branchy, tmp_path, capsys):
    dot = tmp_path / "g.dot"
    out = run_cli(["graph", str(branchy), "-o", str(dot)], capsys).out
    assert out.startswith(f"wrote {dot}")
    text = dot.read_text(encoding="utf-8")
    for cluster in ("(Residual)", "branchy.dense (Concat)", "(Merge)", "shortcut.0 (Conv2d)"):
        assert cluster in text, cluster


def test_step_walks_a_branching_file(branchy, capsys):
    out = run_cli(["step", str(branchy), "--all"], capsys).out
    lines = out.splitlines()
    forward = [line for line in lines if line.startswith("forward")]
    backward = [line for line in lines if re.match(r"backward +\d+ ", line)]
    assert any(" concat  in branchy.dense (Concat)" in line for line in forward)
    assert any(" concat  in branchy.4 (Merge)" in line for line in forward)
    joins = [line.split("  ", 1)[1].split("  shape")[0] for line in forward if "(Resid" in line]
    assert joins == ["add  in branchy.3 (Residual)", "add  in branchy.6 (Residual)"]
    assert any("parameter  dense.body.0.weight" in line for line in backward)
    assert any("parameter  6.shortcut.0.weight" in line for line in backward)
    assert out.rstrip().endswith(f"{len(forward)} forward steps, {len(backward)} backward steps")


def test_a_model_file_with_blocks_builds_engine_blocks():
    _, model = model_of(DENSE)
    kinds = [type(module).__name__ for module in model]
    assert kinds[:8] == [
        "Linear", "Tanh", "Residual", "Residual", "Residual", "Merge", "Concat", "Linear",
    ]  # fmt: skip
    assert isinstance(model[4].body[2], nn.Concat)
    assert "shortcut" not in model[2].__dict__ and "shortcut" in model[3].__dict__
