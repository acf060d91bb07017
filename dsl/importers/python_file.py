"""A PyTorch module named in a Python file, `file.py:ClassName`, for `topograd import`.

The file runs as a module (its folder first on the import path, so it can import its
neighbours); the name may be an nn.Module subclass (built without arguments), a function
that returns a module, or a module object. The module is converted to float64 and traced
on a batch of two standard-normal examples of the given shape.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from topograd.dsl.importers.common import Imported, ModelImportError


def import_python(source: str, input_shape, *, name: str | None = None) -> Imported:
    """`file.py:Name` traced with torch.fx (see dsl.importers.fx.import_torch)."""
    from topograd.dsl.importers.fx import import_torch, torch

    file_name, _, attribute = source.rpartition(":")
    path = Path(file_name)
    if not path.is_file():
        raise ModelImportError(f"no such file: {path}")
    if not attribute.isidentifier():
        raise ModelImportError(f"{source}: name a class after the colon, e.g. {path}:Net")
    if input_shape is None:
        raise ModelImportError(
            f"{source}: give the shape of one example, e.g. --input-shape 3,32,32"
        )
    namespace = _run(path)
    if not hasattr(namespace, attribute):
        raise ModelImportError(f"{path} defines no {attribute!r}")
    found = getattr(namespace, attribute)
    try:
        module = found() if callable(found) and not isinstance(found, torch.nn.Module) else found
    except Exception as error:  # the user's constructor
        raise ModelImportError(
            f"{attribute}() failed: {type(error).__name__}: {error} (the class is built "
            "without arguments)"
        ) from None
    if not isinstance(module, torch.nn.Module):
        raise ModelImportError(f"{source} is a {type(module).__name__}, not a torch.nn.Module")
    example = torch.randn(
        2, *input_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    return import_torch(module.double(), example, name=name or attribute)


def _run(path: Path):
    """Execute the file as a fresh module (its folder on sys.path while it runs)."""
    spec = importlib.util.spec_from_file_location(f"topograd_import_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ModelImportError(f"{path} is not a Python file")
    namespace = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(namespace)
    except Exception as error:  # the user's file
        raise ModelImportError(f"{path} fails to run: {type(error).__name__}: {error}") from None
    finally:
        sys.path.remove(folder)
    return namespace
