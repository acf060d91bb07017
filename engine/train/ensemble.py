"""Model ensembles and snapshot ensembles: average predicted probabilities.

The notes' recipe (lecture 002, "Model Ensembles"): train several independent models and
average their outputs at test time, for "2% extra performance". Independent models make
different mistakes, so the average is right more often than a typical member. Averaging
*probabilities* (not labels, not logits) is the form Huang et al. use, and it weighs a
confident member more than a hesitant one.

Snapshot ensembles (Huang et al., "Snapshot ensembles: train 1, get M for free", ICLR 2017)
get the members from one run: a cosine learning rate restarted every cycle (SGDR) drives the
model into a new minimum each cycle, and the weights at the end of each cycle are a snapshot.
The snapshots cost no more training than one model, yet differ enough to make an ensemble.

An ensemble is kept on disk as one checkpoint per member and a small JSON listing them and
how they combine (`save_ensemble`, `load_ensemble`), so it can be evaluated later.

>>> from topograd.engine import nn
>>> from topograd.engine.optim import SGD
>>> from topograd.engine.data.datasets import make_moons, split
>>> parts = split(make_moons(n=200, noise=0.1, seed=0))
>>> model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))
>>> result = snapshot_ensemble(
...     model, parts.train, SGD(model.parameters(), lr=0.1, momentum=0.9),
...     cycles=3, epochs_per_cycle=5, lr_max=0.1, eval=parts.test, progress=False, log=None,
... )
>>> len(result.snapshots), 0.0 <= result.ensemble_accuracy <= 1.0
(3, True)
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from topograd.engine import Tensor, manual_seed, no_grad
from topograd.engine import functional as F
from topograd.engine.optim.schedules import (
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    LRGroups,
    MultiStepLR,
)
from topograd.engine.train.checkpoint import save_checkpoint
from topograd.engine.train.checks import as_arrays
from topograd.engine.train.fit import fit

# fit options that the schedule-driven trainers set themselves (a second value would clash)
_SCHEDULE_OPTIONS = ("epochs", "schedule", "schedule_per", "resume", "checkpoint")


def _xy(data) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of an eval set: a Dataset or an (x, y) pair, as `fit` accepts them."""
    arrays = as_arrays(data, "eval")
    return arrays.x, arrays.y


def _check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    return batch_size


def predict_proba(model, x, batch_size: int = 1024) -> np.ndarray:
    """Class probabilities (N, C) of `model` on `x`, in eval mode and without a graph.

    Eval mode matters: batch norm must use its running statistics and dropout must be off,
    or the prediction depends on the batch and on chance. Every module's mode is put back
    afterwards, so this is safe to call in the middle of training. Batching bounds memory on
    large inputs and, in eval mode, does not change the result. A model with one output (the
    logit of a binary problem, as `bce_with_logits` trains) gives (N, 2): 1 - sigmoid, sigmoid.
    """
    _check_batch_size(batch_size)
    x = np.asarray(x.data if isinstance(x, Tensor) else x)
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with no_grad():
            parts = [
                _probabilities(model(Tensor(x[start : start + batch_size])))
                for start in range(0, len(x), batch_size)
            ]
    finally:
        for module, training in modes:
            module.training = training  # this module only: train() would recurse
    if not parts:
        raise ValueError("predict_proba: x has no rows")
    return np.concatenate(parts)


def _probabilities(outputs: Tensor) -> np.ndarray:
    """Class probabilities from a batch of outputs: softmax over C > 1 logits; for one logit
    z (shape (N,) or (N, 1)), the two classes' 1 - sigmoid(z) and sigmoid(z)."""
    if outputs.ndim == 1 or (outputs.ndim == 2 and outputs.shape[1] == 1):
        positive = F.sigmoid(outputs).data.reshape(-1, 1)
        return np.concatenate([1.0 - positive, positive], axis=1)
    return F.softmax(outputs, axis=1).data


