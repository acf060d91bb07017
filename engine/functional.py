"""Functions built from primitive ops; their backward passes are derived by the engine.

Some are primitives themselves (softmax, log_softmax, softplus, leaky_relu, elu, maximum,
concat: see engine/primitives.py; conv2d and the pooling ops: engine/conv.py, re-exported
here); the norms, dropout and every loss here are compositions.
"""

from __future__ import annotations

import numpy as np
from topograd.engine.averages import ewma_update_
from topograd.engine.capture import (
    note_check,
    note_derived,
    note_draw,
    note_effect,
    note_fresh,
    note_unreplayable,
    recording,
)
from topograd.engine.conv import adaptive_avg_pool2d as adaptive_avg_pool2d
from topograd.engine.conv import avg_pool2d as avg_pool2d
from topograd.engine.conv import conv2d as conv2d
from topograd.engine.conv import flatten as flatten
from topograd.engine.conv import max_pool2d as max_pool2d
from topograd.engine.modes import resolve_rng
from topograd.engine.ops import OPS
from topograd.engine.registry import Registry
from topograd.engine.tensor import Tensor, apply


def _tensor(x) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def _constant(value, like: Tensor) -> Tensor:
    """A leaf holding `value` in `like`'s dtype (masks, counts): it gets no gradient."""
    return Tensor._const(np.asarray(value, dtype=like.dtype))


# --- activations -----------------------------------------------------------------------
def relu(x):
    return _tensor(x).relu()


def tanh(x):
    return _tensor(x).tanh()


def sigmoid(x):
    return _tensor(x).sigmoid()


def leaky_relu(x, negative_slope=0.01):
    """x for x > 0, negative_slope * x otherwise (a primitive)."""
    return apply(OPS["leaky_relu"], _tensor(x), negative_slope=negative_slope)


def elu(x, alpha=1.0):
    """x for x > 0, alpha * (e^x - 1) otherwise (a primitive, computed with expm1)."""
    return apply(OPS["elu"], _tensor(x), alpha=alpha)


def softplus(x):
    """log(1 + e^x), smooth ReLU (a primitive, computed without overflow)."""
    return apply(OPS["softplus"], _tensor(x))


def maximum(x, y):
    """Elementwise maximum with broadcasting (a primitive; ties split the gradient)."""
    x = _tensor(x)
    return apply(OPS["maximum"], x, x._lift(y))


def minimum(x, y):
    """Elementwise minimum with broadcasting, composed as -maximum(-x, -y) (ties split)."""
    x = _tensor(x)
    return -maximum(-x, -x._lift(y))


def where(condition, x, y):
    """x where `condition` holds, else y, with broadcasting (a primitive, torch.where).

    The condition (a boolean array or tensor; nonzero counts as true) is a constant input
    that gets no gradient; a number for x or y becomes a constant in the other's dtype.
    """
    if not isinstance(condition, Tensor) or condition.dtype != np.bool_:
        data = condition._data if isinstance(condition, Tensor) else condition
        condition = Tensor._const(np.asarray(data, dtype=bool))
    if isinstance(y, Tensor) and not isinstance(x, Tensor):
        x = y._lift(x)
    x = _tensor(x)
    return apply(OPS["where"], condition, x, x._lift(y))


def softmax(x, axis=-1):
    return apply(OPS["softmax"], _tensor(x), axis=axis)


def log_softmax(x, axis=-1):
    """log(softmax(x)) computed after subtracting the max: finite for logits of 1e4."""
    return apply(OPS["log_softmax"], _tensor(x), axis=axis)


