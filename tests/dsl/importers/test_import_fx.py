"""PyTorch modules through torch.fx: the engine model computes PyTorch's outputs, input
gradients and every parameter gradient to 1e-9 in float64, in eval and in train mode, and
keeps each layer's mode, weights and running statistics."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import numpy as np
from import_models import MODELS, assert_close, differences, example, make
from topograd.dsl.importers import ModelImportError, import_torch
from topograd.engine import nn as enn
from torch import nn
from torch.nn import functional as F

import topograd as tg


@pytest.mark.parametrize("name", sorted(MODELS))
def test_eval_mode_matches_pytorch(name):
    model, shape = make(name)
    model.eval()
    x = example(shape)
    imported = import_torch(model, torch.as_tensor(x))
    assert not any(m.training for m in imported.module.modules())
    assert_close(differences(imported, model, x))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_train_mode_matches_pytorch_and_updates_the_same_running_statistics(name):
    """Batch statistics and the running averages' update (dropout p=0 so that both draw the
    same units: none)."""
    model, shape = make(name, **({"p": 0.0} if name == "mlp" else {}))
    model.train()
    x = example(shape)
    imported = import_torch(model, torch.as_tensor(x))
    assert all(m.training for m in imported.module.modules())
    found = differences(imported, model, x)  # one training pass on each side
    assert any(key.endswith("running_var") for key in found) or name == "everything"
    assert_close(found)
    for name_, buffer in imported.module.named_buffers():
        if name_.endswith("num_batches_tracked"):
            assert int(buffer) == 1


def test_the_weights_are_copied_with_their_layouts():
    model, shape = make("mlp")
    imported = import_torch(model, torch.as_tensor(example(shape)))
    engine = dict(imported.module.named_parameters())
    assert imported.sources["0.weight"] == "fc1.weight" and "0.weight" in imported.transposed
    np.testing.assert_array_equal(engine["0.weight"].data, model.fc1.weight.detach().numpy().T)
    buffers = dict(imported.module.named_buffers())
    bn = next(k for k, v in imported.sources.items() if v == "bn2.running_mean")
    np.testing.assert_array_equal(buffers[bn], model.bn2.running_mean.numpy())
    momenta = [m.momentum for m in imported.module.modules() if isinstance(m, enn.BatchNorm1d)]
    assert momenta == [0.1, 0.3]  # PyTorch's convention is the engine's


def test_each_layer_keeps_its_own_mode():
    model, shape = make("mlp")
    model.train()
    model.bn1.eval()  # frozen statistics, dropout still on
    imported = import_torch(model, torch.as_tensor(example(shape)))
    modes = {type(m).__name__: m.training for m in imported.module if m._local_name != "bn2"}
    assert modes["BatchNorm1d"] is False and modes["Dropout"] is True
    assert imported.module.training is True


def test_nothing_in_the_pytorch_module_changes():
    model, shape = make("resnet")
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    import_torch(model, torch.as_tensor(example(shape)))
    after = model.state_dict()
    assert model.training and all(torch.equal(before[k], after[k]) for k in before)


def test_float32_models_become_float32_engine_models():
    model, shape = make("cnn")
    model.float().eval()
    x = example(shape).astype(np.float32)
    engine = tg.from_torch(model, torch.as_tensor(x))
    assert {p.dtype for p in engine.parameters()} == {np.dtype(np.float32)}
    out = engine.eval()(tg.Tensor(x)).data
    np.testing.assert_allclose(out, model(torch.as_tensor(x)).detach().numpy(), atol=1e-5)


def test_layers_are_labelled_with_their_pytorch_paths():
    model, shape = make("resnet")
    imported = import_torch(model, torch.as_tensor(example(shape)))
    labels = [m._local_name for m in imported.module]
    assert labels[0] == "stem" and labels[-1] == "fc"
    block = imported.module[3]
    assert isinstance(block, enn.Residual) and "shortcut" not in block.__dict__
    projection = imported.module[5]
    assert [m._local_name for m in projection.shortcut] == [
        "layer2_shortcut_0",
        "layer2_shortcut_1",
    ]


def test_functional_forms_and_methods():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)

        def forward(self, x):
            y = F.max_pool2d(x.relu(), 2, ceil_mode=True)
            y = F.avg_pool2d(self.conv(y), 2, stride=1, padding=1)
            y = torch.add(y.mean((2, 3), keepdim=True), F.adaptive_avg_pool2d(y, 1))
            y = y.reshape(x.shape[0], 2, 2)
            y = F.dropout(y.flatten(1), 0.3, training=False)
            return y.contiguous().softmax(-1).sigmoid().tanh()

    model = Functional().double()
    x = example((1, 9, 9))
    imported = import_torch(model, torch.as_tensor(x))
    assert_close(differences(imported, model, x))


def test_the_example_must_be_a_float_batch():
    model = nn.Linear(3, 2).double()
    with pytest.raises(ModelImportError, match="batch"):
        import_torch(model, torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ModelImportError, match="float64 or float32"):
        import_torch(model, torch.zeros(2, 3, dtype=torch.int64))
