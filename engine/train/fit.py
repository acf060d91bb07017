"""`fit`: the training loop with the lecture's babysitting built in.

One call trains any engine model with any optimizer and schedule on mini-batches, and
watches the run the way the notes ask a person to:

- the first loss is compared with log(C) (`check_initial_loss`);
- every step records the loss, the learning rate, each parameter's gradient norm and its
  update/weight ratio (the notes want about 1e-3);
- the loss is guarded: a NaN or an Inf stops the run and names the first node (op, name,
  layer) that produced it; a loss that grows past `explosion_factor` times the first loss
  stops it too (the notes' "if the cost is ever > 3 * original cost, break out early");
  either way the best weights so far are put back;
- early stopping on the validation loss, with the best epoch's weights restored;
- checkpoints at every epoch end (and of the best epoch), from which `resume=True` continues
  the run exactly;
- at the end, the bias/variance diagnosis with the notes' advice.

>>> import numpy as np
>>> from topograd.engine import nn
>>> from topograd.engine.optim import Adam
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(200, 2)); y = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
>>> model = nn.Sequential(nn.Linear(2, 32, init="he"), nn.ReLU(), nn.Linear(32, 2))
>>> history = fit(model, (x[:150], y[:150]), Adam(model.parameters(), lr=1e-2), epochs=30,
...               batch_size=32, val=(x[150:], y[150:]), progress=False, log=None)
>>> history.val_acc[-1] > 0.9, history.stopped
(True, None)
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from topograd.engine import functional as F
from topograd.engine.capture import replay
from topograd.engine.data.datasets import batches
from topograd.engine.modes import use_rng
from topograd.engine.optim.optimizer import Optimizer, norm_of
from topograd.engine.tensor import Tensor
from topograd.engine.train.checkpoint import load_checkpoint, save_checkpoint
from topograd.engine.train.checks import (
    DIAGNOSIS_THRESHOLD,
    Arrays,
    ExplosionGuard,
    InitialLossWarning,
    as_arrays,
    diagnose,
    evaluate,
    expected_initial_loss,
    initial_loss_problem,
    locate_nonfinite,
    locate_nonfinite_gradient,
)
from topograd.engine.train.history import EARLY_STOPPING, EXPLODED, INTERRUPTED, NONFINITE, History
from tqdm.auto import tqdm  # a notebook widget inside Jupyter, the text bar elsewhere


def fit(
    model,
    train,
    optimizer,
    *,
    epochs: int = 10,
    batch_size: int = 64,
    val=None,
    loss: Callable = F.cross_entropy,
    schedule=None,
    schedule_per: str = "step",
    augment: Callable | None = None,
    seed: int = 0,
    progress: bool = True,
    early_stopping: int | None = None,
    explosion_factor: float | None = 3.0,
    check_initial_loss: bool | float = True,
    checkpoint=None,
    resume: bool = False,
    baseline_error: float = 0.0,
    track_stats: bool = True,
    log: Callable | None = print,
    drop_last: bool = False,
    eval_batch_size: int = 1024,
    diagnosis_threshold: float = DIAGNOSIS_THRESHOLD,
    callback: Callable[[str, History], bool | None] | None = None,
    runner: Callable[..., Run] | None = None,
    checkpoint_extra: dict | None = None,
    replay: bool = True,
) -> History:
    """Train `model` on `train` for `epochs` epochs of mini-batches; return the History.

    Data: `train` and `val` are engine.data Datasets or (x, y) tuples. Each epoch shuffles
    with a numpy Generator seeded by `seed`; the same generator feeds `augment(images, rng)`
    (applied to training batches only; rows are folded to the Dataset's `image_shape` and
    back), and a second one, also from `seed`, is the engine's shared generator for the
    run, so dropout layers without a generator of their own draw reproducible masks (the
    previous shared generator is put back afterwards).

    Modes: training steps run in `model.train()`; the end-of-epoch measurements run in
    `model.eval()` under `no_grad()` (batch norm on running statistics, dropout off), on the
    whole training set and on `val`.

    Schedules: `schedule.step()` runs after every optimizer step (`schedule_per="step"`) or
    after every epoch (`"epoch"`). History.lr holds the lr each step used (first group).

    Guards (see engine.train.checks): `check_initial_loss` compares the first batch loss
    with log(C) when `loss` is the softmax cross-entropy (pass a number to compare with that
    instead, False to skip) and warns (`InitialLossWarning`) if it is off by over 50%.
    A non-finite loss or gradient stops the run, the report naming the first node that went
    non-finite (History.nonfinite). `explosion_factor` (None or inf: off) stops the run when
    the smoothed batch loss exceeds that multiple of the first loss. Both restore the best
    weights so far: those of the epoch with the lowest validation loss (training loss
    without `val`), or the weights before training if no epoch has ended.

    `early_stopping=n` stops once the validation loss has not improved for n epochs and
    restores the best epoch's weights (it needs `val`).

    Checkpoints: with `checkpoint=path`, every epoch end writes the full state (model,
    optimizer, schedule, the generators, the history) to `path`, and every new best epoch
    (and the starting weights) to `<stem>.best<suffix>` beside it, with `checkpoint_extra`
    (JSON-like: what the data were) in its extra data. `resume=True` loads
    `path` if it exists and continues from the epoch after it, drawing the same batches and
    dropout masks as an uninterrupted run would; a run that had stopped early is not
    continued (its best weights are loaded and its history returned).

    The diagnosis (History.diagnosis) compares the error of the weights the model ends with
    against `baseline_error` (see `diagnose`). `track_stats=False` skips the per-parameter
    gradient norms and update ratios. `log` receives one line per epoch and the guards'
    messages (None: silent); `progress` shows a tqdm bar on stderr with loss, accuracy and lr
    (tqdm.auto: inside a Jupyter kernel it is a notebook widget instead).

    `callback(event, history)` is called after every optimizer step (event "step") and after
    every epoch's measurements (event "epoch"), on the thread that runs `fit`: a window draws
    live curves from it. Returning True stops the run there, keeping the current weights
    (History.stopped is "interrupted"); the end-of-run diagnosis still runs.

    `replay` (default on) runs each step's forward and backward through `tg.replay`:
    captured on the first batch of a shape, checked against an eager run on the second, then
    replayed without building a graph (the same numbers to the last bit, less bookkeeping per
    op). A step the engine cannot replay runs eagerly with a ReplayWarning saying why;
    `replay=False` runs every step eagerly. A non-finite loss or gradient is located on an
    eager forward pass of the same batch.

    `runner` makes the object that executes the run, called with `Run`'s arguments (default
    `Run`: the engine itself). A subclass of `Run` that overrides its backend methods trains
    on another engine with everything else (batches, guards, history, checkpoints) unchanged:
    dsl.torch_backend trains on PyTorch this way.
    """
    _check_options(epochs, batch_size, schedule, schedule_per, early_stopping, val)
    if resume and checkpoint is None:
        raise ValueError("fit: resume=True continues from a checkpoint: pass checkpoint=")
    run = (runner or Run)(
        model,
        optimizer,
        train=as_arrays(train, "train"),
        val=None if val is None else as_arrays(val, "val"),
        loss=loss,
        schedule=schedule,
        per_step=schedule_per == "step",
        augment=augment,
        seed=seed,
        early_stopping=early_stopping,
        explosion_factor=explosion_factor,
        check_initial_loss=check_initial_loss,
        checkpoint=None if checkpoint is None else Path(checkpoint),
        track_stats=track_stats,
        log=log,
        drop_last=drop_last,
        eval_batch_size=eval_batch_size,
        batch_size=batch_size,
        callback=callback,
        checkpoint_extra=checkpoint_extra or {},
        replay=replay,
    )
    if run.steps_per_epoch() == 0:
        raise ValueError(
            f"fit: {len(run.train)} training examples make no batch of {batch_size} with "
            "drop_last=True"
        )
    if augment is not None and run.train.image_shape is None and run.train.x.ndim != 4:
        raise ValueError(
            "fit: augment needs images: give a Dataset with image_shape, or x of shape "
            f"(N, C, H, W); got x of shape {run.train.x.shape}"
        )
    with use_rng(run.dropout_rng):
        start = run.resume() if resume and run.checkpoint.exists() else run.begin()
        total = epochs * run.steps_per_epoch()
        bar = tqdm(
            total=total,
            initial=min(run.history.steps, total),
            desc="fit",
            unit="step",
            file=sys.stderr,
            disable=not progress,
            dynamic_ncols=True,
        )
        if progress and log is print:
            run.say = tqdm.write  # lines printed under the bar instead of tearing it
        try:
            for epoch in range(start, epochs + 1):
                if run.history.stopped or not run.train_epoch(epoch, epochs, bar):
                    break
        finally:
            bar.close()
    run.finish(baseline_error, diagnosis_threshold)
    return run.history


def _check_options(epochs, batch_size, schedule, schedule_per, early_stopping, val):
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"fit: {name} must be an integer >= 1, got {value!r}")
    if schedule_per not in ("step", "epoch"):
        raise ValueError(f"fit: schedule_per must be 'step' or 'epoch', got {schedule_per!r}")
    if schedule is not None and not callable(getattr(schedule, "step", None)):
        raise TypeError(f"fit: schedule must have a step() method, got {type(schedule).__name__}")
    if early_stopping is not None:
        if isinstance(early_stopping, bool) or not isinstance(early_stopping, int):
            raise ValueError(
                f"fit: early_stopping must be a patience in epochs, got {early_stopping!r}"
            )
        if early_stopping < 1:
            raise ValueError(f"fit: early_stopping patience must be >= 1, got {early_stopping}")
        if val is None:
            raise ValueError("fit: early_stopping watches the validation loss: pass val=")


def best_path(checkpoint) -> Path:
    """Where `fit` keeps the best epoch's checkpoint: run.npz -> run.best.npz beside it."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}.best{checkpoint.suffix}")


