"""The editor's view of a model file's errors: parse and check the text exactly as the CLI
does, and say where each problem falls in the text Qt holds. Pure: no Qt.

>>> diagnosis = diagnose("network n(input=4) {\\n  lienar(10)\\n}\\n", "n.tg")
>>> [(p.pos.line, p.pos.column, p.message) for p in diagnosis.problems]
[(2, 3, "unknown layer 'lienar'")]
"""

from __future__ import annotations

from dataclasses import dataclass

from topograd.dsl import DslError, Source, Spec, check, parse
from topograd.dsl.errors import Problem


@dataclass(frozen=True)
class Diagnosis:
    """What checking a text found: the Spec when it is valid, else every problem."""

    spec: Spec | None
    source: Source
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        """True when the text parses and checks without a problem."""
        return not self.problems


def diagnose(text: str, name: str) -> Diagnosis:
    """Parse and check `text` as the file `name` (relative data paths resolve next to it).
    A language error becomes the Diagnosis's problems; anything else is a bug and raises."""
    source = Source(name, text)
    try:
        spec = check(parse(text, name), source)
    except DslError as error:
        return Diagnosis(None, error.source, tuple(error.problems))
    return Diagnosis(spec, source, ())


def describe(problems) -> str:
    """A tooltip's text: each problem's message, with its hint on the next line."""
    return "\n\n".join(
        problem.message + (f"\nhint: {problem.hint}" if problem.hint else "")
        for problem in problems
    )


def qt_offset(line_text: str, index: int) -> int:
    """Where the `index`-th character of a line (0-based, in code points, as the parser
    counts) lies in Qt's UTF-16 units, which count a character beyond U+FFFF twice."""
    head = line_text[:index]
    if head.isascii():
        return len(head)
    return len(head.encode("utf-16-le")) // 2
