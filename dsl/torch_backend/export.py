"""`topograd export`: a model file as a readable, standalone PyTorch training script.

This is code generation, not a translation at run time: each engine construct has its torch
source text in the small tables below, and the script imports only numpy and torch (export
itself does not import torch). What the script cannot compute without topograd travels
beside it in an .npz (loaded with allow_pickle=False):

- the data, split and preprocessed by topograd's own pipeline (dsl.build.build_data), so the
  script trains on exactly the rows `topograd run` trains on;
- the initial weights that `topograd run` starts from (same file, same seed), in torch's
  layout: a Linear weight is stored transposed, (out, in), and a scalar network's neurons
  become the rows of ordinary nn.Linear weights.

Layers are assigned in order to a subclass of nn.Sequential. A branching network reads as a
person writes one: a residual or concat block is the script's own small Residual or Concat
module around an nn.Sequential of its body (and shortcut); a network with merges
(`add(stem)`, `concat(a)`) is an nn.Module whose forward keeps the labelled outputs
(`x = stem = self.stem(x)`) and joins them (`x = x + stem`), and a body with merges is a
class of its own written the same way.

The batches are drawn as engine.train.fit draws them: one numpy Generator seeded
[seed, 0] gives every epoch's permutation and then, batch by batch, the augmentation's draws
(the script carries the augmentations as numpy functions that draw the same numbers). So
with dropout off (torch draws its own masks) and float64, the script's losses equal
`topograd run`'s to rounding.

A construct with no PyTorch counterpart (a plugin's layer, vanilla dropout, an optimizer
option torch lacks) raises UnsupportedError naming it and where it is, before anything is
written. A file that is more than one training run (a comparison of optimizers, an
ensemble, a range test) is a CommandError.

>>> from topograd.dsl import load, read_source
>>> from topograd.dsl.build import build
>>> source = read_source("samples/digits.tg")
>>> exported = export(build(load(source), source), "digits.npz")
>>> "class DigitsMlp(nn.Sequential):" in exported.script, sorted(exported.arrays)[:2]
(True, ['init.batchnorm1.bias', 'init.batchnorm1.num_batches_tracked'])
"""

from __future__ import annotations

import inspect
import keyword
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from topograd.dsl.build import Built
from topograd.dsl.spec import Entry, LayerSpec
from topograd.dsl.torch_backend import UnsupportedError
from topograd.dsl.torch_backend.counterparts import OPTIMIZER_TABLE, TORCH_LACKS
from topograd.dsl.training import CommandError, write_atomically
from topograd.engine import Tensor, nn
from topograd.engine.custom_ops import CUSTOM
from topograd.engine.nn.conv import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    Conv2d,
    Flatten,
    InstanceNorm2d,
    MaxPool2d,
    Unflatten,
)
from topograd.engine.nn.norm import GroupNorm, LayerNorm
from topograd.engine.nn.scalar import ScalarLinear
from topograd.engine.optim import OPTIMIZERS

# Attributes of torch's nn.Sequential: a layer label with one of these names gets `_layer`
# appended, or it would hide the method (a layer labelled `train` would break model.train()).
_NAMES = """
T_destination add_module append apply bfloat16 buffers call_super_init children compile cpu cuda
double dump_patches eval extend extra_repr float forward get_buffer get_extra_state
get_parameter get_submodule half insert ipu load_state_dict modules mtia named_buffers
named_children named_modules named_parameters parameters pop register_backward_hook
register_buffer register_forward_hook register_forward_pre_hook register_full_backward_hook
register_full_backward_pre_hook register_load_state_dict_post_hook
register_load_state_dict_pre_hook register_module register_parameter
register_state_dict_post_hook register_state_dict_pre_hook requires_grad_ set_extra_state
set_submodule share_memory state_dict to to_empty train training type xpu zero_grad
"""
MODULE_ATTRIBUTES = frozenset(_NAMES.split())

ACTIVATIONS = {
    nn.ReLU: ("relu", "nn.ReLU", {}),
    nn.Tanh: ("tanh", "nn.Tanh", {}),
    nn.Sigmoid: ("sigmoid", "nn.Sigmoid", {}),
    nn.LeakyReLU: ("leaky_relu", "nn.LeakyReLU", {"negative_slope": 0.01}),
    nn.ELU: ("elu", "nn.ELU", {"alpha": 1.0}),
    nn.GELU: ("gelu", "nn.GELU", {"approximate": "none"}),
}
"""Engine activation -> (layer name, torch class, {option: torch default})."""

SCHEDULE_TABLE = {
    "step": ("StepLR", ("step_size", "gamma")),
    "multistep": ("MultiStepLR", ("milestones", "gamma")),
    "exponential": ("ExponentialLR", ("gamma",)),
    "cosine": ("CosineAnnealingLR", ("T_max", "eta_min")),
    "cosine_restarts": ("CosineAnnealingWarmRestarts", ("T_0", "T_mult", "eta_min")),
    "cyclic": ("CyclicLR", ("base_lr", "max_lr", "step_size_up", "step_size_down", "mode")),
}
"""Schedules with a torch.optim.lr_scheduler twin (same arithmetic); the others (inverse_time,
warmup, cosine_restarts with max_decay) are written as a LambdaLR with the closed form."""

AUGMENTATION_SOURCE = {
    "crop": '''
def random_crop(images, rng, padding):
    """Shift each image by up to `padding` pixels each way: pad with zeros, then crop."""
    n, _, height, width = images.shape
    offsets = rng.integers(0, 2 * padding + 1, size=(2, n))
    padded = np.pad(images, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    crops = [
        padded[k, :, dy : dy + height, dx : dx + width] for k, (dy, dx) in enumerate(offsets.T)
    ]
    return np.stack(crops)''',
    "flip": '''
def horizontal_flip(images, rng, p):
    """Mirror each image left-right with probability p."""
    flip = rng.random(len(images)) < p
    out = images.copy()
    out[flip] = images[flip, :, :, ::-1]
    return out''',
    "noise": '''
def gaussian_noise(images, rng, std):
    """Add independent N(0, std^2) noise to every value."""
    return images + rng.normal(0.0, std, size=images.shape)''',
    "cutout": '''
def cutout(images, rng, size):
    """Zero a size x size square (clipped at the border) at a random centre of each image."""
    n, _, height, width = images.shape
    tops = rng.integers(0, height, size=n) - size // 2
    lefts = rng.integers(0, width, size=n) - size // 2
    out = images.copy()
    for k, (top, left) in enumerate(zip(tops, lefts)):
        out[k, :, max(top, 0) : max(top + size, 0), max(left, 0) : max(left + size, 0)] = 0.0
    return out''',
    "brightness_contrast": '''
def brightness_contrast(images, rng, brightness, contrast):
    """Scale each image's deviations from its mean by a random contrast factor, then shift it
    by a random fraction of its value range."""
    n = len(images)
    factor = rng.uniform(1 - contrast, 1 + contrast, size=n)[:, None, None, None]
    shift = rng.uniform(-brightness, brightness, size=n)[:, None, None, None]
    mean = images.mean(axis=(1, 2, 3), keepdims=True)
    value_range = np.ptp(images.reshape(n, -1), axis=1)[:, None, None, None]
    return mean + factor * (images - mean) + shift * value_range''',
}
"""Augmentation name -> a numpy function that draws what engine.data.augment draws, in the
same order, so the script's batches are topograd's."""

