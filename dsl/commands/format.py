"""`topograd fmt FILE...`: print model files in canonical form, check them, or rewrite them.

Exit codes: 0 all formatted (or printed), 1 `--check` found files that would change,
2 a file is missing or does not parse (its located messages are printed).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from topograd.dsl.commands.common import FAILED, OK, USAGE, fail, source_of
from topograd.dsl.errors import DslError
from topograd.dsl.fmt import format_source


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "fmt",
        help="print model files in canonical layout (or --check / --write them)",
        description="Print each model file in the canonical layout: two-space indentation, "
        "one item per line, spaced operators, comments kept. The meaning never changes.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="model files (*.tg)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--check",
        action="store_true",
        help="print nothing for formatted files; list the others and exit 1",
    )
    mode.add_argument(
        "--write", action="store_true", help="rewrite files in place (only those that change)"
    )


def run(args) -> int:
    status = OK
    for path in args.files:
        source = source_of(path)
        if source is None:
            status = USAGE
            continue
        try:
            formatted = format_source(source.text, source.name)
        except DslError as error:
            print(error.render(), file=sys.stderr)
            status = USAGE
            continue
        changed = formatted != source.text
        if args.check:
            if changed:
                print(f"would reformat {path}")
                status = max(status, FAILED)
        elif args.write:
            if changed and not _replace(Path(path), formatted):
                status = USAGE
        else:
            sys.stdout.write(formatted)
    return status


def _replace(path: Path, text: str) -> bool:
    """Write `text` to a temporary file beside `path`, then move it over `path` in one step,
    so that an interrupted run leaves the old file or the new one, never half of one."""
    try:
        mode = path.stat().st_mode & 0o777
        handle, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
    except OSError as error:
        fail(f"cannot write {path}: {error.strerror}")
        return False
    done = False
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            file.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
        done = True
    except OSError as error:
        fail(f"cannot write {path}: {error.strerror}")
    finally:
        if not done:
            Path(temporary).unlink(missing_ok=True)
    if done:
        print(f"reformatted {path}")
    return done
