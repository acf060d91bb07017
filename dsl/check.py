"""The checker: a parsed program -> Spec, or every problem in the file at once.

It folds constants, resolves every name through the engine's registries (suggesting the
closest name on a typo), binds options to the engine's signatures (dsl.options), checks
ranges, infers layer sizes from the data and probes each layer with a tiny batch so that a
shape mismatch is reported at the layer that causes it.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
from topograd.dsl import ast
from topograd.dsl.build import BlameError, build_model
from topograd.dsl.datasets import FILES, REGRESSION_LOSSES, file_problems
from topograd.dsl.errors import DslCheckError, Problem, Source
from topograd.dsl.graphs import evaluate_graph
from topograd.dsl.options import (
    bind,
    expected_kind,
    range_problem,
    signature,
    signature_parameters,
    suggest,
    type_problem,
)
from topograd.dsl.spec import (
    DataSpec,
    Entry,
    GraphSpec,
    LayerSpec,
    NetworkSpec,
    RangeTestSpec,
    SearchSpec,
    Spec,
    TrainSpec,
)
from topograd.dsl.values import FoldError, Ref, Symbol, describe, fold, is_number, name_pos, plain
from topograd.engine import no_grad
from topograd.engine.data.augment import AUGMENTATIONS
from topograd.engine.data.datasets import DATASETS, DataError, split
from topograd.engine.data.preprocess import PREPROCESSORS
from topograd.engine.functional import LOSSES
from topograd.engine.init import INITIALIZERS
from topograd.engine.nn.layers import LAYERS
from topograd.engine.optim import OPTIMIZERS
from topograd.engine.optim.lr_finder import lr_range_test
from topograd.engine.optim.schedules import SCHEDULES
from topograd.engine.registry import Registry
from topograd.engine.tensor import Tensor
from topograd.engine.train.search import DISTRIBUTIONS

# --- what each section accepts ------------------------------------------------------------------
SECTION_KEYS = {
    "data": ("dataset", "val", "test", "stratify", "split_seed", "preprocess", "augment"),
    "train": (
        "loss",
        "optimizer",
        "schedule",
        "schedule_per",
        "l2",
        "decay",
        "epochs",
        "batch",
        "seed",
        "checkpoint",
        "early_stopping",
        "ensemble",
        "explosion_factor",
        "drop_last",
        "check_initial_loss",
        "track_stats",
        "eval_batch",
        "baseline_error",
    ),
    "search": ("trials", "stages", "shrink", "top", "seed", "metric", "minimize", "epochs"),
    "lr_range_test": ("start_lr", "end_lr", "num_steps", "smoothing", "divergence"),
}
REPEATABLE = {"preprocess", "augment"}
NETWORK_OPTIONS = ("scalar", "input", "classes", "dtype", "weights")
METRICS = ("val_acc", "val_loss", "train_acc", "train_loss")

INFERRED = frozenset(
    {"in_features", "num_features", "in_channels", "num_channels", "normalized_shape"}
)
OUTPUT_SIZES = ("out_features", "out_channels")
RUN_LENGTHS = frozenset({"T_max"})  # a schedule's length, by default the whole run's
BLOCKS = ("residual", "concat")  # `kind { layers }` inside a network
MERGES = ("add", "concat")  # `kind(earlier, ...)`: join with labelled earlier layers
SCALAR_LAYERS = ("linear", "relu", "tanh", "sigmoid", "leaky_relu", "elu")
DROPOUT_ALIASES = {"keep": ("p", lambda keep: 1.0 - keep), "drop": ("p", lambda drop: drop)}
MAX_REPEAT = 10_000
MAX_VALUES = 2**24
"""The most values one example may have at a layer's input or output, and the most weights
one layer may hold: beyond these, probing the layer would take seconds and gigabytes."""
MAX_SCALAR_WEIGHTS = 2**14
"""A scalar network makes one graph node per weight (about 3.5 us each to build)."""
MAX_EXAMPLES = 100_000
"""The most examples a generated dataset may have (moons, circles, spiral)."""
SIZES = ("in_features", "out_features", "in_channels", "out_channels", "pieces", "num_features")
SNAPSHOT_CLASHES = {
    "schedule": "every cycle anneals the lr from lr_max with a cosine",
    "epochs": "it trains cycles x epochs_per_cycle epochs",
}


def snapshot(cycles: int, epochs_per_cycle: int, lr_max: float, lr_min: float = 0.0, last=None):
    """Signature of `ensemble snapshot(...)` (engine.train.snapshot_ensemble's options)."""


def independent(members: int = 5):
    """Signature of `ensemble independent(members=5)`: one model per seed, then averaged."""


ENSEMBLES = Registry("ensemble")
ENSEMBLES.register("snapshot")(snapshot)
ENSEMBLES.register("independent")(independent)


class _Checker:
    def __init__(self, program: ast.Program, source: Source, overrides: dict | None):
        self.program, self.source = program, source
        self.overrides = overrides or {}
        self.problems: list[Problem] = []
        self.unrolled, self.over_cap = 0, False  # layers expanded so far, blocks included
        self.constants: dict = {}
        self.positions: dict = {}
        self.probed: dict = {}  # (layer, options, input shape...) -> output shape

    # --- reporting --------------------------------------------------------------------------
    def problem(self, pos, message, hint=None) -> None:
        self.problems.append(Problem(pos, message, hint))

    def folded(self, expr):
        """The expression's value, or None after reporting why it has none."""
        try:
            return fold(expr, self.constants)
        except FoldError as error:
            self.problem(error.pos, error.message, error.hint)
            return None

    def unknown_name(self, value: Symbol, what: str = "name") -> None:
        hint = suggest(value.name, self.constants)
        self.problem(value.pos, f"unknown {what} {value.name!r}", hint)

    # --- the whole program ------------------------------------------------------------------
    def run(self) -> Spec:
        self.lets()
        sections = self.sections()
        data = self.data(sections.get("data"))
        train = self.train(sections.get("train"))
        networks = self.program.of_type(ast.Network)
        for extra in networks[1:]:
            self.problem(extra.pos, "a file declares at most one network")
        network = self.network(networks[0], data, train) if networks else None
        graphs = self.graphs()
        search = self.search(sections.get("search"))
        range_test = self.range_test(sections.get("lr_range_test"))
        self.cross_checks(sections, network, data, train, graphs)
        if self.problems:  # (a mistake inside `repeat` is reported once, not per copy)
            raise DslCheckError(self.source, list(dict.fromkeys(self.problems)))
        return Spec(
            constants=dict(self.constants),
            graphs=tuple(graphs),
            network=network,
            data=data,
            train=train,
            search=search,
            range_test=range_test,
            positions=dict(self.positions),
        )

    def lets(self) -> None:
        for let in self.program.of_type(ast.Let):
            if let.name in self.constants:
                self.problem(let.pos, f"{let.name!r} is already defined")
                continue
            value = self.folded(let.value)
            if isinstance(value, Symbol):
                self.unknown_name(value)
                value = None
            if let.name in self.overrides:
                value = self.overrides[let.name]
            self.constants[let.name] = value
            self.positions[let.name] = let.pos

    def sections(self) -> dict[str, dict]:
        """Each section's settings by key (lists for repeatable keys), after the key checks."""
        found: dict[str, dict] = {}
        for section in self.program.of_type(ast.Section):
            if section.kind in found:
                self.problem(section.pos, f"a second {section.kind} section; merge them into one")
                continue
            settings: dict = {"@": section}
            allowed = SECTION_KEYS[section.kind]
            for item in section.items:
                if isinstance(item, ast.Sample):
                    if section.kind != "search":
                        self.problem(item.pos, "'~' (a distribution) is only for search sections")
                    else:
                        settings.setdefault("~", []).append(item)
                    continue
                if item.key not in allowed:
                    self.problem(
                        name_pos(item.pos, item.key),
                        f"unknown {section.kind} setting {item.key!r}",
                        suggest(item.key, allowed) or f"settings: {', '.join(allowed)}",
                    )
                    continue
                if item.key in REPEATABLE:
                    settings.setdefault(item.key, []).append(item)
                elif item.key in settings:
                    self.problem(item.pos, f"{item.key} is set twice in {section.kind}")
                else:
                    settings[item.key] = item
            found[section.kind] = settings
        return found

    # --- typed settings ---------------------------------------------------------------------
    def setting(self, settings, key, kind, default=None):
        """A setting's value checked against a type ("int", "number", "bool", "text") and the
        named range in dsl.options.RANGES (or a local rule by key)."""
        item = settings.get(key)
        if item is None:
            return default
        value = self.folded(item.value)
        if value is None and kind.endswith("?"):
            return None
        if isinstance(value, Symbol) and kind not in ("text", "text?"):
            self.unknown_name(value)
            return default
        problem = type_problem(key, value, kind) or range_problem(key, value)
        problem = problem or _local_range(key, value)
        if problem:
            self.problem(item.value.pos, problem)
            return default
        return plain(value)

    def entry(self, value, registry: Registry, what: str, pos, skip=0, **bind_options):
        """Resolve a name or call against a registry and bind its options; None on error."""
        if isinstance(value, Symbol):
            value = Ref(value.name, pos=value.pos)
        if not isinstance(value, Ref):
            self.problem(pos, f"expected a {what} name, got {describe(value)}")
            return None
        if value.name not in registry:
            known = registry.names()
            self.problem(
                name_pos(value.pos, value.name),
                f"unknown {what} {value.name!r}",
                suggest(value.name, known) or f"known: {', '.join(known)}",
            )
            return None
        target = registry.get(value.name)
        reported = len(self.problems)
        binding = bind(value, target, f"{what} {value.name}", skip=skip, **bind_options)
        for where, message, hint in binding.problems:
            self.problem(where, message, hint)
        kwargs = {}
        for key, item in binding.kwargs.items():
            original = value.options().get(key)
            if (  # a bare name of the same registry, where any value goes: `after=cosine`
                isinstance(original, Symbol)
                and original.name in registry
                and _kind_of(target, key, skip) is None
            ):
                original = Ref(original.name, pos=original.pos)
            if isinstance(original, Ref):
                nested = self.entry(original, registry, what, original.pos, skip, **bind_options)
                kwargs[key] = nested
            elif isinstance(original, Symbol) and key == "init":
                if original.name not in INITIALIZERS:
                    self.problem(
                        original.pos,
                        f"unknown initializer {original.name!r}",
                        suggest(original.name, INITIALIZERS.names())
                        or f"known: {', '.join(INITIALIZERS.names())}",
                    )
                kwargs[key] = item
            else:
                kwargs[key] = item
        for key, item in value.options().items():
            if isinstance(item, Symbol) and key != "init" and key in binding.kwargs:
                parameter_kind = _kind_of(target, key, skip)
                if parameter_kind not in ("text", None):
                    self.unknown_name(item)
        for item in value.args:
            if isinstance(item, Symbol):
                self.unknown_name(item)
        if len(self.problems) > reported:  # not built (a layer's probe) with a wrong option
            return None
        return Entry(value.name, kwargs, value.pos)

    # --- data ---------------------------------------------------------------------------------
    def data(self, settings) -> DataSpec | None:
        if settings is None:
            return None
        section = settings["@"]
        item = settings.get("dataset")
        if item is None:
            self.problem(section.pos, "the data section needs a dataset, e.g. `dataset digits`")
            return None
        value = self.folded(item.value)
        loss, loss_pos = _peeked(self.program, self.constants, "train", "loss")
        loss = getattr(loss, "name", None)
        if isinstance(value, str) or getattr(value, "name", None) == "file":
            target = "real" if loss in REGRESSION_LOSSES else "class"
            dataset_entry = _file_entry(self, value, item.value.pos, target)
        else:
            dataset_entry = self.entry(value, DATASETS, "dataset", item.value.pos)
        val = self.setting(settings, "val", "number", 0.15)
        test = self.setting(settings, "test", "number", 0.15)
        if val + test >= 1:
            blamed = settings.get("test") or settings.get("val")
            self.problem(
                blamed.value.pos if blamed else section.pos,
                f"val + test must leave training data, got {val} + {test} = {val + test}",
                "the rest (1 - val - test) is the training split, e.g. val 0.15, test 0.15",
            )
        stratify = self.setting(settings, "stratify", "bool", True)
        split_seed = self.setting(settings, "split_seed", "int", 0)
        preprocess = self.repeated(settings, "preprocess", PREPROCESSORS, "preprocessor")
        augment = self.repeated(settings, "augment", AUGMENTATIONS, "augmentation")
        if dataset_entry is None:
            return None
        dataset = self.load(dataset_entry)
        if dataset is None:
            return None
        if augment and dataset.image_shape is None:
            self.problem(
                settings["augment"][0].pos,
                f"augmentation needs images, and dataset {dataset.name!r} has none",
            )
        if loss == "bce_with_logits" and dataset.num_classes != 2:
            self.problem(
                loss_pos,
                f"loss bce_with_logits needs two classes (0 and 1), and dataset "
                f"{dataset.name!r} has {dataset.num_classes}",
                "cross_entropy takes any number of classes",
            )
        if val + test < 1:
            _check_split(self, dataset, settings, (val, test, split_seed, stratify))
        spec = DataSpec(
            dataset=dataset_entry,
            val=val,
            test=test,
            stratify=stratify,
            split_seed=split_seed,
            preprocess=tuple(preprocess),
            augment=tuple(augment),
            features=int(dataset.x.shape[1]),
            classes=max(dataset.num_classes, 1),  # one output for real-valued targets
            image_shape=None if dataset.image_shape is None else tuple(dataset.image_shape),
            pos=section.pos,
        )
        return self.preprocessed(spec) if preprocess and val + test < 1 else spec

    def preprocessed(self, spec: DataSpec) -> DataSpec | None:
        """The data as the network will see it: preprocessing can change the width (PCA
        keeps some components), which only fitting it on the training split tells."""
        from types import SimpleNamespace

        from topograd.dsl.build import BlameError, build_data

        try:
            train = build_data(SimpleNamespace(data=spec)).splits.train
        except BlameError as error:
            self.problem(error.pos, error.message)
            return None
        if train.x.shape[1] == spec.features:
            return spec
        return dataclasses.replace(spec, features=int(train.x.shape[1]), image_shape=None)

    def repeated(self, settings, key, registry, what) -> list[Entry]:
        entries = []
        for item in settings.get(key, []):
            value = self.folded(item.value)
            values = value if isinstance(value, tuple) else (value,)
            for one in values:
                entry = self.entry(one, registry, what, item.value.pos)
                if entry is not None:
                    entries.append(entry)
        return entries

    def load(self, entry: Entry):
        from topograd.dsl.datasets import load

        if entry.name in DATASETS:
            options = signature(DATASETS.get(entry.name)).parameters
            given = {key: option.default for key, option in options.items()} | entry.kwargs
            sizes = [given.get(key) for key in ("n", "n_per_class", "classes")]
            count = math.prod(size for size in sizes if isinstance(size, int))
            if count > MAX_EXAMPLES:
                self.problem(
                    entry.pos, f"{count:,} examples are too many (at most {MAX_EXAMPLES:,})"
                )
                return None
        try:
            return load(entry)
        except (DataError, OSError, ValueError) as error:
            self.problem(entry.pos, f"cannot load the dataset: {error}")
            return None

    # --- train ----------------------------------------------------------------------------------
    def train(self, settings) -> TrainSpec | None:
        if settings is None:
            return None
        section = settings["@"]
        loss = optimizers = None
        if "loss" in settings:
            value = self.folded(settings["loss"].value)
            loss = self.entry(value, LOSSES, "loss", settings["loss"].value.pos, skip=2)
        else:
            self.problem(section.pos, "the train section needs a loss, e.g. `loss cross_entropy`")
        if "optimizer" in settings:
            value = self.folded(settings["optimizer"].value)
            pos = settings["optimizer"].value.pos
            values = value if isinstance(value, tuple) else (value,)
            if not values:
                self.problem(pos, "an empty list of optimizers")
            optimizers = [self.entry(v, OPTIMIZERS, "optimizer", pos, skip=1) for v in values]
            optimizers = None if None in optimizers or not values else optimizers
        else:
            self.problem(
                section.pos, "the train section needs an optimizer, e.g. `optimizer adam(lr=1e-3)`"
            )
        schedule = None
        if "schedule" in settings:
            value = self.folded(settings["schedule"].value)
            schedule = self.entry(
                value,
                SCHEDULES,
                "schedule",
                settings["schedule"].value.pos,
                1,
                inferred=RUN_LENGTHS,  # left out: the builder fills in the run's length
            )
        ensemble = None
        if "ensemble" in settings:
            value = self.folded(settings["ensemble"].value)
            ensemble = self.entry(value, ENSEMBLES, "ensemble", settings["ensemble"].value.pos)
            if ensemble is not None and ensemble.name == "snapshot":
                for clash, why in SNAPSHOT_CLASHES.items():
                    if clash in settings:
                        self.problem(
                            settings[clash].pos,
                            f"a snapshot ensemble sets its own {clash}: {why}",
                            f"leave `{clash}` out",
                        )
        schedule_per = self.setting(settings, "schedule_per", "text", "step")
        if schedule_per not in ("step", "epoch"):
            self.problem(settings["schedule_per"].value.pos, "schedule_per is step or epoch")
        decay = self.setting(settings, "decay", "text", "all")
        if decay not in ("all", "weights"):
            self.problem(settings["decay"].value.pos, "decay is all or weights")
        fit_options = {
            "explosion_factor": self.setting(settings, "explosion_factor", "number?", 3.0),
            "drop_last": self.setting(settings, "drop_last", "bool", False),
            "check_initial_loss": self.setting(settings, "check_initial_loss", "bool", True),
            "track_stats": self.setting(settings, "track_stats", "bool", True),
            "eval_batch_size": self.setting(settings, "eval_batch", "int", 1024),
            "baseline_error": self.setting(settings, "baseline_error", "number", 0.0),
        }
        spec = TrainSpec(
            loss=loss,
            optimizers=tuple(optimizers or ()),
            schedule=schedule,
            l2=self.setting(settings, "l2", "number", 0.0),
            decay=decay,
            epochs=self.setting(settings, "epochs", "int", 10),
            batch_size=self.setting(settings, "batch", "int", 64),
            seed=self.setting(settings, "seed", "int", 0),
            checkpoint=self.setting(settings, "checkpoint", "text?", None),
            early_stopping=self.setting(settings, "early_stopping", "int?", None),
            ensemble=ensemble,
            fit_options=fit_options,
            pos=section.pos,
            schedule_per=schedule_per if schedule_per in ("step", "epoch") else "step",
        )
        if loss is None or optimizers is None:
            return None
        if spec.checkpoint is not None and not Path(spec.checkpoint).is_absolute():
            base = Path(self.source.name).parent
            object.__setattr__(spec, "checkpoint", str(base / spec.checkpoint))
        return spec

    # --- the network ------------------------------------------------------------------------------
    def network(self, node: ast.Network, data, train) -> NetworkSpec | None:
        options = {}
        for keyword in node.options:
            if keyword.name not in NETWORK_OPTIONS:
                self.problem(
                    keyword.pos,
                    f"unknown network option {keyword.name!r}",
                    suggest(keyword.name, NETWORK_OPTIONS)
                    or f"options: {', '.join(NETWORK_OPTIONS)}",
                )
                continue
            options[keyword.name] = (self.folded(keyword.value), keyword.pos)
        scalar = _option(options, "scalar", False)
        dtype = str(plain(_option(options, "dtype", "float64")))
        if dtype not in ("float64", "float32"):
            self.problem(options["dtype"][1], f"dtype is float64 or float32, got {dtype}")
            dtype = "float64"
        input_shape = self.input_shape(node, options, data)
        out_size = self.output_size(node, options, data, train)
        layers = self.counted(self.expand(node.body, 0), node.pos)
        if input_shape is None and layers:
            self.names_only(layers, bool(scalar))
        if input_shape is None or layers is None:
            return None
        if not layers:
            self.problem(node.pos, f"network {node.name!r} has no layers")
            return None
        specs = self.layers(layers, input_shape, out_size, scalar, data, dtype)
        if specs is None:
            return None
        output_shape = specs[-1].out_shape if specs else input_shape
        classify = train is not None and train.loss.name == "cross_entropy" and data is not None
        if classify and output_shape != (data.classes,):
            self.problem(
                specs[-1].pos,
                f"the network ends with shape {output_shape} per example, but cross_entropy "
                f"needs one score per class ({data.classes})",
            )
        per_output = train is not None and train.loss.name in ("bce_with_logits", "mse")
        if per_output and data is not None and output_shape not in ((1,), ()):
            self.problem(
                train.loss.pos,
                f"loss {train.loss.name} compares one output per example with its label, but "
                f"network {node.name!r} ends with shape {output_shape} per example",
                "end the network with linear(1), or leave out its size to have it inferred",
            )
        spec = NetworkSpec(
            node.name, tuple(specs), bool(scalar), dtype, input_shape, output_shape, node.pos
        )
        if "weights" in options:
            spec = self.weights(spec, *options["weights"])
        return spec

    def weights(self, spec: NetworkSpec, value, pos) -> NetworkSpec | None:
        """`weights="model.weights.npz"`: the network starts from the weights in that file
        (a model-only checkpoint, as `topograd import` writes), checked against the layers
        now rather than after training has started."""
        if not isinstance(value, str) or not value:
            self.problem(pos, f"weights is a file name in quotes, got {describe(value)}")
            return None
        path = Path(value)
        if not path.is_absolute():
            path = Path(self.source.name).parent / path
        if not path.is_file():
            self.problem(pos, f"weights file {str(path)!r} does not exist")
            return None
        spec = dataclasses.replace(spec, weights=str(path), weights_pos=pos)
        try:
            build_model(spec)
        except BlameError as error:
            self.problem(pos, error.message)
            return None
        return spec

    def input_shape(self, node, options, data):
        if "input" in options:
            value, pos = options["input"]
            shape = value if isinstance(value, tuple) else (value,)
            if not shape or not all(isinstance(s, int) and s >= 1 for s in shape):
                self.problem(pos, f"input is a size or a shape like (1, 8, 8), got {value}")
                return None
            if math.prod(shape) > MAX_VALUES:
                self.problem(pos, f"input {shape} is too large (at most {MAX_VALUES:,} values)")
                return None
            if data is not None and int(np.prod(shape)) != data.features:
                self.problem(pos, f"input {shape} does not match the data's {data.features}")
                return None
            return tuple(shape)
        if data is not None:
            return (data.features,)
        if self.program.sections("data"):
            return None  # the data section's own problem explains it
        self.problem(
            node.pos,
            "the network's input size is unknown: add a data section, or input=N",
            "e.g. network net(input=2) { ... }",
        )
        return None

    def output_size(self, node, options, data, train):
        if "classes" in options:
            value, pos = options["classes"]
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                self.problem(pos, f"classes must be a whole number >= 1, got {describe(value)}")
                return None
            return value
        if data is None:
            return None
        loss = train.loss.name if train is not None else "cross_entropy"
        if loss in ("bce_with_logits", "mse"):
            return 1
        if loss == "hinge" and data.classes == 2:
            return 1
        return data.classes

    def expand(self, body, depth) -> list | None:
        """Items with repeat blocks unrolled: a list of (item, label, renames), the item an
        ast.Layer or ast.Block. A label inside a repeat gets its copy's number (`a_0`), and
        `renames` maps the written label to the copy's, so that `add(a)` in the same copy
        finds it (outside the repeat, `a` is the last copy)."""
        out = []
        for item in body:
            if isinstance(item, ast.Layer | ast.Block):
                out.append((item, item.label, {}))
                continue
            count = self.folded(item.count)
            if not (isinstance(count, int) and not isinstance(count, bool)):
                if count is not None:
                    self.problem(item.count.pos, f"repeat needs a whole number, got {count}")
                return None
            if not 1 <= count <= MAX_REPEAT:
                self.problem(item.count.pos, f"repeat count must be in [1, {MAX_REPEAT}]")
                return None
            inner = self.expand(item.body, depth + 1)
            if inner is None:
                return None
            if len(out) + count * len(inner) > MAX_REPEAT:
                self.problem(item.count.pos, f"the network unrolls to over {MAX_REPEAT} layers")
                return None
            written = {}  # written label -> its name in this body (a nested copy's, or itself)
            for node, label, renames in inner:
                written.update(renames)
                if label is not None and node.label == label:
                    written[label] = label
            for index in range(count):
                for node, label, renames in inner:
                    copy = {k: f"{v}_{index}" for k, v in {**written, **renames}.items()}
                    out.append((node, f"{label}_{index}" if label else None, copy))
        return out

    def counted(self, items, pos) -> list | None:
        """`items` (expanded), counted towards the cap on the layers of the whole network,
        blocks' bodies included; None after reporting that the cap is passed."""
        if items is None:
            return None
        self.unrolled += len(items)
        if self.unrolled > MAX_REPEAT:
            if not self.over_cap:
                self.problem(
                    pos,
                    f"the network unrolls to over {MAX_REPEAT} layers (blocks' bodies included)",
                )
            self.over_cap = True
            return None
        return items

    def names_only(self, layers, scalar) -> None:
        """Without an input shape, still report unknown layers and options."""
        for layer, _, _ in layers:
            if isinstance(layer, ast.Block):
                inner = self.counted(
                    self.expand((*layer.body, *(layer.shortcut or ())), 1), layer.pos
                )
                self.names_only(inner or [], scalar)
            elif not _is_merge(layer.call):
                self.layer_entry(layer.call, scalar)

    def layers(
        self, layers, shape, out_size, scalar, data, dtype, scope="network"
    ) -> list[LayerSpec] | None:
        """One sequence of layers (the network's, or a block's body) checked in order from
        `shape`; the last layer that takes an output size gets `out_size`."""
        specs: list[LayerSpec] = []
        shapes: dict[str, tuple] = {}  # label -> its output shape, for merges
        sized = [
            i
            for i, (layer, _, _) in enumerate(layers)
            if isinstance(layer, ast.Layer) and _has_output_size(layer.call.name, scalar)
        ]
        last_sized = sized[-1] if sized else None
        first = _first_call(layers[0][0])
        folds = first.name == "unflatten"  # the file folds the rows itself
        if scope == "network" and not scalar and len(shape) > 1 and data is not None and not folds:
            # input=(C, H, W) with data of rows: fold them, as for an image dataset
            rows = (math.prod(shape),)
            specs.append(
                LayerSpec(
                    "unflatten", {"shape": tuple(shape)}, None, rows, tuple(shape), implicit=True
                )
            )
        elif scope == "network" and not scalar and len(shape) == 1 and _wants_images(first.name):
            image = data.image_shape if data is not None else None
            if image is None:
                self.problem(
                    layers[0][0].pos,
                    f"{first.name} takes images (N, C, H, W) but the data has no image shape",
                    "use an image dataset (e.g. digits), or give the network input=(C, H, W)",
                )
                return None
            specs.append(
                LayerSpec("unflatten", {"shape": image}, None, shape, image, implicit=True)
            )
            shape = image
        ok = self.unique_labels(layers, scope)
        for index, (layer, label, renames) in enumerate(layers):
            if isinstance(layer, ast.Block):
                spec = self.block(layer, label, shape, scalar, data, dtype)
            elif _is_merge(layer.call):
                spec = self.merge(layer, label, renames, shape, shapes, scalar, scope)
            else:
                size = out_size if index == last_sized else None
                spec = self.layer(layer, label, shape, size, scalar, dtype)
            if spec is None:
                ok = False
                # go on from the shape the layer would most likely have had, so that the
                # next mistakes are reported in the same run; without a guess, stop here
                shape = None if scalar else _guessed_shape(layer, shape)
                if shape is None:
                    self.names_only(layers[index + 1 :], bool(scalar))
                    break
                if label is not None:  # its merges are not reported as well
                    shapes[label] = shape
                continue
            specs.append(spec)
            shape = spec.out_shape
            if label is not None:
                shapes[label] = shape
        return specs if ok else None

    def unique_labels(self, layers, scope) -> bool:
        """Each label once in a list of layers (all reported, whatever the shapes do)."""
        seen: dict[str, ast.Pos] = {}
        ok = True
        for layer, label, _ in layers:
            if label is None:
                continue
            if label in seen:
                where = "" if scope == "network" else f" in this {scope}"
                self.problem(
                    layer.pos,
                    f"layer name {label!r} is already used{where} on line {seen[label].line}",
                )
                ok = False
            seen.setdefault(label, layer.pos)
        return ok

    def block(self, block: ast.Block, label, shape, scalar, data, dtype) -> LayerSpec | None:
        """`residual { body } [shortcut { ... }]` or `concat { body }`: the body checked from
        the block's input, and the join of the two branches checked at the block."""
        call, kind = block.call, block.call.name
        if scalar:
            self.problem(
                call.pos, f"a scalar network is a chain of neurons; it has no {kind} block"
            )
            return None
        if kind not in BLOCKS:
            self.problem(
                name_pos(call.pos, kind),
                f"unknown block {kind!r}",
                suggest(kind, BLOCKS) or "blocks: residual { ... } and concat { ... }",
            )
            return None
        at = name_pos(call.pos, kind)  # the block's name: a block may span many lines
        if block.shortcut is not None and kind != "residual":
            self.problem(at, "only a residual block takes a shortcut { ... }")
            return None
        body = self.counted(self.expand(block.body, 1), at)
        shortcut = self.counted(self.expand(block.shortcut or (), 1), at)
        if body is None or shortcut is None:
            return None
        if not body:
            self.problem(at, f"the {kind} block has no layers")
            return None
        if block.shortcut is not None and not shortcut:
            self.problem(at, "the shortcut has no layers; leave it out for the identity")
            return None
        # a residual body's last sized layer maps back to the input's channels or features,
        # unless a shortcut says otherwise; a concat body's must be given (its growth)
        keeps = kind == "residual" and block.shortcut is None
        body_specs = self.layers(
            body, shape, shape[0] if keeps else None, scalar, data, dtype, scope=f"{kind} block"
        )
        if body_specs is None:
            return None
        body_out = body_specs[-1].out_shape
        shortcut_specs, skip = None, tuple(shape)
        if shortcut:
            shortcut_specs = self.layers(
                shortcut, shape, body_out[0], scalar, data, dtype, scope="shortcut"
            )
            if shortcut_specs is None:
                return None
            skip = shortcut_specs[-1].out_shape
        if kind == "residual":
            if body_out != skip:
                what = "the shortcut's output" if shortcut else "its input"
                if shortcut:
                    hint = (
                        f"end the shortcut with the body's shape {body_out}: leave its last "
                        "layer's size out to have it taken from the body"
                    )
                elif len(shape) == 1:
                    hint = (
                        "leave the body's last size out (`linear`) to map back to the input, "
                        "or add `shortcut { linear }`"
                    )
                else:
                    hint = (
                        "leave the body's last size out (`conv2d(kernel_size=3, padding=1)`) to "
                        "map back to the input's channels, or add a projection: "
                        "`shortcut { conv2d(kernel_size=1, stride=S) }`"
                    )
                self.problem(
                    at,
                    f"residual: the body ends with shape {body_out} per example, which cannot "
                    f"be added to {what}, shape {skip}",
                    hint,
                )
                return None
            out_shape = body_out
        else:
            if len(body_out) != len(shape) or body_out[1:] != tuple(shape[1:]):
                self.problem(
                    at,
                    f"concat: the body ends with shape {body_out} per example, which cannot be "
                    f"joined to its input, shape {tuple(shape)}: all but the first (channel or "
                    "feature) size must be equal",
                    "keep the spatial size inside the block (stride 1, padding = kernel // 2)",
                )
                return None
            out_shape = (shape[0] + body_out[0], *shape[1:])
        return LayerSpec(
            kind,
            {},
            label,
            tuple(shape),
            tuple(out_shape),
            block.pos,
            body=tuple(body_specs),
            shortcut=tuple(shortcut_specs) if shortcut_specs else None,
        )

    def merge(self, layer, label, renames, shape, shapes, scalar, scope) -> LayerSpec | None:
        """`add(a, ...)` or `concat(a, ...)`: the value so far joined with the outputs of the
        named earlier layers of the same sequence."""
        call, mode = layer.call, layer.call.name
        if scalar:
            self.problem(call.pos, f"a scalar network is a chain of neurons; it has no {mode}")
            return None
        if call.keywords or not call.args:
            body = "add it to" if mode == "add" else "join it with"
            self.problem(
                call.pos,
                f"{mode} takes the names of earlier layers to {body}, e.g. {mode}(stem)"
                + (", or a body: concat { ... }" if mode == "concat" else ""),
            )
            return None
        sources, ok = [], True
        for arg in call.args:
            if not (isinstance(arg, ast.Call) and arg.bare):
                self.problem(arg.pos, f"{mode}: expected the name of an earlier layer")
                ok = False
                continue
            name = renames.get(arg.name, arg.name)
            if name not in shapes:
                name = _last_copy(arg.name, shapes) or name  # after `repeat`: the last copy
            if name not in shapes:
                where = "network" if scope == "network" else scope
                self.problem(
                    arg.pos,
                    f"{mode}: no earlier layer in this {where} is named {arg.name!r}",
                    suggest(arg.name, list(shapes))
                    or f"label a layer before it in the same {where} (`skip = relu`), then "
                    f"{mode}(skip)",
                )
                ok = False
                continue
            sources.append(name)
        if not ok:
            return None
        joined = [tuple(shape), *(shapes[s] for s in sources)]
        listed = ", ".join(f"{n} {shapes[n]}" for n in sources)
        if mode == "add":
            if any(s != joined[0] for s in joined):
                self.problem(
                    call.pos,
                    f"add: the value here has shape {tuple(shape)} per example, which cannot be "
                    f"added to {listed}",
                )
                return None
            out_shape = joined[0]
        else:
            if any(len(s) != len(joined[0]) or s[1:] != joined[0][1:] for s in joined):
                self.problem(
                    call.pos,
                    f"concat: the value here has shape {tuple(shape)} per example, which cannot "
                    f"be joined with {listed}: all but the first (channel or feature) size must "
                    "be equal",
                )
                return None
            out_shape = (sum(s[0] for s in joined), *joined[0][1:])
        return LayerSpec(
            mode, {"sources": tuple(sources)}, label, tuple(shape), out_shape, layer.pos
        )

    def layer_entry(self, call: ast.Call, scalar: bool) -> Entry | None:
        """The layer a call names, resolved and its options bound (None after reporting)."""
        if call.name == "dropout" and call.args:
            written = ", ".join(_written(a) for a in call.args)
            self.problem(
                call.pos,
                f"dropout({written}): write the probability to keep or to drop by name",
                f"dropout(drop={written}) is PyTorch's Dropout({written}); "
                f"dropout(keep=...) is the notes' keep probability",
            )
            return None
        value = self.folded(call) if not call.bare else Symbol(call.name, call.pos)
        if value is None:
            return None
        if isinstance(value, Symbol):
            value = Ref(value.name, pos=value.pos)
        if not isinstance(value, Ref):
            self.problem(call.pos, f"{call.name!r} is a constant, not a layer")
            return None
        name = value.name
        if scalar:
            if name not in SCALAR_LAYERS:
                self.problem(
                    call.pos,
                    f"a scalar network takes {', '.join(SCALAR_LAYERS)}; not {name!r}",
                )
                return None
            name = "scalar_linear" if name == "linear" else name
            value = Ref(name, value.args, value.kwargs, value.pos, value.arg_pos, value.kwarg_pos)
        if name not in LAYERS:
            self.problem(
                name_pos(call.pos, call.name),
                f"unknown layer {name!r}",
                suggest(name, LAYERS.names()) or f"layers: {', '.join(LAYERS.names())}",
            )
            return None
        return self.entry(
            value,
            LAYERS,
            "layer",
            call.pos,
            inferred=INFERRED,
            fillable=frozenset(OUTPUT_SIZES),
            aliases=DROPOUT_ALIASES if name == "dropout" else None,
        )

    def layer(self, layer: ast.Layer, label, shape, out_size, scalar, dtype) -> LayerSpec | None:
        call = layer.call
        habit = None if scalar else _pytorch_habit(call, shape)
        if habit is not None:
            self.problem(call.pos, *habit)
            return None
        entry = self.layer_entry(call, scalar)
        if entry is None:
            return None
        name, target = entry.name, LAYERS.get(entry.name)
        kwargs = dict(entry.kwargs)
        parameters = _parameter_names(target)
        for key in INFERRED & set(parameters):
            fill = shape if key == "normalized_shape" else shape[0]
            if key in kwargs:
                given = kwargs[key]
                if key == "normalized_shape":
                    given = tuple(given) if isinstance(given, tuple) else (given,)
                if given != fill and not (key == "normalized_shape" and given == shape[-1:]):
                    self.problem(
                        call.pos,
                        f"{name}: {key}={plain(given)} does not match its input, which has "
                        f"shape {shape} per example",
                        f"leave the size out (`{name}`): it is taken from the layer before",
                    )
                    return None
            else:
                kwargs[key] = fill if key != "normalized_shape" else tuple(shape)
        for key in OUTPUT_SIZES:
            if key in parameters and key not in kwargs:
                if out_size is None:
                    self.problem(
                        call.pos,
                        f"{name} needs its output size, e.g. {name}(64); only the network's "
                        "last layer takes its size from the data (and the last layer of a "
                        "residual body without a shortcut, or of a shortcut, from the block)",
                    )
                    return None
                kwargs[key] = out_size
        out_shape = self.probe(name, target, kwargs, shape, call.pos, scalar, dtype)
        if out_shape is None:
            return None
        return LayerSpec(name, kwargs, label, tuple(shape), out_shape, layer.pos)

    def probe(self, name, target, kwargs, shape, pos, scalar, dtype):
        """Build the layer and run a batch of two zeros through it; its output shape.
        Identical layers on identical inputs are probed once (a deep network repeats a few)."""
        key = (name, repr(sorted(kwargs.items())), tuple(shape), scalar, dtype)
        if key not in self.probed:
            self.probed[key] = self.probe_once(name, target, kwargs, shape, pos, scalar, dtype)
        return self.probed[key]

    def probe_once(self, name, target, kwargs, shape, pos, scalar, dtype):
        weights = math.prod(kwargs[key] for key in SIZES if isinstance(kwargs.get(key), int))
        if "out_channels" in kwargs and isinstance(kwargs.get("kernel_size"), int):
            weights *= kwargs["kernel_size"] ** 2
        limit = MAX_SCALAR_WEIGHTS if scalar else MAX_VALUES
        if weights > limit:
            self.problem(pos, f"{name}: {weights:,} weights are too many (at most {limit:,})")
            return None
        try:
            module = target(**_with_engine_options(target, kwargs, dtype))
            if scalar:
                if name == "scalar_linear":
                    if shape != (kwargs["in_features"],):
                        raise ValueError(f"expected {kwargs['in_features']} inputs, got {shape}")
                    return (kwargs["out_features"],)
                return tuple(shape)
            module.eval()
            with no_grad():
                out = module(Tensor(np.zeros((2, *shape)), dtype=dtype))
        except (ValueError, TypeError, IndexError) as error:
            self.problem(pos, f"{name}: {error}")
            return None
        except MemoryError:
            self.problem(pos, f"{name}: too large to build")
            return None
        if math.prod(out.shape[1:]) > MAX_VALUES:
            self.problem(pos, f"{name}: its output {out.shape[1:]} is too large per example")
            return None
        return tuple(out.shape[1:])

    # --- graphs ---------------------------------------------------------------------------
    def graphs(self) -> list[GraphSpec]:
        specs = []
        names = set()
        for graph in self.program.of_type(ast.Graph):
            if graph.name in names:
                self.problem(graph.pos, f"a second graph named {graph.name!r}")
                continue
            names.add(graph.name)
            if not any(item.role == "output" for item in graph.items):
                self.problem(graph.pos, f"graph {graph.name!r} has no output line")
                continue
            try:
                evaluate_graph(graph.items, self.constants)
            except FoldError as error:
                self.problem(error.pos, error.message, error.hint)
                continue
            specs.append(GraphSpec(graph.name, graph.items, dict(self.constants), graph.pos))
        return specs

    # --- search and the range test --------------------------------------------------------
    def search(self, settings) -> SearchSpec | None:
        if settings is None:
            return None
        section = settings["@"]
        space = {}
        for sample in settings.get("~", []):
            if sample.name not in self.constants:
                self.problem(
                    name_pos(sample.pos, sample.name),
                    f"search variable {sample.name!r} is not declared",
                    f"declare its default first: let {sample.name} = ...",
                )
                continue
            if sample.name in space:
                self.problem(sample.pos, f"{sample.name!r} is searched twice")
                continue
            value = self.folded(sample.distribution)
            if value is None:
                continue
            if isinstance(value, Symbol):
                value = Ref(value.name, pos=value.pos)
            entry = self.entry(value, DISTRIBUTIONS, "distribution", sample.distribution.pos)
            if entry is None:
                continue
            try:
                from topograd.dsl.build import distribution

                distribution(entry)
            except (TypeError, ValueError) as error:
                self.problem(sample.distribution.pos, str(error))
                continue
            space[sample.name] = entry
        if not settings.get("~"):  # (a wrong distribution is reported where it is written)
            self.problem(section.pos, "a search needs at least one `name ~ distribution(...)`")
        metric = self.setting(settings, "metric", "text", "val_acc")
        if metric not in METRICS:
            self.problem(
                settings["metric"].value.pos,
                f"unknown metric {metric!r}",
                suggest(metric, METRICS) or f"metrics: {', '.join(METRICS)}",
            )
        return SearchSpec(
            space=space,
            trials=self.setting(settings, "trials", "int", 10),
            stages=self.setting(settings, "stages", "int", 1),
            shrink=self.setting(settings, "shrink", "number", 0.5),
            top=self.setting(settings, "top", "number", 0.2),
            seed=self.setting(settings, "seed", "int", 0),
            metric=metric,
            minimize=self.setting(settings, "minimize", "bool", metric.endswith("loss")),
            epochs=self.setting(settings, "epochs", "int?", None),
            pos=section.pos,
        )

    def range_test(self, settings) -> RangeTestSpec | None:
        if settings is None:
            return None
        section = settings["@"]
        keywords = tuple(
            (key, self.folded(item.value)) for key, item in settings.items() if key != "@"
        )
        positions = tuple((key, item.value.pos) for key, item in settings.items() if key != "@")
        ref = Ref("lr_range_test", (), keywords, section.pos, (), positions)
        binding = bind(ref, lr_range_test, "lr_range_test", skip=4)
        for where, message, hint in binding.problems:
            self.problem(where, message, hint)
        options = binding.kwargs
        start, end = options.get("start_lr", 1e-7), options.get("end_lr", 10.0)
        if is_number(start) and is_number(end) and start >= end:
            self.problem(section.pos, f"start_lr ({start}) must be below end_lr ({end})")
        return RangeTestSpec(options, section.pos)

    def cross_checks(self, sections, network, data, train, graphs) -> None:
        for kind in ("train", "search", "lr_range_test"):
            settings = sections.get(kind)
            if settings is None:
                continue
            pos = settings["@"].pos
            if not self.program.of_type(ast.Network):
                self.problem(pos, f"a {kind} section needs a network to train")
            if "data" not in sections:
                self.problem(pos, f"a {kind} section needs a data section")
            if kind != "train" and "train" not in sections:
                self.problem(pos, f"a {kind} section needs a train section (loss, optimizer)")
        search = sections.get("search")
        if search is not None and data is not None and data.val == 0:
            metric = search.get("metric")
            if metric is None or "val" in str(getattr(metric.value, "name", "val")):
                self.problem(search["@"].pos, "a search on validation metrics needs val > 0")
        settings = sections.get("train") or {}
        if train is not None and train.ensemble is not None and train.loss.name == "mse":
            self.problem(
                settings["ensemble"].pos,
                "an ensemble averages predicted class probabilities; a regression (loss mse) "
                "has none to average",
                "leave the ensemble out, or train members with `topograd run --seed S`",
            )
        if train is not None and data is not None and data.val == 0:
            watched = [k for k in ("early_stopping",) if train.early_stopping is not None]
            for key in watched:
                self.problem(
                    settings[key].pos,
                    f"{key} watches the validation loss, but the data section has val 0",
                    "give the data section a validation fraction, e.g. `val 0.15`",
                )
        if not self.program.statements:
            self.problem(ast.Pos(1, 1, 1, 2), "the file declares nothing")


# --- small helpers ------------------------------------------------------------------------------
def _local_range(key, value) -> str | None:
    positive = ("epochs", "batch", "trials", "stages", "early_stopping", "eval_batch")
    if key in positive and isinstance(value, int) and value < 1:
        return f"{key} must be >= 1, got {value}"
    if key in ("val", "test") and is_number(value) and not 0 <= value < 1:
        return f"{key} is a fraction in [0, 1), got {value}"
    if key == "top" and is_number(value) and not 0 < value <= 1:
        return f"top is a fraction in (0, 1], got {value}"
    if key == "shrink" and is_number(value) and not 0 < value < 1:
        return f"shrink is a fraction in (0, 1), got {value}"
    if key == "l2" and is_number(value) and value < 0:
        return f"l2 must be >= 0, got {value}"
    if key == "explosion_factor" and is_number(value) and not value > 1:
        return f"explosion_factor must be > 1 (or none to turn the guard off), got {value}"
    if key == "baseline_error" and is_number(value) and not 0 <= value <= 1:
        return f"baseline_error is a fraction in [0, 1], got {value}"
    if is_number(value) and isinstance(value, float) and not math.isfinite(value):
        return f"{key} must be finite"
    return None


def _option(options, key, default):
    return options[key][0] if key in options and options[key][0] is not None else default


def _parameter_names(target) -> list[str]:
    return list(signature(target).parameters)


def _kind_of(target, key, skip):
    for parameter in signature_parameters(target, skip):
        if parameter.name == key:
            return expected_kind(parameter)
    return None


def _last_copy(label: str, shapes: dict) -> str | None:
    """`a` written after `repeat N { a = ... }`: the last copy's label (`a_{N-1}`)."""
    copies = [k for k in shapes if k.startswith(f"{label}_") and k[len(label) + 1 :].isdigit()]
    return max(copies, key=lambda k: int(k[len(label) + 1 :])) if copies else None


def _written(expr) -> str:
    """A short expression as written (numbers and names), for messages."""
    if isinstance(expr, ast.Number):
        return repr(expr.value)
    if isinstance(expr, ast.Call) and expr.bare:
        return expr.name
    return "..."


def _numbers(call: ast.Call) -> list:
    return [a.value for a in call.args or () if isinstance(a, ast.Number)]


def _pytorch_habit(call: ast.Call, shape) -> tuple[str, str] | None:
    """(message, hint) for a layer written as PyTorch writes it, where the language infers
    the input size: `linear(64, 32)`, `conv2d(1, 16, 3)`; and a dense layer on images."""
    numbers, args = _numbers(call), call.args or ()
    if call.name in ("linear", "maxout") and len(args) >= 2 and len(numbers) >= 2:
        size = shape[-1] if len(shape) == 1 else math.prod(shape)
        return (
            f"{call.name}({_written(args[0])}, {_written(args[1])}) reads like PyTorch's "
            f"Linear(in_features, out_features), but the input size is inferred from the "
            f"layer before ({size})",
            f"write {call.name}({_written(args[1])})",
        )
    if call.name == "conv2d" and len(numbers) >= 3 and numbers[0] == shape[0] and len(shape) == 3:
        return (
            f"conv2d({', '.join(_written(a) for a in args[:3])}) reads like PyTorch's "
            f"Conv2d(in_channels, out_channels, kernel_size), but the input channels are "
            f"inferred ({shape[0]})",
            f"write conv2d({_written(args[1])}, {_written(args[2])})",
        )
    if call.name in ("linear", "maxout") and len(shape) > 1:
        return (
            f"{call.name} takes rows of features, but its input has shape {tuple(shape)} per "
            "example (images)",
            "add `flatten` before it (or global pooling: `adaptiveavgpool2d(1)` then `flatten`)",
        )
    return None


_SHAPE_KEEPING = ("relu", "tanh", "sigmoid", "leaky_relu", "elu", "dropout", "gelu")
_NORMS = ("layernorm", "groupnorm", "instancenorm2d")


def _guessed_shape(item, shape) -> tuple | None:
    """The shape after a layer that failed its check, when the call alone tells it: an
    activation, dropout, a norm or an identity residual block keeps it, `linear(64)` gives
    (64,), flatten one row; None when it cannot be told (then checking stops there)."""
    if shape is None:
        return None
    if isinstance(item, ast.Block):
        keeps = item.call.name == "residual" and item.shortcut is None
        return tuple(shape) if keeps else None
    name, numbers = item.call.name, _numbers(item.call)
    if name in _SHAPE_KEEPING or name.startswith("batchnorm") or name in _NORMS:
        return tuple(shape)
    if name in ("linear", "maxout") and numbers:
        return (int(numbers[-1] if len(numbers) >= 2 else numbers[0]),)
    if name == "flatten":
        return (math.prod(shape),)
    return None


def _is_merge(call: ast.Call) -> bool:
    return call.name in MERGES and call.name not in LAYERS


def _first_call(item) -> ast.Call:
    """The first layer call of an item (a block's first body layer's)."""
    while isinstance(item, ast.Block):
        first = item.body[0] if item.body else None
        if isinstance(first, ast.Repeat):
            first = first.body[0] if first.body else None
        if first is None:
            return item.call
        item = first
    if isinstance(item, ast.Repeat):
        return _first_call(item.body[0]) if item.body else ast.Call("repeat")
    return item.call


def _has_output_size(name: str, scalar: bool) -> bool:
    name = "scalar_linear" if scalar and name == "linear" else name
    if name not in LAYERS:
        return False
    return any(key in _parameter_names(LAYERS.get(name)) for key in OUTPUT_SIZES)


def _wants_images(name: str) -> bool:
    if name not in LAYERS:
        return False
    parameters = _parameter_names(LAYERS.get(name))
    return "in_channels" in parameters or "kernel_size" in parameters or name.endswith("2d")


def _with_engine_options(target, kwargs, dtype):
    parameters = _parameter_names(target)
    extra = {}
    if "dtype" in parameters:
        extra["dtype"] = dtype
    if "rng" in parameters:
        extra["rng"] = 0
    return {**kwargs, **extra}


def _peeked(program: ast.Program, constants: dict, section: str, key: str):
    """(value, position) of a setting in another section, or (None, None): read without
    reporting anything, since that section's own check reports its problems."""
    for node in program.sections(section):
        for item in node.items:
            if isinstance(item, ast.Setting) and item.key == key:
                try:
                    return fold(item.value, constants), item.value.pos
                except FoldError:
                    return None, None
    return None, None


def _file_entry(checker: _Checker, value, pos, target: str) -> Entry | None:
    """The Entry of a data file, `"houses.csv"` or `file("houses.csv", label="price")`: its
    options checked against the kind of file, its path relative to the model file, and
    `target` ("class" or "real", from the loss) added to the options."""
    if isinstance(value, str):
        path, options, call = value, {}, None
    else:
        entry = checker.entry(value, FILES, "dataset", pos)
        if entry is None:
            return None
        options = dict(entry.kwargs)
        path, call = options.pop("path"), value
        if not isinstance(path, str):
            checker.problem(call.where(0), f"a data file's path is in quotes, got {describe(path)}")
            return None
    problems = file_problems(path, options)
    for key, message in problems:
        checker.problem(pos if call is None else call.where(key if key else 0), message)
    if problems:
        return None
    resolved = Path(path)
    if not resolved.is_absolute():
        resolved = Path(checker.source.name).parent / resolved
    return Entry("file", {"path": str(resolved), **options, "target": target}, pos)


def _check_split(checker: _Checker, dataset, settings: dict, split_options) -> None:
    """Report a split that cannot work, before training: a validation or test split left
    empty although its fraction is above 0 (at that setting, or at the dataset line when it
    is the default), or, with drop_last, a training split smaller than one batch, so that no
    step would run (at the batch setting)."""
    val, test, seed, stratify = split_options
    parts = split(dataset, val=val, test=test, seed=seed, stratify=stratify)
    for key, fraction, part, what in (
        ("val", val, parts.val, "validation"),
        ("test", test, parts.test, "test"),
    ):
        if fraction == 0 or len(part):
            continue
        hint = f"use more examples, a larger {key}, or {key} 0 to go without a {what} split"
        if stratify and not dataset.regression:
            largest = int(np.bincount(dataset.y).max())
            hint = (
                f"each class is split on its own (stratify true), and the largest has {largest} "
                f"examples; {hint}"
            )
        where = settings[key].value if key in settings else settings["dataset"].value
        checker.problem(
            where.pos,
            f"{key} {fraction} of {len(dataset)} examples leaves the {what} split empty",
            hint,
        )
    batch, batch_pos = _peeked(checker.program, checker.constants, "train", "batch")
    drop_last, drop_pos = _peeked(checker.program, checker.constants, "train", "drop_last")
    if batch is None:  # the train section's default
        batch, batch_pos = 64, drop_pos
    if drop_last is True and isinstance(batch, int) and len(parts.train) < batch:
        checker.problem(
            batch_pos,
            f"the training split has {len(parts.train)} examples, fewer than one batch of "
            f"{batch}, and drop_last drops it: no training step would run",
            "a smaller batch, or drop_last false",
        )


def check(program: ast.Program, source: Source, overrides: dict | None = None) -> Spec:
    """Check a parsed program; `overrides` replace let constants (a search trial's values).
    Raises DslCheckError with every problem found."""
    return _Checker(program, source, overrides).run()
