"""`Module` and `Parameter`: PyTorch's container conventions over engine tensors."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from topograd.engine.capture import note_module, thread_state
from topograd.engine.modes import current_layer, reset_layer, set_layer
from topograd.engine.tensor import Tensor, _as_value


class Parameter(Tensor):
    """A leaf tensor that a module owns and an optimizer updates (requires_grad=True)."""

    __slots__ = ()

    def __init__(self, data, name=None, dtype=None):
        super().__init__(data, requires_grad=True, name=name, dtype=dtype)


@dataclass(frozen=True)
class LayerTag:
    """Which module call created a node: `path` like 'net.2', `kind` like 'BatchNorm1d'."""

    path: str
    kind: str

    def __str__(self):
        return f"{self.path} ({self.kind})"


def _check_dtype(module, x, reference) -> None:
    """PyTorch's rule: a layer given an input of another dtype than its parameters' refuses
    it (rather than promoting or casting silently)."""
    if x.dtype != reference.dtype:
        raise TypeError(
            f"{type(module).__name__}: the input's dtype {x.dtype} does not match its "
            f"parameters' dtype {reference.dtype}; convert the model (model.to({x.dtype}), "
            ".float(), .double()) or the input"
        )


class Module:
    """Base class: parameters, buffers and submodules are found from the attributes.

    Subclasses set Parameters and Modules as attributes, register numpy buffers (running
    statistics) with `register_buffer`, and implement `forward`.
    """

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_buffer_names", [])
        object.__setattr__(self, "_local_name", None)
        object.__setattr__(self, "_tags", {})

    def __setattr__(self, name, value):
        if isinstance(value, Module) and value._local_name is None:
            object.__setattr__(value, "_local_name", name)
        if isinstance(value, Parameter):
            if value.name is None:
                value.name = name
            if "_reference" not in self.__dict__:  # whose dtype inputs must have (in a
                object.__setattr__(self, "_reference", (value,))  # tuple: not a parameter)
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, array) -> None:
        """Keep a non-trainable array (saved by state_dict, not updated by optimizers)."""
        self._buffer_names.append(name)
        object.__setattr__(self, name, np.asarray(array))

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def __call__(self, *args, **kwargs):
        reference = self.__dict__.get("_reference")
        if reference is not None and args and isinstance(args[0], Tensor):
            _check_dtype(self, args[0], reference[0])
        parent = current_layer()
        tag = self._tags.get(parent)
        if tag is None:
            local = self._local_name or type(self).__name__.lower()
            path = local if parent is None else f"{parent.path}.{local}"
            tag = self._tags[parent] = LayerTag(path, type(self).__name__)
        token = set_layer(tag)
        if thread_state.__dict__:  # a capture is running: replays check the training flags
            note_module(self)
        try:
            return self.forward(*args, **kwargs)
        finally:
            reset_layer(token)

    # --- traversal ---------------------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, Module]]:
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def children(self) -> Iterator[Module]:
        for _, module in self.named_children():
            yield module

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, module in self.named_modules():
            yield module

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for module_name, module in self.named_modules(prefix):
            for name, value in vars(module).items():
                if isinstance(value, Parameter):
                    yield (f"{module_name}.{name}" if module_name else name), value

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        for module_name, module in self.named_modules(prefix):
            for name in module._buffer_names:
                yield (f"{module_name}.{name}" if module_name else name), getattr(module, name)

    def generators(self) -> list[np.random.Generator]:
        """The random generators that layers hold themselves (dropout built with an rng),
        each once: what `engine.modes.same_randomness` rewinds."""
        found = {}
        for module in self.modules():
            rng = getattr(module, "rng", None)
            if isinstance(rng, np.random.Generator):
                found[id(rng)] = rng
        return list(found.values())

    # --- modes -------------------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Switch this module and its children to training (batch statistics, dropout on)."""
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self) -> Module:
        """Switch to evaluation (running statistics, dropout off)."""
        return self.train(False)

    def to(self, dtype) -> Module:
        """Convert every parameter and floating-point buffer to `dtype` (float32 or float64),
        in place, as PyTorch's `module.to(dtype)`."""
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"Module.to: dtype must be float32 or float64, got {dtype}")
        for p in self.parameters():
            p._data = _as_value(p._data, dtype)  # `.data =` keeps the old dtype
            p._mark_changed()
            if p._grad is not None:
                p.grad = p.grad.astype(dtype)
        for module in self.modules():
            for name in module._buffer_names:
                buffer = getattr(module, name)
                if buffer.dtype.kind == "f":
                    object.__setattr__(module, name, buffer.astype(dtype))
        return self

    def float(self) -> Module:
        """`to(float32)`."""
        return self.to(np.float32)

    def double(self) -> Module:
        """`to(float64)`."""
        return self.to(np.float64)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    # --- saving ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter and buffer, keyed by dotted name."""
        state = {name: p.data.copy() for name, p in self.named_parameters()}
        state.update({name: np.array(b, copy=True) for name, b in self.named_buffers()})
        return state

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy values in; every key must exist with the same shape (nothing changes on error)."""
        targets = dict(self.named_parameters())
        buffers = dict(self.named_buffers())
        expected = set(targets) | set(buffers)
        problems = []
        if strict:
            missing = sorted(expected - set(state))
            unexpected = sorted(set(state) - expected)
            if missing:
                problems.append(f"missing keys: {', '.join(missing)}")
            if unexpected:
                problems.append(f"unexpected keys: {', '.join(unexpected)}")
        for name, value in state.items():
            current = (
                targets[name].shape
                if name in targets
                else buffers[name].shape
                if name in buffers
                else None
            )
            if current is not None and np.shape(value) != current:
                problems.append(f"{name}: saved shape {np.shape(value)} != model shape {current}")
        if problems:
            raise ValueError(f"load_state_dict for {type(self).__name__}: " + "; ".join(problems))
        for name, value in state.items():
            if name in targets:
                targets[name].data = np.array(value, dtype=targets[name].dtype)
            elif name in buffers:
                buffers[name][...] = value

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        children = list(self.named_children())
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not children:
            return head + ")"
        lines = [head]
        for name, child in children:
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + "\n)"
