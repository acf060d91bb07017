"""`topograd gui [FILE]`: the desktop window (gui.app).

The GUI is imported only here and only when asked for, so the command line never needs Qt.
`--steps K --screenshot out.png` opens the window, takes K steps, saves it as a picture and
exits: how the README's pictures are made.
"""

from __future__ import annotations

import importlib

from topograd.dsl.commands import import_model
from topograd.dsl.commands.common import OK, fail, source_of
from topograd.dsl.training import positive_int

NO_QT = (
    "the desktop window needs PySide6: pip install 'topograd[gui]' "
    "(or use topograd step FILE / topograd graph FILE -o graph.svg)"
)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "gui",
        help="open the desktop window",
        description="Open the desktop window on a model file (or on none): edit it, see its "
        "graph, step through the forward and backward passes, train it.",
    )
    parser.add_argument(
        "file",
        nargs="?",
        help="a model file (.tg) to open, or a model to import first: model.onnx or "
        "file.py:ClassName (see topograd import)",
    )
    parser.add_argument(
        "--input-shape",
        type=import_model.shape,
        metavar="C,H,W",
        help="the shape of one example, for an imported model whose file leaves it open",
    )
    parser.add_argument(
        "--steps", type=int, default=0, metavar="K", help="take K steps first (with --screenshot)"
    )
    parser.add_argument(
        "--screenshot", metavar="PNG", help="save the window as a PNG after the steps and exit"
    )
    parser.add_argument(
        "--train",
        type=int,
        default=0,
        metavar="EPOCHS",
        help="train EPOCHS epochs in the window first (with --screenshot)",
    )
    parser.add_argument("--size", type=_size, default=(1500, 920), metavar="WxH")
    groups = parser.add_mutually_exclusive_group()
    groups.add_argument(
        "--collapse", dest="collapse", action="store_const", const=True, help="collapse layers"
    )
    groups.add_argument(
        "--expand", dest="collapse", action="store_const", const=False, help="expand layers"
    )


def _is_foreign(path: str) -> bool:
    """An ONNX file or a PyTorch module (`file.py:ClassName`) rather than a model file."""
    return path.lower().endswith(".onnx") or ".py:" in path


def _imported(source: str, input_shape) -> str | int:
    """The model file `topograd import` would write for `source`, in a new temporary folder
    (its path is printed, to save a copy); an exit code after saying why not."""
    from topograd.dsl.importers import ModelImportError, open_as_model_file
    from topograd.dsl.torch_backend import TorchMissingError

    try:
        path = open_as_model_file(source, input_shape=input_shape)
    except ModelImportError as error:
        return import_model.import_failed(source, error)
    except TorchMissingError as error:
        return fail(str(error))
    print(f"imported {source} as {path} (and its weights beside it)")
    return str(path)


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return positive_int(width), positive_int(height)


def run(args) -> int:
    if args.steps < 0:
        return fail(f"--steps must be >= 0, got {args.steps}")
    if args.steps and args.screenshot is None:
        return fail("--steps goes with --screenshot (the window takes the steps, then saves)")
    if args.train < 0:
        return fail(f"--train must be >= 0, got {args.train}")
    if args.train and args.screenshot is None:
        return fail("--train goes with --screenshot (the window trains, then saves)")
    if args.file is not None and _is_foreign(args.file):
        imported = _imported(args.file, args.input_shape)
        if isinstance(imported, int):
            return imported
        args.file = imported
    if args.file is not None and source_of(args.file) is None:
        return 2
    try:
        app = importlib.import_module("topograd.gui.app")
    except ImportError as error:
        if error.name is None or not error.name.startswith("PySide6"):
            raise  # something else is missing: show what
        return fail(NO_QT)
    extra = {"train": args.train} if args.train else {}
    result = app.main(
        args.file,
        steps=args.steps,
        screenshot=args.screenshot,
        size=args.size,
        collapse=args.collapse,
        **extra,
    )
    return OK if result is None else int(result)
