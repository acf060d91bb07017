"""Custom ops: a user's own primitive, its forward beside its VJP, registered under a name.

>>> import numpy as np
>>> from topograd.engine import Tensor, define_op, unregister_op
>>> def cube(x):
...     return x**3
>>> def cube_vjp(g, out, x):
...     return (g * 3.0 * x**2,)
>>> cube_op = define_op("cube", cube, cube_vjp, formula="x^3", vjp_formula="dx = 3 g x^2")
>>> x = Tensor([1.0, 2.0], requires_grad=True)
>>> cube_op(x).sum().backward()
>>> x.grad.tolist()
[3.0, 12.0]
>>> unregister_op("cube")

Once defined, the op is a node like any built-in one: backward, the stepper, `to_dot()`
and the GUI's inspector read it from the op registry; model files call it by name, as a
function in a graph block and (for a one-input op) as an activation layer in a network.
"""

from __future__ import annotations

import inspect

from topograd.engine.functional import FUNCTIONS
from topograd.engine.nn.layers import LAYERS
from topograd.engine.nn.module import Module
from topograd.engine.ops import OPS, Op, register_op
from topograd.engine.tensor import Tensor, apply

CUSTOM: dict[str, OpFunction] = {}
"""The ops made by `define_op`, by name (only these can be unregistered)."""


class OpFunction:
    """A registered op as a function of tensors: `swish(x)`, `scaled(x, beta=2.0)`.

    Arrays and numbers among the inputs become constant tensors (no gradient).
    """

    def __init__(self, op: Op, attributes: dict[str, inspect.Parameter]):
        self.op = op
        self.attributes = attributes
        self.__name__ = op.name
        self.__doc__ = f"The custom op {op.name}: {op.formula}"

    def __call__(self, *inputs, **attrs):
        if len(inputs) != self.op.arity:
            raise TypeError(
                f"{self.op.name} takes {self.op.arity} tensor input(s), got {len(inputs)}"
            )
        unknown = set(attrs) - set(self.attributes)
        if unknown:
            known = ", ".join(self.attributes) or "none"
            raise TypeError(
                f"{self.op.name} has no option {sorted(unknown)[0]!r} (options: {known})"
            )
        # every option recorded on the node (the inspector shows it, the VJP receives it)
        attrs = {
            key: attrs.get(key, parameter.default) for key, parameter in self.attributes.items()
        }
        tensors = [x if isinstance(x, Tensor) else Tensor(x) for x in inputs]
        return apply(self.op, *tensors, **attrs)

    def __repr__(self):
        return f"<custom op {self.op.name}: {self.op.formula}>"


def define_op(
    name: str,
    forward,
    vjp,
    *,
    formula: str | None = None,
    vjp_formula: str | None = None,
    kind: str = "unary",
    domain: str = "real",
    saves: bool = False,
    layer: bool | None = None,
) -> OpFunction:
    """Register a new primitive and return it as a function of tensors.

    `forward(*arrays, **attrs)` computes the value from numpy arrays: its parameters without
    a default are the tensor inputs, those with a default are attributes (options a model file
    may set). `vjp(g, out, *arrays, **attrs)` returns one gradient per input (None where an
    input gets none); a gradient in the output's broadcast shape is summed back for you. The
    returned function records every option on the node (defaults filled in), but give the VJP
    the forward's defaults too: `engine.apply(op, x)` passes only the options it is given.
    `formula`/`vjp_formula` are what the GUI's inspector shows; `kind` and `domain` tell the
    kit (`engine.testing.assert_op_gradients`) how to draw inputs. A one-input op also becomes
    an activation layer named `name` unless `layer=False`. Names already used by a built-in
    op, function or layer are refused.
    """
    if not (isinstance(name, str) and name.isidentifier()):
        raise ValueError(
            f"an op name must be a valid identifier (a model file calls it), got {name!r}"
        )
    for what, callable_ in (("forward", forward), ("vjp", vjp)):
        if not callable(callable_):
            raise TypeError(f"op {name!r}: {what} must be callable, got {callable_!r}")
    registries = (("op", OPS), ("function", FUNCTIONS), ("layer", LAYERS))
    taken = [table for table, names in registries if name in names]
    if taken:
        raise ValueError(f"the name {name!r} is already a registered {taken[0]}; pick another")
    inputs, attributes = _split_parameters(name, forward)
    with_layer = len(inputs) == 1 if layer is None else layer
    if with_layer and len(inputs) != 1:
        raise ValueError(f"op {name!r}: only a one-input op can be a layer ({len(inputs)} inputs)")
    arguments = ", ".join(inputs)
    op = Op(
        name,
        forward,
        vjp,
        len(inputs),
        formula or f"{name}({arguments})",
        vjp_formula or f"the VJP {getattr(vjp, '__qualname__', 'function')} (Python)",
        kind=kind,
        domain=domain,
        saves=saves,
    )
    register_op(op)
    function = OpFunction(op, attributes)
    FUNCTIONS.register(name)(function)
    if with_layer:
        LAYERS.register(name)(_activation_layer(function))
    CUSTOM[name] = function
    return function