AUGMENTATION_CALLS = {
    "crop": ("random_crop", {"padding": 1}),
    "flip": ("horizontal_flip", {"p": 0.5}),
    "noise": ("gaussian_noise", {}),
    "cutout": ("cutout", {}),
    "brightness_contrast": ("brightness_contrast", {"brightness": 0.1, "contrast": 0.1}),
}
"""Augmentation name -> (the function above, the engine's defaults for its options)."""

MAXOUT_SOURCE = '''
class Maxout(nn.Module):
    """The max over `pieces` linear maps (Goodfellow et al., 2013); torch has no such layer."""

    def __init__(self, in_features, out_features, pieces=2):
        super().__init__()
        self.out_features, self.pieces = out_features, pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x):
        z = self.linear(x)
        return z.view(*z.shape[:-1], self.out_features, self.pieces).max(dim=-1).values'''

RESIDUAL_SOURCE = '''
class Residual(nn.Module):
    """body(x) + x, or body(x) + shortcut(x) where a shortcut maps x to the body's shape (a
    ResNet block, He et al., 2016)."""

    def __init__(self, body, shortcut=None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x):
        out = self.body(x)
        return out + (x if self.shortcut is None else self.shortcut(x))'''

CONCAT_SOURCE = '''
class Concat(nn.Module):
    """[x, body(x)] joined along `dim` (channels, or features): the output keeps the input beside
    what the body computed (a DenseNet layer, Huang et al., 2017)."""

    def __init__(self, body, dim=1):
        super().__init__()
        self.body = body
        self.dim = dim

    def forward(self, x):
        return torch.cat([x, self.body(x)], dim=self.dim)'''

HELPERS = {"Maxout": MAXOUT_SOURCE, "Residual": RESIDUAL_SOURCE, "Concat": CONCAT_SOURCE}
"""The script's own modules, written into it where the network uses them."""

# names a label cannot have as a variable in a forward (the argument and the script's imports)
_FORWARD_NAMES = frozenset({"self", "x", "np", "torch", "nn", "F", "math", "json", "argparse"})


@dataclass
class Exported:
    """The script's text and the arrays of the .npz it loads (data and initial weights)."""

    script: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def export(built: Built, data_name: str, file_name: str | None = None) -> Exported:
    """The standalone script for `built` (a network with data and a train section) that loads
    `data_name` from its own folder; UnsupportedError names the first construct torch lacks.
    `file_name` is the model file's name for the script's docstring."""
    spec = built.spec
    _check_runnable(spec)
    file_name = file_name or f"{spec.network.name}.tg"
    network = _network(built, _class_name(spec.network.name))
    writer = _Writer(built, network, data_name, file_name)
    arrays = _data_arrays(built)
    arrays.update({f"init.{key}": value for key, value in network.weights.items()})
    return Exported(writer.script(), arrays)


def write_export(exported: Exported, script_path, data_path) -> tuple[Path, Path]:
    """Write the .npz and then the script, each atomically (a CommandError if either cannot
    be written; a new .npz whose script could not be written is removed again)."""
    arrays = exported.arrays

    def save_arrays(temporary: Path) -> None:
        with open(temporary, "wb") as handle:  # a handle: np.savez would add ".npz" to a name
            np.savez(handle, **arrays)

    data = write_atomically(data_path, save_arrays)
    try:
        script = write_atomically(
            script_path, lambda temporary: temporary.write_text(exported.script, encoding="utf-8")
        )
    except CommandError:
        data.unlink(missing_ok=True)
        raise
    return script, data


# --- what a script can hold ----------------------------------------------------------------------
def _check_runnable(spec) -> None:
    """CommandError for files whose run is more than one training loop."""
    train = spec.train
    if len(train.optimizers) > 1:
        names = ", ".join(entry.name for entry in train.optimizers)
        raise CommandError(
            f"it compares {len(train.optimizers)} optimizers ({names}) at line "
            f"{train.optimizers[0].pos.line}; export writes one training run: keep one optimizer"
        )
    if train.ensemble is not None:
        raise CommandError(
            f"it trains a {train.ensemble.name} ensemble (line {train.ensemble.pos.line}); "
            "export writes one training run: remove `ensemble`"
        )
    if spec.range_test is not None:
        raise CommandError(
            f"its lr_range_test section (line {spec.range_test.pos.line}) runs a range test "
            "instead of training; export writes the training run: remove the section"
        )


def _data_arrays(built: Built) -> dict[str, np.ndarray]:
    splits = built.data.splits
    arrays = {}
    for name in ("train", "val", "test"):
        part = getattr(splits, name)
        arrays[f"{name}_x"] = np.ascontiguousarray(part.x, dtype=np.float64)
        labels = np.float64 if getattr(part, "regression", False) else np.int64  # (real targets)
        arrays[f"{name}_y"] = np.ascontiguousarray(part.y, dtype=labels)
    return arrays


# --- the network ---------------------------------------------------------------------------------
@dataclass
class _Network:
    lines: list[str]  # `self.<name> = nn.<Layer>(...)` lines of __init__, indented
    weights: dict[str, np.ndarray]  # torch state_dict key -> initial value
    forward: list[str] | None = None  # forward's lines where the network merges (add(stem))
    classes: list[str] = field(default_factory=list)  # bodies that merge, inner ones first
    helpers: set[str] = field(default_factory=set)  # of HELPERS, the ones the layers use


def _network(built: Built, class_name: str) -> _Network:
    """Each engine layer as a named torch layer, with its initial weights in torch's layout.

    A block is Residual(...) or Concat(...) around an nn.Sequential of its body; a sequence
    with merges (the network's, or a block's body) is a class whose forward keeps the
    labelled outputs that add and concat join later."""
    network = _Network([], {})
    translator = _Translator(network, {class_name, *HELPERS, "Path"})
    network.lines, network.forward, network.weights = translator.members(
        built.model, built.spec.network.layers, None
    )
    return network


