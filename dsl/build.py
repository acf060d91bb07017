"""The builder: a checked Spec -> engine objects (model, data, loss, optimizer, schedule).

Nothing here decides whether a file is valid (the checker did); the engine may still refuse
a value only it can judge (a CyclicLR mode, a PCA size larger than the data), and that
error is turned into a DslBuildError at the line that set the value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from topograd.dsl.datasets import load
from topograd.dsl.errors import DslBuildError, Problem, Source
from topograd.dsl.graphs import GraphValues, evaluate_graph
from topograd.dsl.options import signature
from topograd.dsl.spec import Entry, NetworkSpec, Spec
from topograd.engine import manual_seed, nn
from topograd.engine.data.augment import AUGMENTATIONS, Compose
from topograd.engine.data.datasets import Splits, split
from topograd.engine.data.preprocess import PREPROCESSORS, Pipeline
from topograd.engine.functional import LOSSES
from topograd.engine.nn.layers import LAYERS
from topograd.engine.optim import OPTIMIZERS
from topograd.engine.optim.schedules import SCHEDULES
from topograd.engine.train.checkpoint import CheckpointError, load_checkpoint
from topograd.engine.train.search import DISTRIBUTIONS


class BlameError(Exception):
    def __init__(self, pos, message):
        super().__init__(message)
        self.pos, self.message = pos, message


def _call(entry: Entry, target: Callable, *args, **extra):
    """target(*args, **entry.kwargs, **extra), an engine refusal blamed on the entry's line."""
    try:
        return target(*args, **entry.kwargs, **extra)
    except (ValueError, TypeError) as error:
        raise BlameError(entry.pos, f"{entry.name}: {error}") from None


# --- model ---------------------------------------------------------------------------------------
def build_model(network: NetworkSpec, seed: int = 0) -> nn.Module:
    """The network as a Sequential (ScalarSequential in scalar mode); initial weights come
    from `seed`, so the same file and seed give the same weights. A block is a Residual or
    Concat around Sequentials of its own; a merge (`add(stem)`) is an nn.Merge."""
    manual_seed(seed)
    rng = np.random.default_rng(seed)
    container = nn.ScalarSequential if network.scalar else nn.Sequential
    model = _sequence(network.layers, rng, network.dtype, container)
    if network.weights is not None:
        try:
            load_checkpoint(network.weights, model)
        except CheckpointError as error:
            raise BlameError(network.weights_pos, f"weights: {error}") from None
    return model


def _sequence(layers, rng, dtype, container=nn.Sequential) -> nn.Module:
    modules = [_module(layer, rng, dtype) for layer in layers]
    model = container(*modules)
    for module, layer in zip(modules, layers):
        if layer.label is not None:
            object.__setattr__(module, "_local_name", layer.label)
    return model


def _module(layer, rng, dtype) -> nn.Module:
    if layer.is_block:
        body = _sequence(layer.body, rng, dtype)
        if layer.kind == "residual":
            shortcut = _sequence(layer.shortcut, rng, dtype) if layer.shortcut else None
            return nn.Residual(body, shortcut)
        return nn.Concat(body)
    if layer.sources:
        return nn.Merge(layer.kind, layer.sources)
    target = LAYERS.get(layer.kind)
    parameters = signature(target).parameters
    extra = {}
    if "rng" in parameters:
        extra["rng"] = rng
    if "dtype" in parameters:
        extra["dtype"] = dtype
    return _call(Entry(layer.kind, layer.kwargs, layer.pos), target, **extra)


def decayed_parameters(model) -> list:
    """The weights (matrices, kernels, scalar neurons' w_i): what L2 and `decay weights`
    touch. Biases and normalization scales/shifts are left alone, as the notes advise."""
    chosen = []
    for module in model.modules():
        for name, value in vars(module).items():
            if not isinstance(value, nn.Parameter):
                continue
            if value.ndim >= 2 or (isinstance(module, nn.Neuron) and name != "b"):
                chosen.append(value)
    return chosen


# --- data ----------------------------------------------------------------------------------------
@dataclass
class Data:
    splits: Splits
    augment: Callable | None
    preprocess: Pipeline | None