def unregister_op(name: str) -> None:
    """Remove an op made by `define_op` from every registry (built-in ops stay)."""
    if name not in CUSTOM:
        if name in OPS:
            raise ValueError(f"op {name!r} is built in; only ops made by define_op can be removed")
        raise KeyError(f"no custom op named {name!r}")
    function = CUSTOM.pop(name)
    del OPS[name]
    FUNCTIONS.unregister(name)
    if name in LAYERS and getattr(LAYERS.get(name), "op_function", None) is function:
        LAYERS.unregister(name)


def _split_parameters(name, forward) -> tuple[list[str], dict[str, inspect.Parameter]]:
    """The forward's tensor inputs (no default) and its attributes (with a default)."""
    try:
        parameters = inspect.signature(forward).parameters.values()
    except (TypeError, ValueError):
        raise TypeError(f"op {name!r}: cannot read the signature of {forward!r}") from None
    inputs, attributes = [], {}
    for parameter in parameters:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise TypeError(
                f"op {name!r}: forward must name its inputs and options (no *args/**kwargs)"
            )
        if parameter.default is parameter.empty:
            if attributes or parameter.kind is parameter.KEYWORD_ONLY:
                raise TypeError(f"op {name!r}: option {parameter.name!r} needs a default value")
            inputs.append(parameter.name)
        else:
            attributes[parameter.name] = parameter.replace(kind=parameter.POSITIONAL_OR_KEYWORD)
    if not inputs:
        raise TypeError(f"op {name!r}: forward takes no tensor input")
    return inputs, attributes


class CustomActivation(Module):
    """Applies a one-input custom op; each op gets its own subclass (named after the op)
    whose signature lists the op's attributes, so a model file can set them as options."""

    op_function: OpFunction
    __signature__: inspect.Signature

    def __init__(self, *args, **options):
        super().__init__()
        bound = type(self).__signature__.bind(*args, **options)
        bound.apply_defaults()
        object.__setattr__(self, "options", dict(bound.arguments))

    def forward(self, x):
        return self.op_function(x, **self.options)

    def extra_repr(self):
        return ", ".join(f"{key}={value!r}" for key, value in self.options.items())


def _activation_layer(function: OpFunction) -> type[CustomActivation]:
    """The layer class of a one-input custom op."""
    class_name = "".join(part.capitalize() for part in function.op.name.split("_"))
    return type(
        class_name,
        (CustomActivation,),
        {
            "__doc__": f"The custom op {function.op.name} as a layer: {function.op.formula}.",
            "__module__": __name__,
            "__signature__": inspect.Signature(list(function.attributes.values())),
            "op_function": function,
        },
    )
