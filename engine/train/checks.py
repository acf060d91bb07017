"""The lecture's babysitting checks, each usable on its own and built into `fit`.

- `expected_initial_loss` / `initial_loss_problem`: at initialization a softmax classifier
  with small weights predicts every class with probability about 1/C, so its cross-entropy
  is about log(C). A first loss far from that means the weights, the data scaling or the
  loss are off before any training happened.
- `sanity_check`: a working model and optimizer must be able to memorize a tiny subset
  (100% training accuracy, loss near 0). If they cannot, no amount of data will help.
- `ExplosionGuard`: the notes' tip, "if the cost is ever > 3 * original cost, break out
  early".
- `locate_nonfinite`: the first node (op, name, layer) that produced a NaN or an Inf.
- `diagnose`: bias and variance from the training and validation errors and a baseline
  error (human level, or 0), with the notes' advice for each case.
- `evaluate` and `activation_statistics`: what the checks measure with.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from topograd.engine import functional as F
from topograd.engine.graph import Graph
from topograd.engine.modes import AnomalyError, detect_anomaly, enable_grad, no_grad
from topograd.engine.tensor import Tensor

# --- data ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrays:
    """The arrays `fit` and the checks work on, from a Dataset or an (x, y) tuple."""

    x: np.ndarray
    y: np.ndarray
    image_shape: tuple | None = None
    num_classes: int | None = None

    def __len__(self):
        return len(self.x)


def as_arrays(data, what: str = "data") -> Arrays:
    """Accept an engine.data Dataset (anything with `.x` and `.y`) or an (x, y) pair.

    The number of classes is the Dataset's `num_classes`, or 1 + the largest integer label.
    """
    if hasattr(data, "x") and hasattr(data, "y"):
        x, y = data.x, data.y
        image_shape = getattr(data, "image_shape", None)
        num_classes = getattr(data, "num_classes", None)
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        (x, y), image_shape, num_classes = data, None, None
    else:
        raise TypeError(
            f"{what} must be a Dataset (with .x and .y) or an (x, y) tuple, "
            f"got {type(data).__name__}"
        )
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"{what}: x has {len(x)} rows but y has {len(y)} labels")
    if len(x) == 0:
        raise ValueError(f"{what} is empty")
    if num_classes is None and np.issubdtype(y.dtype, np.integer):
        num_classes = int(y.max()) + 1
    return Arrays(x, y, None if image_shape is None else tuple(image_shape), num_classes)


def count_correct(outputs: np.ndarray, labels: np.ndarray) -> int | None:
    """How many predictions match integer labels (None when accuracy has no meaning).

    (N, C) outputs with C > 1 predict their argmax; (N,) or (N, 1) outputs are one logit of
    a binary problem and predict 1 where the logit is positive.
    """
    if not np.issubdtype(labels.dtype, np.integer):
        return None
    if outputs.ndim == 2 and outputs.shape[1] > 1:
        predicted = outputs.argmax(axis=1)
    elif outputs.ndim == 1 or (outputs.ndim == 2 and outputs.shape[1] == 1):
        predicted = (outputs.reshape(-1) > 0).astype(labels.dtype)
    else:
        return None
    return int(np.count_nonzero(predicted == labels))


class _Modes:
    """Every module's training flag, to put back after an evaluation."""

    def __init__(self, model):
        self.flags = [(module, module.training) for module in model.modules()]

    def restore(self) -> None:
        for module, training in self.flags:
            module.training = training  # this module only: train() would recurse


def evaluate(model, data, loss: Callable = F.cross_entropy, batch_size: int = 1024):
    """(mean loss, accuracy) of `model` on `data` in evaluation mode.

    `model.eval()` (batch norm uses its running statistics and leaves them alone, dropout is
    off) and `no_grad()` (no graph is recorded), in chunks of `batch_size` rows; every
    module's training flag is put back afterwards. Accuracy is None when the labels are not
    integers. The loss is averaged over samples, so chunking does not change it.
    """
    arrays = data if isinstance(data, Arrays) else as_arrays(data)
    modes = _Modes(model)
    model.eval()
    total_loss, correct = 0.0, 0
    try:
        with no_grad():
            for begin in range(0, len(arrays), batch_size):
                x = arrays.x[begin : begin + batch_size]
                y = arrays.y[begin : begin + batch_size]
                outputs = model(Tensor(x))
                total_loss += loss(outputs, y).item() * len(x)
                hits = count_correct(outputs.data, y)
                correct = None if hits is None or correct is None else correct + hits
    finally:
        modes.restore()
    n = len(arrays)
    return total_loss / n, (None if correct is None else correct / n)