class _Translator:
    """Sequences of engine layers as torch source, recursively into blocks; what the script
    needs besides the model class (helpers, the classes of bodies that merge) goes into
    `network`."""

    def __init__(self, network: _Network, taken_class_names):
        self.network = network
        self.class_names = set(taken_class_names)

    def members(self, sequential, specs, block):
        """A sequence as a class's members: (__init__ lines `self.<name> = ...`, forward's
        lines where the sequence merges (else None: nn.Sequential's forward runs them),
        weights keyed by the attribute names). `block`: the LayerSpec whose body it is, None
        for the network."""
        used: set[str] = set()
        counts: dict[str, int] = {}
        kept = {source for layer in specs for source in layer.sources}
        init, forward, weights = [], [], {}
        for index, (module, layer) in enumerate(zip(sequential, specs)):
            if layer.sources:
                value = _merge(module, layer)
            else:
                if layer.is_block:  # named first: the class of a body that merges is named after it
                    name = _layer_name(layer, layer.kind, counts, used)
                    call, layer_weights = self.block(module, layer, name)
                else:
                    kind, call, layer_weights = self.layer(module, layer, index, block)
                    name = _layer_name(layer, kind, counts, used)
                init += call.lines("        ", f"self.{name} = ")
                weights.update({f"{name}.{key}": value for key, value in layer_weights.items()})
                value = f"self.{name}(x)"
            target = f"x = {_variable(layer.label)}" if layer.label in kept else "x"
            forward.append(f"        {target} = {value}")
        if not kept:
            return init, None, weights
        return init, [*forward, "        return x"], weights

    def layer(self, module, layer: LayerSpec, index: int, block) -> tuple[str, _Call, dict]:
        """(name for numbering, the torch constructor, {state_dict suffix: initial array})."""
        if block is None:
            where = _where(layer, f"the network's layer {index + 1}")
        else:
            where = _where(layer, f"in the {block.kind} block at line {block.pos.line}")
        if isinstance(module, nn.Maxout):
            self.network.helpers.add("Maxout")
        return _layer(module, layer, where)

    def block(self, module, layer: LayerSpec, name: str) -> tuple[_Call, dict]:
        """Residual(body[, shortcut=...]) or Concat(body), and its weights ("body.0.weight")."""
        body, weights = self.sequence(module.body, layer.body, f"{name}_body", layer)
        weights = {f"body.{key}": value for key, value in weights.items()}
        if isinstance(module, nn.Concat):
            self.network.helpers.add("Concat")
            options = () if module.axis == 1 else (f"dim={module.axis}",)
            return _Call("Concat", (body, *options)), weights
        self.network.helpers.add("Residual")
        if not layer.shortcut:
            return _Call("Residual", (body,)), weights
        shortcut, more = self.sequence(module.shortcut, layer.shortcut, f"{name}_shortcut", layer)
        weights.update({f"shortcut.{key}": value for key, value in more.items()})
        return _Call("Residual", (body, ("shortcut", shortcut))), weights

    def sequence(self, sequential, specs, name: str, block: LayerSpec) -> tuple[_Call, dict]:
        """A block's body (or shortcut): an nn.Sequential of its layers, or where it merges, a
        class of its own (written to network.classes, named after `name`) and a call of it."""
        if not any(layer.sources for layer in specs):
            parts, weights = [], {}
            for index, (module, layer) in enumerate(zip(sequential, specs)):
                if layer.is_block:
                    call, layer_weights = self.block(module, layer, layer.label or layer.kind)
                else:
                    _, call, layer_weights = self.layer(module, layer, index, block)
                parts.append(call)
                weights.update({f"{index}.{key}": value for key, value in layer_weights.items()})
            return _Call("nn.Sequential", tuple(parts)), weights
        class_name = self.new_class_name(name)
        init, forward, weights = self.members(sequential, specs, block)
        what = "shortcut" if name.endswith("_shortcut") else "body"
        about = (
            f"The {what} of the {block.kind} block at line {block.pos.line}: its layers in "
            "order, keeping the outputs that add and concat join later."
        )
        lines = [f"class {class_name}(nn.Module):", *_docstring(about), ""]
        lines += ["    def __init__(self):", "        super().__init__()", *init]
        lines += ["", "    def forward(self, x):", *forward]
        self.network.classes.append("\n".join(lines))
        return _Call(class_name, ()), weights

    def new_class_name(self, name: str) -> str:
        base = _class_name(name)
        class_name, number = base, 2
        while class_name in self.class_names:
            class_name, number = f"{base}{number}", number + 1
        self.class_names.add(class_name)
        return class_name


def _variable(label: str) -> str:
    """A label as a local variable of forward (not the argument x, not a keyword)."""
    clash = keyword.iskeyword(label) or label in _FORWARD_NAMES
    return f"{label}_out" if clash else label


def _merge(module, layer: LayerSpec) -> str:
    """add(a, b) as `x + a + b` (summed in that order, as the engine sums), concat(a) as
    `torch.cat([x, a], dim=1)`."""
    values = ["x", *(_variable(source) for source in layer.sources)]
    if module.mode == "add":
        return " + ".join(values)
    return f"torch.cat([{', '.join(values)}], dim={module.axis})"


def _layer_name(layer: LayerSpec, kind: str, counts: dict, used: set) -> str:
    """The layer's label, or its kind numbered (linear1, relu2); unique, never a method."""
    if layer.label is not None:
        name = layer.label
    elif layer.implicit:
        name = "to_images"
    else:
        counts[kind] = counts.get(kind, 0) + 1
        name = f"{kind}{counts[kind]}"
    if keyword.iskeyword(name) or name in MODULE_ATTRIBUTES:
        name = f"{name}_layer"
    base, number = name, 2
    while name in used:
        name, number = f"{base}_{number}", number + 1
    used.add(name)
    return name


def _where(layer: LayerSpec, place: str) -> str:
    line = f" at line {layer.pos.line}" if layer.pos.line else ""
    return f"{line}, {place}"


def _layer(module, layer: LayerSpec, where: str) -> tuple[str, _Call, dict]:
    """(name for numbering, the torch constructor, {state_dict suffix: initial array});
    `where` says where the layer is, for a refusal."""
    if type(module) in ACTIVATIONS:
        kind, torch_class, defaults = ACTIVATIONS[type(module)]
        options = {name: getattr(module, name) for name in defaults}
        return kind, _call(torch_class, [], _changed(options, defaults)), {}
    if isinstance(module, nn.Dropout):
        if not module.inverted:
            raise UnsupportedError(
                f"vanilla dropout, dropout(inverted=false){where}",
                "torch's nn.Dropout is inverted dropout: remove inverted=false",
            )
        return "dropout", _call("nn.Dropout", [], {"p": _rounded(module.p)}), {}
    for kinds, translate in _TRANSLATIONS:
        if isinstance(module, kinds):
            return translate(module)
    if layer.kind in CUSTOM:
        raise UnsupportedError(
            f"the custom op {layer.kind!r}{where}",
            "a plugin's op exists only in topograd: write it as a torch module",
        )
    raise UnsupportedError(f"the layer {layer.kind!r}{where}")


