"""Syntax colours for model files. The words and patterns come from the grammar's own
terminals (dsl/grammar.lark), so a keyword added to the language is coloured at once."""

from __future__ import annotations

import re
from functools import cache

from lark.lexer import PatternStr
from PySide6.QtGui import QColor, QFont, QSyntaxHighlighter, QTextCharFormat, QTextDocument
from topograd.dsl.parser import terminals as grammar_terminals
from topograd.dsl.values import LITERALS
from topograd.gui.diagnostics import qt_offset

PATTERN_TERMINALS = ("COMMENT", "STRING", "NUMBER", "NAME")
"""The grammar's regular-expression terminals that get a colour, tried in this order."""

KIND_OF_TERMINAL = {"COMMENT": "comment", "STRING": "string", "NUMBER": "number"}

PUNCTUATION = frozenset("()[]{},")
"""Literal terminals left in the text's own colour: brackets and commas are not operators."""

# (colour, bold, italic) per kind, chosen to read well on a light background.
STYLES = {
    "keyword": ("#0033b3", True, False),
    "number": ("#1750eb", False, False),
    "string": ("#067d17", False, False),
    "comment": ("#8c8c8c", False, True),
    "call": ("#00627a", False, False),
    "constant": ("#871094", False, False),
    "operator": ("#6b4e16", False, False),
}
# ... and on a dark one.
DARK_STYLES = {
    "keyword": ("#7aa2f7", True, False),
    "number": ("#6ab0f3", False, False),
    "string": ("#8bc34a", False, False),
    "comment": ("#8c8c8c", False, True),
    "call": ("#4fc1c9", False, False),
    "constant": ("#d19ad6", False, False),
    "operator": ("#d7ba7d", False, False),
}


@cache
def _grammar_words() -> tuple[re.Pattern, frozenset[str]]:
    """One scanner over the grammar's terminals, and the keywords (its literal words)."""
    terminals = grammar_terminals()
    literals = [p.value for p in terminals.values() if isinstance(p, PatternStr)]
    keywords = frozenset(word for word in literals if word.isidentifier())
    operators = sorted((s for s in literals if not s.isidentifier()), key=len, reverse=True)
    groups = [f"(?P<{name}>{terminals[name].to_regexp()})" for name in PATTERN_TERMINALS]
    groups.append("(?P<OPERATOR>" + "|".join(re.escape(s) for s in operators) + ")")
    return re.compile("|".join(groups)), keywords


def keywords() -> frozenset[str]:
    """The language's reserved words: statement and section keywords."""
    return _grammar_words()[1]


def classify(line: str) -> list[tuple[int, int, str]]:
    """The coloured pieces of one line as (start, end, kind), in code points; kinds are the
    keys of STYLES. Lines are independent: no token of the language spans a newline."""
    scanner, reserved = _grammar_words()
    pieces = []
    for match in scanner.finditer(line):
        terminal, text = match.lastgroup, match.group()
        if terminal == "NAME":
            kind = _name_kind(text, line, match.end(), reserved)
        elif terminal == "OPERATOR":
            kind = None if text in PUNCTUATION else "operator"
        else:
            kind = KIND_OF_TERMINAL[terminal]
        if kind is not None:
            pieces.append((match.start(), match.end(), kind))
    return pieces


def _name_kind(name: str, line: str, end: int, reserved: frozenset[str]) -> str | None:
    if name in reserved:
        return "keyword"
    if name in LITERALS:
        return "constant"
    if line[end:].lstrip(" \t").startswith("("):
        return "call"
    return None


def text_format(kind: str, dark: bool = False) -> QTextCharFormat:
    """The character format of one kind of piece (on a dark background with `dark`)."""
    colour, bold, italic = (DARK_STYLES if dark else STYLES)[kind]
    result = QTextCharFormat()
    result.setForeground(QColor(colour))
    if bold:
        result.setFontWeight(QFont.Weight.Bold)
    result.setFontItalic(italic)
    return result


class ModelHighlighter(QSyntaxHighlighter):
    """Colours a model file as it is typed: keywords, numbers, strings, comments, calls."""

    def __init__(self, document: QTextDocument, dark: bool = False):
        super().__init__(document)
        self.dark = dark
        self.formats = {kind: text_format(kind, dark) for kind in STYLES}

    def set_dark(self, dark: bool) -> None:
        """Colour for a dark background (or a light one) from now on."""
        if dark != self.dark:
            self.dark = dark
            self.formats = {kind: text_format(kind, dark) for kind in STYLES}
            self.rehighlight()

    def highlightBlock(self, text: str) -> None:
        for start, end, kind in classify(text):
            first = qt_offset(text, start)
            self.setFormat(first, qt_offset(text, end) - first, self.formats[kind])
