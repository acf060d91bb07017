"""Operators without an engine counterpart are refused with one clear message each, naming
the operator and the node: all of a model's at once, and nothing else."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import numpy as np
from topograd.dsl.importers import UnsupportedOperatorError, import_onnx, import_torch
from torch import nn


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.LSTM(4, 4, batch_first=True))
        self.weight = nn.Parameter(torch.ones(4, 4, dtype=torch.float64))

    def forward(self, x):
        out, _ = self.encoder(x)
        out = torch.matmul(out, self.weight)
        return out.transpose(1, 2).relu()


def refused(error) -> list[str]:
    return str(error.value).splitlines()


def test_every_unsupported_pytorch_operator_is_named_once():
    model = Recurrent().double()
    with pytest.raises(UnsupportedOperatorError) as error:
        import_torch(model, torch.zeros(2, 3, 4, dtype=torch.float64))
    assert refused(error) == [
        "unsupported operator 'LSTM' at node 'encoder.0'",
        "unsupported operator 'get_attr' at node 'weight': a parameter used directly in forward",
        "unsupported operator 'torch.matmul' at node 'matmul'",
        "unsupported operator 'Tensor.transpose' at node 'transpose'",
    ]
    assert [op for op, _, _ in error.value.problems][:2] == ["LSTM", "get_attr"]


@pytest.mark.parametrize(
    ("forward", "expected"),
    [
        (
            lambda x: torch.matmul(x, x.T),
            [
                "unsupported operator 'Tensor.T' at node 'getattr_1'",
                "unsupported operator 'torch.matmul' at node 'matmul'",
            ],
        ),
        (
            lambda x: x.transpose(0, 1),
            ["unsupported operator 'Tensor.transpose' at node 'transpose'"],
        ),
        (lambda x: x * 2.0, ["unsupported operator 'operator.mul' at node 'mul'"]),
        (
            lambda x: x + 1.0,
            ["unsupported operator 'operator.add' at node 'add': adds a constant to a tensor"],
        ),
        (
            lambda x: torch.cat([x, x], 0),
            [
                "unsupported operator 'torch.cat' at node 'cat': joins along axis 0; only the "
                "channel or feature axis (1) can be joined"
            ],
        ),
        (
            lambda x: x.view(6),
            [
                "unsupported operator 'Tensor.view' at node 'view': reshapes (2, 3) to (6,); only "
                "reshapes that keep the batch axis (the first) can be imported"
            ],
        ),
    ],
    ids=["matmul", "transpose", "mul", "add-constant", "cat-batch", "view-batch"],
)
def test_pytorch_functions_without_a_layer(forward, expected):
    class Module(nn.Module):
        def forward(self, x):
            return forward(x)

    with pytest.raises(UnsupportedOperatorError) as error:
        import_torch(Module(), torch.zeros(2, 3, dtype=torch.float64))
    assert refused(error) == expected


@pytest.mark.parametrize(
    ("layer", "expected"),
    [
        (nn.Conv2d(2, 2, 3, padding_mode="reflect"), "padding_mode='reflect'"),
        (nn.AvgPool2d(3, padding=1, count_include_pad=False), "count_include_pad=False"),
        (nn.MaxPool2d(2, dilation=2), "dilation"),
        (nn.AdaptiveAvgPool2d(2), "output_size 2"),
        (nn.Conv1d(2, 2, 3), "unsupported operator 'Conv1d' at node 'layer'"),
    ],
    ids=["reflect", "count_include_pad", "dilated-pool", "adaptive-2", "conv1d"],
)
def test_layers_with_options_the_engine_lacks(layer, expected):
    class Module(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = layer

        def forward(self, x):
            return self.layer(x)

    x = torch.zeros(2, 2, 6, 6) if not isinstance(layer, nn.Conv1d) else torch.zeros(2, 2, 6)
    with pytest.raises(UnsupportedOperatorError, match=expected):
        import_torch(Module().double(), x.double())


# --- ONNX ---------------------------------------------------------------------------------------
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper


def save(tmp_path, nodes, initializers=(), shape=(2, 3, 6, 6), opset=17):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, list(shape))],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.DOUBLE, None)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in dict(initializers).items()],
    )
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return path


def test_every_unsupported_onnx_operator_is_named_once(tmp_path):
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("LSTM", ["r", "w", "u"], ["h"], name="encoder.0", hidden_size=3),
        helper.make_node("Transpose", ["h"], ["t"], name="/flip/Transpose", perm=[0, 2, 1, 3]),
        helper.make_node("Sqrt", ["c"], ["s"], name="root"),
        helper.make_node("FusedConv", ["t"], ["y"], name="fused", domain="com.microsoft"),
    ]
    path = save(tmp_path, nodes, {"w": np.zeros((1, 12, 6)), "u": np.zeros((1, 12, 3)), "c": 4.0})
    with pytest.raises(UnsupportedOperatorError) as error:
        import_onnx(path)
    assert refused(error) == [
        "unsupported operator 'LSTM' at node 'encoder.0'",
        "unsupported operator 'Transpose' at node '/flip/Transpose'",
        "unsupported operator 'Sqrt' at node 'root': on constants",
        "unsupported operator 'com.microsoft.FusedConv' at node 'fused'",
    ]


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"pads": [0, 0, 1, 1]}, r"padding \[0, 0, 1, 1\] \(only the same on both sides\)"),
        ({"auto_pad": "SAME_UPPER"}, "auto_pad=SAME_UPPER"),
    ],
)
def test_onnx_convolutions_the_engine_cannot_pad(tmp_path, attributes, expected):
    node = helper.make_node(
        "Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3], **attributes
    )
    path = save(tmp_path, [node], {"w": np.zeros((4, 3, 3, 3))})
    with pytest.raises(UnsupportedOperatorError, match=f"'Conv' at node 'conv': {expected}"):
        import_onnx(path)


def test_onnx_arithmetic_on_computed_tensors(tmp_path):
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Mul", ["r", "x"], ["y"], name="product"),
    ]
    with pytest.raises(UnsupportedOperatorError, match="'Mul' at node 'product'"):
        import_onnx(save(tmp_path, nodes))