def _linear(module):
    options = {} if module.bias is not None else {"bias": False}
    weights = {"weight": module.weight.data.T}
    if module.bias is not None:
        weights["bias"] = module.bias.data
    text = _call("nn.Linear", [module.in_features, module.out_features], options)
    return "linear", text, weights


def _scalar_linear(module):
    """One row of an ordinary nn.Linear weight per neuron: the same function, one matmul."""
    neurons = module._neurons
    weight = np.array([[float(w.data) for w in neuron._weights] for neuron in neurons])
    bias = np.array([float(neuron.b.data) for neuron in neurons])
    text = _call("nn.Linear", [module.in_features, module.out_features], {})
    return "linear", text, {"weight": weight, "bias": bias}


def _maxout(module):
    weights = {"linear.weight": module.weight.data.T, "linear.bias": module.bias.data}
    options = _changed({"pieces": module.pieces}, {"pieces": 2})
    return "maxout", _call("Maxout", [module.in_features, module.out_features], options), weights


def _conv(module):
    options = {
        "stride": _pair(module.stride),
        "padding": _pair(module.padding),
        "dilation": _pair(module.dilation),
        "groups": module.groups,
        "bias": module.bias is not None,
    }
    defaults = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, "bias": True}
    options = _changed(options, defaults)
    arguments = [module.in_channels, module.out_channels, _pair(module.kernel_size)]
    weights = {"weight": module.weight.data}
    if module.bias is not None:
        weights["bias"] = module.bias.data
    return "conv", _call("nn.Conv2d", arguments, options), weights


def _pool(module):
    kind, torch_class = (
        ("maxpool", "nn.MaxPool2d")
        if isinstance(module, MaxPool2d)
        else ("avgpool", "nn.AvgPool2d")
    )
    options = {} if module.stride == module.kernel_size else {"stride": _pair(module.stride)}
    options |= _changed(
        {"padding": _pair(module.padding), "ceil_mode": module.ceil_mode},
        {"padding": 0, "ceil_mode": False},
    )
    return kind, _call(torch_class, [_pair(module.kernel_size)], options), {}


def _adaptive_pool(module):
    return "avgpool", _call("nn.AdaptiveAvgPool2d", [_pair(module.output_size)], {}), {}


def _flatten(module):
    arguments = [] if module.start_dim == 1 else [module.start_dim]
    return "flatten", _call("nn.Flatten", arguments, {}), {}


def _unflatten(module):
    return "unflatten", _call("nn.Unflatten", [1, module.shape], {}), {}


def _batchnorm(module):
    two_d = isinstance(module, nn.BatchNorm2d)
    options = {
        "eps": module.eps,
        "momentum": module.momentum,
        "affine": module.weight is not None,
        "track_running_stats": module.track_running_stats,
    }
    defaults = {"eps": 1e-5, "momentum": 0.1, "affine": True, "track_running_stats": True}
    torch_class = "nn.BatchNorm2d" if two_d else "nn.BatchNorm1d"
    text = _call(torch_class, [module.num_features], _changed(options, defaults))
    names = _affine(module)
    if module.track_running_stats:
        names += ["running_mean", "running_var", "num_batches_tracked"]
    return "batchnorm", text, _state(module, names)


def _layernorm(module):
    shape = module.normalized_shape
    options = {"eps": module.eps, "elementwise_affine": module.weight is not None}
    options = _changed(options, {"eps": 1e-5, "elementwise_affine": True})
    text = _call("nn.LayerNorm", [shape[0] if len(shape) == 1 else shape], options)
    return "layernorm", text, _state(module, _affine(module))


def _groupnorm(module):
    options = _changed(
        {"eps": module.eps, "affine": module.weight is not None}, {"eps": 1e-5, "affine": True}
    )
    text = _call("nn.GroupNorm", [module.num_groups, module.num_channels], options)
    return "groupnorm", text, _state(module, _affine(module))


def _instancenorm(module):
    options = _changed(
        {"eps": module.eps, "affine": module.weight is not None}, {"eps": 1e-5, "affine": False}
    )
    text = _call("nn.InstanceNorm2d", [module.num_features], options)
    return "instancenorm", text, _state(module, _affine(module))


def _softmax(module):
    kind = "log_softmax" if isinstance(module, nn.LogSoftmax) else "softmax"
    torch_class = "nn.LogSoftmax" if kind == "log_softmax" else "nn.Softmax"
    return kind, _call(torch_class, [], {"dim": module.axis}), {}


_TRANSLATIONS = (
    (nn.Softmax, _softmax),  # (LogSoftmax is one too)
    (nn.Linear, _linear),
    (ScalarLinear, _scalar_linear),
    (nn.Maxout, _maxout),
    (Conv2d, _conv),
    ((MaxPool2d, AvgPool2d), _pool),
    (AdaptiveAvgPool2d, _adaptive_pool),
    (Flatten, _flatten),
    (Unflatten, _unflatten),
    (nn.BatchNorm1d, _batchnorm),  # BatchNorm2d is a subclass
    (LayerNorm, _layernorm),
    (GroupNorm, _groupnorm),
    (InstanceNorm2d, _instancenorm),
)


def _affine(module) -> list[str]:
    return ["weight", "bias"] if module.weight is not None else []


def _state(module, names) -> dict:
    """{name: initial array} of parameters (engine tensors) and buffers (numpy arrays)."""
    values = {}
    for name in names:
        value = getattr(module, name)
        values[name] = np.asarray(value.data if isinstance(value, Tensor) else value)
    return values