class Run:
    """The state of one `fit` call: the loop's pieces, kept apart so each stays short.

    The methods under "the backend" are all that touches the model, the optimizer and the
    schedule while training (the steps, the measurements, the best weights); a subclass
    that overrides them runs the same loop on another engine. Checkpoints are always written
    from and read into `model`, `optimizer` and `schedule`, the engine's objects.
    """

    def __init__(self, model, optimizer, *, train: Arrays, val: Arrays | None, **options):
        self.model, self.optimizer, self.train, self.val = model, optimizer, train, val
        self.loss = options["loss"]
        self.schedule, self.per_step = options["schedule"], options["per_step"]
        self.augment = options["augment"]
        self.seed = options["seed"]
        self.early_stopping = options["early_stopping"]
        factor = options["explosion_factor"]
        self.guard = None if factor is None or math.isinf(factor) else ExplosionGuard(factor)
        self.check_initial_loss = options["check_initial_loss"]
        self.checkpoint = options["checkpoint"]
        self.track_stats = options["track_stats"]
        self.say = options["log"] or (lambda *_: None)
        self.drop_last, self.eval_batch_size = options["drop_last"], options["eval_batch_size"]
        self.batch_size = options["batch_size"]
        self.callback = options["callback"]
        self.checkpoint_extra = options.get("checkpoint_extra", {})  # the caller's, JSON-like
        self.replayed = replay(self.batch_loss) if options.get("replay") else None
        self.last_batch = None
        self.batch_rng = np.random.default_rng([self.seed, 0])
        self.dropout_rng = np.random.default_rng([self.seed, 1])
        self.history = History(best_metric="val_loss" if val is not None else "train_loss")
        self.best_state = None
        self.restored = False
        self.postfix: dict[str, str] = {}
        self.named = list(model.named_parameters())
        self.names = {id(p): name for name, p in self.named}
        self.matrices = {name for name, p in self.named if p.ndim >= 2}
        if self.track_stats:
            self.history.shapes = {name: list(p.shape) for name, p in self.named}

    def steps_per_epoch(self) -> int:
        n = len(self.train)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    # --- starting --------------------------------------------------------------------------
    def rngs(self) -> dict:
        """Every generator the run draws from, by name, for checkpoints."""
        generators = {"batches": self.batch_rng, "dropout": self.dropout_rng}
        for name, module in self.model.named_modules():
            rng = getattr(module, "rng", None)
            if isinstance(rng, np.random.Generator):
                generators[f"module:{name}"] = rng
        return generators

    def begin(self) -> int:
        """A fresh run: the starting weights are the best so far (epoch 0)."""
        self.best_state = self.weights()
        if self.checkpoint is not None:
            self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
            self.save(best_path(self.checkpoint), 0)
        return 1

    def resume(self) -> int:
        """Load the checkpoint (and the best one); return the first epoch still to run."""
        best = best_path(self.checkpoint)
        if best.exists():
            load_checkpoint(best, self.model)
            self.from_engine()
            self.best_state = self.weights()
        info = load_checkpoint(
            self.checkpoint, self.model, self.optimizer, self.schedule, rngs=self.rngs()
        )
        self.from_engine()
        extra = info.extra or {}
        self.history = History.from_dict(extra.get("history", {}))
        if self.track_stats:
            self.history.shapes = {name: list(p.shape) for name, p in self.named}
        if self.guard is not None and extra.get("guard"):
            self.guard.load_state_dict(extra["guard"])
        if self.best_state is None:
            self.best_state = self.weights()
        self.say(f"resumed from {self.checkpoint} at epoch {info.epoch} (step {info.step})")
        if self.history.stopped:
            self.restore_best()
            self.say(f"that run had stopped ({self.history.stopped}); not continuing it")
        return info.epoch + 1

    def save(self, path: Path, epoch: int) -> None:
        self.to_engine()
        extra = {**self.checkpoint_extra, "history": self.history.to_dict(), "seed": self.seed}
        if self.guard is not None:
            extra["guard"] = self.guard.state_dict()
        save_checkpoint(
            path,
            self.model,
            self.optimizer,
            self.schedule,
            rngs=self.rngs(),
            epoch=epoch,
            step=self.history.steps,
            extra=extra,
        )

    # --- one epoch -------------------------------------------------------------------------
    def train_epoch(self, epoch: int, epochs: int, bar) -> bool:
        """Train one epoch and measure it; False when the run must stop."""
        started = time.perf_counter()
        self.start_epoch()
        losses = []
        for xb, yb in batches(
            self.train.x,
            self.train.y,
            self.batch_size,
            shuffle=True,
            rng=self.batch_rng,
            drop_last=self.drop_last,
        ):
            value = self.step(self._augmented(xb), yb, epoch)
            if value is None:
                return False
            losses.append(value)
            bar.update(1)
            if self._interrupted("step", epoch):
                return False
            if len(losses) % 10 == 1:  # formatting the postfix every step would cost time
                self.postfix.update(loss=f"{value:.4f}", lr=f"{self.history.lr[-1]:.3g}")
                bar.set_postfix(self.postfix, refresh=False)
        if self.schedule is not None and not self.per_step:
            self.schedule_step()
        return self.end_epoch(epoch, epochs, float(np.mean(losses)), started, bar)

    def _augmented(self, xb):
        if self.augment is None:
            return xb
        shape = self.train.image_shape
        if shape is None:
            return self.augment(xb, self.batch_rng)
        images = self.augment(xb.reshape(len(xb), *shape), self.batch_rng)
        return images.reshape(len(xb), -1)

    def step(self, xb, yb, epoch: int) -> float | None:
        """One optimizer step; the batch loss, or None when a guard stopped the run."""
        history = self.history
        history.lr.append(self.current_lr())
        value, batch_loss = self.forward(xb, yb)
        if history.initial_loss is None:
            self._check_initial_loss(value)
        if not math.isfinite(value):
            history.lr.pop()
            return self._nonfinite(self.locate(batch_loss, gradient=False), epoch)
        norms, finite = self.backward(batch_loss)
        if not finite:
            history.lr.pop()
            return self._nonfinite(self.locate(batch_loss, gradient=True), epoch)
        self.update(norms)
        if self.schedule is not None and self.per_step:
            self.schedule_step()
        history.step_loss.append(value)
        if self.guard is not None and self.guard.update(value):
            self._stop(
                EXPLODED,
                f"the smoothed loss {self.guard.smoothed:.4g} exceeded {self.guard.factor:g} x "
                f"the initial loss {self.guard.initial:.4g} at step {history.steps} (epoch "
                f"{epoch}): the learning rate is probably too high",
            )
            return None
        return value

    def _check_initial_loss(self, value: float) -> None:
        history = self.history
        history.initial_loss = value
        expected = None
        option = self.check_initial_loss
        if option is True and self.loss is F.cross_entropy and (self.train.num_classes or 0) > 1:
            expected = expected_initial_loss(self.train.num_classes)
        elif option is not True and option is not False and option is not None:
            expected = float(option)
        history.expected_initial_loss = expected
        if expected is None or not math.isfinite(value):  # a NaN is the NaN guard's to report
            return
        message = initial_loss_problem(value, expected)
        if message is not None:
            history.warnings.append(message)
            warnings.warn(message, InitialLossWarning, stacklevel=5)  # at fit's caller
            self.say(f"warning: {message}")

    # --- the backend: what executes the steps (dsl.torch_backend overrides these) ---------
    def start_epoch(self) -> None:
        """Put the model in training mode before an epoch's steps."""
        self.model.train()

    def forward(self, xb, yb) -> tuple[float, object]:
        """Clear the gradients and compute the batch loss: its value, and what `backward`
        and `locate` take."""
        self.optimizer.zero_grad()
        for _, p in self.named:  # parameters the optimizer does not hold, too
            p.grad = None
        if self.replayed is not None:  # forward and backward at once: no graph is kept
            self.last_batch = (xb, yb)
            return self.replayed(xb, yb).item(), None
        batch_loss = self.batch_loss(Tensor(xb), yb)
        return batch_loss.item(), batch_loss

    def batch_loss(self, x, y):
        """The loss of one batch (a graph to backpropagate)."""
        return self.loss(self.model(x), y)

    def backward(self, batch_loss) -> tuple[list[float], bool]:
        """Backpropagate; each parameter's gradient norm (NaN when it got no gradient) and
        whether all the gradients are finite: the NaN guard reads them, so a non-finite
        gradient is caught before the optimizer spreads it into the weights. The graph is
        retained so that the guard can replay the backward pass to find the culprit (it is
        released with the batch loss at the next step)."""
        if batch_loss is not None:  # None: a replayed step already backpropagated
            batch_loss.backward(retain_graph=True)
        norms, finite = [], True
        for _, p in self.named:
            g = p._grad
            if g is None:
                norms.append(math.nan)
                continue
            g = np.asarray(g).ravel()
            norm = math.sqrt(float(np.dot(g, g)))
            finite = finite and math.isfinite(norm)
            norms.append(norm)
        return norms, finite

    def locate(self, batch_loss, gradient: bool):
        """The NonFiniteReport for a non-finite loss (or, with `gradient`, gradient). A
        replayed step kept no graph: the batch's forward pass is run again eagerly."""
        if batch_loss is None:
            xb, yb = self.last_batch
            for _, p in self.named:
                p.grad = None
            batch_loss = self.batch_loss(Tensor(xb), yb)
        if gradient:
            return locate_nonfinite_gradient(batch_loss, self.model.parameters(), self.names)
        return locate_nonfinite(batch_loss, self.names)

    def update(self, norms: list[float]) -> None:
        """Step the optimizer, recording the gradient norms and update ratios (track_stats).

        The ratio ||W_after - W_before|| / ||W_before|| is measured on the actual change
        rather than lr * grad, so it is right for momentum, Adam's normalization and weight
        decay alike (the notes' update_scale / param_scale). The optimizer measures the
        change (`Optimizer.change_norms`): from the update array itself where its rule
        returns one (SGD, Adam), on a copy of the weights otherwise. A parameter whose weights are
        all zero (a bias at the start) has no ratio: NaN.
        """
        if not self.track_stats:
            self.optimizer.step()
            return
        scales = [norm_of(p.data) for _, p in self.named]
        optimizer = self.optimizer
        if not isinstance(optimizer, Optimizer):  # an optimizer of its own: compare copies
            before = [np.array(p.data, copy=True) for _, p in self.named]
            optimizer.step()
            changes = [
                norm_of(np.subtract(p.data, b, out=b)) for (_, p), b in zip(self.named, before)
            ]
        else:
            measured = optimizer.change_norms = {}  # the optimizer measures each change
            try:
                optimizer.step()
            finally:
                optimizer.change_norms = None
            # no entry: not moved (no gradient, or not the optimizer's), unless the rule did
            # not say (a step() of its own that ignores change_norms): NaN, not a made-up 0
            held = {id(p) for group in optimizer.param_groups for p in group["params"]}
            changes = [
                measured.get(id(p), math.nan if id(p) in held and p._grad is not None else 0.0)
                for _, p in self.named
            ]
        self.record(norms, scales, changes)

    def record(self, norms: list[float], scales: list[float], changes: list[float]) -> None:
        """Append one step's gradient norms and update ratios (change / scale) to History."""
        history = self.history
        for (name, _), norm, scale, change in zip(self.named, norms, scales, changes):
            history.update_ratios.setdefault(name, []).append(
                change / scale if scale > 0 else math.nan
            )
            history.grad_norms.setdefault(name, []).append(norm)

    def schedule_step(self) -> None:
        self.schedule.step()

    def current_lr(self) -> float:
        """The learning rate of the first parameter group."""
        return float(self.optimizer.param_groups[0]["lr"])

    def measure(self, data: Arrays) -> tuple[float, float | None]:
        """(mean loss, accuracy) on `data` in evaluation mode (see `evaluate`)."""
        return evaluate(self.model, data, self.loss, self.eval_batch_size)

    def weights(self):
        """A copy of the model's weights and buffers (the best epoch's are kept)."""
        return self.model.state_dict()

    def load_weights(self, state) -> None:
        self.model.load_state_dict(state)

    def to_engine(self) -> None:
        """Copy the backend's weights, optimizer and schedule state into `model`,
        `optimizer` and `schedule` (before a checkpoint is written, and at the end)."""

    def from_engine(self) -> None:
        """Take the weights, optimizer and schedule state from the engine's objects (after a
        checkpoint was loaded into them)."""

    def _nonfinite(self, report, epoch: int) -> None:
        self.history.nonfinite = report
        self._stop(NONFINITE, f"at step {self.history.steps + 1} (epoch {epoch}): {report.message}")

    def _stop(self, reason: str, message: str) -> None:
        self.history.stopped = reason
        self.restore_best()
        restored = f"the weights of epoch {self.history.best_epoch}"
        if self.history.best_epoch == 0:
            restored = "the starting weights"
        self.history.stop_message = f"{message}; restored {restored}"
        self.say(f"stopped ({reason}): {self.history.stop_message}")

    def restore_best(self) -> None:
        if self.best_state is not None:
            self.load_weights(self.best_state)
            self.restored = True

    # --- the end of an epoch ---------------------------------------------------------------
    def end_epoch(self, epoch: int, epochs: int, batch_loss: float, started: float, bar) -> bool:
        """Measure, keep the best, maybe stop early, checkpoint, log; False to stop."""
        history = self.history
        train_loss, train_acc = self.measure(self.train)
        history.epochs.append(epoch)
        history.batch_loss.append(batch_loss)
        history.train_loss.append(train_loss)
        history.train_acc.append(math.nan if train_acc is None else train_acc)
        metric = train_loss
        if self.val is not None:
            val_loss, val_acc = self.measure(self.val)
            history.val_loss.append(val_loss)
            history.val_acc.append(math.nan if val_acc is None else val_acc)
            metric = val_loss
        history.seconds.append(time.perf_counter() - started)
        improved = metric < history.best_value
        if improved:
            history.best_epoch, history.best_value = epoch, metric
            self.best_state = self.weights()
        stale = epoch - history.best_epoch
        stop = self.early_stopping is not None and stale >= self.early_stopping
        if stop:
            history.stopped = EARLY_STOPPING
            history.stop_message = (
                f"the validation loss has not improved for {stale} epochs (best "
                f"{history.best_value:.4f} at epoch {history.best_epoch}); restored that epoch"
            )
        if self.checkpoint is not None:
            self.save(self.checkpoint, epoch)
            if improved:
                self.save(best_path(self.checkpoint), epoch)
        self.say(self._epoch_line(epoch, epochs))
        self._epoch_postfix()
        bar.set_postfix(self.postfix, refresh=True)
        if stop:
            self.restore_best()
            self.say(f"stopped ({EARLY_STOPPING}): {history.stop_message}")
            return False
        return not self._interrupted("epoch", epoch)

    def _interrupted(self, event: str, epoch: int) -> bool:
        """Tell the callback about `event`; True (and the run marked) when it asks to stop."""
        if self.callback is None or not self.callback(event, self.history):
            return False
        history = self.history
        history.stopped = INTERRUPTED
        history.stop_message = (
            f"stopped by the caller after step {history.steps} (epoch {epoch}); "
            "kept the current weights"
        )
        self.say(f"stopped ({INTERRUPTED}): {history.stop_message}")
        return True

    def _epoch_line(self, epoch: int, epochs: int) -> str:
        history = self.history
        parts = [f"epoch {epoch:3d}/{epochs}", f"loss {history.train_loss[-1]:.4f}"]
        if math.isfinite(history.train_acc[-1]):
            parts.append(f"acc {history.train_acc[-1]:.4f}")
        if self.val is not None:
            parts.append(f"val loss {history.val_loss[-1]:.4f}")
            if math.isfinite(history.val_acc[-1]):
                parts.append(f"val acc {history.val_acc[-1]:.4f}")
        parts.append(f"lr {self.current_lr():.3g}")
        if self.track_stats and history.update_ratios:
            medians = history.median_update_ratio(self.steps_per_epoch())
            ratios = [r for name, r in medians.items() if name in self.matrices and r == r]
            if ratios:
                parts.append(f"update/weight {float(np.median(ratios)):.1e}")
        return "  ".join(parts)

    def _epoch_postfix(self) -> None:
        """The bar's postfix after an epoch: the loss and lr as the steps update them, and
        the epoch's training (and validation) accuracy until the next epoch ends."""
        history = self.history
        self.postfix["loss"] = f"{history.batch_loss[-1]:.4f}"
        if math.isfinite(history.train_acc[-1]):
            self.postfix["acc"] = f"{history.train_acc[-1]:.3f}"
        if self.val is not None and math.isfinite(history.val_acc[-1]):
            self.postfix["val_acc"] = f"{history.val_acc[-1]:.3f}"
        self.postfix["lr"] = f"{self.current_lr():.3g}"

    # --- the end ---------------------------------------------------------------------------
    def finish(self, baseline_error: float, threshold: float) -> None:
        """The weights the run ends with into the engine's model; their diagnosis, printed."""
        self.to_engine()
        history = self.history
        held = history.epochs[-1] if history.epochs else 0
        if self.restored:
            held = history.best_epoch
        if held == 0 or held not in history.epochs:
            return
        index = history.epochs.index(held)
        train_acc = history.train_acc[index]
        if not math.isfinite(train_acc):
            return
        val_error = None
        if history.val_acc and math.isfinite(history.val_acc[index]):
            val_error = 1.0 - history.val_acc[index]
        history.diagnosis = diagnose(1.0 - train_acc, val_error, baseline_error, threshold)
        self.say(f"diagnosis (epoch {held}): {history.diagnosis}")