def ensemble_proba(models: Sequence, x, batch_size: int = 1024) -> np.ndarray:
    """The average of the members' predicted probabilities (the notes' test-time average)."""
    models = list(models)
    if not models:
        raise ValueError("ensemble_proba needs at least one model")
    return np.mean([predict_proba(model, x, batch_size) for model in models], axis=0)


def accuracy(proba, y) -> float:
    """Fraction of rows whose most probable class is the label (ties go to the lower class)."""
    proba, y = np.asarray(proba), np.asarray(y)
    if proba.ndim != 2:
        raise ValueError(f"accuracy: proba must be (N, C), got shape {proba.shape}")
    if len(proba) != len(y):
        raise ValueError(f"accuracy: {len(proba)} predictions but {len(y)} labels")
    return float((proba.argmax(axis=1) == y).mean())


def _running_accuracies(probas: Sequence[np.ndarray], y) -> list[float]:
    """Accuracy of the average of the first k probability arrays, for k = 1..len(probas)."""
    total = np.zeros_like(probas[0])
    accuracies = []
    for count, proba in enumerate(probas, start=1):
        total += proba
        accuracies.append(accuracy(total / count, y))
    return accuracies


# --- independent models ------------------------------------------------------------------


@dataclass
class EnsembleResult:
    """Independently trained members and how they score alone and averaged on the eval set.

    `accuracy_by_size[k - 1]` is the accuracy of the average of the first k members, so the
    table shows how fast the gain saturates. Members whose predictions are not finite (a run
    that exploded) are kept in `models` but left out of every average, listed in `excluded`.
    """

    seeds: list
    models: list
    histories: list
    single_accuracies: list[float]
    ensemble_accuracy: float
    accuracy_by_size: list[float]
    excluded: list = field(default_factory=list)

    @property
    def mean_single(self) -> float:
        """The expected accuracy of one member: the number the ensemble has to beat."""
        return float(np.mean(self.single_accuracies))

    @property
    def best_single(self) -> float:
        return float(np.max(self.single_accuracies))

    def proba(self, x, batch_size: int = 1024) -> np.ndarray:
        """The ensemble's averaged probabilities on new inputs (excluded members left out)."""
        members = [m for s, m in zip(self.seeds, self.models) if s not in self.excluded]
        return ensemble_proba(members, x, batch_size)

    def table(self) -> str:
        """A plain-text table: each member's accuracy, then the ensemble's."""
        lines = [f"{'model':<16} {'eval acc':>8}"]
        for seed, acc in zip(self.seeds, self.single_accuracies):
            mark = "  (excluded)" if seed in self.excluded else ""
            lines.append(f"{f'seed {seed}':<16} {acc:>8.4f}{mark}")
        lines.append(f"{'mean single':<16} {self.mean_single:>8.4f}")
        lines.append(f"{'ensemble':<16} {self.ensemble_accuracy:>8.4f}")
        return "\n".join(lines)


