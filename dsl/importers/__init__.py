"""Open existing models: PyTorch modules (through torch.fx) and ONNX files, as engine modules
with the same weights, and as model files (`topograd import`).

>>> import torch
>>> from topograd.dsl.importers import from_torch
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh()).double()
>>> model = from_torch(net, torch.zeros(4, 3, dtype=torch.float64))
>>> [name for name, _ in model.named_parameters()]
['0.weight', '0.bias']

`from_torch` needs PyTorch and `from_onnx` the onnx package; each is imported only when
called. `import_torch` and `import_onnx` return an `Imported` record: the module, the shape
of one example, a name, where it came from, and each parameter's name in the source.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from topograd.dsl.importers.common import (
    Imported,
    ModelImportError,
    UnsupportedOperatorError,
)
from topograd.dsl.importers.writer import model_text, weights_path, write_model


def import_torch(module, example_input, *, name: str | None = None) -> Imported:
    """A PyTorch module traced by torch.fx on `example_input` (one batch), as an Imported
    record (see dsl.importers.fx)."""
    from topograd.dsl.importers.fx import import_torch as translate

    return translate(module, example_input, name=name)


def import_onnx(path, *, input_shape=None, name: str | None = None) -> Imported:
    """An ONNX file as an Imported record (see dsl.importers.onnx_file); `input_shape` is one
    example's shape where the file leaves it open."""
    from topograd.dsl.importers.onnx_file import import_onnx as translate

    return translate(path, input_shape=input_shape, name=name)


def from_torch(module, example_input):
    """The engine module for a PyTorch module: the same layers, weights and train/eval
    modes, traced by torch.fx on `example_input` (one batch; its dtype is the model's)."""
    return import_torch(module, example_input).module


def from_onnx(path, *, input_shape=None):
    """The engine module for an ONNX file: the same layers and weights, read with the onnx
    package (nothing is unpickled)."""
    return import_onnx(path, input_shape=input_shape).module


def import_source(source: str, *, input_shape=None, name: str | None = None) -> Imported:
    """What `topograd import SOURCE` reads: an ONNX file (`model.onnx`), or a PyTorch module
    class in a Python file (`file.py:ClassName`, built without arguments, in float64, traced
    on a batch of two examples of `input_shape`)."""
    if ".py:" in source:
        from topograd.dsl.importers.python_file import import_python

        return import_python(source, input_shape, name=name)
    if Path(source).suffix.lower() != ".onnx":
        raise ModelImportError(
            f"{source}: import an ONNX file (model.onnx) or a PyTorch module (file.py:ClassName)"
        )
    return import_onnx(source, input_shape=input_shape, name=name)


def open_as_model_file(source: str, folder=None, *, input_shape=None) -> Path:
    """Import `source` (see import_source) into a model file and its weights in `folder`
    (a new temporary folder by default): what `topograd gui model.onnx` opens. Returns the
    model file's path."""
    imported = import_source(source, input_shape=input_shape)
    folder = Path(tempfile.mkdtemp(prefix="topograd-import-")) if folder is None else Path(folder)
    output = folder / f"{imported.name}.tg"
    write_model(imported, output, force=True)
    return output


__all__ = [
    "Imported",
    "ModelImportError",
    "UnsupportedOperatorError",
    "from_onnx",
    "from_torch",
    "import_onnx",
    "import_source",
    "import_torch",
    "model_text",
    "open_as_model_file",
    "weights_path",
    "write_model",
]
