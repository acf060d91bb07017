"""A captured step written out as one Python function, so no loop interprets its plan.

`capture.Program` keeps a step as data: per slot, the op, the slots it reads and its
attributes, and the order backward visited the slots in. Walking that data every step costs a
tuple to unpack, list slots to index and a few branches per op. This module writes the same
calls out as straight-line source, once per program, with every value, saved context and
gradient in a local variable, and compiles it. It calls the same forward and VJP functions in
the same order on the same arrays and makes the same decisions (which gradient may be
overwritten or added to in place, which is summed back to its input's shape), so a replay is
the eager step to the last bit; the second call's check compares them.
"""

from __future__ import annotations

from sys import getrefcount

import numpy as np
from topograd.engine.executor import RELEASE_BYTES, Released
from topograd.engine.ops import unbroadcast
from topograd.engine.tensor import unit_gradient

# How a slot gets its value: a leaf's data, an input, a fresh random draw, a buffer read
# again, a constant computed from an input, an op.
LEAF, INPUT, DRAW, FRESH, DERIVED, OP = range(6)


def compile_program(program, forward_plan, backward_plan):
    """`run(arguments, grad_tensors, store) -> loss` for a Program, from its plans (a tuple
    per step with what running it takes, see capture.Program._compile)."""
    source = _Writer()
    source.line("def run(arguments, grad_tensors, store):")
    source.indent = 1
    _forward(program, forward_plan, source)
    source.line(f"loss = v{program.root}")
    _backward(program, backward_plan, source)
    source.line("return loss")
    namespace = dict(source.names)
    code = compile("\n".join(source.lines), f"<replayed step of {program.size} slots>", "exec")
    exec(code, namespace)  # our own source, written above from the plan (no user text)
    return namespace["run"]


class _Writer:
    """Source lines and the objects they refer to by name."""

    def __init__(self):
        self.lines = []
        self.indent = 0
        self.names = {
            "np": np,
            "Released": Released,
            "unbroadcast": unbroadcast,
            "unit_gradient": unit_gradient,
            "getrefcount": getrefcount,
            "RELEASE_BYTES": RELEASE_BYTES,
            "_f64": _f64,
            "_scalars": _scalars,
            "_leaf": _leaf,
            "_gather": _gather,
            "_gather_leaf": _gather_leaf,
            "_fill": _fill,
        }

    def line(self, text: str) -> None:
        self.lines.append("    " * self.indent + text)

    def name(self, prefix: str, position: int, value) -> str:
        """A global of the generated function bound to `value`."""
        label = f"{prefix}{position}"
        self.names[label] = value
        return label


def _forward(program, plan, code):
    for step in plan:
        kind, position = step[0], step[1]
        if kind == OP:
            _, _, forward, sources, attrs, substituted, saves, convert, releases = step
            wrap = "_f64({})" if convert else "{}"
            arguments = [wrap.format(f"v{s}") for s in sources]
            if substituted:
                arguments.append(
                    f"**_fill({code.name('A', position, attrs)}, "
                    f"{code.name('U', position, substituted)}, arguments)"
                )
            elif attrs:
                arguments.append(f"**{code.name('A', position, attrs)}")
            call = f"{code.name('F', position, forward)}({', '.join(arguments)})"
            target = f"v{position}, c{position}" if saves else f"v{position}"
            code.line(f"{target} = {call}")
            for source in releases:
                code.line(f"v{source} = Released(v{source})  # only its shape is read later")
        elif kind == LEAF:
            code.line(f"v{position} = {code.name('L', position, step[2])}._data")
        elif kind == INPUT:
            code.line(f"v{position} = arguments[{step[2]}]")
        elif kind == DRAW:
            generator, make = step[2]
            code.line(
                f"v{position} = {code.name('M', position, make)}"
                f"({code.name('G', position, generator)}())"
            )
        elif kind == DERIVED:
            make, source = step[2]
            code.line(f"v{position} = {code.name('M', position, make)}(arguments[{source}])")
        elif kind == FRESH:
            code.line(f"v{position} = {code.name('R', position, step[2])}()")
        else:
            raise AssertionError(f"unknown step kind {kind}")
    for number, (apply, sources, _) in enumerate(program.effects):
        parts = [f"v{s}" if part == "value" else f"c{s}" for s, part in sources]
        code.line(f"{code.name('E', number, apply)}({', '.join(parts)})")


