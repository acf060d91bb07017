"""Binding a call's arguments to an engine entry's signature, with the checks a person needs.

A registry entry (a layer class, an optimizer, a loss function) declares its options in its
Python signature; this module reads that signature, so a new engine entry is usable from a
model file with no change here. It reports unknown options (with the closest known one),
too many positional arguments, missing required options, wrong types (from annotations and
defaults) and values outside the ranges in RANGES.
"""

from __future__ import annotations

import difflib
import inspect
import math
from dataclasses import dataclass
from functools import cache

from topograd.dsl.values import Ref, Symbol, describe, is_number, plain

HIDDEN = frozenset({"rng", "dtype"})
"""Constructor arguments the language sets itself (the run's generator, the network's dtype)."""


@dataclass(frozen=True)
class Range:
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False

    def contains(self, value) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        if self.high is not None:
            return not (value >= self.high if self.high_open else value > self.high)
        return True

    def text(self) -> str:
        if self.low is not None and self.high is not None:
            left = "(" if self.low_open else "["
            right = ")" if self.high_open else "]"
            return f"in {left}{_num(self.low)}, {_num(self.high)}{right}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {_num(self.low)}"
        return f"{'<' if self.high_open else '<='} {_num(self.high)}"


def _num(value) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


POSITIVE = Range(0, None, low_open=True)
NON_NEGATIVE = Range(0, None)
FRACTION = Range(0, 1, high_open=True)
COUNT = Range(1, None, integer=True)

RANGES: dict[str, Range] = {
    "lr": POSITIVE,
    "max_lr": POSITIVE,
    "base_lr": POSITIVE,
    "lr_max": POSITIVE,
    "lr_min": NON_NEGATIVE,
    "start_lr": POSITIVE,
    "end_lr": POSITIVE,
    "eta_min": NON_NEGATIVE,
    "weight_decay": NON_NEGATIVE,
    "momentum": FRACTION,
    "dampening": Range(0, 1),
    "eps": POSITIVE,
    "betas": FRACTION,
    "rho": Range(0, 1),
    "keep": Range(0, 1, low_open=True),
    "drop": FRACTION,
    "gamma": POSITIVE,
    "T_0": COUNT,
    "T_max": COUNT,
    "T_mult": COUNT,
    "step_size": COUNT,
    "warmup_steps": Range(0, None, integer=True),
    "decay_rate": NON_NEGATIVE,
    "out_features": COUNT,
    "in_features": COUNT,
    "out_channels": COUNT,
    "in_channels": COUNT,
    "num_features": COUNT,
    "num_groups": COUNT,
    "kernel_size": COUNT,
    "stride": COUNT,
    "padding": Range(0, None, integer=True),
    "pieces": Range(2, None, integer=True),
    "negative_slope": NON_NEGATIVE,
    "margin": POSITIVE,
    "noise": NON_NEGATIVE,
    "n": COUNT,
}


@dataclass
class Binding:
    """The outcome: keyword arguments for the engine, and problems as (where, message, hint)."""

    kwargs: dict
    problems: list


@cache
def signature(target) -> inspect.Signature:
    """inspect.signature, worked out once per engine entry: a deep network asks about the
    same few layer classes thousands of times, and each fresh look costs about 60 us."""
    return inspect.signature(target)


def signature_parameters(target, skip: int) -> list[inspect.Parameter]:
    """The parameters a file may set: after the first `skip`, without the hidden ones."""
    parameters = list(signature(target).parameters.values())
    if parameters and parameters[0].name == "self":
        parameters = parameters[1:]
    return [p for p in parameters[skip:] if p.name not in HIDDEN]


def _annotation(parameter: inspect.Parameter) -> str:
    annotation = parameter.annotation
    if annotation is inspect.Parameter.empty:
        return ""
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")


def expected_kind(parameter: inspect.Parameter) -> str | None:
    """ "bool", "int", "number", "text", "list" or None (anything) for a parameter."""
    default = parameter.default
    annotation = _annotation(parameter).replace(" ", "")
    if isinstance(default, bool) or annotation == "bool":
        return "bool"
    if annotation in ("int", "int|None") or (type(default) is int and "float" not in annotation):
        return "int" if annotation != "int|None" else "int?"
    if annotation in ("float", "float|None") or type(default) is float:
        return "number" if "None" not in annotation else "number?"
    if annotation == "str" or isinstance(default, str):
        return "text"
    if isinstance(default, tuple) or annotation.startswith("tuple"):
        return "list"
    return None


def type_problem(name: str, value, kind: str | None) -> str | None:
    """Why `value` does not fit `kind`, or None."""
    if kind is None:
        return None
    if kind.endswith("?"):
        if value is None:
            return None
        kind = kind[:-1]
    if kind == "bool" and not isinstance(value, bool):
        return f"{name} must be true or false, got {describe(value)}"
    if kind == "int" and not (isinstance(value, int) and not isinstance(value, bool)):
        return f"{name} must be a whole number, got {describe(value)}"
    if kind == "number" and not is_number(value):
        return f"{name} must be a number, got {describe(value)}"
    if kind == "text" and not isinstance(value, str | Symbol):
        return f"{name} must be a name or a string, got {describe(value)}"
    if kind == "list" and not isinstance(value, tuple):
        return f"{name} must be a list like (0.9, 0.999), got {describe(value)}"
    return None


