"""An imported model as a model file plus its weights: `model.tg` and `model.weights.npz`.

The model file says the network in the model language (every layer labelled with its
source's name, blocks for the branches) with the network options `input=(C, H, W)` and
`weights="model.weights.npz"`; the weights are a model-only checkpoint
(engine.train.checkpoint: npz and JSON, never pickle) keyed by the engine's state_dict names.
A network whose example has several axes starts with `unflatten((C, H, W))`, which folds the
rows of a data section into images and lets images pass unchanged.

Both files are written into a staging folder beside the target, the model file is checked
and built there (its weights loaded) and its output compared with the imported module's;
only then are the two moved into place, together: both or neither.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import textwrap
from pathlib import Path

import numpy as np
from topograd.dsl.importers.common import Imported, ModelImportError
from topograd.engine import Tensor, no_grad
from topograd.engine import nn as enn
from topograd.engine.modes import use_rng
from topograd.engine.nn.activations_extra import GELU, LogSoftmax, Softmax
from topograd.engine.train.checkpoint import save_checkpoint

INDENT = "  "
WIDTH = 96  # of the comment at the top


def weights_path(model_file) -> Path:
    """Where the weights of `model_file` go: model.tg -> model.weights.npz beside it."""
    model_file = Path(model_file)
    return model_file.with_name(f"{model_file.stem}.weights.npz")


def file_model(imported: Imported) -> enn.Sequential:
    """The network as the model file builds it: the imported layers, after an Unflatten
    when one example has several axes (the state_dict names are this model's)."""
    items = list(imported.module)
    if len(imported.input_shape) > 1:
        items.insert(0, enn.Unflatten(imported.input_shape))
    return enn.Sequential(*items)  # the imported items keep their labels


def model_text(imported: Imported, weights_name: str, model: enn.Sequential | None = None) -> str:
    """The model file for `imported`, whose weights are in `weights_name` beside it."""
    model = file_model(imported) if model is None else model
    shape = imported.input_shape
    size = str(shape[0]) if len(shape) == 1 else _value(tuple(shape))
    about = (
        f"Imported by `topograd import` from {imported.source}. The weights are in "
        f"{weights_name} beside this file (a model-only checkpoint: npz and JSON, no "
        "pickle). `topograd step` and `topograd gui` step through it as it is; to train it "
        "(`topograd run`), add a data section whose examples have the input's shape and a "
        "train section, e.g."
    )
    lines = [f"# {line}" for line in textwrap.wrap(about, WIDTH - 2, break_on_hyphens=False)]
    lines += [
        "#   data { dataset digits }",
        "#   train { loss cross_entropy  optimizer adam(lr=1e-3)  epochs 5 }",
        f"network {imported.name}(input={size}, weights={json.dumps(weights_name)}) {{",
    ]
    lines += _items(model, 1)
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_model(imported: Imported, output, *, force: bool = False) -> tuple[Path, Path]:
    """Write `output` (the model file) and its weights beside it, both or neither; an
    existing file is replaced only with `force`. Returns the two paths."""
    output = Path(output)
    weights = weights_path(output)
    if output.suffix == ".npz":
        raise ModelImportError(f"{output}: name the model file .tg; its weights go to an .npz")
    if not output.parent.is_dir():
        raise ModelImportError(f"no such folder: {output.parent}")
    existing = [path for path in (output, weights) if path.exists()]
    if existing and not force:
        raise ModelImportError(f"{existing[0]} exists; use --force to replace it")
    model = file_model(imported)
    text = model_text(imported, weights.name, model)
    staging = Path(tempfile.mkdtemp(prefix=".topograd-import-", dir=output.parent))
    try:
        save_checkpoint(staging / weights.name, model, rngs={})
        (staging / output.name).write_text(text, encoding="utf-8")
        verify(staging / output.name, model, imported)
        _move_both(staging, (weights, output))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output, weights


def verify(path: Path, model: enn.Sequential, imported: Imported) -> None:
    """Check and build the written model file and compare it with `model`: the same weights
    and, in evaluation mode, the same outputs (a ModelImportError says what differs)."""
    from topograd.dsl import DslError, Source, load
    from topograd.dsl.build import BlameError, build_model

    source = Source(str(path), path.read_text(encoding="utf-8"))
    try:
        with use_rng(np.random.default_rng(0)):  # building reseeds the shared generator
            built = build_model(load(source).network)
    except (DslError, BlameError) as error:
        message = error.render() if isinstance(error, DslError) else error.message
        raise ModelImportError(f"the written model file does not check:\n{message}") from None
    expected, got = model.state_dict(), built.state_dict()
    if list(expected) != list(got):
        raise ModelImportError(
            f"the written model file has the parameters {list(got)}, not {list(expected)}"
        )
    example = np.random.default_rng(0).standard_normal((2, *imported.input_shape))
    with no_grad():
        outputs = []
        for network in (model, built):
            mode = [part.training for part in network.modules()]
            network.eval()
            dtype = network.parameters()[0].dtype if network.parameters() else np.float64
            outputs.append(network(Tensor(example.astype(dtype))).data.astype(np.float64))
            for part, training in zip(network.modules(), mode):
                object.__setattr__(part, "training", training)
    scale = 1.0 + float(np.abs(outputs[0]).max(initial=0.0))
    tolerance = (1e-9 if _is_double(model) else 1e-4) * scale
    difference = float(np.abs(outputs[0] - outputs[1]).max(initial=0.0))
    if not difference <= tolerance:
        raise ModelImportError(
            f"the written model file computes outputs that differ from the imported model's "
            f"by {difference:.3g}"
        )


def _is_double(model) -> bool:
    return all(p.dtype == np.float64 for p in model.parameters())


def _move_both(staging: Path, targets) -> None:
    """Move the staged files onto `targets`; on a failure put back what was there."""
    backups, placed = [], []
    try:
        for target in targets:
            if target.exists():
                backup = staging / f"previous-{target.name}"
                os.replace(target, backup)
                backups.append((backup, target))
        for target in targets:
            os.replace(staging / target.name, target)
            placed.append(target)
    except OSError as error:
        for target in placed:
            with contextlib.suppress(OSError):
                target.unlink()
        for backup, target in backups:
            with contextlib.suppress(OSError):
                os.replace(backup, target)
        raise ModelImportError(f"cannot write {targets[-1]}: {error.strerror}") from None


# --- the network as text ----------------------------------------------------------------------
def _items(sequence: enn.Sequential, depth: int) -> list[str]:
    indent = INDENT * depth
    lines = []
    for module in sequence:
        name = module._local_name
        head = f"{indent}{name} = " if name and not name.isdigit() else indent
        if isinstance(module, enn.Residual):
            lines.append(f"{head}residual {{")
            lines += _items(module.body, depth + 1)
            if "shortcut" in module.__dict__:
                lines.append(f"{indent}}} shortcut {{")
                lines += _items(module.shortcut, depth + 1)
            lines.append(f"{indent}}}")
        elif isinstance(module, enn.Concat):
            _axis_is_one(module.axis, "concat block")
            lines.append(f"{head}concat {{")
            lines += _items(module.body, depth + 1)
            lines.append(f"{indent}}}")
        else:
            lines.append(f"{head}{_call(module)}")
    return lines


def _axis_is_one(axis: int, what: str) -> None:
    if axis != 1:
        raise ModelImportError(f"a {what} along axis {axis} cannot be written (only axis 1)")


def _call(module: enn.Module) -> str:
    """The model language's call for one layer: sizes the checker infers are left out."""
    kind = type(module)
    writer = CALLS.get(kind)
    if writer is None:
        raise ModelImportError(f"the layer {kind.__name__} cannot be written in a model file")
    name, args, options = writer(module)
    parts = [_value(a) for a in args] + [f"{k}={_value(v)}" for k, v in options.items()]
    return f"{name}({', '.join(parts)})" if parts else name


def _non_default(**options) -> dict:
    """The options (value, default) whose value is not the default."""
    return {key: value for key, (value, default) in options.items() if value != default}


def _one(pair_value):
    """(a, a) as a; anything else as it is."""
    return pair_value[0] if len(set(pair_value)) == 1 else tuple(pair_value)


def _linear(m):
    return "linear", [m.out_features], _non_default(bias=(m.bias is not None, True))


def _conv2d(m):
    options = _non_default(
        stride=(_one(m.stride), 1),
        padding=(_one(m.padding), 0),
        dilation=(_one(m.dilation), 1),
        groups=(m.groups, 1),
        bias=(m.bias is not None, True),
    )
    return "conv2d", [m.out_channels, _one(m.kernel_size)], options


def _batch_norm(name):
    def write(m):
        options = _non_default(
            eps=(m.eps, 1e-5),
            momentum=(m.momentum, 0.1),
            affine=(m.weight is not None, True),
            track_running_stats=(m.track_running_stats, True),
        )
        return name, [], options

    return write


def _layer_norm(m):
    options = _non_default(eps=(m.eps, 1e-5), elementwise_affine=(m.weight is not None, True))
    if len(m.normalized_shape) == 1:
        options = {"normalized_shape": m.normalized_shape[0], **options}
    return "layernorm", [], options


def _group_norm(m):
    options = _non_default(eps=(m.eps, 1e-5), affine=(m.weight is not None, True))
    return "groupnorm", [m.num_groups], options


def _pool(name):
    def write(m):
        options = _non_default(
            stride=(_one(m.stride), _one(m.kernel_size)),
            padding=(_one(m.padding), 0),
            ceil_mode=(m.ceil_mode, False),
        )
        return name, [_one(m.kernel_size)], options

    return write


def _merge(m):
    if m.mode == "concat":
        _axis_is_one(m.axis, "concat")
    return m.mode, [_Name(source) for source in m.sources], {}


class _Name(str):
    """A bare name in a call (a merge's earlier layer), written without quotes."""


CALLS = {
    enn.Linear: _linear,
    enn.Conv2d: _conv2d,
    enn.BatchNorm1d: _batch_norm("batchnorm"),
    enn.BatchNorm2d: _batch_norm("batchnorm2d"),
    enn.LayerNorm: _layer_norm,
    enn.GroupNorm: _group_norm,
    enn.InstanceNorm2d: lambda m: (
        "instancenorm2d",
        [],
        _non_default(eps=(m.eps, 1e-5), affine=(m.weight is not None, False)),
    ),
    enn.ReLU: lambda m: ("relu", [], {}),
    enn.Sigmoid: lambda m: ("sigmoid", [], {}),
    enn.Tanh: lambda m: ("tanh", [], {}),
    enn.LeakyReLU: lambda m: (
        "leaky_relu",
        [],
        _non_default(negative_slope=(m.negative_slope, 0.01)),
    ),
    enn.ELU: lambda m: ("elu", [], _non_default(alpha=(m.alpha, 1.0))),
    GELU: lambda m: ("gelu", [], _non_default(approximate=(m.approximate, "none"))),
    Softmax: lambda m: ("softmax", [], {"axis": m.axis}),
    LogSoftmax: lambda m: ("log_softmax", [], {"axis": m.axis}),
    enn.Dropout: lambda m: ("dropout", [], {"p": m.p}),
    enn.MaxPool2d: _pool("maxpool2d"),
    enn.AvgPool2d: _pool("avgpool2d"),
    enn.AdaptiveAvgPool2d: lambda m: ("adaptiveavgpool2d", [1], {}),
    enn.Flatten: lambda m: ("flatten", [], _non_default(start_dim=(m.start_dim, 1))),
    enn.Unflatten: lambda m: ("unflatten", [tuple(m.shape)], {}),
    enn.Merge: _merge,
}
"""Engine layer class -> write(module) -> (name, positional arguments, options)."""


def _value(value) -> str:
    """A value as the model language spells it."""
    if isinstance(value, _Name):
        return str(value)
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if not math.isfinite(value):
            raise ModelImportError(f"the value {value} cannot be written in a model file")
        return repr(float(value))
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple | list):
        return "(" + ", ".join(_value(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    raise ModelImportError(f"the value {value!r} cannot be written in a model file")