def _backward(program, plan, code):
    targets_of = {source for entry in plan for _, source, _, _ in entry[7]}
    for position in sorted(targets_of - {program.root}):
        code.line(f"g{position} = None")
    code.line(f"g{program.root} = unit_gradient(v{program.root})")
    for entry in plan:
        position, vjp, sources, static, substituted, saves, convert, targets, overwrites = entry
        if vjp is None:  # a leaf (a parameter or an input that wants its gradient)
            code.line(f"g{position} = _leaf(grad_tensors, {position}, g{position}, store)")
            continue
        code.line(f"if g{position} is not None:")
        code.indent += 1
        code.line(f"g = g{position}")
        code.line(f"g{position} = None")
        keywords = []
        if substituted:
            code.line(
                f"static = _fill({code.name('S', position, static)}, "
                f"{code.name('U', position, substituted)}, arguments)"
            )
            keywords.append("**static")
        elif static:
            keywords.append(f"**{code.name('S', position, static)}")
        inputs = [f"v{s}" for s in sources]
        out = f"v{position}"
        if convert:
            names = [f"a{index}" for index in range(len(sources))]
            code.line(f"{', '.join(names)}, out, g = _scalars({', '.join(inputs)}, {out}, g)")
            inputs, out = names, "out"
        call = f"{code.name('V', position, vjp)}(g, {out}, {', '.join(inputs)}"
        if saves:
            code.line(f"grads = {call}, ctx=c{position}{_more(keywords)})")
            code.line(f"c{position} = None")
        elif overwrites:
            # the op may write its result into g only when g is this pass's alone
            code.line(
                "if (type(g) is np.ndarray and g.nbytes >= RELEASE_BYTES "
                "and getrefcount(g) == 2 and g.base is None and g.flags.writeable):"
            )
            code.line(f"    grads = {call}, overwrite=True{_more(keywords)})")
            code.line("else:")
            code.line(f"    grads = {call}{_more(keywords)})")
        else:
            code.line(f"grads = {call}{_more(keywords)})")
        code.line(f"v{position} = None")
        for index, source, shape, leaf in targets:
            if leaf:  # a passed-through gradient may reach several leaves: copied
                code.line(f"g{source} = _gather_leaf(g{source}, grads[{index}], {shape!r}, g)")
            else:
                code.line(f"g{source} = _gather(g{source}, grads[{index}], {shape!r})")
        code.line("g = grads = out = None" if convert else "g = grads = None")
        code.indent -= 1


def _more(keywords) -> str:
    return "".join(f", {k}" for k in keywords)


def _f64(value):
    """A Python float as a numpy scalar, for ops that take no floats (1/0 gives inf)."""
    return np.float64(value) if type(value) is float else value


def _scalars(*values):
    return [_f64(v) for v in values]


def _leaf(grad_tensors, position, g, store):
    """Hand a leaf's gradient to `store` when the step collects it; the slot is then empty."""
    if g is not None:
        tensor = grad_tensors.get(position)
        if tensor is not None:
            store(tensor, g)


def _gather(previous, pg, shape):
    """An input's gradient so far plus what one more VJP gave it (`pg`, None for nothing),
    summed back to the input's `shape` where it was broadcast."""
    if pg is None:
        return previous
    if type(pg) is np.ndarray and pg.shape != shape:
        pg = unbroadcast(pg, shape)
    if previous is None:
        return pg
    if (
        type(previous) is np.ndarray
        and getrefcount(previous) == 3  # the caller's variable, this argument, the call
        and previous.base is None
        and previous.flags.writeable
        and previous.shape == np.shape(pg)
        and previous.dtype == np.result_type(previous, pg)
    ):
        return np.add(previous, pg, out=previous)  # nothing else holds it: summed in place
    return previous + pg


def _gather_leaf(previous, pg, shape, g):
    """`_gather` for a leaf, whose gradient must not be the VJP's own input gradient `g`
    passed through (it may reach several leaves, and `.grad` is modified in place)."""
    if pg is None:
        return previous
    if type(pg) is np.ndarray:
        if pg.shape != shape:
            pg = unbroadcast(pg, shape)
        if pg is g:
            pg = pg.copy()
    return pg if previous is None else previous + pg  # a shared weight's next gradient


def _fill(attrs, substituted, arguments):
    """Attributes with the inputs' arrays put back where `capture` marked them (labels
    picked by index): `substituted` is [(key, index in a tuple or None, input position)]."""
    attrs = dict(attrs)
    for key, index, position in substituted:
        if index is None:
            attrs[key] = arguments[position]
        else:
            parts = list(attrs[key])
            parts[index] = arguments[position]
            attrs[key] = tuple(parts)
    return attrs