# --- source text ---------------------------------------------------------------------------------
def _literal(value) -> str:
    """Python source for a plain value (double-quoted strings, as ruff format writes them)."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple):
        items = ", ".join(_literal(item) for item in value)
        return f"({items},)" if len(value) == 1 else f"({items})"
    if isinstance(value, list):
        return "[" + ", ".join(_literal(item) for item in value) + "]"
    if isinstance(value, (bool, np.bool_)):
        return repr(bool(value))
    if isinstance(value, (int, np.integer)):
        return repr(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return repr(value)


def _rounded(p: float) -> float:
    """A dropout probability as a person writes it (`keep=0.8` makes p 0.19999999999999996;
    torch draws its own masks, so the last bit does not matter)."""
    return float(f"{p:.12g}")


def _pair(value):
    value = tuple(value)
    return value[0] if value[0] == value[1] else value


def _changed(options: dict, defaults: dict) -> dict:
    return {k: v for k, v in options.items() if k not in defaults or defaults[k] != v}


@dataclass(frozen=True)
class _Call:
    """A call's source text, laid out as ruff format lays it out when it is too long. A part
    is source text, a _Call (a module inside a block) or (keyword, _Call)."""

    name: str
    parts: tuple = ()

    def text(self) -> str:
        return f"{self.name}({', '.join(_part_text(part) for part in self.parts)})"

    def lines(self, indent: str = "", prefix: str = "", suffix: str = "") -> list[str]:
        one = f"{indent}{prefix}{self.text()}{suffix}"
        if len(one) <= 100 or not self.parts:
            return [one]
        head, close, inner = f"{indent}{prefix}{self.name}(", f"{indent}){suffix}", f"{indent}    "
        joined = inner + ", ".join(_part_text(part) for part in self.parts)
        if len(joined) <= 100:
            return [head, joined, close]
        if len(self.parts) == 1:  # split inside the one argument, no comma after it
            return [head, *_part_lines(self.parts[0], inner, ""), close]
        split = [line for part in self.parts for line in _part_lines(part, inner, ",")]
        return [head, *split, close]


def _part_text(part) -> str:
    if isinstance(part, str):
        return part
    if isinstance(part, tuple):
        return f"{part[0]}={part[1].text()}"
    return part.text()


def _part_lines(part, indent: str, suffix: str) -> list[str]:
    if isinstance(part, str):
        return [f"{indent}{part}{suffix}"]
    if isinstance(part, tuple):
        return part[1].lines(indent, f"{part[0]}=", suffix)
    return part.lines(indent, "", suffix)


def _call(name: str, arguments: list, options: dict) -> _Call:
    parts = [_literal(a) for a in arguments] + [f"{k}={_literal(v)}" for k, v in options.items()]
    return _Call(name, tuple(parts))


def _class_name(name: str) -> str:
    words = [word for word in name.split("_") if word]
    text = "".join(word[0].upper() + word[1:] for word in words)
    if not text or not text[0].isalpha():
        text = f"Net{text}"
    return f"{text}Net" if text in (*HELPERS, "Path") else text  # not the script's own names


def _docstring(text: str, indent: str = "    ") -> list[str]:
    """A docstring's lines, filled to fit in 100 columns with its quotes."""
    lines = textwrap.wrap(text, width=97 - len(indent) - 3, break_on_hyphens=False)
    lines[0] = f'"""{lines[0]}'
    lines[-1] += '"""'
    return [f"{indent}{line}" for line in lines]