# --- the initial loss ---------------------------------------------------------------------


def expected_initial_loss(num_classes: int) -> float:
    """log(C): the cross-entropy of a softmax that gives every one of C classes 1/C."""
    if num_classes is None or num_classes < 2:
        raise ValueError(f"expected_initial_loss needs at least 2 classes, got {num_classes}")
    return math.log(num_classes)


INITIAL_LOSS_TOLERANCE = 0.5


def initial_loss_problem(
    loss: float, expected: float, tolerance: float = INITIAL_LOSS_TOLERANCE
) -> str | None:
    """A message if the first loss is off by more than `tolerance` * expected, else None.

    Why half of log(C): logits at initialization are not exactly zero. With a final layer
    whose outputs have standard deviation s, the expected cross-entropy is about
    log(C) + s^2 / 2 (for small s), so Xavier- or He-initialized layers (s around 0.7 to 1)
    start 10 to 25% above log(C); being off by 50% means logits with a standard deviation of
    about 1.5 or more (too large an initialization, unscaled inputs) or a loss that is not
    the softmax cross-entropy the check assumes. A loss far *below* log(C) at step 0 usually
    means the labels leak into the inputs, or the loss is not averaged over the batch.
    """
    if not math.isfinite(loss):
        return f"the initial loss is {loss}: the model produces non-finite values"
    if abs(loss - expected) <= tolerance * expected:
        return None
    direction = "above" if loss > expected else "below"
    return (
        f"initial loss {loss:.4f} is {direction} the expected log(C) = {expected:.4f} by more "
        f"than {tolerance:.0%}: check the initialization scale, the input scaling and the loss"
    )


class InitialLossWarning(UserWarning):
    """The first loss of a softmax classifier is far from log(C)."""


# --- overfitting a tiny subset -------------------------------------------------------------


@dataclass(frozen=True)
class SanityResult:
    """What `sanity_check` saw: did the model memorize `samples` examples?"""

    passed: bool
    samples: int
    steps: int  # steps actually taken (the check stops once it has overfitted)
    train_accuracy: float
    final_loss: float
    initial_loss: float
    expected_initial_loss: float | None
    losses: list[float] = field(repr=False)
    message: str = ""

    def __str__(self):
        return self.message