def train_ensemble(
    make_model: Callable,
    train,
    make_optimizer: Callable,
    seeds: Iterable[int],
    *,
    eval,
    predict_batch_size: int = 1024,
    **fit_options,
) -> EnsembleResult:
    """Train one model per seed with `fit`, then compare the members with their average.

    `make_model(seed)` builds a fresh model (the engine's generator is also seeded with
    `manual_seed(seed)` just before, so default initializers differ per seed but repeat
    from run to run); `make_optimizer(model)` builds its optimizer; each run's `fit` gets
    `seed=seed` for its shuffling; the remaining keyword arguments go to `fit` unchanged.
    """
    if "seed" in fit_options:
        raise ValueError("train_ensemble: pass seeds through `seeds`, not a fit seed")
    seeds = list(seeds)
    if not seeds:
        raise ValueError("train_ensemble needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"train_ensemble: seeds must differ (same seed, same model): {seeds}")
    x, y = _xy(eval)
    models, histories, probas = [], [], []
    for seed in seeds:
        manual_seed(seed)
        model = make_model(seed)
        histories.append(fit(model, train, make_optimizer(model), seed=seed, **fit_options))
        models.append(model)
        probas.append(predict_proba(model, x, predict_batch_size))
    excluded = [s for s, p in zip(seeds, probas) if not np.all(np.isfinite(p))]
    kept = [p for s, p in zip(seeds, probas) if s not in excluded]
    if not kept:
        raise FloatingPointError(f"train_ensemble: every member predicts non-finite values {seeds}")
    by_size = _running_accuracies(kept, y)
    return EnsembleResult(
        seeds=seeds,
        models=models,
        histories=histories,
        single_accuracies=[accuracy(p, y) for p in probas],
        ensemble_accuracy=by_size[-1],
        accuracy_by_size=by_size,
        excluded=excluded,
    )


# --- snapshot ensembles ------------------------------------------------------------------


@contextlib.contextmanager
def _weights(model, state: dict):
    """Temporarily load `state` into `model`; its own weights come back afterwards."""
    saved = model.state_dict()
    model.load_state_dict(state)
    try:
        yield model
    finally:
        model.load_state_dict(saved)


def snapshot_proba(model, snapshots: Sequence[dict], x, batch_size: int = 1024) -> np.ndarray:
    """Average predicted probabilities of `snapshots` (state dicts of `model`'s architecture).

    Loads each snapshot into `model` in turn (so no copies of the network are needed) and
    restores the model's own weights at the end.
    """
    if not snapshots:
        raise ValueError("snapshot_proba needs at least one snapshot")
    probas = []
    for state in snapshots:
        with _weights(model, state):
            probas.append(predict_proba(model, x, batch_size))
    return np.mean(probas, axis=0)


@dataclass
class SnapshotResult:
    """A snapshot ensemble: the snapshots, the training record, and eval-set accuracies.

    `single_accuracy` is the final model alone (the last snapshot, what ordinary training
    would ship); `snapshot_accuracies[i]` is snapshot i alone; `accuracy_by_last[k - 1]` is
    the ensemble of the last k snapshots, and `ensemble_accuracy` the one for `last`.
    """

    model: object
    snapshots: list[dict]
    histories: list
    steps_per_cycle: int
    lr_max: float
    lr_min: float
    last: int
    snapshot_accuracies: list[float]
    accuracy_by_last: list[float]

    @property
    def single_accuracy(self) -> float:
        return self.snapshot_accuracies[-1]

    @property
    def ensemble_accuracy(self) -> float:
        return self.accuracy_by_last[self.last - 1]

    @property
    def stopped(self) -> str | None:
        """Why a cycle ended early (fit's reason), or None if every cycle ran to the end."""
        return next((h.stopped for h in self.histories if h.stopped), None)

    def proba(self, x, last: int | None = None, batch_size: int = 1024) -> np.ndarray:
        """The ensemble of the last `last` snapshots (default: the result's) on new inputs."""
        count = _check_last(self.last if last is None else last, len(self.snapshots))
        return snapshot_proba(self.model, self.snapshots[-count:], x, batch_size)

    def lr_at(self, step: int) -> float:
        """The learning rate the schedule gave at global step `step` (SGDR's closed form)."""
        schedule = CosineAnnealingWarmRestarts(
            LRGroups(self.lr_max), T_0=self.steps_per_cycle, eta_min=self.lr_min
        )
        return schedule.lr_at(step)[0]

    def table(self) -> str:
        """Each snapshot alone, then the ensembles of the last k snapshots."""
        lines = [f"{'model':<22} {'eval acc':>8}"]
        for index, acc in enumerate(self.snapshot_accuracies, start=1):
            lines.append(f"{f'snapshot {index}':<22} {acc:>8.4f}")
        for count, acc in enumerate(self.accuracy_by_last, start=1):
            lines.append(f"{f'ensemble of last {count}':<22} {acc:>8.4f}")
        return "\n".join(lines)


def _reject_schedule_options(caller: str, fit_options: dict) -> None:
    for name in _SCHEDULE_OPTIONS:
        if name in fit_options:
            raise ValueError(f"{caller} sets fit's {name!r} itself; do not pass it")


def _check_last(last, count: int) -> int:
    if isinstance(last, bool) or not isinstance(last, int) or not 1 <= last <= count:
        raise ValueError(f"last must be an integer in [1, {count}] (snapshots taken), got {last!r}")
    return last


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def _check_lrs(lr_max, lr_min) -> None:
    if not (isinstance(lr_max, numbers.Real) and math.isfinite(lr_max) and lr_max > 0):
        raise ValueError(f"lr_max must be a finite number > 0, got {lr_max!r}")
    if not (isinstance(lr_min, numbers.Real) and 0 <= lr_min <= lr_max):
        raise ValueError(f"lr_min must be in [0, lr_max={lr_max}], got {lr_min!r}")


def _steps_per_epoch(train, batch_size: int, drop_last: bool) -> int:
    """Batches per epoch as `fit` draws them: the unit the cosine schedule is stepped in."""
    count = len(as_arrays(train, "train"))
    steps = count // batch_size if drop_last else math.ceil(count / batch_size)
    if steps < 1:
        raise ValueError(f"batch_size {batch_size} with drop_last leaves no batch of {count}")
    return steps


def _set_lr(optimizer, lr: float) -> None:
    """Put every group at `lr` and make it the base that a new schedule starts from."""
    for group in optimizer.param_groups:
        group["lr"] = lr
        group["initial_lr"] = lr


def snapshot_ensemble(
    model,
    train,
    optimizer,
    *,
    cycles: int,
    epochs_per_cycle: int,
    lr_max: float,
    lr_min: float = 0.0,
    eval,
    last: int | None = None,
    batch_size: int = 64,
    seed: int = 0,
    predict_batch_size: int = 1024,
    **fit_options,
) -> SnapshotResult:
    """Huang et al.'s snapshot ensemble: `cycles` cosine cycles, one snapshot at each end.

    Every cycle starts the learning rate of every parameter group at `lr_max` and anneals it
    to `lr_min` over the cycle's steps (per batch), which is SGDR with a fixed cycle length
    (``CosineAnnealingWarmRestarts(T_0=steps_per_cycle)``, see `SnapshotResult.lr_at`). It is
    run as one `fit` call per cycle with its own `CosineAnnealingLR`, because the snapshot
    must be taken between cycles; the optimizer (momentum, Adam moments) carries over, as in
    the paper. Each cycle's `fit` gets its own seed derived from (`seed`, cycle), so every
    cycle sees a new shuffling and the run still repeats exactly.

    The initial-loss check applies to the first cycle only (a restarted model is trained, its
    loss is no longer log C), and so does the explosion guard, because after a restart the
    loss may rise well above its converged value on purpose; the NaN guard stays on. A cycle
    that `fit` stops (explosion, NaN) gives no snapshot, since its weights never annealed, and
    ends the run: the completed cycles' snapshots are the ensemble (RuntimeError if none).
    Early stopping is refused for the same reason: it would cut a cycle before its minimum.

    `last` keeps only the last k snapshots in the ensemble (Huang et al. find the early ones,
    from an undertrained model, can hurt); the default keeps them all.
    """
    _reject_schedule_options("snapshot_ensemble", fit_options)
    if fit_options.get("early_stopping") is not None:
        raise ValueError("snapshot_ensemble: early_stopping would cut a cycle short; omit it")
    _check_positive_int("cycles", cycles)
    _check_positive_int("epochs_per_cycle", epochs_per_cycle)
    _check_batch_size(batch_size)
    _check_lrs(lr_max, lr_min)
    if last is not None:
        _check_last(last, cycles)
    x, y = _xy(eval)
    steps_per_cycle = epochs_per_cycle * _steps_per_epoch(
        train, batch_size, fit_options.get("drop_last", False)
    )
    check_initial_loss = fit_options.pop("check_initial_loss", True)
    explosion_factor = fit_options.pop("explosion_factor", 3.0)
    snapshots, histories, probas = [], [], []
    for cycle in range(cycles):
        _set_lr(optimizer, lr_max)
        schedule = CosineAnnealingLR(optimizer, T_max=steps_per_cycle, eta_min=lr_min)
        history = fit(
            model,
            train,
            optimizer,
            epochs=epochs_per_cycle,
            batch_size=batch_size,
            schedule=schedule,
            schedule_per="step",
            seed=_cycle_seed(seed, cycle),
            check_initial_loss=check_initial_loss if cycle == 0 else False,
            explosion_factor=explosion_factor if cycle == 0 else None,
            **fit_options,
        )
        histories.append(history)
        if history.stopped:
            break
        snapshots.append(model.state_dict())
        probas.append(predict_proba(model, x, predict_batch_size))
    if not snapshots:
        raise RuntimeError(
            f"snapshot_ensemble: the first cycle stopped ({histories[0].stopped}): "
            f"{histories[0].stop_message}"
        )
    by_last = _running_accuracies(probas[::-1], y)
    return SnapshotResult(
        model=model,
        snapshots=snapshots,
        histories=histories,
        steps_per_cycle=steps_per_cycle,
        lr_max=float(lr_max),
        lr_min=float(lr_min),
        last=len(snapshots) if last is None else min(last, len(snapshots)),
        snapshot_accuracies=[accuracy(p, y) for p in probas],
        accuracy_by_last=by_last,
    )


def _cycle_seed(seed: int, cycle: int) -> int:
    """A shuffling seed per (run seed, cycle): runs with seeds 0 and 1 share no cycle order,
    which `seed + cycle` would not guarantee."""
    return int(np.random.SeedSequence([seed, cycle]).generate_state(1)[0])


@dataclass
class SingleResult:
    """One model trained with a standard (non-restarting) schedule: the baseline to beat."""

    model: object
    history: object
    accuracy: float
    epochs: int
    schedule: str


def train_single(
    model,
    train,
    optimizer,
    *,
    epochs: int,
    lr_max: float,
    lr_min: float = 0.0,
    eval,
    schedule: str = "cosine",
    batch_size: int = 64,
    seed: int = 0,
    predict_batch_size: int = 1024,
    **fit_options,
) -> SingleResult:
    """Train one model for `epochs` with one non-restarting schedule, the snapshot baseline.

    ``schedule="cosine"`` anneals from `lr_max` to `lr_min` once over all steps (SGDR
    without restarts); ``"step"`` is the schedule Huang et al. compare against: `lr_max`,
    divided by 10 at 50% and again at 75% of training. Give it the same epochs as
    ``cycles * epochs_per_cycle`` to compare with a snapshot ensemble at equal cost.
    """
    _reject_schedule_options("train_single", fit_options)
    _check_positive_int("epochs", epochs)
    _check_batch_size(batch_size)
    _check_lrs(lr_max, lr_min)
    x, y = _xy(eval)
    total = epochs * _steps_per_epoch(train, batch_size, fit_options.get("drop_last", False))
    _set_lr(optimizer, lr_max)
    if schedule == "cosine":
        scheduler = CosineAnnealingLR(optimizer, T_max=total, eta_min=lr_min)
    elif schedule == "step":
        milestones = sorted({max(1, total // 2), max(1, (3 * total) // 4)})
        scheduler = MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    else:
        raise ValueError(f"schedule must be 'cosine' or 'step', got {schedule!r}")
    history = fit(
        model,
        train,
        optimizer,
        epochs=epochs,
        batch_size=batch_size,
        schedule=scheduler,
        schedule_per="step",
        seed=seed,
        **fit_options,
    )
    return SingleResult(
        model=model,
        history=history,
        accuracy=accuracy(predict_proba(model, x, predict_batch_size), y),
        epochs=epochs,
        schedule=schedule,
    )


# --- ensembles on disk -------------------------------------------------------------------

ENSEMBLE_FORMAT = "topograd ensemble"
COMBINE = "mean of the averaged members' predicted probabilities"


@dataclass(frozen=True)
class SavedMember:
    """One member of a saved ensemble: its name, checkpoint, whether the ensemble averages it
    (a member predicting non-finite values, or a snapshot before the last k, is not), and the
    other fields its listing holds (its accuracy, seed, epoch)."""

    name: str
    checkpoint: Path
    averaged: bool
    info: dict


@dataclass(frozen=True)
class SavedEnsemble:
    """What `load_ensemble` reads: the listing's path, its members and its other fields."""

    path: Path
    members: list[SavedMember]
    info: dict

    @property
    def averaged(self) -> list[SavedMember]:
        return [member for member in self.members if member.averaged]


def save_ensemble(path, model, members: Sequence[Mapping], *, info=None, extra=None) -> Path:
    """Write each member's weights as a checkpoint, `members/member_<i>.ckpt` (i from 1) beside
    `path`, and `path`, a JSON listing of them (paths relative to it) with how they combine
    (the mean of the averaged members' predicted probabilities, as `ensemble_proba`) and
    `info`. Returns `path`.

    Each member is a mapping with "name" and "state" (a state dict of `model`'s architecture,
    loaded into `model` to be saved; the model's own weights come back afterwards), and
    optionally "averaged" (default True), "epoch", and other JSON fields for the listing.
    `extra` goes into every member's checkpoint.
    """
    path = Path(path)
    if not members:
        raise ValueError("save_ensemble needs at least one member")
    folder = path.parent / "members"
    folder.mkdir(parents=True, exist_ok=True)
    listed = []
    for index, member in enumerate(members, start=1):
        fields = {k: v for k, v in member.items() if k not in ("state", "name", "averaged")}
        checkpoint = folder / f"member_{index}.ckpt"
        with _weights(model, member["state"]):
            save_checkpoint(
                checkpoint, model, rngs={}, epoch=int(member.get("epoch", 0)), extra=extra
            )
        listed.append(
            {
                "name": str(member["name"]),
                "checkpoint": checkpoint.relative_to(path.parent).as_posix(),
                "averaged": bool(member.get("averaged", True)),
                **fields,
            }
        )
    record = {"format": ENSEMBLE_FORMAT, "combine": COMBINE, **(info or {}), "members": listed}
    text = json.dumps(record, indent=2, allow_nan=False) + "\n"
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)
    return path


def load_ensemble(path) -> SavedEnsemble:
    """Read a listing that `save_ensemble` wrote; ValueError saying what is wrong with it (not
    such a listing, a member's checkpoint missing). The checkpoints are not read here."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"{path} is not JSON: {error}") from None
    if not isinstance(record, dict) or record.get("format") != ENSEMBLE_FORMAT:
        raise ValueError(f"{path} is not an ensemble listing (written by save_ensemble)")
    members = []
    for entry in record.get("members") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("checkpoint"), str):
            raise ValueError(f"{path}: a member without a checkpoint: {entry!r:.80}")
        checkpoint = path.parent / entry["checkpoint"]
        if not checkpoint.is_file():
            raise ValueError(f"{path}: member {entry.get('name')!r}: {checkpoint} is missing")
        fields = {k: v for k, v in entry.items() if k not in ("name", "checkpoint", "averaged")}
        members.append(
            SavedMember(
                str(entry.get("name", checkpoint.stem)),
                checkpoint,
                bool(entry.get("averaged", True)),
                fields,
            )
        )
    if not any(member.averaged for member in members):
        raise ValueError(f"{path} lists no member that the ensemble averages")
    info = {k: v for k, v in record.items() if k not in ("format", "members")}
    return SavedEnsemble(path, members, info)


__all__ = [
    "ENSEMBLE_FORMAT",
    "EnsembleResult",
    "SavedEnsemble",
    "SavedMember",
    "SingleResult",
    "SnapshotResult",
    "accuracy",
    "ensemble_proba",
    "load_ensemble",
    "predict_proba",
    "save_ensemble",
    "snapshot_ensemble",
    "snapshot_proba",
    "train_ensemble",
    "train_single",
]