# --- the script ----------------------------------------------------------------------------------
class _Writer:
    """The script's sections, from the built engine objects and the checked spec."""

    def __init__(self, built: Built, network: _Network, data_name: str, file_name: str):
        self.built, self.spec, self.network = built, built.spec, network
        self.data_name, self.file_name = data_name, file_name
        self.train = self.spec.train
        self.class_name = _class_name(self.spec.network.name)
        splits = built.data.splits
        self.has_val, self.has_test = len(splits.val) > 0, len(splits.test) > 0
        self.dropout = any(layer.kind == "dropout" for layer in self.spec.network.all_layers())
        self.uses_math = False
        self.uses_functional = False
        self.loss = self._loss()
        self.optimizer = self._optimizer()
        self.scheduler = self._scheduler()
        self.augment = self._augment()

    def script(self) -> str:
        sections = [
            self._header(),
            self._imports(),
            self._constants(),
            *(HELPERS[name].strip("\n") for name in HELPERS if name in self.network.helpers),
            *self.network.classes,
            self._model(),
            self.loss,
            self._count_correct(),
            self.optimizer,
            *([self.scheduler] if self.scheduler else []),
            *self.augment,
            self._evaluate(),
            self._main(),
            'if __name__ == "__main__":\n    main()',
        ]
        top = "\n\n".join(section.strip("\n") for section in sections[:3])
        rest = "\n\n\n".join(section.strip("\n") for section in sections[3:])
        return f"{top}\n\n\n{rest}\n"

    # --- the top ---------------------------------------------------------------------------
    def _header(self) -> str:
        name, stem = self.spec.network.name, Path(self.data_name).stem
        about = (
            f"It trains the network as `topograd run {self.file_name}` does: from the same "
            f"initial weights, on the same data (split and preprocessed by topograd, saved in "
            f"{self.data_name} beside this script), in the same batches (numpy's generator, "
            "seeded as topograd seeds it), with the same loss, optimizer and learning-rate "
            "schedule."
        )
        if self.dropout:
            about += " Dropout draws its masks from torch's generator, so those differ."
        about += (
            " Not here: topograd's progress bar, checkpoints, its explosion guard and the "
            "bias/variance diagnosis; a loss that is not finite stops the script."
        )
        return "\n".join(
            [
                f'"""{name}, exported from {self.file_name} by `topograd export` as a '
                "standalone script.",
                "",
                *textwrap.wrap(about, width=96, break_on_hyphens=False),
                "",
                f"    python {stem}.py [--epochs N] [--device cuda] [--metrics metrics.json]",
                '"""',
            ]
        )

    def _imports(self) -> str:
        lines = ["import argparse", "import json"]
        if self.uses_math:
            lines.append("import math")
        lines += ["from pathlib import Path", "", "import numpy as np", "import torch"]
        lines.append("from torch import nn")
        if self.uses_functional:
            lines.append("from torch.nn import functional as F")
        return "\n".join(lines)

    def _constants(self) -> str:
        train = self.train
        dtype = "torch.float32" if self.spec.network.dtype == "float32" else "torch.float64"
        lines = [
            _with_comment(
                f"DATA = Path(__file__).with_name({_literal(self.data_name)})",
                "data and initial weights",
            ),
            f"DTYPE = {dtype}",
            f"EPOCHS = {train.epochs}",
            f"BATCH_SIZE = {train.batch_size}",
            f"SEED = {train.seed}",
            f"EVAL_BATCH_SIZE = {train.fit_options.get('eval_batch_size', 1024)}",
        ]
        if train.early_stopping is not None:
            lines.append(f"PATIENCE = {train.early_stopping}  # epochs without a better val loss")
        return "\n".join(lines)

    def _model(self) -> str:
        network = self.spec.network
        inputs, outputs = _size(network.input_shape, "input"), _size(network.output_shape, "output")
        about = f"The network {network.name}: {inputs}, {outputs} per example"
        if network.scalar:
            about += (
                " (in topograd a scalar network, one node per weight; here ordinary nn.Linear "
                "layers compute the same function)"
            )
        forward = self.network.forward
        if forward is None:
            about += ". nn.Sequential runs the layers in the order they are assigned."
        else:
            about += (
                ". forward runs the layers in order, keeping the outputs that add and concat "
                "join later."
            )
        base = "nn.Sequential" if forward is None else "nn.Module"
        lines = [f"class {self.class_name}({base}):", *_docstring(about), ""]
        lines += ["    def __init__(self):", "        super().__init__()"]
        lines += self.network.lines
        if forward is not None:
            lines += ["", "    def forward(self, x):", *forward]
        return "\n".join(lines)

    # --- loss -----------------------------------------------------------------------------------
    def _loss(self) -> str:
        entry, l2 = self.train.loss, self.train.l2
        options = dict(entry.kwargs)
        reduction = options.pop("reduction", "mean")
        if reduction not in ("mean", "sum"):
            raise UnsupportedError(
                f"loss {entry.name}(reduction={reduction!r}) at line {entry.pos.line}",
                "training needs a scalar loss",
            )
        scalar_out = self.spec.network.output_shape == (1,)
        if entry.name == "cross_entropy":
            self.uses_functional = True
            about = "Softmax cross-entropy"
            body = [f"loss = F.cross_entropy(outputs, labels{_reduction(reduction)})"]
        elif entry.name == "mse":
            self.uses_functional = True
            about = "Mean squared error against the labels as numbers"
            body = [
                "targets = labels.to(outputs.dtype).reshape(outputs.shape)",
                f"loss = F.mse_loss(outputs, targets{_reduction(reduction)})",
            ]
        elif entry.name == "bce_with_logits":
            self.uses_functional = True
            about = "Binary cross-entropy of one logit per example against labels 0/1"
            body = [
                "targets = labels.to(outputs.dtype).reshape(outputs.shape)",
                "loss = F.binary_cross_entropy_with_logits(outputs, targets"
                f"{_reduction(reduction)})",
            ]
        elif entry.name == "hinge":
            margin = options.pop("margin", 1.0)
            self.uses_functional = not scalar_out
            body = _hinge(scalar_out, margin, reduction)
            about = (
                "The SVM hinge loss, labels 0/1 read as -1/+1"
                if scalar_out
                else "The multiclass SVM hinge loss (cs231n)"
            )
        else:
            raise UnsupportedError(f"the loss {entry.name!r} at line {entry.pos.line}")
        if options:
            raise UnsupportedError(
                f"loss {entry.name}'s option {next(iter(options))} at line {entry.pos.line}"
            )
        if l2 > 0:
            about += (
                f", plus the L2 penalty ({l2!r} / 2) * sum of squared weights (matrices and "
                "kernels; not biases or normalization scales and shifts)"
            )
            body.append(
                f"loss = loss + 0.5 * {l2!r} * sum((w * w).sum() for w in model.parameters() "
                "if w.ndim >= 2)"
            )
        if len(body) == 1:  # loss = <expression>
            body = [f"return {body[0].removeprefix('loss = ')}"]
        else:
            body.append("return loss")
        lines = ["def compute_loss(outputs, labels, model):", *_docstring(about + ".")]
        lines += [f"    {line}" for line in body]
        return "\n".join(lines)

    def _count_correct(self) -> str:
        if getattr(self.built.data.splits.train, "regression", False):
            about = "Real-valued targets have no accuracy (reported as nan); the loss says it."
            body = 'float("nan")'
        elif self.spec.network.output_shape == (1,):
            about = "How many examples the one score classifies right (class 1 where it is > 0)."
            body = "((outputs.reshape(-1) > 0).long() == labels).sum().item()"
        else:
            about = "How many examples get their highest score on the right class."
            body = "(outputs.argmax(dim=1) == labels).sum().item()"
        lines = ["def count_correct(outputs, labels):", *_docstring(about), f"    return {body}"]
        return "\n".join(lines)

    # --- optimizer and schedule -----------------------------------------------------------
    def _optimizer(self) -> str:
        entry, optimizer = self.train.optimizers[0], self.built.optimizer
        if entry.name not in OPTIMIZER_TABLE:
            raise UnsupportedError(f"the optimizer {entry.name!r} at line {entry.pos.line}")
        torch_class, names = OPTIMIZER_TABLE[entry.name]
        groups = optimizer.param_groups
        first = groups[0]
        for option, supported, _ in TORCH_LACKS.get(entry.name, ()):
            if first[option] != supported:
                raise UnsupportedError(
                    f"{entry.name}'s option {option}={_literal(first[option])} at line "
                    f"{entry.pos.line}",
                    "the notes' variant: torch.optim has only its default",
                )
        defaults = {
            name: parameter.default
            for name, parameter in inspect.signature(OPTIMIZERS.get(entry.name)).parameters.items()
        }
        # the file's lr: a schedule may have changed the group's (cyclic starts at base_lr)
        options = {"lr": entry.kwargs.get("lr", defaults["lr"])}
        options.update(
            (name, first[name])
            for name in names
            if name != "lr" and _differs(first[name], defaults.get(name))
        )
        about = f"The optimizer, torch.optim.{torch_class}"
        if len(groups) == 2:
            about += (
                ", weight decay on the weights only (matrices and kernels), not on biases or "
                "normalization scales and shifts (`decay weights`)"
            )
            params = "groups"
            setup = [
                "weights = [p for p in model.parameters() if p.ndim >= 2]",
                "others = [p for p in model.parameters() if p.ndim < 2]",
                'groups = [{"params": weights}, {"params": others, "weight_decay": 0.0}]',
            ]
        else:
            params, setup = "model.parameters()", []
        call = _call(f"torch.optim.{torch_class}", [], options)
        call = _Call(call.name, (params, *call.parts))
        lines = ["def make_optimizer(model):", *_docstring(about + ".")]
        lines += [f"    {line}" for line in setup] + call.lines("    ", "return ")
        return "\n".join(lines)

    def _scheduler(self) -> str | None:
        entry = self.built.schedule_entry  # with the run's length where the file left it out
        if entry is None:
            return None
        per = "after every batch" if self.train.schedule_per == "step" else "after every epoch"
        lines = ["def make_scheduler(optimizer):", *_docstring(f"The lr schedule, stepped {per}.")]
        return "\n".join(lines + self._scheduler_body(entry))

    def _scheduler_body(self, entry: Entry) -> list[str]:
        """make_scheduler's body: a torch scheduler, or LambdaLR over the closed form."""
        options = _schedule_options(entry)
        if entry.name in SCHEDULE_TABLE and options.get("max_decay", 1.0) == 1.0:
            torch_class, names = SCHEDULE_TABLE[entry.name]
            chosen = {name: entry.kwargs[name] for name in names if name in entry.kwargs}
            if entry.name == "cyclic":
                chosen["cycle_momentum"] = False  # topograd cycles only the lr
            call = _call(f"torch.optim.lr_scheduler.{torch_class}", [], chosen)
            return _Call(call.name, ("optimizer", *call.parts)).lines("    ", "return ")
        self.uses_math = True
        about, factor = _closed_form(entry, self.built.optimizer.param_groups[0]["initial_lr"])
        lines = ["", "    def lr_factor(step):", *_docstring(about, "        ")]
        lines += [f"        {line}" for line in factor]
        return [*lines, "", "    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)"]

    # --- augmentation ---------------------------------------------------------------------
    def _augment(self) -> list[str]:
        entries = self.spec.data.augment
        if not entries:
            return []
        shape = self.built.data.splits.train.image_shape
        functions, calls = {}, []
        for entry in entries:
            if entry.name not in AUGMENTATION_SOURCE:
                raise UnsupportedError(
                    f"the augmentation {entry.name!r} at line {entry.pos.line}",
                    "export writes crop, flip, noise, cutout and brightness_contrast",
                )
            function, defaults = AUGMENTATION_CALLS[entry.name]
            functions[entry.name] = AUGMENTATION_SOURCE[entry.name].strip("\n")
            options = {**defaults, **entry.kwargs}
            call = _call(function, [], options)
            calls += _Call(function, ("images", "rng", *call.parts)).lines("    ", "images = ")
        folded = ", ".join(str(size) for size in shape)
        lines = [
            "def augment(x, rng):",
            *_docstring(
                f"The training batches' augmentation: rows folded to {tuple(shape)} images and "
                "back, every random draw from `rng`, in topograd's order."
            ),
            f"    images = x.reshape(len(x), {folded})",
            *calls,
            "    return images.reshape(len(x), -1)",
        ]
        return [*functions.values(), "\n".join(lines)]

    # --- evaluation and the loop ----------------------------------------------------------
    def _evaluate(self) -> str:
        return '''
def evaluate(model, x, y, device):
    """(mean loss, accuracy) in evaluation mode: batch norm on its running statistics, no
    dropout, no gradients; EVAL_BATCH_SIZE rows at a time."""
    model.eval()
    total_loss, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(x), EVAL_BATCH_SIZE):
            rows = slice(start, start + EVAL_BATCH_SIZE)
            inputs = torch.as_tensor(x[rows], dtype=DTYPE, device=device)
            labels = torch.as_tensor(y[rows], device=device)
            outputs = model(inputs)
            total_loss += compute_loss(outputs, labels, model).item() * len(labels)
            correct += count_correct(outputs, labels)
    return total_loss / len(x), correct / len(x)'''

    def _main(self) -> str:
        history = ["epoch", "train_loss", "train_acc"]
        if self.has_val:
            history += ["val_loss", "val_acc"]
        return "\n".join([*self._main_setup(history), *self._main_loop(history), *self._main_end()])

    def _main_setup(self, history: list[str]) -> list[str]:
        """main() up to the loop: options, data, model, optimizer, the batch generator."""
        description = f"Train {self.spec.network.name} (exported from {self.file_name})."
        splits = ["train", *(["val"] if self.has_val else []), *(["test"] if self.has_test else [])]
        draws = (
            "topograd's batches: a generator seeded as topograd seeds it draws each epoch's order"
        )
        if self.augment:
            draws += ", then each batch's augmentation"
        lines = [
            "def main(argv=None):",
            *_call("argparse.ArgumentParser", [], {"description": description}).lines(
                "    ", "parser = "
            ),
            '    parser.add_argument("--epochs", type=int, default=EPOCHS, help="epochs to train")',
            '    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, ...")',
            '    parser.add_argument("--metrics", help="also write the metrics to this JSON file")',
            "    args = parser.parse_args(argv)",
            "",
            "    torch.set_default_dtype(DTYPE)",
            *(["    torch.manual_seed(SEED)  # dropout's masks"] if self.dropout else []),
            "    data = np.load(DATA, allow_pickle=False)",
            *(f'    {s}_x, {s}_y = data["{s}_x"], data["{s}_y"]' for s in splits),
            f"    model = {self.class_name}()",
            "    initial = {",
            '        key.removeprefix("init."): torch.from_numpy(data[key])',
            "        for key in data.files",
            '        if key.startswith("init.")',
            "    }",
            "    model.load_state_dict(initial)",
            "    model.to(args.device)",
            "    optimizer = make_optimizer(model)",
            *(["    scheduler = make_scheduler(optimizer)"] if self.scheduler else []),
            "",
            *(f"    # {line}" for line in textwrap.wrap(draws, width=90)),
            "    rng = np.random.default_rng([SEED, 0])",
            "    history = {" + ", ".join(f'"{key}": []' for key in history) + "}",
        ]
        if self.train.early_stopping is not None:
            lines += [
                '    best_loss, best_epoch = float("inf"), 0',
                "    best_state = {k: v.clone() for k, v in model.state_dict().items()}",
            ]
        return lines

    def _main_loop(self, history: list[str]) -> list[str]:
        """The epochs: the batches' steps, the measurements, early stopping."""
        train = self.train
        per_step = self.scheduler is not None and train.schedule_per == "step"
        per_epoch = self.scheduler is not None and train.schedule_per == "epoch"
        stop = "len(order)"
        if train.fit_options.get("drop_last"):
            stop = "len(order) - len(order) % BATCH_SIZE"
        inputs = "augment(train_x[index], rng)" if self.augment else "train_x[index]"
        lines = [
            "    for epoch in range(1, args.epochs + 1):",
            "        model.train()",
            "        order = rng.permutation(len(train_x))",
            f"        for start in range(0, {stop}, BATCH_SIZE):",
            "            index = order[start : start + BATCH_SIZE]",
            f"            batch = {inputs}",
            "            inputs = torch.as_tensor(batch, dtype=DTYPE, device=args.device)",
            "            labels = torch.as_tensor(train_y[index], device=args.device)",
            "            optimizer.zero_grad()",
            "            loss = compute_loss(model(inputs), labels, model)",
            "            if not loss.isfinite():",
            '                raise SystemExit(f"the loss is {loss.item()} in epoch {epoch}: '
            'training diverged")',
            "            loss.backward()",
            "            optimizer.step()",
            *(["            scheduler.step()"] if per_step else []),
            *(["        scheduler.step()"] if per_epoch else []),
            "        train_loss, train_acc = evaluate(model, train_x, train_y, args.device)",
        ]
        lines.append(
            '        line = f"epoch {epoch:3d}/{args.epochs}  loss {train_loss:.4f}  '
            'acc {train_acc:.4f}"'
        )
        if self.has_val:
            lines += [
                "        val_loss, val_acc = evaluate(model, val_x, val_y, args.device)",
                '        line += f"  val loss {val_loss:.4f}  val acc {val_acc:.4f}"',
            ]
        lines += [
            "        print(f\"{line}  lr {optimizer.param_groups[0]['lr']:.3g}\")",
            "        for key, value in zip(history, (" + ", ".join(history) + ")):",
            "            history[key].append(value)",
        ]
        if train.early_stopping is not None:
            metric = "val_loss" if self.has_val else "train_loss"
            lines += [
                f"        if {metric} < best_loss:",
                f"            best_loss, best_epoch = {metric}, epoch",
                "            best_state = {k: v.clone() for k, v in model.state_dict().items()}",
                "        elif epoch - best_epoch >= PATIENCE:",
                f'            print(f"early stop: no better {metric.replace("_", " ")} since epoch '
                '{best_epoch}, back to its weights")',
                "            model.load_state_dict(best_state)",
                "            break",
            ]
        return lines

    def _main_end(self) -> list[str]:
        """main() after the loop: the test split, the metrics file."""
        lines, results = [], "history"
        if self.has_test:
            lines += [
                "    test_loss, test_acc = evaluate(model, test_x, test_y, args.device)",
                '    print(f"test loss {test_loss:.4f}  test accuracy {test_acc:.4f}")',
            ]
            results = '{**history, "test_loss": test_loss, "test_acc": test_acc}'
        lines += [
            "    if args.metrics:",
            f"        text = json.dumps({results}, indent=2)",
            '        Path(args.metrics).write_text(text + "\\n", encoding="utf-8")',
        ]
        return lines


