"""`topograd import SOURCE -o model.tg`: an ONNX file or a PyTorch module as a model file.

SOURCE is `model.onnx` (read with the onnx package) or `file.py:ClassName` (a torch.nn.Module
built without arguments and traced by torch.fx on examples of `--input-shape`). The model file
and its weights (`model.weights.npz`, beside it) are written together or not at all; `run`,
`check`, `step`, `gui` and `export` take the model file. An operator without an engine
counterpart is refused, each one named with its node, and nothing is written then (exit 2).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from topograd.dsl.commands.common import OK, USAGE, fail


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "import",
        help="turn an ONNX file or a PyTorch module into a model file with its weights",
        description="Write a model file (.tg) for an ONNX file (model.onnx) or a PyTorch "
        "module class (file.py:ClassName), with the weights beside it (<name>.weights.npz). "
        "Supported: Linear, Conv2d, BatchNorm, LayerNorm, GroupNorm, ReLU, LeakyReLU, ELU, "
        "Sigmoid, Tanh, GELU, Dropout, pooling, Flatten, Reshape, Add, Concat, Softmax, "
        "LogSoftmax; anything else is refused by name.",
    )
    parser.add_argument("source", help="model.onnx, or file.py:ClassName for a PyTorch module")
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="the model file to write (default: <source name>.tg in the current folder); its "
        "weights go beside it as <stem>.weights.npz",
    )
    parser.add_argument(
        "--input-shape",
        type=shape,
        metavar="C,H,W",
        help="the shape of one example (needed for a PyTorch module, and for an ONNX file "
        "that leaves sizes open)",
    )
    parser.add_argument("--name", help="the network's name in the model file")
    parser.add_argument("--force", action="store_true", help="replace existing files")


def shape(text: str) -> tuple[int, ...]:
    """'3,32,32', '3x32x32' or '(3, 32, 32)' as a tuple of positive ints."""
    import argparse

    parts = [p for p in re.split(r"[,x\s()]+", text.strip()) if p]
    if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected sizes like 3,32,32, got {text!r}")
    return tuple(int(p) for p in parts)


def run(args) -> int:
    from topograd.dsl.importers import ModelImportError, import_source, write_model
    from topograd.dsl.torch_backend import TorchMissingError

    if args.output:
        output = Path(args.output)
    else:
        stem = Path(args.source.rpartition(":")[0] if ".py:" in args.source else args.source).stem
        output = Path(f"{stem}.tg")
    try:
        imported = import_source(args.source, input_shape=args.input_shape, name=args.name)
        model_file, weights = write_model(imported, output, force=args.force)
    except ModelImportError as error:
        return import_failed(args.source, error)
    except TorchMissingError as error:
        return fail(str(error))
    print(f"wrote {model_file} and {weights}")
    print(f"step through it: topograd step {model_file}  (or: topograd gui {model_file})")
    return OK


def import_failed(source: str, error) -> int:
    """Print why `source` could not be imported (one line per unsupported operator)."""
    lines = str(error).splitlines()
    if len(lines) == 1:
        return fail(f"cannot import {source}: {lines[0]}")
    fail(f"cannot import {source}:")
    for line in lines:
        print(f"  {line}", file=sys.stderr)
    return USAGE
