"""The LR range test (Smith; the notes' "estimating the learning rate"): train for a short
while with a learning rate that grows exponentially from batch to batch, watch the loss, and
read a good learning rate off the curve.

The test is a probe, not training: the model's parameters and buffers, their gradients, the
training/eval flags and the optimizer's state and hyperparameters are all put back when it
ends, however it ends.

>>> import numpy as np
>>> from topograd.engine import Tensor, nn, functional as F
>>> from topograd.engine.optim.sgd import SGD
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(64, 2)); y = (x[:, 0] > 0).astype(int)
>>> model = nn.Linear(2, 2)
>>> result = lr_range_test(
...     model, lambda m, batch: F.cross_entropy(m(Tensor(batch[0])), batch[1]),
...     [(x, y)], SGD(model.parameters()), start_lr=1e-4, end_lr=1e3, num_steps=50)
>>> result.stopped_early, 1e-2 < result.suggestion < 1e2
(True, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from topograd.engine.averages import EWMA
from topograd.engine.optim.optimizer import check_range


@dataclass(frozen=True)
class RangeTestResult:
    """What an LR range test saw, one entry per batch: the lr the step used, the loss the
    batch gave just before that step, and its bias-corrected moving average.

    ``suggestion`` is a tenth of the lr at which the smoothed loss was lowest (None when no
    loss was finite). ``stopped_early`` says the loss exploded before ``end_lr``; ``reason``
    says why the test ended: "diverged", "non-finite loss", "reached end_lr" or
    "batches ran out".
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed_losses: np.ndarray
    suggestion: float | None
    stopped_early: bool
    reason: str

    def plot(self, path, title: str = "LR range test") -> Path:
        """Write the loss against the lr (log axis) as a PNG at `path`; returns the path.

        Uses matplotlib's Agg canvas directly, so it needs no display and leaves pyplot's
        global backend alone (a Qt application may be running in the same process).
        """
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError as error:
            raise ImportError(
                "RangeTestResult.plot needs matplotlib: pip install topograd[plot]"
            ) from error
        figure = Figure(figsize=(6, 4), dpi=100)
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        axes.plot(self.lrs, self.losses, color="0.75", linewidth=1, label="loss")
        axes.plot(self.lrs, self.smoothed_losses, color="C0", label="smoothed loss")
        if self.suggestion is not None:
            axes.axvline(self.suggestion, color="C3", linestyle="--", label="suggested lr")
        axes.set_xscale("log")
        axes.set_xlabel("learning rate")
        axes.set_ylabel("loss")
        axes.set_title(f"{title} ({self.reason})")
        axes.legend()
        figure.tight_layout()
        path = Path(path)
        figure.savefig(path, format="png")
        return path


def suggest_lr(lrs, smoothed_losses) -> float | None:
    """A tenth of the lr at the lowest finite smoothed loss (None if there is none).

    Why this rule: at the minimum the lr is already at the edge of what training tolerates
    (one step further and the loss turns up), so a tenth of it is safely inside the stable
    range while still large. The other common rule, the steepest descent of the curve,
    differentiates a noisy, EWMA-lagged curve and is easily fooled by one noisy stretch; the
    minimum needs no derivative.
    """
    losses = np.asarray(smoothed_losses, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(losses))
    if finite.size == 0:
        return None
    best = finite[np.argmin(losses[finite])]
    return float(lrs[best]) / 10.0