def sanity_check(
    model_factory: Callable,
    train,
    optimizer_factory: Callable,
    samples: int = 20,
    steps: int = 200,
    *,
    loss: Callable = F.cross_entropy,
    seed: int = 0,
    loss_tolerance: float = 0.05,
    log: Callable | None = print,
) -> SanityResult:
    """Train a fresh model on `samples` examples until it memorizes them (the notes' "make
    sure you can overfit a very small portion of the training data").

    `model_factory()` builds the model and `optimizer_factory(params)` its optimizer, e.g.
    `functools.partial(Adam, lr=1e-3)`. The subset is drawn at random with `seed`. Every step
    uses the whole subset as one batch. Every 10 steps the subset is evaluated in evaluation
    mode; the check passes, and stops, as soon as the training accuracy is 100% and the loss
    is below `loss_tolerance` (memorized, with margin: a loss of 0.05 means the right class
    gets about 95% probability on average).

    A failure means a bug (in the model, the loss or the data pipeline) or a learning rate
    far too small; fix it before training on everything. Dropout is left in: it slows the
    memorizing but a sound model still gets there.

    >>> import numpy as np, functools
    >>> from topograd.engine import nn
    >>> from topograd.engine.optim import Adam
    >>> rng = np.random.default_rng(0)
    >>> data = (rng.normal(size=(50, 4)), rng.integers(0, 3, 50))
    >>> result = sanity_check(lambda: nn.Sequential(nn.Linear(4, 32), nn.ReLU(),
    ...     nn.Linear(32, 3)), data, functools.partial(Adam, lr=1e-2), log=None)
    >>> result.passed, result.train_accuracy
    (True, 1.0)
    """
    arrays = as_arrays(train, "train")
    if samples < 1 or steps < 1:
        raise ValueError(f"sanity_check needs samples >= 1 and steps >= 1, got {samples}, {steps}")
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(len(arrays))[: min(samples, len(arrays))]
    subset = Arrays(arrays.x[chosen], arrays.y[chosen], arrays.image_shape, arrays.num_classes)
    model = model_factory()
    optimizer = optimizer_factory(model.parameters())
    expected = (
        expected_initial_loss(arrays.num_classes)
        if loss is F.cross_entropy and arrays.num_classes and arrays.num_classes > 1
        else None
    )
    inputs = Tensor(subset.x)
    losses: list[float] = []
    taken = 0
    for step in range(1, steps + 1):
        model.train()
        optimizer.zero_grad()
        batch_loss = loss(model(inputs), subset.y)
        losses.append(batch_loss.item())
        if not math.isfinite(losses[-1]):
            break
        batch_loss.backward()
        optimizer.step()
        taken = step
        if step % 10 == 0:
            value, accuracy = evaluate(model, subset, loss)
            if accuracy == 1.0 and value < loss_tolerance:
                break
    value, accuracy = evaluate(model, subset, loss)
    accuracy = 0.0 if accuracy is None else accuracy
    passed = accuracy == 1.0 and value < loss_tolerance
    if passed:
        message = (
            f"sanity check passed: memorized {len(subset)} examples in {taken} steps "
            f"(train accuracy 100%, loss {value:.4f})"
        )
    else:
        message = (
            f"sanity check FAILED: after {taken} steps on {len(subset)} examples the train "
            f"accuracy is {accuracy:.1%} and the loss {value:.4f} (want 100% and < "
            f"{loss_tolerance}); look for a bug, or raise the learning rate"
        )
    if log is not None:
        log(message)
    return SanityResult(
        passed=passed,
        samples=len(subset),
        steps=taken,
        train_accuracy=float(accuracy),
        final_loss=float(value),
        initial_loss=losses[0],
        expected_initial_loss=expected,
        losses=losses,
        message=message,
    )


# --- explosions and non-finite values ------------------------------------------------------


