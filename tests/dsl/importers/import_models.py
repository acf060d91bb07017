"""What the importer tests share: the PyTorch models of the issue's acceptance (an MLP with
batch norm and dropout, a small CNN with a grouped convolution, a ResNet-style model with two
residual blocks, one with a projection shortcut), a model with every other supported layer,
ONNX export, and the comparison of an engine model with PyTorch's in float64."""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from topograd.dsl import build, load, read_source
from topograd.dsl.cli import main
from topograd.engine import Tensor
from torch import nn

TOLERANCE = 1e-9


class MLP(nn.Module):
    def __init__(self, p=0.5):
        super().__init__()
        self.fc1 = nn.Linear(6, 16)
        self.bn1 = nn.BatchNorm1d(16)
        self.drop = nn.Dropout(p)
        self.fc2 = nn.Linear(16, 8)
        self.bn2 = nn.BatchNorm1d(8, momentum=0.3)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        x = self.drop(torch.relu(self.bn1(self.fc1(x))))
        x = torch.tanh(self.bn2(self.fc2(x)))
        return self.out(x)


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.grouped = nn.Conv2d(8, 12, 3, padding=2, dilation=2, groups=4)
        self.pool = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(12, 6, 3, stride=2, padding=1, bias=False)
        self.head = nn.Linear(6 * 2 * 2, 5)

    def forward(self, x):
        x = F.relu(self.bn(self.conv1(x)))
        x = self.pool(F.relu(self.grouped(x)))
        x = torch.sigmoid(self.conv3(x))
        return self.head(x.view(x.size(0), -1))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.layer1 = Block(8, 8, 1)
        self.layer2 = Block(8, 16, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.pool(x), 1))


class Everything(nn.Module):
    """The supported layers the acceptance models leave out."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gn = nn.GroupNorm(2, 8)
        self.ln = nn.LayerNorm(6)
        self.avg = nn.AvgPool2d(3, stride=2, padding=1)
        self.branch = nn.Conv2d(8, 4, 1)
        self.fc = nn.Linear(12 * 3 * 3, 10)
        self.norm = nn.LayerNorm(10)

    def forward(self, x):
        x = F.gelu(self.gn(self.conv(x)))
        x = F.leaky_relu(self.ln(x), 0.2)
        x = self.avg(x)
        x = torch.cat([x, F.elu(self.branch(x), 0.7)], dim=1)
        x = F.gelu(x, approximate="tanh")
        x = self.norm(self.fc(torch.flatten(x, 1)))
        return F.log_softmax(torch.softmax(x, dim=1), dim=-1)


MODELS = {
    "mlp": (MLP, (6,)),
    "cnn": (SmallCNN, (2, 8, 8)),
    "resnet": (ResNet, (3, 8, 8)),
    "everything": (Everything, (3, 6, 6)),
}
"""name -> (class, shape of one example)."""


def make(name, seed=0, **options):
    """The named model in float64 with random weights and running statistics."""
    kind, shape = MODELS[name]
    torch.manual_seed(seed)
    model = kind(**options).double()
    randomize(model, seed)
    return model, shape


def randomize(model, seed=0):
    """Every parameter and running statistic drawn at random (so that no two are equal and a
    swapped weight or a wrong layout shows)."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if tensor.dtype != torch.float64:
                continue
            values = rng.normal(size=tuple(tensor.shape))
            if name.endswith("running_var"):
                values = rng.uniform(0.5, 2.0, size=tuple(tensor.shape))
            elif name.endswith("weight") and tensor.ndim == 1:
                values = rng.uniform(0.5, 1.5, size=tuple(tensor.shape))
            tensor.copy_(torch.as_tensor(values))


def example(shape, batch=5, seed=1):
    return np.random.default_rng(seed).normal(size=(batch, *shape))


def export(model, x, path, exporter, training=False, dynamic_batch=False):
    """`torch.onnx.export` with the legacy TorchScript exporter (no constant folding, so that
    batch norm is not fused into the convolution before it) or the default dynamo one (no
    optimization, for the same reason; needs onnxscript); `dynamic_batch` leaves the batch
    size open in the file."""
    inputs = (torch.as_tensor(x),)
    quiet = contextlib.redirect_stdout(io.StringIO())
    with warnings.catch_warnings(), quiet:
        warnings.simplefilter("ignore")
        if exporter == "legacy":
            mode = torch.onnx.TrainingMode.TRAINING if training else torch.onnx.TrainingMode.EVAL
            axes = {"x": {0: "batch"}} if dynamic_batch else None
            torch.onnx.export(
                model,
                inputs,
                str(path),
                dynamo=False,
                do_constant_folding=False,
                training=mode,
                input_names=["x"],
                dynamic_axes=axes,
            )
        else:
            pytest.importorskip("onnxscript")
            shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
            torch.onnx.export(
                model, inputs, str(path), dynamo=True, optimize=False, dynamic_shapes=shapes
            )
    return path


def differences(imported, model, x, seed=2) -> dict[str, float]:
    """The largest differences between the engine model and the PyTorch model: the output, the
    input's gradient and each parameter's gradient (under the source's name) for a random
    upstream gradient, and each running statistic after the pass."""
    engine = imported.module
    upstream_rng = np.random.default_rng(seed)
    model.zero_grad()
    xt = torch.tensor(x, requires_grad=True)
    out_t = model(xt)
    upstream = upstream_rng.normal(size=tuple(out_t.shape))
    out_t.backward(torch.as_tensor(upstream))
    xe = Tensor(x, requires_grad=True)
    out_e = engine(xe)
    out_e.backward(upstream)
    found = {
        "output": _largest(out_e.data, out_t.detach().numpy()),
        "input grad": _largest(xe.grad, xt.grad.numpy()),
    }
    torch_state = dict(model.named_parameters())
    torch_buffers = dict(model.named_buffers())
    covered = set()
    for name, parameter in engine.named_parameters():
        source = imported.sources[name]
        grad = parameter.grad.T if name in imported.transposed else parameter.grad
        found[f"{source} grad"] = _largest(grad, torch_state[source].grad.numpy())
        covered.add(source)
    for name, buffer in engine.named_buffers():
        source = imported.sources.get(name)
        if source in torch_buffers:
            found[source] = _largest(buffer, torch_buffers[source].numpy())
    missing = set(torch_state) - covered
    assert not missing, f"parameters without an engine counterpart: {sorted(missing)}"
    return found


def _largest(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max(initial=0.0))


def assert_close(found: dict[str, float], tolerance=TOLERANCE) -> None:
    worst = max(found, key=found.get)
    assert found[worst] <= tolerance, f"{worst} differs by {found[worst]:.3g}"


def run_cli(argv, capsys, expected=0):
    """Run `topograd ARGV`; its captured output, after checking the exit code."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert code == expected, captured.err
    assert "Traceback" not in captured.err
    return captured


def rebuilt(path):
    """The model file's objects, built without the command line."""
    source = read_source(path)
    return build(load(source), source)
