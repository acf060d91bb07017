"""What the command-line tests share: a file's objects built without the CLI, and one call of
the CLI that must exit as expected without a traceback."""

from __future__ import annotations

from topograd.dsl import load, read_source
from topograd.dsl.build import build
from topograd.dsl.cli import main


def rebuilt(path):
    """The file's objects, built here without the CLI."""
    source = read_source(path)
    return build(load(source), source)


def run_cli(argv, capsys, expected=0):
    """Run `topograd ARGV`; its captured output, after checking the exit code."""
    code = main(argv)
    captured = capsys.readouterr()
    assert code == expected, captured.err
    assert "Traceback" not in captured.err
    return captured
