"""Dense layers, activations, dropout and Sequential; all registered by name in LAYERS."""

from __future__ import annotations

import numpy as np
from topograd.engine import functional as F
from topograd.engine import init as initializers
from topograd.engine.nn.module import Module, Parameter
from topograd.engine.registry import Registry
from topograd.engine.tensor import Tensor

LAYERS = Registry("layer")


def _check_features(layer, x):
    if x.ndim < 1 or x.shape[-1] != layer.in_features:
        raise ValueError(
            f"{type(layer).__name__}({layer.in_features}, {layer.out_features}): expected "
            f"inputs with {layer.in_features} features in the last axis, got shape {x.shape}"
        )


@LAYERS.register("linear")
class Linear(Module):
    """y = x @ W + b with W of shape (in_features, out_features), the notes' layout.

    (PyTorch stores the transpose, (out, in); `torch_weight = W.T`.) `init` is an
    initializer name from engine.init or a callable `(shape, rng) -> ndarray`.
    """

    def __init__(self, in_features, out_features, bias=True, init="xavier", rng=None, dtype=None):
        super().__init__()
        if in_features <= 0 or out_features <= 0:
            raise ValueError(
                f"Linear needs positive sizes, got in={in_features}, out={out_features}"
            )
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(
            initializers.get(init)((in_features, out_features), rng), dtype=dtype
        )
        self.bias = Parameter(np.zeros(out_features), dtype=dtype) if bias else None

    def forward(self, x):
        x = x if isinstance(x, Tensor) else Tensor(x, dtype=self.weight.dtype)
        _check_features(self, x)
        out = x @ self.weight
        return out + self.bias if self.bias is not None else out

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


@LAYERS.register("maxout")
class Maxout(Module):
    """max over k linear pieces (Goodfellow et al.): generalizes ReLU and leaky ReLU."""

    def __init__(self, in_features, out_features, pieces=2, init="xavier", rng=None, dtype=None):
        super().__init__()
        if pieces < 2:
            raise ValueError(f"Maxout needs at least 2 pieces, got {pieces}")
        self.in_features, self.out_features, self.pieces = in_features, out_features, pieces
        self.weight = Parameter(
            initializers.get(init)((in_features, out_features * pieces), rng), dtype=dtype
        )
        self.bias = Parameter(np.zeros(out_features * pieces), dtype=dtype)

    def forward(self, x):
        x = x if isinstance(x, Tensor) else Tensor(x, dtype=self.weight.dtype)
        _check_features(self, x)
        z = x @ self.weight + self.bias
        return z.reshape(*x.shape[:-1], self.out_features, self.pieces).max(axis=-1)

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, pieces={self.pieces}"


@LAYERS.register("dropout")
class Dropout(Module):
    """Drop each unit with probability p in training.

    Inverted by default (scale kept units by 1/(1-p); identity at test time, as PyTorch);
    `inverted=False` is the original form that scales by (1-p) at test time instead.
    """

    def __init__(self, p=0.5, inverted=True, rng=None):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(
                f"Dropout p (the probability of dropping a unit) must be in [0, 1), got {p}"
            )
        self.p, self.inverted, self.rng = p, inverted, rng

    def forward(self, x):
        return F.dropout(x, self.p, self.training, self.inverted, self.rng)

    def extra_repr(self):
        return f"p={self.p}, inverted={self.inverted}"


class _Activation(Module):
    def extra_repr(self):
        return ""


@LAYERS.register("relu")
class ReLU(_Activation):
    def forward(self, x):
        return F.relu(x)


@LAYERS.register("tanh")
class Tanh(_Activation):
    def forward(self, x):
        return F.tanh(x)


@LAYERS.register("sigmoid")
class Sigmoid(_Activation):
    def forward(self, x):
        return F.sigmoid(x)


@LAYERS.register("leaky_relu")
class LeakyReLU(_Activation):
    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


@LAYERS.register("elu")
class ELU(_Activation):
    def __init__(self, alpha=1.0):
        super().__init__()
        self.alpha = alpha

    def forward(self, x):
        return F.elu(x, self.alpha)

    def extra_repr(self):
        return f"alpha={self.alpha}"


@LAYERS.register("sequential")
class Sequential(Module):
    """Modules applied in order; children are named '0', '1', ..."""

    def __init__(self, *modules):
        super().__init__()
        for index, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(
                    f"Sequential item {index} is a {type(module).__name__}, not a Module"
                )
            setattr(self, str(index), module)
        object.__setattr__(self, "_items", tuple(modules))
        # items that merge with earlier outputs (nn.Merge: they have `sources`)
        object.__setattr__(self, "_merges", any(hasattr(m, "sources") for m in modules))

    def __getitem__(self, index):
        return self._items[index]

    def __len__(self):
        return len(self._items)

    def __iter__(self):
        return iter(self._items)

    def forward(self, x):
        if self._merges:
            return self._forward_with_merges(x)
        for module in self:
            x = module(x)
        return x

    def item_names(self) -> list[str]:
        """Each item's name as a merge refers to it: its label (`_local_name`, which a model
        file's `name = layer` sets), else its index."""
        return [module._local_name or str(i) for i, module in enumerate(self)]

    def _forward_with_merges(self, x):
        """The items in order, keeping the outputs that a later merge names and handing them
        to it as extra arguments; a name that is no earlier item is refused."""
        names = self.item_names()
        wanted = {source for m in self if hasattr(m, "sources") for source in m.sources}
        kept = {}
        for index, module in enumerate(self):
            if hasattr(module, "sources"):
                missing = [s for s in module.sources if s not in kept]
                if missing:
                    raise ValueError(
                        f"{module.mode}: {', '.join(map(repr, missing))} is not an earlier "
                        f"item of this Sequential (earlier: {', '.join(names[:index]) or 'none'})"
                    )
                x = module(x, *(kept[s] for s in module.sources))
            else:
                x = module(x)
            if names[index] in wanted:
                kept[names[index]] = x
        return x
