"""Branching networks on PyTorch: residual blocks (the identity, and a strided convolution with
batch norm as the shortcut), concat blocks, and merges with labelled earlier layers (`add(stem)`,
`concat(a)`, one inside a block's body), in float64.

`--backend torch` computes what the engine computes (outputs, input and parameter gradients,
running statistics, under the engine's parameter and buffer names) and trains step for step as
it does; `topograd export` writes a script that trains them to the engine's losses.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from test_backend_parity import RTOL, built_from, relative_difference, train
from test_export import (
    assert_same_run,
    assert_standalone_and_ruff_clean,
    engine_history,
    export,
    refused,
    run_script,
    small,
)
from test_modules import check_same, randomize
from topograd.dsl.torch_backend import UnsupportedError
from topograd.dsl.torch_backend.modules import (
    Concat,
    MergingSequential,
    Residual,
    to_torch_module,
)

IMAGES = """
data {
  dataset digits
  val 0.4
  test 0.3
}
network branchy {
  stem = conv2d(4, 3, padding=1, bias=false)
  batchnorm2d
  relu
  residual {
    conv2d(4, 3, padding=1, bias=false)
    batchnorm2d
    relu
    conv2d(kernel_size=3, padding=1, bias=false)
    batchnorm2d
  }
  add(stem)
  relu
  residual {
    conv2d(8, 3, stride=2, padding=1, bias=false)
    batchnorm2d
    relu
    conv2d(8, 3, padding=1, bias=false)
    batchnorm2d
  } shortcut {
    conv2d(kernel_size=1, stride=2, bias=false)
    batchnorm2d
  }
  a = relu
  concat {
    conv2d(4, 3, padding=1)
    relu
  }
  concat(a)
  residual {
    x = conv2d(20, 1)
    tanh
    add(x)
  }
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
"""Images: 9 steps an epoch (539 training rows). The convolutions in front of batch norm have
no bias (as in ResNet): a bias there gets a gradient of zero but for rounding."""

ROWS = """
data { dataset moons(n=80)  val 0.2  test 0.2 }
network rows {
  stem = linear(8)
  s = relu
  residual { linear(8)  relu  linear }
  add(stem, s)
  a = tanh
  concat { linear(4)  relu }
  concat(a)
  residual { batchnorm  linear(6)  relu  b = linear(6)  concat(b) } shortcut { linear }
  linear
}
train { loss cross_entropy  optimizer sgd(lr=0.1, momentum=0.9)  epochs 2  batch 16 }
"""
"""Rows: the same constructs on features (dim 1 of (N, F)), a merge of two earlier outputs
(x + stem + s), 3 steps an epoch."""

NETWORKS = pytest.mark.parametrize("text", [IMAGES, ROWS], ids=["images", "rows"])


# --- the torch module ----------------------------------------------------------------------------
def test_blocks_and_merges_keep_the_engines_structure():
    model = built_from(IMAGES)[0].model
    module = to_torch_module(model)
    assert [n for n, _ in module.named_parameters()] == [n for n, _ in model.named_parameters()]
    assert [n for n, _ in module.named_buffers()] == [n for n, _ in model.named_buffers()]
    assert "7.shortcut.0.weight" in dict(module.named_parameters())
    assert isinstance(module, MergingSequential)  # add(stem), concat(a)
    assert isinstance(module[4], Residual) and module[4].shortcut is None
    assert isinstance(module[9], Concat)
    assert isinstance(module[11].body, MergingSequential)  # add(x) inside the body
    assert module.item_names[1] == "stem" and module[11].body.item_names[0] == "x"


@NETWORKS
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_a_branching_network_computes_what_the_engine_computes(text, training):
    """Random weights and running statistics, a random upstream gradient: the same output,
    input gradient, every parameter's gradient and the running statistics (1e-12)."""
    built, _ = built_from(text)
    model, rng = built.model, np.random.default_rng(11)
    randomize(model, rng)
    model.train(training)
    module = to_torch_module(model)
    check_same(model, module, built.data.splits.train.x[:24], rng)


# --- training ------------------------------------------------------------------------------------
@NETWORKS
def test_torch_trains_a_branching_network_step_for_step(text):
    numpy_history, numpy_built = train(text, "numpy", checkpoint=None)
    torch_history, torch_built = train(text, "torch", checkpoint=None)

    assert numpy_history.steps == torch_history.steps > 0
    worst = relative_difference(numpy_history.step_loss, torch_history.step_loss)
    print(f"max relative loss difference over {numpy_history.steps} steps: {worst:.2e}")
    assert worst < RTOL
    for name, norms in numpy_history.grad_norms.items():
        np.testing.assert_allclose(torch_history.grad_norms[name], norms, rtol=1e-6, err_msg=name)
    np.testing.assert_allclose(torch_history.val_loss, numpy_history.val_loss, rtol=RTOL)
    assert torch_history.train_acc == numpy_history.train_acc
    for (name, a), b in zip(numpy_built.model.named_parameters(), torch_built.model.parameters()):
        np.testing.assert_allclose(b.data, a.data, rtol=RTOL, atol=1e-12, err_msg=name)


def test_a_layer_without_counterpart_inside_a_block_is_named_by_its_path():
    built, _ = built_from(IMAGES.replace("    tanh\n", "    dropout(drop=0.2, inverted=false)\n"))
    with pytest.raises(
        UnsupportedError, match=r"vanilla dropout \(inverted=false\) at layer 11\.body\.1 "
    ):
        to_torch_module(built.model)


# --- export --------------------------------------------------------------------------------------
@NETWORKS
def test_the_exported_script_trains_a_branching_network_as_topograd_run_does(tmp_path, text):
    model = tmp_path / "branching.tg"
    model.write_text(text)
    script = export(tmp_path, model)
    assert_standalone_and_ruff_clean(script)
    metrics, _ = run_script(script, 2)
    history, built = engine_history(model, 2)
    assert_same_run(history, built, metrics)


def test_the_exported_network_reads_as_blocks_and_merges(tmp_path):
    """Blocks are the script's Residual and Concat around nn.Sequential bodies, a body with a
    merge is a class of its own, merges are lines of forward; the weights are the engine's."""
    model = tmp_path / "branchy.tg"
    model.write_text(IMAGES)
    script = export(tmp_path, model)
    text = script.read_text()
    for line in [
        "class Residual(nn.Module):",
        "class Concat(nn.Module):",
        "class Residual3Body(nn.Module):",
        "class Branchy(nn.Module):",
        "            shortcut=nn.Sequential(nn.Conv2d(4, 8, 1, stride=2, bias=False), "
        "nn.BatchNorm2d(8)),",
        "        self.concat1 = Concat(nn.Sequential(nn.Conv2d(8, 4, 3, padding=1), nn.ReLU()))",
        "        self.residual3 = Residual(Residual3Body())",
        "        x = stem = self.stem(x)",
        "        x = x + stem",
        "        x = torch.cat([x, a], dim=1)",
        "        x = x_out = self.x(x)",  # the label x is not forward's argument
        "        x = x + x_out",
    ]:
        assert f"{line}\n" in text, line
    engine = built_from(IMAGES)[0].model
    with np.load(script.with_suffix(".npz"), allow_pickle=False) as data:
        pairs = {
            "residual2.shortcut.0.weight": engine[7].shortcut[0].weight.data,
            "residual2.shortcut.1.running_var": engine[7].shortcut[1].running_var,
            "residual3.body.x.weight": engine[11].body[0].weight.data,
            "linear1.weight": engine[14].weight.data.T,
        }
        for key, value in pairs.items():
            np.testing.assert_array_equal(data[f"init.{key}"], value, err_msg=key)


def test_a_layer_without_counterpart_inside_a_block_is_refused_with_its_line(tmp_path, capsys):
    layers = "linear(8)  residual { linear(8)  dropout(drop=0.2, inverted=false) }  linear"
    model = small(tmp_path, layers=layers)
    fragment = "dropout(inverted=false) at line 3, in the residual block at line 3"
    refused(tmp_path, capsys, ["export", str(model)], "cannot export", fragment)
