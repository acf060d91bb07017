"""`topograd import`: the model file and its weights are written together (or not at all), and
`check`, `step`, `run` (with data and train sections added) and `export` take the file."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

import numpy as np
from import_models import export, make, rebuilt, run_cli
from topograd.dsl.fmt import format_source
from topograd.dsl.importers import import_onnx, open_as_model_file
from topograd.engine import Tensor
from torch import nn

SECTIONS = """
data {
  dataset digits
}

train {
  loss cross_entropy
  optimizer adam(lr=1e-2)
  epochs 1
  batch 128
}
"""


class Digits(nn.Module):
    """A small CNN for the 8x8 digits, with a grouped convolution."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.grouped = nn.Conv2d(4, 8, 3, padding=1, groups=2)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        x = self.pool(torch.relu(self.grouped(x)))
        return self.fc(torch.flatten(x, 1))


@pytest.fixture
def digits_onnx(tmp_path):
    torch.manual_seed(0)
    model = Digits().double().eval()
    return export(model, np.zeros((2, 1, 8, 8)), tmp_path / "digits.onnx", "legacy")


def test_import_writes_a_model_file_that_checks_steps_and_keeps_the_weights(
    digits_onnx, tmp_path, capsys
):
    out = run_cli(["import", str(digits_onnx), "-o", str(tmp_path / "digits.tg")], capsys)
    assert "wrote" in out.out and "digits.weights.npz" in out.out
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "digits.onnx",
        "digits.tg",
        "digits.weights.npz",
    ]
    text = (tmp_path / "digits.tg").read_text()
    assert 'network digits(input=(1, 8, 8), weights="digits.weights.npz") {' in text
    assert "conv2d(8, 3, padding=1, groups=2)" in text
    run_cli(["check", str(tmp_path / "digits.tg")], capsys)
    stepped = run_cli(["step", str(tmp_path / "digits.tg"), "--all"], capsys).out
    assert "backward" in stepped and "conv2d" in stepped
    built = rebuilt(tmp_path / "digits.tg").model
    imported = import_onnx(digits_onnx)
    x = np.random.default_rng(0).normal(size=(3, 1, 8, 8))
    built.eval()
    np.testing.assert_allclose(
        built(Tensor(x)).data, imported.module.eval()(Tensor(x)).data, rtol=0, atol=1e-12
    )


def test_with_data_and_train_sections_the_model_file_trains_and_exports(
    digits_onnx, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    run_cli(["import", str(digits_onnx)], capsys)  # default: digits.tg here
    model_file = tmp_path / "digits.tg"
    model_file.write_text(model_file.read_text() + SECTIONS)
    run_cli(["run", str(model_file)], capsys)
    out = run_cli(["export", str(model_file), "-o", str(tmp_path / "digits.py")], capsys)
    assert (tmp_path / "digits.py").is_file(), out.out


def test_existing_files_are_replaced_only_with_force(digits_onnx, tmp_path, capsys):
    target = tmp_path / "digits.tg"
    run_cli(["import", str(digits_onnx), "-o", str(target)], capsys)
    (tmp_path / "digits.weights.npz").write_bytes(b"old")
    refused = run_cli(["import", str(digits_onnx), "-o", str(target)], capsys, expected=2)
    assert "exists; use --force" in refused.err
    assert (tmp_path / "digits.weights.npz").read_bytes() == b"old"
    run_cli(["import", str(digits_onnx), "-o", str(target), "--force"], capsys)
    run_cli(["check", str(target)], capsys)


def test_an_unsupported_operator_writes_nothing(tmp_path, capsys):
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Erf", ["r"], ["y"], name="/act/Erf"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
    )
    path = tmp_path / "erf.onnx"
    onnx.save(helper.make_model(graph), str(path))
    out = run_cli(["import", str(path), "-o", str(tmp_path / "erf.tg")], capsys, expected=2)
    assert out.err.strip().endswith("unsupported operator 'Erf' at node '/act/Erf'")
    assert [p.name for p in tmp_path.iterdir()] == ["erf.onnx"]


def test_a_pytorch_module_class_in_a_python_file(tmp_path, capsys):
    (tmp_path / "net.py").write_text(
        "import torch\n"
        "from torch import nn\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())\n"
        "        self.head = nn.Linear(4, 2)\n\n"
        "    def forward(self, x):\n"
        "        return self.head(self.body(x).mean((2, 3)))\n"
    )
    source = f"{tmp_path / 'net.py'}:Net"
    missing = run_cli(["import", source], capsys, expected=2)
    assert "--input-shape" in missing.err
    target = tmp_path / "net.tg"
    run_cli(["import", source, "--input-shape", "3x6x6", "-o", str(target)], capsys)
    text = target.read_text()
    assert "network Net(input=(3, 6, 6)" in text and "body_0 = conv2d(4, 3)" in text
    run_cli(["step", str(target), "--all"], capsys)


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet", "everything"])
def test_written_model_files_are_in_the_formatters_layout(name, tmp_path):
    model, shape = make(name)
    path = open_as_model_file(
        str(export(model.eval(), np.zeros((2, *shape)), tmp_path / f"{name}.onnx", "legacy")),
        tmp_path,
    )
    text = path.read_text()
    assert format_source(text) == text
    assert path.with_name(f"{name}.weights.npz").is_file()