class ExplosionGuard:
    """Flags a loss that has grown past `factor` times the first loss of the run.

    The notes' rule compares the raw cost; on mini-batches one unlucky batch can jump, so the
    guard compares a bias-corrected moving average of the batch losses (beta 0.9: about the
    last 10 batches; with bias correction the first average is the first loss itself). A
    real explosion grows by orders of magnitude within a few steps and is caught a handful
    of steps later; a single outlier batch is not.
    """

    def __init__(self, factor: float = 3.0, beta: float = 0.9):
        if not factor > 1.0:
            raise ValueError(f"explosion_factor must be > 1 (or None to turn it off), got {factor}")
        self.factor, self.beta = float(factor), float(beta)
        self.initial: float | None = None
        self.average = 0.0
        self.count = 0

    @property
    def smoothed(self) -> float:
        """The bias-corrected moving average of the losses seen so far."""
        return self.average / (1.0 - self.beta**self.count) if self.count else math.nan

    def update(self, loss: float) -> bool:
        """Record one batch loss; True when the smoothed loss exceeds factor * initial."""
        if self.initial is None:
            self.initial = float(loss)
        self.count += 1
        self.average = self.beta * self.average + (1.0 - self.beta) * float(loss)
        return self.smoothed > self.factor * self.initial

    def state_dict(self) -> dict:
        return {"initial": self.initial, "average": self.average, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.initial, self.average, self.count = state["initial"], state["average"], state["count"]


@dataclass(frozen=True)
class NonFiniteReport:
    """Where a NaN or an Inf first appeared: the node's op, name, layer and shape."""

    phase: str  # "forward" (a value) or "backward" (a gradient)
    op: str  # the primitive's name, or "parameter"/"input"/"constant" for a leaf
    name: str | None
    layer: str | None
    layer_kind: str | None
    shape: tuple
    node_id: int | None
    message: str

    def to_dict(self) -> dict:
        return {
            "phase": self.phase,
            "op": self.op,
            "name": self.name,
            "layer": self.layer,
            "layer_kind": self.layer_kind,
            "shape": list(self.shape),
            "node_id": self.node_id,
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, data: dict) -> NonFiniteReport:
        return cls(**{**data, "shape": tuple(data["shape"])})


def _report(graph: Graph, node, phase: str, names: dict) -> NonFiniteReport:
    info = graph.info(node)
    name = names.get(id(node), info.name)
    where = f" in layer {info.layer} ({info.layer_kind})" if info.layer else ""
    label = f"{info.op}" + (f" {name!r}" if name else "")
    if phase == "forward" and info.op == "parameter":
        message = (
            f"parameter {name!r} already holds NaN/Inf: an earlier update made it (its "
            "gradient or the optimizer's step overflowed)"
        )
    elif phase == "forward":
        message = f"the first non-finite value came from {label}{where}, shape {info.shape}"
    else:
        message = (
            f"the first non-finite gradient came from the backward pass of {label}{where}, "
            f"shape {info.shape}"
        )
    return NonFiniteReport(
        phase, info.op, name, info.layer, info.layer_kind, info.shape, node.id, message
    )


def locate_nonfinite(loss: Tensor, names: dict | None = None) -> NonFiniteReport | None:
    """The first node, inputs before users, whose value is NaN or Inf (None if none is).

    Reads the graph that computed `loss` after the fact (engine.Graph.first_nonfinite), so
    nothing is recomputed and the same dropout masks are seen. `names` maps id(parameter)
    to a dotted name (`{id(p): n for n, p in model.named_parameters()}`) for reports that
    blame a parameter.
    """
    graph = Graph(loss)
    node = graph.first_nonfinite()
    return None if node is None else _report(graph, node, "forward", names or {})


def locate_nonfinite_gradient(
    loss: Tensor, parameters: Sequence[Tensor], names: dict | None = None
) -> NonFiniteReport:
    """Re-run the backward pass of a finite `loss` under `detect_anomaly` to find the first
    VJP that produced a NaN or an Inf. The parameters' `.grad` are cleared first (backward
    accumulates) and hold the rerun's partial gradients afterwards."""
    names = names or {}
    for p in parameters:
        p.grad = None
    graph = Graph(loss)
    try:
        with detect_anomaly():
            loss.backward()
    except AnomalyError as error:
        if error.node is not None:
            return _report(graph, error.node, error.phase, names)
    for p in parameters:
        if p.grad is not None and not np.all(np.isfinite(p.grad)):
            name = names.get(id(p), p.name)
            return NonFiniteReport(
                "backward",
                "parameter",
                name,
                None,
                None,
                tuple(p.shape),
                p.id,
                f"the gradient of parameter {name!r} is not finite (summed from finite parts)",
            )
    return NonFiniteReport(
        "backward", "unknown", None, None, None, (), None, "a gradient was not finite"
    )


# --- bias and variance ---------------------------------------------------------------------

DIAGNOSIS_THRESHOLD = 0.02

ADVICE = {
    "high bias": (
        "the model underfits (training error well above the baseline): use a bigger network, "
        "train longer, or try a better optimizer or architecture"
    ),
    "high variance": (
        "the model overfits (validation error well above the training error): get more data, "
        "add regularization (weight decay, dropout, augmentation) or use a smaller network"
    ),
    "high bias and high variance": (
        "both: first reduce the bias (bigger network, train longer) until the training error "
        "nears the baseline, then the variance (more data, regularization)"
    ),
    "neither": (
        "training error is near the baseline and validation error near the training error: "
        "the fit is good; to do better, lower the baseline or get more data"
    ),
}


@dataclass(frozen=True)
class Diagnosis:
    """The notes' bias/variance reading of one run's errors, with advice."""

    label: str  # "high bias", "high variance", "high bias and high variance" or "neither"
    advice: str
    train_error: float
    val_error: float | None
    baseline_error: float
    avoidable_bias: float  # train_error - baseline_error
    variance: float | None  # val_error - train_error
    threshold: float

    def __str__(self):
        val = "n/a" if self.val_error is None else f"{self.val_error:.2%}"
        variance = "n/a" if self.variance is None else f"{self.variance:+.2%}"
        return (
            f"{self.label}: train error {self.train_error:.2%}, val error {val}, baseline "
            f"{self.baseline_error:.2%} (avoidable bias {self.avoidable_bias:+.2%}, variance "
            f"{variance}, threshold {self.threshold:.2%}). {self.advice}"
        )


def diagnose(
    train_error: float,
    val_error: float | None,
    baseline_error: float = 0.0,
    threshold: float = DIAGNOSIS_THRESHOLD,
) -> Diagnosis:
    """Bias and variance from errors in [0, 1] (the notes' "diagnose bias-variance").

    avoidable bias = train_error - baseline_error (how far training is from what is
    achievable: human level, or 0); variance = val_error - train_error (the generalization
    gap). Each is "high" when it exceeds `threshold`, an absolute difference of error rates.

    Why 2 percentage points: the notes' examples (baseline 0%) are 0.5%/1% (neither),
    15%/16% (high bias), 1%/11% (high variance) and 12%/20% (both); gaps of 0.5 to 1 point
    count as low and 8 points or more as high, and 2 points separates them. It is also
    about twice the sampling noise of an error of a few percent measured on a few hundred
    validation examples (sqrt(0.03 * 0.97 / 270) = 1 point for digits' validation split), so
    a smaller threshold would diagnose noise. With a much larger validation set, lower it;
    with a much smaller one, raise it. Without a validation error (None) only the bias is
    judged, and the label cannot include "high variance".

    >>> diagnose(0.01, 0.11).label
    'high variance'
    """
    for name, value in (("train_error", train_error), ("baseline_error", baseline_error)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"diagnose: {name} must be an error rate in [0, 1], got {value}")
    if val_error is not None and not 0.0 <= val_error <= 1.0:
        raise ValueError(f"diagnose: val_error must be an error rate in [0, 1], got {val_error}")
    if threshold < 0:
        raise ValueError(f"diagnose: threshold must be >= 0, got {threshold}")
    bias = train_error - baseline_error
    variance = None if val_error is None else val_error - train_error
    high_bias = bias > threshold
    high_variance = variance is not None and variance > threshold
    if high_bias and high_variance:
        label = "high bias and high variance"
    elif high_bias:
        label = "high bias"
    elif high_variance:
        label = "high variance"
    else:
        label = "neither"
    advice = ADVICE[label]
    if val_error is None:
        advice += " (no validation set: the variance was not measured)"
    return Diagnosis(
        label, advice, train_error, val_error, baseline_error, bias, variance, threshold
    )


# --- activation statistics -----------------------------------------------------------------

ACTIVATION_KINDS = ("ReLU", "Tanh", "Sigmoid", "LeakyReLU", "ELU", "Maxout")


@dataclass(frozen=True)
class ActivationStats:
    """One activation layer's outputs on a batch (the initialization lecture's table)."""

    layer: str
    kind: str
    values: np.ndarray = field(repr=False)

    @property
    def mean(self) -> float:
        return float(self.values.mean())

    @property
    def std(self) -> float:
        return float(self.values.std())


def activation_statistics(
    model, x, kinds: Sequence[str] = ACTIVATION_KINDS, training: bool = True
) -> list[ActivationStats]:
    """Run `x` through `model` and return each activation layer's outputs, in order.

    The forward pass is recorded and its graph walked (engine.Graph): every node carries the
    layer that made it, and a layer's output is the last node it made. `training=True` runs
    batch norm on batch statistics, as during training (its running statistics and every
    module's mode are put back afterwards) but with dropout off, so the histograms show the
    activations themselves and no random numbers are drawn.
    """
    modes = _Modes(model)
    buffers = {name: np.array(b, copy=True) for name, b in model.named_buffers()}
    model.train(training)
    for module in model.modules():
        if type(module).__name__ == "Dropout":
            module.training = False
    try:
        with enable_grad():
            output = model(Tensor(np.asarray(x)))
    finally:
        modes.restore()
        current = dict(model.named_buffers())
        for name, value in buffers.items():
            current[name][...] = value
    last: dict = {}
    for node in Graph(output).nodes:
        layer = node.layer
        if node.op is not None and layer is not None and layer.kind in kinds:
            last[layer] = node
    ordered = sorted(last.items(), key=lambda item: item[1].id)
    return [
        ActivationStats(tag.path, tag.kind, np.array(node.data, copy=True)) for tag, node in ordered
    ]