def build_data(spec: Spec, statistics: dict | None = None) -> Data:
    """Split, fit preprocessing on the training part only, and apply it to all three.

    `statistics` (a fitted pipeline's state_dict, as a checkpoint keeps it) are used instead
    of fitting: `topograd eval` applies the preprocessing the weights were trained with."""
    data = spec.data
    dataset = load(data.dataset)
    parts = split(
        dataset, val=data.val, test=data.test, seed=data.split_seed, stratify=data.stratify
    )
    pipeline = None
    if data.preprocess:
        steps = []
        for entry in data.preprocess:
            target = PREPROCESSORS.get(entry.name)
            extra = {}
            if "image_shape" in signature(target).parameters:
                extra["image_shape"] = entry.kwargs.get("image_shape", dataset.image_shape)
            kwargs = {k: v for k, v in entry.kwargs.items() if k not in extra}
            steps.append(_call(Entry(entry.name, kwargs, entry.pos), target, **extra))
        pipeline = Pipeline(steps)
        if statistics is not None:
            train_x = _with_statistics(pipeline, statistics, parts.train.x)
        else:
            train_x = _fitted(pipeline, data.preprocess, parts.train.x)
        train_x = np.asarray(train_x, dtype=np.float64)
        parts = Splits(
            _with_rows(parts.train, train_x),
            _transformed(pipeline, parts.val, train_x.shape[1]),
            _transformed(pipeline, parts.test, train_x.shape[1]),
        )
    augment = None
    if data.augment:
        pieces = [_call(e, AUGMENTATIONS.get(e.name)) for e in data.augment]
        augment = pieces[0] if len(pieces) == 1 else Compose(pieces)
    return Data(parts, augment, pipeline)


def _fitted(pipeline: Pipeline, entries, train_x):
    """Fit the steps on the training rows one by one, to blame the right line; the
    transformed training rows."""
    for step, entry in zip(pipeline.steps, entries):
        try:
            train_x = step.fit_transform(train_x)
        except ValueError as error:
            raise BlameError(entry.pos, f"preprocess {entry.name}: {error}") from None
    return train_x


def _with_statistics(pipeline: Pipeline, statistics: dict, train_x):
    """Load saved statistics into the pipeline; the transformed training rows. Statistics
    that do not fit these steps or this data are a ValueError."""
    try:
        pipeline.load_state_dict(statistics)
        return pipeline.transform(train_x)
    except (KeyError, ValueError) as error:
        message = error.args[0] if isinstance(error, KeyError) else str(error)
        raise ValueError(f"the saved preprocessing statistics do not fit: {message}") from None


def _transformed(pipeline: Pipeline, part, width: int):
    """A validation or test part through the fitted pipeline (`val 0` leaves it empty)."""
    return _with_rows(part, pipeline.transform(part.x) if len(part) else np.empty((0, width)))


def _with_rows(part, x):
    """The part with preprocessed rows; rows that changed width (PCA) are no longer images."""
    image_shape = part.image_shape if x.shape[1] == part.x.shape[1] else None
    return dataclasses.replace(part, x=x, image_shape=image_shape)


# --- loss, optimizer, schedule -------------------------------------------------------------------
PER_OUTPUT_LOSSES = ("bce_with_logits", "mse")
"""Losses that compare each output with a target of the same shape (not class labels)."""


def as_outputs(outputs, targets):
    """`targets` shaped like `outputs` when they are one value per example and the outputs
    one column: labels (N,) meet a `linear(1)` network's (N, 1), as Keras and the exported
    PyTorch script (`labels.reshape(outputs.shape)`) have them. Any other shape is left alone
    (the loss refuses a genuine mismatch). Works for numpy, engine and torch values."""
    shape = tuple(outputs.shape)
    if not hasattr(targets, "shape"):
        targets = np.asarray(targets)
    if shape and shape[-1] == 1 and tuple(targets.shape) == shape[:-1]:
        return targets.reshape(shape)
    return targets


def build_loss(spec: Spec, model) -> Callable:
    """loss(outputs, targets): the data loss, plus (l2 / 2) * sum of squared weights.

    For bce_with_logits and mse, targets of shape (N,) meet outputs of shape (N, 1)
    (`as_outputs`)."""
    entry = spec.train.loss
    function, options = LOSSES.get(entry.name), dict(entry.kwargs)
    strength = spec.train.l2
    weights = decayed_parameters(model) if strength > 0 else []
    per_output = entry.name in PER_OUTPUT_LOSSES
    if not options and not weights and not per_output:
        return function  # fit knows the engine's own losses (its initial-loss check)

    def loss(outputs, targets):
        if per_output:
            targets = as_outputs(outputs, targets)
        value = function(outputs, targets, **options)
        if weights:
            penalty = sum(((w * w).sum() for w in weights[1:]), (weights[0] * weights[0]).sum())
            value = value + 0.5 * strength * penalty
        return value

    loss.__name__ = entry.name
    return loss


def build_optimizer(entry: Entry, model, decay: str = "all"):
    """The optimizer over every parameter; with decay "weights", weight_decay applies to the
    weights only (a second group without it holds biases and norm parameters)."""
    target = OPTIMIZERS.get(entry.name)
    params = model.parameters()
    if decay == "weights" and entry.kwargs.get("weight_decay", 0):
        chosen = {id(p) for p in decayed_parameters(model)}
        groups = [
            {"params": [p for p in params if id(p) in chosen]},
            {"params": [p for p in params if id(p) not in chosen], "weight_decay": 0.0},
        ]
        params = [g for g in groups if g["params"]]
    return _call(entry, target, params)