def lr_range_test(
    model,
    loss_fn: Callable,
    batches: Iterable,
    optimizer,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    smoothing: float = 0.9,
    divergence: float = 4.0,
) -> RangeTestResult:
    """Run the LR range test and restore everything afterwards.

    Step k (k = 0 .. num_steps - 1) sets every parameter group's lr to
    start_lr * (end_lr / start_lr) ** (k / (num_steps - 1)), a geometric sequence, computes
    ``loss_fn(model, batch)`` (a scalar Tensor), backpropagates and steps the optimizer.
    `batches` is iterated again from the start when it runs out (an iterator is used once).

    The losses are smoothed by a bias-corrected EWMA with beta `smoothing`, so the first
    smoothed value is the first loss itself. An EWMA trails its input by about
    beta / (1 - beta) batches: 9 at the default 0.9, 49 at the 0.98 some libraries use. With
    100 steps over 8 decades of lr (a factor 1.2 per batch), 49 batches is 4 decades, which
    would smear the curve; 9 is under one. Raise `smoothing` along with `num_steps`.

    The test stops early when a loss is NaN or infinite, or when the smoothed loss exceeds
    `divergence` times the lowest smoothed loss so far: past that point larger lrs only make
    the model worse. The loss recorded at step k is the batch's loss before that step's
    update, so it shows the effect of the lrs before lrs[k].

    The range test misleads on problems that are solved before the lr gets large (perfectly
    separable data, say): the loss is near zero by then, large lrs look harmless, and no
    explosion is seen. Use data where the loss cannot reach zero quickly.
    """
    check_range("start_lr", start_lr, low=0.0, low_open=True)
    check_range("end_lr", end_lr, low=start_lr, low_open=True)
    check_range("smoothing", smoothing, low=0.0, high=1.0, high_open=True)
    check_range("divergence", divergence, low=1.0, low_open=True)
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 2:
        raise ValueError(f"invalid num_steps: expected an integer >= 2, got {num_steps!r}")
    schedule = start_lr * (end_lr / start_lr) ** (np.arange(num_steps) / (num_steps - 1))
    saved = _Snapshot(model, optimizer)
    try:
        lrs, losses, smoothed, reason = _probe(
            model, loss_fn, batches, optimizer, schedule, smoothing, divergence
        )
    finally:
        saved.restore()
    return RangeTestResult(
        lrs=np.array(lrs),
        losses=np.array(losses),
        smoothed_losses=np.array(smoothed),
        suggestion=suggest_lr(lrs, smoothed),
        stopped_early=reason in ("diverged", "non-finite loss"),
        reason=reason,
    )


def _probe(model, loss_fn, batches, optimizer, schedule, smoothing, divergence):
    """The training loop of the test: returns (lrs, losses, smoothed losses, reason)."""
    average = EWMA(smoothing, bias_correction=True)
    lrs, losses, smoothed = [], [], []
    best = math.inf
    stream = _repeat(batches)
    for lr in schedule:
        batch = next(stream, _END)
        if batch is _END:
            return lrs, losses, smoothed, "batches ran out"
        for group in optimizer.param_groups:
            group["lr"] = float(lr)
        loss = _train_step(model, loss_fn, batch, optimizer)
        lrs.append(float(lr))
        losses.append(loss)
        smoothed.append(average.update(loss) if math.isfinite(loss) else math.nan)
        if not math.isfinite(loss):
            return lrs, losses, smoothed, "non-finite loss"
        best = min(best, smoothed[-1])
        if smoothed[-1] > divergence * best:
            return lrs, losses, smoothed, "diverged"
    return lrs, losses, smoothed, "reached end_lr"


def _train_step(model, loss_fn, batch, optimizer) -> float:
    optimizer.zero_grad()
    loss = loss_fn(model, batch)
    value = float(loss.item())
    if math.isfinite(value):  # a NaN loss ends the test; no point backpropagating it
        loss.backward()
        optimizer.step()
    return value


_END = object()


def _repeat(batches: Iterable) -> Iterator:
    """Yield from `batches` over and over; stop when a pass yields nothing (an exhausted
    iterator, or an empty collection)."""
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            return


class _Snapshot:
    """Everything the test changes: parameters, buffers, gradients, train/eval flags and the
    optimizer's state and hyperparameters (which hold the lr)."""

    def __init__(self, model, optimizer):
        self.model, self.optimizer = model, optimizer
        self.model_state = model.state_dict()
        self.optimizer_state = optimizer.state_dict()
        self.grads = [(p, None if p.grad is None else np.copy(p.grad)) for p in model.parameters()]
        self.modes = [(module, module.training) for module in model.modules()]

    def restore(self) -> None:
        self.model.load_state_dict(self.model_state)
        self.optimizer.load_state_dict(self.optimizer_state)
        for p, grad in self.grads:
            p.grad = grad
        for module, training in self.modes:
            module.training = training  # this module only: train() would recurse
