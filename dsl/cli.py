"""The `topograd` command line: `topograd COMMAND FILE [options]` (see `topograd -h`)."""

from __future__ import annotations

import argparse
import importlib
import os
import runpy
import sys
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from topograd.dsl import allocator
from topograd.dsl.commands import COMMANDS
from topograd.dsl.commands.common import USAGE
from topograd.dsl.plugins import PluginError, load_installed_plugins, load_plugin
from topograd.engine.train.checks import InitialLossWarning

SAMPLES = Path(__file__).resolve().parent.parent / "samples"

MODULES = {"eval": "evaluate", "fmt": "format", "import": "import_model"}


def _version() -> str:
    try:
        return version("topograd")
    except PackageNotFoundError:
        return "unknown"


def run_demo(arguments) -> int:
    """Run the engine-only sample (samples/moons_mlp.py) with the given arguments."""
    script = SAMPLES / "moons_mlp.py"
    if not script.is_file():
        print(f"topograd: the bundled sample is missing: {script}", file=sys.stderr)
        return USAGE
    module = runpy.run_path(str(script), run_name="topograd_demo")
    return module["main"](arguments)


def _command(name: str):
    return importlib.import_module(f"topograd.dsl.commands.{MODULES.get(name, name)}")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="topograd",
        description="Write a model in a small text language, train it, check its gradients, "
        "draw its graph and step through it.",
    )
    top.add_argument("--version", action="version", version=f"topograd {_version()}")
    _add_plugin_option(top, "plugins")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        _command(name).add_parser(commands)
    for command in commands.choices.values():  # `topograd run FILE --plugin P` works too
        _add_plugin_option(command, "command_plugins")
    commands.add_parser(
        "demo", help="train the engine-only moons sample (samples/moons_mlp.py)", add_help=False
    )
    return top


def _add_plugin_option(parser, dest: str) -> None:
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        dest=dest,
        metavar="PLUGIN",
        help="a Python file or module that registers custom ops before the model file is "
        "read (repeatable); installed packages register theirs with the entry point group "
        "topograd.plugins",
    )


def load_plugins(args) -> bool:
    """Load installed plugins and those named with --plugin; False after printing why not."""
    for warning in load_installed_plugins():
        print(f"topograd: warning: {warning}", file=sys.stderr)
    for spec in [*args.plugins, *getattr(args, "command_plugins", [])]:
        try:
            load_plugin(spec)
        except PluginError as error:
            print(f"topograd: {error}", file=sys.stderr)
            return False
    return True


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line for a person (`topograd: warning: ...`), not Python's source
    path and line; fit's initial-loss warning is left out, as fit prints it in its log."""
    if issubclass(category, InitialLossWarning):
        return
    print(f"topograd: warning: {message}", file=file or sys.stderr)


def main(argv=None) -> int:
    allocator.keep_freed_memory()  # training steps reuse freed arrays (dsl/allocator.py)
    shown, warnings.showwarning = warnings.showwarning, _show_warning
    try:
        return _main(argv)
    finally:
        warnings.showwarning = shown


def _main(argv) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["demo"]:
        return run_demo(argv[1:])
    try:
        args = parser().parse_args(argv)
    except SystemExit as exit:  # argparse exits 2 on a usage error and 0 for --help
        return int(exit.code or 0)
    if not load_plugins(args):
        return USAGE
    if args.command == "demo":  # `topograd --plugin P demo`
        return run_demo([])
    try:
        return _command(args.command).run(args)
    except KeyboardInterrupt:
        print("topograd: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `topograd step FILE --all | head`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
