"""`topograd gui [FILE]`: the desktop window, once the `gui.app` module exists.

The GUI is imported only here and only when asked for, so the command line never needs Qt.
"""

from __future__ import annotations

import importlib

from dsl.commands.common import OK, fail

NOT_BUILT = (
    "the desktop window is not built yet; use topograd step FILE or "
    "topograd graph FILE -o graph.svg"
)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "gui",
        help="open the desktop window",
        description="Open the desktop window on a model file (or on none).",
    )
    parser.add_argument("file", nargs="?", help="a model file (.tg) to open")


def run(args) -> int:
    try:
        app = importlib.import_module("gui.app")
    except ImportError as error:
        if error.name not in ("gui", "gui.app"):
            raise  # the window exists but something it needs is missing: show what
        return fail(NOT_BUILT)
    result = app.main(args.file)
    return OK if result is None else int(result)
