"""The `topograd` command line. Today: `topograd demo`; the language's commands come next."""

from __future__ import annotations

import argparse
import runpy
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def _version() -> str:
    try:
        return version("topograd")
    except PackageNotFoundError:
        return "unknown"


def run_demo(arguments) -> int:
    """Run the bundled sample (samples/moons_mlp.py) with the given arguments."""
    script = SAMPLES / "moons_mlp.py"
    if not script.is_file():
        print(f"topograd: the bundled sample is missing: {script}", file=sys.stderr)
        return 2
    module = runpy.run_path(str(script), run_name="topograd_demo")
    return module["main"](arguments)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="topograd", description="An autodiff engine you can see.")
    parser.add_argument("--version", action="version", version=f"topograd {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "demo",
        help="train the bundled sample network on two moons (options: --epochs, --seed, --dot)",
        add_help=False,
    )
    args, rest = parser.parse_known_args(argv)
    if args.command == "demo":
        return run_demo(rest)
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