def _size(shape: tuple, what: str) -> str:
    """(64,) -> "64 inputs", (1,) -> "1 output", (1, 8, 8) -> "1 x 8 x 8 inputs"."""
    plural = "" if shape == (1,) else "s"
    return f"{' x '.join(str(size) for size in shape)} {what}{plural}"


def _with_comment(line: str, comment: str) -> str:
    """`line  # comment` when that fits in 100 columns, else the line alone."""
    full = f"{line}  # {comment}"
    return full if len(full) <= 100 else line


def _reduction(reduction: str) -> str:
    return "" if reduction == "mean" else f', reduction="{reduction}"'


def _hinge(scalar_out: bool, margin: float, reduction: str) -> list[str]:
    total = "sum" if reduction == "sum" else "mean"
    if scalar_out:
        return [
            "signs = 2.0 * labels.to(outputs.dtype).reshape(outputs.shape) - 1.0",
            f"loss = torch.relu({margin!r} - outputs * signs).{total}()",
        ]
    return [
        "correct = outputs.gather(1, labels[:, None])",
        "others = 1.0 - F.one_hot(labels, outputs.shape[1]).to(outputs.dtype)",
        f"loss = (torch.relu(outputs - correct + {margin!r}) * others).sum(dim=1).{total}()",
    ]