def range_problem(name: str, value) -> str | None:
    """Why `value` is outside the known range for an option called `name`, or None."""
    rule = RANGES.get(name)
    if rule is None:
        return None
    values = value if isinstance(value, tuple) else (value,)
    for item in values:
        if not is_number(item):
            continue
        if rule.integer and not float(item).is_integer():
            return f"{name} must be a whole number, got {item}"
        if math.isnan(item) or not rule.contains(item):
            return f"{name} must be {rule.text()}, got {item}"
    return None


def suggest(name: str, known) -> str | None:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


def bind(
    ref: Ref,
    target,
    what: str,
    *,
    skip: int = 0,
    inferred: frozenset = frozenset(),
    fillable: frozenset = frozenset(),
    aliases: dict | None = None,
) -> Binding:
    """Match `ref`'s arguments with `target`'s parameters.

    `inferred` names are filled in later (from the previous layer); they take no positional
    argument when the entry has a `fillable` one (`linear(64)` is the output size), but do
    otherwise (`batchnorm(64)` is num_features, compared with the input later). `fillable`
    ones (output sizes, from the data) may be left out; `aliases` map a language option to
    (engine parameter, converter) and hide the engine parameter itself (dropout's keep= and
    drop= for p)."""
    aliases = aliases or {}
    parameters = signature_parameters(target, skip)
    hidden = {engine for engine, _ in aliases.values()}
    named = {p.name: p for p in parameters if p.kind is not p.VAR_POSITIONAL}
    named = {k: v for k, v in named.items() if k not in hidden}
    variadic = any(p.kind is p.VAR_POSITIONAL for p in parameters)
    skipped = inferred if any(p.name in fillable for p in parameters) else frozenset()
    positional = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        and p.name not in skipped
        and p.name not in hidden
    ]
    kwargs, problems = {}, []
    for index, value in enumerate(ref.args):
        where = ref.where(index)
        if index < len(positional):
            parameter = positional[index]
            kwargs[parameter.name] = value
        elif variadic:
            kwargs.setdefault("*", []).append(value)
        else:
            accepted = ", ".join(p.name for p in positional) or "none"
            problems.append(
                (
                    where,
                    f"{what} takes {len(positional)} positional argument"
                    f"{'s' if len(positional) != 1 else ''} ({accepted}), got {len(ref.args)}",
                    "name the others, e.g. key=value",
                )
            )
            break
    for key, value in ref.kwargs:
        where = ref.where(key)
        if key in aliases:
            engine_name, convert = aliases[key]
            if engine_name in kwargs:
                others = [k for k, (e, _) in aliases.items() if e == engine_name]
                problems.append((where, f"{what}: give only one of {', '.join(others)}", None))
                continue
            problem = range_problem(key, value) or type_problem(key, value, "number")
            if problem:
                problems.append((where, f"{what}: {problem}", None))
                kwargs[engine_name] = value  # given, though wrong: not also "needs keep="
                continue
            kwargs[engine_name] = convert(value)
            continue
        if key in hidden:
            spelled = " or ".join(f"{k}=" for k in aliases)
            problems.append(
                (where, f"{what}: {key}= is ambiguous here; write {spelled}", _alias_hint(aliases))
            )
            kwargs[key] = value
            continue
        if key not in named:
            options = sorted(set(named) | set(aliases))
            hint = suggest(key, options)
            listed = ", ".join(options) or "none"
            problems.append((where, f"{what} has no option {key!r} (options: {listed})", hint))
            continue
        if key in kwargs:
            problems.append((where, f"{what}: {key} is given twice", None))
            continue
        kwargs[key] = value
    for key, value in list(kwargs.items()):
        if key == "*":
            continue
        parameter = named.get(key)
        if parameter is None:
            continue  # set through an alias, checked above
        if isinstance(value, Symbol) and expected_kind(parameter) not in ("text", None):
            continue  # reported by the caller as an unknown name
        problem = type_problem(key, value, expected_kind(parameter)) or range_problem(key, value)
        if problem:
            problems.append(
                (
                    ref.where(key if key in ref.options() else _index(ref, key, positional)),
                    f"{what}: {problem}",
                    None,
                )
            )
    for parameter in parameters:
        if (
            parameter.default is parameter.empty
            and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
            and parameter.name not in kwargs
            and parameter.name not in inferred | fillable
            and parameter.name not in hidden
        ):
            problems.append((ref.pos, f"{what} needs {parameter.name}", None))
    if aliases and not any(engine in kwargs for engine in hidden):
        spelled = " or ".join(f"{k}=" for k in aliases)
        problems.append((ref.pos, f"{what} needs {spelled}", None))
    return Binding(
        {k: (plain(v) if k != "*" else [plain(x) for x in v]) for k, v in kwargs.items()}, problems
    )


def _alias_hint(aliases) -> str:
    return "; ".join(f"{key}= is the probability to {key}" for key in aliases)


def _index(ref: Ref, key: str, positional) -> int:
    names = [p.name for p in positional]
    return names.index(key) if key in names else len(ref.args)