def run_length(spec: Spec, train_size: int) -> tuple[int, str]:
    """How many times the schedule steps in the whole run, and in what: every batch (the
    batches of every epoch) or every epoch (`schedule_per epoch`)."""
    train = spec.train
    if train.schedule_per == "epoch":
        return train.epochs, "epochs"
    drop_last = train.fit_options.get("drop_last", False)
    per_epoch = train_size // train.batch_size if drop_last else -(-train_size // train.batch_size)
    return train.epochs * max(per_epoch, 1), "steps"


def fitted_schedule(entry: Entry | None, length: int, unit: str) -> Entry | None:
    """The schedule with its length filled in where the file left it out (cosine's T_max:
    the rest of the run after a warm-up), and refused where it ends before the run does:
    past T_max a cosine climbs back up, which no one asks for by accident."""
    if entry is None:
        return None
    kwargs = dict(entry.kwargs)
    if entry.name == "warmup" and isinstance(kwargs.get("after"), Entry):
        rest = length - int(kwargs.get("warmup_steps", 0))
        kwargs["after"] = fitted_schedule(kwargs["after"], max(rest, 1), unit)
    if entry.name == "cosine":
        if "T_max" not in kwargs:
            kwargs["T_max"] = max(length, 1)
        elif isinstance(kwargs["T_max"], int) and kwargs["T_max"] < length:
            raise BlameError(
                entry.pos,
                f"cosine(T_max={kwargs['T_max']}) reaches its lowest lr after {kwargs['T_max']} "
                f"of the run's {length} {unit} and climbs back up after it; leave T_max out to "
                f"anneal over the whole run, or use cosine_restarts(T_0=...) for restarts",
            )
    return dataclasses.replace(entry, kwargs=kwargs)


def build_schedule(entry: Entry | None, optimizer):
    """The schedule on `optimizer`; a nested schedule (warm-up's `after=`) is built first."""
    if entry is None:
        return None
    kwargs = {
        key: build_schedule(value, optimizer) if isinstance(value, Entry) else value
        for key, value in entry.kwargs.items()
    }
    return _call(Entry(entry.name, kwargs, entry.pos), SCHEDULES.get(entry.name), optimizer)


def distribution(entry: Entry):
    """A search distribution from its Entry (choice's options are its positional values)."""
    target = DISTRIBUTIONS.get(entry.name)
    kwargs = dict(entry.kwargs)
    options = kwargs.pop("*", [])
    return target(*options, **kwargs)


def build_graph(graph, seed: int = 0) -> GraphValues:
    return evaluate_graph(graph.items, graph.constants, seed)


# --- everything at once --------------------------------------------------------------------------
@dataclass
class Built:
    """One training run's engine objects (the first optimizer when the file compares several)."""

    spec: Spec
    model: nn.Module
    data: Data | None
    loss: Callable | None
    optimizer: object
    schedule: object
    schedule_entry: Entry | None = None  # the file's schedule with the run's length filled in

    def fit_options(self) -> dict:
        """Keyword arguments for engine.train.fit, from the train section."""
        train = self.spec.train
        options = dict(train.fit_options)
        options.update(
            epochs=train.epochs,
            batch_size=train.batch_size,
            seed=train.seed,
            loss=self.loss,
            schedule=self.schedule,
            augment=self.data.augment if self.data else None,
            early_stopping=train.early_stopping,
            checkpoint=train.checkpoint,
        )
        if self.schedule is not None:  # (a snapshot ensemble, which has none, refuses it)
            options["schedule_per"] = train.schedule_per
        return options


def build(spec: Spec, source: Source, seed: int | None = None, optimizer_index: int = 0) -> Built:
    """Engine objects for a checked network file; `seed` overrides the train section's."""
    try:
        if spec.network is None:
            raise BlameError(spec.graphs[0].pos if spec.graphs else None, "the file has no network")
        train = spec.train
        seed = seed if seed is not None else (train.seed if train else 0)
        model = build_model(spec.network, seed)
        data = build_data(spec) if spec.data else None
        loss = optimizer = schedule = schedule_entry = None
        if train is not None:
            loss = build_loss(spec, model)
            entry = train.optimizers[optimizer_index]
            optimizer = build_optimizer(entry, model, train.decay)
            schedule_entry = train.schedule
            if data is not None:
                length = run_length(spec, len(data.splits.train))
                schedule_entry = fitted_schedule(schedule_entry, *length)
            schedule = build_schedule(schedule_entry, optimizer)
        return Built(spec, model, data, loss, optimizer, schedule, schedule_entry)
    except BlameError as blame:
        from topograd.dsl.ast import NOWHERE

        raise DslBuildError(source, [Problem(blame.pos or NOWHERE, blame.message)]) from None
