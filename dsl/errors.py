"""Language errors: each problem has a location, and is printed as

    file:line:col: error: message
        source line
        ^~~~

`DslError` carries every problem found (the checker does not stop at the first), so a
person fixes a file in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from topograd.dsl.ast import Pos


@dataclass(frozen=True)
class Source:
    """A model file's name and text, kept to quote lines in messages."""

    name: str
    text: str

    def line(self, number: int) -> str:
        lines = self.text.split("\n")  # the parser counts lines by "\n" only
        return lines[number - 1].rstrip("\r") if 1 <= number <= len(lines) else ""


@dataclass(frozen=True)
class Problem:
    """One error at one place; `hint` is printed on its own line after the caret."""

    pos: Pos
    message: str
    hint: str | None = None

    def render(self, source: Source) -> str:
        head = f"{source.name}:{self.pos.line}:{self.pos.column}: error: {self.message}"
        text = source.line(self.pos.line)
        if not text:
            return head + (f"\n    hint: {self.hint}" if self.hint else "")
        width = 1
        if self.pos.end_line == self.pos.line and self.pos.end_column > self.pos.column:
            width = self.pos.end_column - self.pos.column
        caret = " " * (self.pos.column - 1) + "^" + "~" * (width - 1)
        body = f"{head}\n    {text.expandtabs(1)}\n    {caret}"
        return body + (f"\n    hint: {self.hint}" if self.hint else "")


class DslError(Exception):
    """A model file is wrong: every problem found, in file order."""

    def __init__(self, source: Source, problems):
        self.source = source
        self.problems = sorted(problems, key=lambda p: (p.pos.line, p.pos.column))
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(problem.render(self.source) for problem in self.problems)

    def __str__(self):
        return self.render()


class DslSyntaxError(DslError):
    """The text does not parse; one problem, with the tokens that could have come next."""


class DslCheckError(DslError):
    """The text parses but names, options, ranges or shapes are wrong."""


class DslBuildError(DslError):
    """The engine refused a value the checker could not judge (raised while building)."""