def concat(tensors, axis=0):
    tensors = [_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("concat needs at least one tensor")
    return apply(OPS["concat"], *tensors, axis=axis)


def stack(tensors, axis=0):
    """Join tensors of one shape along a new axis `axis` (a primitive, torch.stack)."""
    tensors = [_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("stack needs at least one tensor")
    return apply(OPS["stack"], *tensors, axis=axis)


def _stack_arguments(*tensors, axis=0):
    """stack as a graph expression calls it, tensors as arguments: stack(a, b, axis=1)."""
    return stack(tensors, axis=axis)


# --- losses ------------------------------------------------------------------------------
def _reduce(losses, reduction):
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    if reduction == "none":
        return losses
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


class _Shaped:
    __slots__ = ("shape",)

    def __init__(self, shape):
        self.shape = shape


def class_labels(labels, logits, loss):
    """Validate integer class labels; an integer vector of the right length is checked with
    two reductions (the common case, on every training step)."""
    labels = np.asarray(labels.data if isinstance(labels, Tensor) else labels)
    classes = logits.shape[1]
    if (
        labels.dtype.kind in "iu"
        and labels.shape == (logits.shape[0],)
        and labels.size
        and labels.min() >= 0
        and labels.max() < classes
    ):
        return labels
    if labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"{loss}: labels must be a vector of {logits.shape[0]} class indices, "
            f"got shape {labels.shape} for logits of shape {logits.shape}"
        )
    if labels.size and not np.all(np.equal(np.mod(labels, 1), 0)):
        raise ValueError(f"{loss}: labels must be integers, got {labels[:5]}")
    labels = labels.astype(np.intp)
    bad = (labels < 0) | (labels >= classes)
    if bad.any():
        raise ValueError(
            f"{loss}: label {labels[bad][0]} is outside [0, {classes}) for {classes} classes"
        )
    return labels


def cross_entropy(logits, labels, reduction="mean"):
    """Softmax cross-entropy of (N, C) logits against N integer class labels."""
    logits = _tensor(logits)
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: logits must be (N, C), got shape {logits.shape}")
    labels = class_labels(labels, logits, "cross_entropy")
    if recording() is not None:  # a capture checks each replayed batch's labels again
        shaped = _Shaped(logits.shape)  # the check keeps the shape, not the logits' node
        note_check(lambda new: class_labels(new, shaped, "cross_entropy"), labels)
    picked = log_softmax(logits, axis=1)[np.arange(len(labels)), labels]
    return _reduce(-picked, reduction)


def mse_loss(prediction, target, reduction="mean"):
    """Mean of squared differences; shapes must match exactly (no silent broadcasting)."""
    prediction = _tensor(prediction)
    target = target if isinstance(target, Tensor) else _constant(target, prediction)
    if prediction.shape != target.shape:
        raise ValueError(
            f"mse_loss: prediction shape {prediction.shape} != target shape {target.shape}"
        )
    diff = prediction - target
    return _reduce(diff * diff, reduction)


def binary_cross_entropy_with_logits(logits, targets, reduction="mean"):
    """-[y log s(x) + (1-y) log(1 - s(x))] = y * softplus(-x) + (1 - y) * softplus(x).

    Written with softplus on both sides, nothing cancels: the loss of a confident right
    answer (e^-40) keeps its digits, and the gradient is sigmoid(x) - y everywhere, 0 included.
    """
    logits = _tensor(logits)
    targets = targets if isinstance(targets, Tensor) else _constant(targets, logits)
    if logits.shape != targets.shape:
        raise ValueError(
            f"binary_cross_entropy_with_logits: logits shape {logits.shape} "
            f"!= targets shape {targets.shape}"
        )
    losses = targets * softplus(-logits) + (1.0 - targets) * softplus(logits)
    return _reduce(losses, reduction)


def hinge_loss(scores, targets, margin=1.0, reduction="mean"):
    """SVM hinge loss.

    Binary: scores of shape (N,) or (N, 1) and targets in {-1, +1}: mean(max(0, margin - y*s)).
    Class indices {0, 1} (as datasets label them) are read as -1 and +1.
    Multiclass (the cs231n SVM): scores (N, C) and integer labels:
    mean over samples of sum over j != y of max(0, s_j - s_y + margin).
    """
    scores = _tensor(scores)
    raw = targets.data if isinstance(targets, Tensor) else targets
    if scores.ndim == 1 or (scores.ndim == 2 and scores.shape[1] == 1):
        shape, dtype = scores.shape, scores.dtype

        def signs(targets):
            y = np.asarray(targets, dtype=dtype).reshape(shape)
            if np.all(np.isin(y, (0.0, 1.0))):
                y = 2.0 * y - 1.0
            if not np.all(np.isin(y, (-1.0, 1.0))):
                raise ValueError(
                    "hinge_loss: binary targets must be -1 and +1 (or classes 0 and 1)"
                )
            return y

        y = Tensor._const(signs(raw))
        note_derived(y, raw, signs)  # a replayed step recodes its own targets
        return _reduce((margin - scores * y).relu(), reduction)
    if scores.ndim != 2:
        raise ValueError(f"hinge_loss: scores must be (N,), (N, 1) or (N, C), got {scores.shape}")
    labels = class_labels(targets, scores, "hinge_loss")
    rows = np.arange(len(labels))
    correct = scores[rows, labels].reshape(len(labels), 1)
    shaped = _Shaped(scores.shape)
    dtype = scores.dtype

    def others_of(targets):  # 1 where a class is not the label: the margins that count
        picked = class_labels(targets, shaped, "hinge_loss")
        others = np.ones(shaped.shape, dtype=dtype)
        others[np.arange(len(picked)), picked] = 0.0
        return others

    others = Tensor._const(others_of(labels))
    note_derived(others, labels, others_of)
    margins = (scores - correct + margin).relu() * others
    return _reduce(margins.sum(axis=1), reduction)


# --- normalization -------------------------------------------------------------------------
def _normalize(x, axes, eps):
    """(x - mean) / sqrt(var + eps) over `axes`, biased variance; returns (x_hat, mean, var)."""
    mean = x.mean(axis=axes, keepdims=True)
    centered = x - mean
    var = (centered**2).mean(axis=axes, keepdims=True)
    return centered * (var + eps) ** -0.5, mean, var


def batch_norm(
    x,
    running_mean=None,
    running_var=None,
    weight=None,
    bias=None,
    training=True,
    momentum=0.1,
    eps=1e-5,
    fused=False,
):
    """Batch norm over (N, C) or (N, C, ...) with statistics per channel (axis 1).

    Training normalizes with the biased batch variance and, when running buffers are given,
    updates them in place (running_var with the unbiased variance), as PyTorch does;
    `momentum` is the weight of the new batch, None for a cumulative average is not supported.
    Evaluation uses the running statistics. `fused=True` uses one primitive with the notes'
    closed-form backward instead of the composed graph.
    """
    x = _tensor(x)
    if x.ndim < 2:
        raise ValueError(f"batch_norm: input must be (N, C) or (N, C, ...), got shape {x.shape}")
    channels = x.shape[1]
    axes = (0, *range(2, x.ndim))
    count = x.size // channels
    shape = (channels,) + (1,) * (x.ndim - 2)
    weight = _affine_param(weight, channels, x, "weight")
    bias = _affine_param(bias, channels, x, "bias")
    if training:
        if count < 2:
            raise ValueError(
                f"batch_norm: training needs more than one value per channel to estimate a "
                f"variance, got input shape {x.shape}; use a batch of at least 2 or eval mode"
            )
        if fused:
            w = weight if weight is not None else _constant(np.ones(channels), x)
            b = bias if bias is not None else _constant(np.zeros(channels), x)
            out = apply(OPS["batch_norm_fused"], x, w, b, eps=eps)
            # The op's saved context has the batch statistics; under no_grad none is kept.
            batch_mean, batch_var = out.ctx[2:] if out.ctx is not None else _stats(x, axes)
            sources = [(out, "ctx")] if out.ctx is not None else None
        else:
            out, mean_node, var_node = _normalize(x, axes, eps)
            batch_mean, batch_var = mean_node.data, var_node.data
            out = _affine(out, weight, bias, shape)
            sources = [(mean_node, "value"), (var_node, "value")]
        if running_mean is not None:
            _update_running(running_mean, running_var, batch_mean, batch_var, count, momentum)
            _replay_running(sources, running_mean, running_var, count, momentum)
        return out
    if running_mean is None or running_var is None:
        raise ValueError("batch_norm: evaluation needs running_mean and running_var")
    dtype = x.dtype

    def read_mean():
        return np.asarray(np.asarray(running_mean).reshape(shape), dtype=dtype)

    def read_inv_std():
        return np.asarray(1.0 / np.sqrt(np.asarray(running_var).reshape(shape) + eps), dtype)

    mean, inv_std = Tensor._const(read_mean()), Tensor._const(read_inv_std())
    note_fresh(mean, read_mean)  # a replayed step reads the statistics as they are then
    note_fresh(inv_std, read_inv_std)
    return _affine((x - mean) * inv_std, weight, bias, shape)


def _replay_running(sources, running_mean, running_var, count, momentum):
    """Tell a capture (engine.capture) how to update the running statistics again."""
    if recording() is None:
        return
    if sources is None:
        note_unreplayable("batch norm's statistics of an input that needs no gradient")
        return
    if sources[0][1] == "ctx":

        def update(ctx):
            _update_running(running_mean, running_var, ctx[2], ctx[3], count, momentum)
    else:

        def update(mean, var):
            _update_running(running_mean, running_var, mean, var, count, momentum)

    note_effect(update, sources, (running_mean, running_var))


def _stats(x, axes):
    """Batch mean and biased variance of `x` over `axes` (kept dims), as plain arrays."""
    data = x.data
    return data.mean(axis=axes, keepdims=True), data.var(axis=axes, keepdims=True)


def _update_running(running_mean, running_var, mean, var, count, momentum):
    mean = np.asarray(mean).reshape(running_mean.shape)
    unbiased = np.asarray(var).reshape(running_var.shape) * (count / (count - 1))
    ewma_update_(running_mean, mean, 1.0 - momentum)
    ewma_update_(running_var, unbiased, 1.0 - momentum)


def _affine_param(param, size, x, label):
    if param is None:
        return None
    param = _tensor(param)
    if param.shape != (size,):
        raise ValueError(
            f"normalization {label} must have shape ({size},), got {param.shape} "
            f"for input {x.shape}"
        )
    return param


def _affine(x_hat, weight, bias, shape):
    out = x_hat
    if weight is not None:
        out = out * (weight.reshape(shape) if len(shape) > 1 else weight)
    if bias is not None:
        out = out + (bias.reshape(shape) if len(shape) > 1 else bias)
    return out


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalize each sample over its last `len(normalized_shape)` axes (no running stats)."""
    x = _tensor(x)
    normalized_shape = (
        (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    )
    k = len(normalized_shape)
    if x.shape[x.ndim - k :] != normalized_shape:
        raise ValueError(f"layer_norm: input shape {x.shape} does not end with {normalized_shape}")
    out, _, _ = _normalize(x, tuple(range(x.ndim - k, x.ndim)), eps)
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Split the C channels of (N, C, ...) into groups and normalize each group per sample."""
    x = _tensor(x)
    if x.ndim < 2:
        raise ValueError(f"group_norm: input must be (N, C, ...), got shape {x.shape}")
    n, channels = x.shape[0], x.shape[1]
    if num_groups <= 0 or channels % num_groups:
        raise ValueError(f"group_norm: {num_groups} groups do not divide {channels} channels")
    grouped = x.reshape(n, num_groups, -1)
    out, _, _ = _normalize(grouped, (2,), eps)
    out = out.reshape(x.shape)
    shape = (channels,) + (1,) * (x.ndim - 2)
    return _affine(
        out,
        _affine_param(weight, channels, x, "weight"),
        _affine_param(bias, channels, x, "bias"),
        shape,
    )


# --- dropout ---------------------------------------------------------------------------------
def dropout(x, p=0.5, training=True, inverted=True, rng=None):
    """Zero each unit with probability p, as x * mask where the mask is a constant leaf.

    Inverted (default, PyTorch): kept units are scaled by 1/(1-p) in training and evaluation
    is the identity. Vanilla (`inverted=False`, the original paper): training only masks, and
    evaluation scales by (1-p) so that expectations match.
    """
    x = _tensor(x)
    if not 0.0 <= p < 1.0:
        raise ValueError(
            f"dropout p (the probability of dropping a unit) must be in [0, 1), got {p}"
        )
    if not training:
        return x if inverted or p == 0.0 else x * (1.0 - p)
    if p == 0.0:
        return x
    shape, dtype = x.shape, x.dtype

    def draw(generator):
        draws = generator.random(shape)
        keep = draws >= p
        # the scaled mask is written over the draws: one array of x's size instead of two
        return np.asarray(np.divide(keep, 1.0 - p, out=draws) if inverted else keep, dtype)

    mask = Tensor._const(draw(resolve_rng(rng))).named("dropout_mask")
    note_draw(mask, lambda: resolve_rng(rng), draw)  # a replayed step draws anew
    return x * mask


# --- names the model language resolves --------------------------------------------------------
LOSSES = Registry("loss")
"""Loss functions by name: each is `loss(outputs, targets, **options) -> scalar Tensor`."""
for _name, _loss in (
    ("cross_entropy", cross_entropy),
    ("mse", mse_loss),
    ("bce_with_logits", binary_cross_entropy_with_logits),
    ("hinge", hinge_loss),
):
    LOSSES.register(_name)(_loss)


def _method(name):
    def call(x, *args, **options):
        return getattr(_tensor(x), name)(*args, **options)

    call.__name__ = name
    call.__doc__ = f"Tensor.{name} as a function."
    return call


FUNCTIONS = Registry("function")
"""Functions a graph expression may call, by name: tensors in, a tensor out."""
for _name in (
    "exp",
    "log",
    "sqrt",
    "abs",
    "clip",
    "sum",
    "mean",
    "max",
    "min",
    "reshape",
    "transpose",
):
    FUNCTIONS.register(_name)(_method(_name))
for _name, _function in (
    ("tanh", tanh),
    ("relu", relu),
    ("sigmoid", sigmoid),
    ("softplus", softplus),
    ("leaky_relu", leaky_relu),
    ("elu", elu),
    ("maximum", maximum),
    ("minimum", minimum),
    ("stack", _stack_arguments),
    ("softmax", softmax),
    ("log_softmax", log_softmax),
    ("layer_norm", layer_norm),
    ("group_norm", group_norm),
    ("batch_norm", batch_norm),
    ("dropout", dropout),
    ("conv2d", conv2d),
    ("max_pool2d", max_pool2d),
    ("avg_pool2d", avg_pool2d),
    ("adaptive_avg_pool2d", adaptive_avg_pool2d),
    ("flatten", flatten),
):
    FUNCTIONS.register(_name)(_function)
for _name, _loss in LOSSES.items():
    FUNCTIONS.register(_name)(_loss)

__all__ = [
    "FUNCTIONS",
    "LOSSES",
    "adaptive_avg_pool2d",
    "avg_pool2d",
    "batch_norm",
    "binary_cross_entropy_with_logits",
    "class_labels",
    "concat",
    "conv2d",
    "cross_entropy",
    "dropout",
    "elu",
    "flatten",
    "group_norm",
    "hinge_loss",
    "layer_norm",
    "leaky_relu",
    "log_softmax",
    "max_pool2d",
    "maximum",
    "minimum",
    "mse_loss",
    "relu",
    "sigmoid",
    "softmax",
    "softplus",
    "stack",
    "tanh",
    "where",
]
