"""What every command shares: loading a file with its errors printed, and the exit codes."""

from __future__ import annotations

import sys
from pathlib import Path

from topograd.dsl import DslError, Source, load, read_source
from topograd.dsl.spec import Spec

OK, FAILED, USAGE = 0, 1, 2


def fail(message: str) -> int:
    """Print `topograd: message` on stderr; the usage exit code."""
    print(f"topograd: {message}", file=sys.stderr)
    return USAGE


def source_of(path) -> Source | None:
    """The file's Source, or None after printing why it cannot be read."""
    path = Path(path)
    try:
        return read_source(path)
    except FileNotFoundError:
        fail(f"no such file: {path}")
    except IsADirectoryError:
        fail(f"{path} is a folder, not a model file")
    except UnicodeDecodeError:
        fail(f"{path} is not UTF-8 text")
    except OSError as error:
        fail(f"cannot read {path}: {error.strerror}")
    return None


def load_spec(path, overrides: dict | None = None) -> tuple[Spec | None, Source | None]:
    """Parse and check `path`; on any problem print them all and return (None, source)."""
    source = source_of(path)
    if source is None:
        return None, None
    try:
        return load(source, overrides), source
    except DslError as error:
        print(error.render(), file=sys.stderr)
        count = len(error.problems)
        print(f"{count} error{'s' if count != 1 else ''} in {source.name}", file=sys.stderr)
        return None, source
