"""Golden error messages: what a person sees for each kind of mistake in a model file.

Each tests/dsl/golden/NAME.tg holds one kind of mistake (a few hold several, to show that
the checker reports every problem in one pass), and NAME.err the exact text of the error
(`DslError.render()`), with the file called `NAME.tg` so that the text does not depend on
where the repository lives. Files named syntax_*.tg must fail in the parser, the others in
the checker.

After an intended change of wording, rewrite the .err files instead of comparing them:

    TOPOGRAD_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/dsl/test_golden.py

and read the diff (`git diff tests/dsl/golden`) as a user would before committing it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from topograd import dsl

GOLDEN = Path(__file__).resolve().parent / "golden"
CASES = sorted(GOLDEN.glob("*.tg"))
UPDATE = os.environ.get("TOPOGRAD_UPDATE_GOLDEN") == "1"


def failure(path: Path) -> dsl.DslError | None:
    """The error that loading (and, for a network, building) the file raises, or None."""
    source = dsl.Source(path.name, path.read_text(encoding="utf-8"))
    try:
        spec = dsl.load(source)
        if spec.network is not None:
            dsl.build(spec, source)
    except dsl.DslError as error:
        return error
    return None


def test_there_are_enough_golden_files():
    assert len(CASES) >= 20
    if not UPDATE:  # (an update run writes the missing ones)
        errs = {path.stem for path in GOLDEN.glob("*.err")}
        assert errs == {path.stem for path in CASES}, "every NAME.tg has its NAME.err, and back"


@pytest.mark.parametrize("path", CASES, ids=lambda path: path.stem)
def test_error_text_matches_golden(path):
    error = failure(path)
    assert error is not None, f"{path.name} should be wrong, but it loads"
    expected_kind = dsl.DslSyntaxError if path.stem.startswith("syntax_") else dsl.DslCheckError
    assert isinstance(error, expected_kind), f"{type(error).__name__}: {error.render()}"
    text = error.render() + "\n"
    golden = path.with_suffix(".err")
    if UPDATE:
        golden.write_text(text, encoding="utf-8")
        return
    assert golden.exists(), f"no {golden.name}: run with TOPOGRAD_UPDATE_GOLDEN=1 to write it"
    assert text == golden.read_text(encoding="utf-8")
    assert text.startswith(f"{path.name}:"), "every message starts with the file's name"
