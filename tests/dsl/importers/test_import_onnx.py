"""ONNX files exported by PyTorch (the legacy TorchScript exporter and the default dynamo one):
the engine model computes PyTorch's outputs, input gradients and every parameter gradient to
1e-9 in float64; batch norm's momentum is converted from ONNX's convention; the weights are
read with the onnx package only."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

import numpy as np
from import_models import MODELS, assert_close, differences, example, export, make
from onnx import TensorProto, helper, numpy_helper
from topograd.dsl.importers import ModelImportError, import_onnx
from topograd.dsl.importers.common import old_weight_to_new
from topograd.engine import nn as enn

import topograd as tg

EXPORTERS = ("legacy", "dynamo")


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_eval_mode_matches_pytorch(name, exporter, tmp_path):
    model, shape = make(name)
    model.eval()
    x = example(shape)
    path = export(model, x, tmp_path / f"{name}.onnx", exporter)
    imported = import_onnx(path)
    assert imported.input_shape == shape
    assert not any(m.training for m in imported.module.modules())
    assert_close(differences(imported, model, x))


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_an_open_batch_size_and_a_view_of_it(exporter, tmp_path):
    """`x.view(x.size(0), -1)` with the batch size left open: the exporters compute the new
    shape from the input's (Shape, Gather, Concat ...), which is evaluated here."""
    model, shape = make("cnn")
    model.eval()
    x = example(shape)
    path = export(model, x, tmp_path / "cnn.onnx", exporter, dynamic_batch=True)
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert not dims[0].HasField("dim_value")
    imported = import_onnx(path)
    assert [type(m).__name__ for m in imported.module][-2:] == ["Flatten", "Linear"]
    assert_close(differences(imported, model, x))


def test_train_mode_batch_norm_matches_pytorch(tmp_path):
    """Exported for training (BatchNormalization training_mode=1, Dropout with p=0 and
    training_mode): batch statistics, the gradients and the running averages' update."""
    model, shape = make("mlp", p=0.0)
    model.train()
    x = example(shape)
    # the export runs the model (its running statistics move): the file holds them as they
    # are after the export, and so does the model
    path = export(model, x, tmp_path / "mlp.onnx", "legacy", training=True)
    imported = import_onnx(path)
    kinds = {type(m).__name__: m.training for m in imported.module}
    assert kinds["BatchNorm1d"] and kinds["Dropout"] and imported.module.training
    found = differences(imported, model, x)
    assert {"bn1.running_mean", "bn2.running_var"} <= set(found)
    assert_close(found)


def test_onnx_momentum_is_the_weight_of_the_old_value(tmp_path):
    """PyTorch's momentum 0.3 (the new batch's weight) is exported as 0.7 (float32:
    0.699999988...), and comes back as exactly 0.3; ONNX's default 0.9 as 0.1."""
    model, shape = make("mlp")
    model.train()
    path = export(model, example(shape), tmp_path / "mlp.onnx", "legacy", training=True)
    stored = [
        helper.get_attribute_value(a)
        for node in onnx.load(str(path)).graph.node
        if node.op_type == "BatchNormalization"
        for a in node.attribute
        if a.name == "momentum"
    ]
    assert stored == [pytest.approx(0.9), pytest.approx(0.7)] and stored[1] != 0.7
    momenta = [m.momentum for m in tg.from_onnx(path).modules() if isinstance(m, enn.BatchNorm1d)]
    assert momenta == [0.1, 0.3]
    assert old_weight_to_new(0.9) == 0.1 and old_weight_to_new(np.float32(0.25)) == 0.75


def test_a_hand_written_batch_norm_updates_with_the_converted_momentum(tmp_path):
    """running = 0.6 * running + 0.4 * batch mean in ONNX's words (momentum 0.6): the engine's
    momentum is 0.4 and one training pass moves the running mean that far."""
    channels = 3
    rng = np.random.default_rng(0)
    mean, var = rng.normal(size=channels), rng.uniform(0.5, 2, size=channels)
    initializers = [
        numpy_helper.from_array(np.ones(channels), "scale"),
        numpy_helper.from_array(np.zeros(channels), "shift"),
        numpy_helper.from_array(mean, "mean"),
        numpy_helper.from_array(var, "var"),
    ]
    node = helper.make_node(
        "BatchNormalization",
        ["x", "scale", "shift", "mean", "var"],
        ["y"],
        name="bn",
        momentum=0.6,
        training_mode=1,
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", channels])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", channels])],
        initializers,
    )
    path = tmp_path / "bn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)]), str(path))
    model = tg.from_onnx(path)
    norm = model[0]
    assert norm.momentum == 0.4 and norm.training
    x = rng.normal(size=(8, channels))
    model(tg.Tensor(x))
    np.testing.assert_allclose(norm.running_mean, 0.6 * mean + 0.4 * x.mean(axis=0), atol=1e-12)


def test_shared_initializers_are_copied_apart(tmp_path):
    """A fresh BatchNorm's weight and running_var are both ones: the legacy exporter stores
    one array and an Identity; the engine layer gets two arrays of its own."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).double().eval()
    x = example((3,))
    imported = import_onnx(export(model, x, tmp_path / "fresh.onnx", "legacy"))
    norm = imported.module[1]
    assert imported.sources["1.running_var"] == "1.running_var"
    assert norm.weight.data is not norm.running_var
    norm.weight.data = norm.weight.data * 2
    np.testing.assert_array_equal(norm.running_var, np.ones(4))


def test_open_sizes_need_the_input_shape(tmp_path):
    node = helper.make_node("Relu", ["x"], ["y"], name="relu")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "C"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "C"])],
    )
    path = tmp_path / "open.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ModelImportError, match="--input-shape"):
        import_onnx(path)
    imported = import_onnx(path, input_shape=(5,))
    assert imported.input_shape == (5,)
    assert imported.module[0].training is False
    assert {p.dtype for p in imported.module.parameters()} <= {np.dtype(np.float32)}


def test_a_file_that_is_not_onnx_is_refused(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x00 this is no protocol buffer \xff" * 10)
    with pytest.raises(ModelImportError, match=r"cannot read .*broken\.onnx"):
        import_onnx(path)
    with pytest.raises(ModelImportError, match="no such file"):
        import_onnx(tmp_path / "missing.onnx")
