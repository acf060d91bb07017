"""The topograd model language: parse -> check -> build.

>>> from topograd.dsl import parse, check, Source
>>> text = "graph neuron { input x = 2.0  param w = -3.0  output y = tanh(x * w) }"
>>> spec = check(parse(text, "neuron.tg"), Source("neuron.tg", text))
>>> [g.name for g in spec.graphs]
['neuron']
"""

from __future__ import annotations

from pathlib import Path

from topograd.dsl.build import Built, build
from topograd.dsl.check import check
from topograd.dsl.errors import DslBuildError, DslCheckError, DslError, DslSyntaxError, Source
from topograd.dsl.parser import parse
from topograd.dsl.spec import Spec


def read_source(path) -> Source:
    """A model file's text; an unreadable file is reported as a usage error by the CLI."""
    path = Path(path)
    return Source(str(path), path.read_text(encoding="utf-8-sig"))  # a BOM is not text


def load(path_or_source, overrides: dict | None = None) -> Spec:
    """Parse and check a file (a path or a Source); raises DslError with every problem."""
    source = path_or_source if isinstance(path_or_source, Source) else read_source(path_or_source)
    return check(parse(source.text, source.name), source, overrides)


__all__ = [
    "Built",
    "DslBuildError",
    "DslCheckError",
    "DslError",
    "DslSyntaxError",
    "Source",
    "Spec",
    "build",
    "check",
    "load",
    "parse",
    "read_source",
]