def _differs(value, default) -> bool:
    if default is inspect.Parameter.empty:
        return True
    if isinstance(value, (tuple, list)) and isinstance(default, (tuple, list)):
        return tuple(value) != tuple(default)
    return value != default


def _schedule_options(entry: Entry) -> dict:
    """The schedule's options with the engine's defaults filled in."""
    from topograd.engine.optim.schedules import SCHEDULES

    parameters = inspect.signature(SCHEDULES.get(entry.name)).parameters
    options = {
        name: p.default
        for name, p in parameters.items()
        if name != "optimizer" and p.default is not inspect.Parameter.empty
    }
    options.update(entry.kwargs)
    return options


def _closed_form(entry: Entry, lr: float) -> tuple[str, list[str]]:
    """(what the schedule does, the body of lr_factor(step): the lr as a fraction of the
    initial lr) for schedules written as a LambdaLR."""
    options = _schedule_options(entry)
    if entry.name != "warmup":
        return _factor(entry, options, lr)
    steps, start = options["warmup_steps"], options["start_factor"]
    ramp = f"{start!r} + (1 - {start!r}) * step / {steps}" if start else f"step / {steps}"
    after = options.get("after")
    if after is None:
        return f"A linear warm-up over {steps} steps, then the initial lr.", [
            f"return min({ramp}, 1.0)"
        ]
    if after.name in ("warmup", "cyclic"):
        raise UnsupportedError(
            f"a {after.name} schedule after a warm-up at line {after.pos.line}",
            "export writes a warm-up in front of step, multistep, exponential, inverse_time, "
            "cosine or cosine_restarts",
        )
    what, rest = _factor(after, _schedule_options(after), lr)
    about = f"A linear warm-up over {steps} steps, then: {what[0].lower()}{what[1:]}"
    return about, [f"if step < {steps}:", f"    return {ramp}", f"step -= {steps}", *rest]


def _factor(entry: Entry, options: dict, lr: float) -> tuple[str, list[str]]:
    """(what it does, statements in `step` that return the lr / the initial lr), laid out as
    ruff format lays them out."""
    name = entry.name
    floor = options.get("eta_min", 0.0) / lr if lr else 0.0
    scaled = f"return {floor!r} + (1 - {floor!r}) * wave" if floor else "return wave"
    if name == "step":
        return "Step decay.", [f"return {options['gamma']!r} ** (step // {options['step_size']})"]
    if name == "multistep":
        milestones = _literal(list(options["milestones"]))
        gamma = options["gamma"]
        return "Decay at milestones.", [f"return {gamma!r} ** sum(step >= m for m in {milestones})"]
    if name == "exponential":
        return "Exponential decay.", [f"return {options['gamma']!r}**step"]
    if name == "inverse_time":
        return "The notes' 1/t decay.", [f"return 1.0 / (1.0 + {options['decay_rate']!r} * step)"]
    if name == "cosine":
        wave = f"wave = (1 + math.cos(math.pi * step / {options['T_max']})) / 2"
        return "Cosine annealing.", [wave, scaled]
    if name == "cosine_restarts":
        t0, mult, decay = options["T_0"], options["T_mult"], options["max_decay"]
        if mult != 1:
            raise UnsupportedError(
                f"cosine_restarts with T_mult={mult} and max_decay={decay} (or after a warm-up) "
                f"at line {entry.pos.line}",
                "export writes these with T_mult=1",
            )
        peak = f"{decay!r}**cycle * " if decay != 1 else ""
        about = f"Cosine annealing with warm restarts every {t0} steps"
        about += f", each peak {decay} x the one before." if decay != 1 else "."
        return about, [
            f"cycle, position = divmod(step, {t0})",
            f"wave = {peak}(1 + math.cos(math.pi * position / {t0})) / 2",
            scaled,
        ]
    raise UnsupportedError(f"the schedule {name!r} at line {entry.pos.line}")
