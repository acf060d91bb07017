"""`History`: everything `fit` measured, as plain lists that plot, print and save as JSON.

Per step: the batch loss, the learning rate the step used, and (with `track_stats`) each
parameter's gradient norm and update/weight ratio ||W_after - W_before|| / ||W_before||, the
notes' "want ~1e-3" number (measured on the actual change, so it is right for any optimizer,
momentum and weight decay included). Per epoch: loss and accuracy on the training and the
validation data, both measured in evaluation mode after the epoch, plus the mean of the
epoch's batch losses as they were trained (dropout on, weights moving).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from topograd.engine.train.checks import Diagnosis, NonFiniteReport

# How `fit` ended early; None in `History.stopped` means every epoch ran.
EARLY_STOPPING = "early stopping"
EXPLODED = "exploded"
NONFINITE = "non-finite loss"
INTERRUPTED = "interrupted"  # the caller's callback asked to stop


def _plain(value):
    """JSON-safe copies: floats stay floats, NaN and Inf become None (strict JSON has neither)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def _floats(values) -> list[float]:
    """The inverse of `_plain` for a list of numbers: None comes back as NaN."""
    return [math.nan if v is None else float(v) for v in values]


@dataclass
class History:
    """What one `fit` run measured. Lists are indexed by step or by epoch (epochs from 1).

    `stopped` is None when every epoch ran, else "early stopping", "exploded", "non-finite
    loss" or "interrupted" (fit's callback asked to stop), with `stop_message` saying why in
    words (and `nonfinite` locating the first NaN).
    `best_epoch` is the epoch with the lowest validation loss (training loss without
    validation data; 0 stands for the weights before training), `best_metric` which of the
    two it was.
    """

    # per step
    step_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    grad_norms: dict[str, list[float]] = field(default_factory=dict)
    update_ratios: dict[str, list[float]] = field(default_factory=dict)
    shapes: dict[str, list[int]] = field(default_factory=dict)  # of each tracked parameter
    # per epoch
    epochs: list[int] = field(default_factory=list)
    batch_loss: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    # the run
    initial_loss: float | None = None
    expected_initial_loss: float | None = None
    best_epoch: int = 0
    best_metric: str = "val_loss"
    best_value: float = math.inf
    stopped: str | None = None
    stop_message: str = ""
    nonfinite: NonFiniteReport | None = None
    diagnosis: Diagnosis | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def steps(self) -> int:
        """Optimizer steps taken."""
        return len(self.step_loss)

    def last(self, name: str):
        """The last per-epoch value of `name` ('val_acc', ...), or None before any epoch."""
        values = getattr(self, name)
        return values[-1] if values else None

    def weight_matrices(self) -> list[str]:
        """Names of the tracked parameters with two or more axes (what the notes' ratio is
        about; biases and batch-norm scales are vectors)."""
        return [name for name, shape in self.shapes.items() if len(shape) >= 2]

    def median_update_ratio(self, last_steps: int = 100) -> dict[str, float]:
        """Each parameter's median update/weight ratio over the last `last_steps` steps."""
        medians = {}
        for name, ratios in self.update_ratios.items():
            recent = np.asarray(ratios[-last_steps:], dtype=np.float64)
            recent = recent[np.isfinite(recent)]
            medians[name] = float(np.median(recent)) if recent.size else math.nan
        return medians

    def to_dict(self) -> dict:
        """Plain JSON-able data (NaN and Inf as None), e.g. for a checkpoint's `extra`."""
        data = {
            name: getattr(self, name)
            for name in (
                "step_loss",
                "lr",
                "grad_norms",
                "update_ratios",
                "shapes",
                "epochs",
                "batch_loss",
                "train_loss",
                "train_acc",
                "val_loss",
                "val_acc",
                "seconds",
                "initial_loss",
                "expected_initial_loss",
                "best_epoch",
                "best_metric",
                "best_value",
                "stopped",
                "stop_message",
                "warnings",
            )
        }
        data["nonfinite"] = None if self.nonfinite is None else self.nonfinite.to_dict()
        data["diagnosis"] = None if self.diagnosis is None else vars(self.diagnosis).copy()
        return _plain(data)

    @classmethod
    def from_dict(cls, data: dict) -> History:
        """Rebuild a History from `to_dict()` output (None back to NaN in number lists)."""
        history = cls()
        for name in ("step_loss", "lr", "batch_loss", "train_loss", "train_acc"):
            setattr(history, name, _floats(data.get(name, [])))
        for name in ("val_loss", "val_acc", "seconds"):
            setattr(history, name, _floats(data.get(name, [])))
        history.grad_norms = {k: _floats(v) for k, v in data.get("grad_norms", {}).items()}
        history.update_ratios = {k: _floats(v) for k, v in data.get("update_ratios", {}).items()}
        history.shapes = {k: [int(n) for n in v] for k, v in data.get("shapes", {}).items()}
        history.epochs = [int(e) for e in data.get("epochs", [])]
        history.initial_loss = data.get("initial_loss")
        history.expected_initial_loss = data.get("expected_initial_loss")
        history.best_epoch = int(data.get("best_epoch", 0))
        history.best_metric = data.get("best_metric", "val_loss")
        best = data.get("best_value")
        history.best_value = math.inf if best is None else float(best)
        history.stopped = data.get("stopped")
        history.stop_message = data.get("stop_message", "")
        history.warnings = list(data.get("warnings", []))
        if data.get("nonfinite") is not None:
            history.nonfinite = NonFiniteReport.from_dict(data["nonfinite"])
        if data.get("diagnosis") is not None:
            history.diagnosis = Diagnosis(**data["diagnosis"])
        return history

    def save_json(self, path) -> Path:
        """Write `to_dict()` as strict JSON (no NaN literals); returns the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n")
        return path

    @classmethod
    def load_json(cls, path) -> History:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def summary(self) -> str:
        """A few lines: epochs run, final and best numbers, why it stopped, the diagnosis."""
        lines = [f"{len(self.epochs)} epochs, {self.steps} steps"]
        if self.epochs:
            parts = [f"train loss {self.train_loss[-1]:.4f}"]
            if self.train_acc and math.isfinite(self.train_acc[-1]):
                parts.append(f"train acc {self.train_acc[-1]:.4f}")
            if self.val_loss:
                parts.append(f"val loss {self.val_loss[-1]:.4f}")
            if self.val_acc and math.isfinite(self.val_acc[-1]):
                parts.append(f"val acc {self.val_acc[-1]:.4f}")
            lines.append("last epoch: " + ", ".join(parts))
            lines.append(f"best epoch {self.best_epoch} ({self.best_metric} {self.best_value:.4f})")
        if self.stopped:
            lines.append(f"stopped: {self.stopped}: {self.stop_message}")
        if self.diagnosis is not None:
            lines.append(f"diagnosis: {self.diagnosis}")
        return "\n".join(lines)
