"""What the training commands (`run`, `eval`, `search`) share: settings overridden from the
command line, building with the errors printed, files written atomically, the final metrics
with their table, and the pictures.

A command never leaves half a file behind: every output is written to a temporary name in
its folder and moved into place (`os.replace`), and a failure to write becomes a
`CommandError` that the command prints as `topograd: cannot write ...` (exit 2).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from topograd.dsl.build import Built, build
from topograd.dsl.datasets import data_record
from topograd.dsl.errors import DslError, Source
from topograd.dsl.spec import Entry, Spec
from topograd.engine import Tensor, no_grad
from topograd.engine.train.checks import evaluate
from topograd.engine.train.history import EARLY_STOPPING, History


class CommandError(Exception):
    """A command cannot go on (an output it cannot write, a setting that does not apply);
    printed as `topograd: <message>` with the usage exit code."""


# --- the command line ----------------------------------------------------------------------------
def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def output_folder(out, file) -> Path:
    """`--out`, or runs/<file stem> under the current folder."""
    return Path(out) if out else Path("runs") / Path(file).stem


def with_settings(spec: Spec, epochs: int | None = None, seed: int | None = None) -> Spec:
    """The spec with the train section's epochs and seed replaced (`--epochs`, `--seed`)."""
    changes = {
        key: value for key, value in (("epochs", epochs), ("seed", seed)) if value is not None
    }
    if not changes or spec.train is None:
        return spec
    return dataclasses.replace(spec, train=dataclasses.replace(spec.train, **changes))


def report(error: DslError) -> None:
    """Print a language error the way `load_spec` does."""
    print(error.render(), file=sys.stderr)
    count = len(error.problems)
    print(f"{count} error{'s' if count != 1 else ''} in {error.source.name}", file=sys.stderr)


def build_or_report(spec: Spec, source: Source, **options) -> Built | None:
    """dsl.build.build, or None after printing the build error at its line."""
    try:
        return build(spec, source, **options)
    except DslError as error:
        report(error)
        return None


def show_progress(no_progress: bool) -> bool:
    """Whether to draw the progress bar: not with `--no-progress`, and not when stderr is no
    terminal (a log or a pipe would collect the bar's carriage-return redraws)."""
    if no_progress:
        return False
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def rows_of(part):
    """A data split if it has rows, else None (fit refuses an empty validation set)."""
    return part if part is not None and len(part) else None


def fit_arguments(built: Built, progress: bool, **changes) -> dict:
    """engine.train.fit's keyword arguments for `built`: the file's, the validation split,
    the progress bar, and `changes` on top."""
    options = built.fit_options()
    options.update(val=rows_of(built.data.splits.val), progress=progress)
    if built.spec.data is not None:  # what `eval` checks a checkpoint's data against
        options["checkpoint_extra"] = {"data": data_record(built.spec.data, built.data.preprocess)}
    options.update(changes)
    return options


# --- files ---------------------------------------------------------------------------------------
def cannot_write(path, error: OSError) -> CommandError:
    """The CommandError for an output that could not be written, saying why in words."""
    if isinstance(error, (FileExistsError, NotADirectoryError)):
        return CommandError(f"cannot write {path}: a file stands where a folder should be")
    return CommandError(f"cannot write {path}: {error.strerror or error}")


def replace_atomically(path, write: Callable[[Path], object]) -> Path:
    """Call `write(temporary)` for a temporary file beside `path`, make it durable, then move
    it onto `path` in one step; returns the path written (a link's target: the link stays).

    The temporary file is created here, not by mkstemp (which makes it private), so the umask
    decides a new file's mode; a file that already exists keeps its mode. On any failure the
    old file is untouched, the temporary one removed, and the OSError raised.
    """
    path = Path(os.path.realpath(path))
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        name = f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        os.close(os.open(path.parent / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        temporary = path.parent / name
        write(temporary)
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        if path.exists():
            shutil.copymode(path, temporary)
        os.replace(temporary, path)
    finally:
        if temporary is not None and temporary.exists():
            with contextlib.suppress(OSError):
                temporary.unlink()
    return path


def write_atomically(path, write: Callable[[Path], object]) -> Path:
    """`replace_atomically` for a command's output: a failure is a CommandError that says
    which file could not be written and why."""
    try:
        return replace_atomically(path, write)
    except OSError as error:
        raise cannot_write(path, error) from None


def json_safe(value):
    """Plain JSON values: numpy numbers as Python numbers, NaN and infinities as null."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def write_json(path, data) -> Path:
    text = json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n"
    return write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def save_figure(figure, path) -> Path:
    figure.tight_layout()
    return write_atomically(path, lambda temporary: figure.savefig(temporary, format="png"))


def save_plots(history: History, folder) -> list[Path]:
    """engine.train.plots.save_training_plots into `folder`, each picture moved into place
    whole (they are drawn in a temporary folder beside it)."""
    from topograd.engine.train.plots import save_training_plots

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=folder, prefix=".plots."))
    except OSError as error:
        raise cannot_write(folder, error) from None
    try:
        saved = []
        for drawn in save_training_plots(history, scratch):
            os.replace(drawn, folder / drawn.name)
            saved.append(folder / drawn.name)
        return saved
    except OSError as error:
        raise cannot_write(folder, error) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def figure(width: float = 7.0, height: float = 4.5):
    """A matplotlib Figure on its own Agg canvas (no display, pyplot untouched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    drawing = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(drawing)
    return drawing


def plot_losses(histories: dict[str, History], path, title: str) -> Path:
    """Several runs' losses on one picture: the batch losses (light) and the epochs'
    validation losses (dashed, or training losses without validation), one colour each."""
    drawing = figure()
    axes = drawing.add_subplot()
    positive = []
    for index, (label, history) in enumerate(histories.items()):
        colour = f"C{index % 10}"
        per_epoch = history.steps / len(history.epochs) if history.epochs else 1.0
        steps = np.arange(1, history.steps + 1) / per_epoch
        axes.plot(steps, history.step_loss, color=colour, alpha=0.35, linewidth=0.8)
        epoch_loss = history.val_loss or history.train_loss
        which = "val" if history.val_loss else "train"
        axes.plot(history.epochs, epoch_loss, "o--", color=colour, label=f"{label} ({which})")
        positive += [v for v in history.step_loss if math.isfinite(v) and v > 0]
    if positive and max(positive) / min(positive) > 100:
        axes.set_yscale("log")
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.legend(fontsize="small")
    return save_figure(drawing, path)


# --- metrics -------------------------------------------------------------------------------------
def kept_epoch(history: History) -> int | None:
    """Index (into the per-epoch lists) of the epoch whose weights the model holds: the best
    epoch after a stop that put them back, else the last; None when it is no epoch (the
    starting weights, or no epoch ran)."""
    if history.stopped is not None:
        epoch = history.best_epoch
        return history.epochs.index(epoch) if epoch in history.epochs else None
    return len(history.epochs) - 1 if history.epochs else None


def final_metrics(built: Built, history: History, seconds: float) -> dict:
    """Loss and accuracy of the weights the run ends with on each split that has rows (the
    History's numbers for train and val, measured for test), with how the run went."""
    index = kept_epoch(history)
    eval_batch = built.spec.train.fit_options.get("eval_batch_size", 1024)
    regression = getattr(built.data.splits.train, "regression", False)
    metrics = {}
    for split in ("train", "val", "test"):
        part = rows_of(getattr(built.data.splits, split))
        if part is None:
            continue
        if split != "test" and index is not None:
            loss = getattr(history, f"{split}_loss")[index]
            accuracy = getattr(history, f"{split}_acc")[index]
        else:  # the test split, or weights from before the first epoch: measure them
            loss, accuracy = evaluate(built.model, part, built.loss, eval_batch)
        metrics[f"{split}_loss"], metrics[f"{split}_accuracy"] = loss, accuracy
        if regression:  # real-valued targets: no accuracy, but how much variance is explained
            metrics[f"{split}_accuracy"] = None
            metrics[f"{split}_r2"] = r_squared(built.model, part, eval_batch)
    metrics.update(
        epochs=len(history.epochs),
        steps=history.steps,
        seconds=seconds,
        best_epoch=history.best_epoch,
        stopped=history.stopped,
        stop_message=history.stop_message or None,
    )
    return metrics


def diverged(history: History) -> bool:
    """The run stopped for a reason other than early stopping (an explosion, a NaN)."""
    return history.stopped is not None and history.stopped != EARLY_STOPPING


def number(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def table(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    """Columns two spaces apart: the first `left` aligned left (names), the rest right."""
    lines = [header, *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) if i < left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths))
        ).rstrip()
        for line in lines
    )


def metrics_table(metrics: dict) -> str:
    """One line per split that was measured: its loss and accuracy (R^2 for real-valued
    targets)."""
    score, header = (
        ("r2", "R^2")
        if any(k.endswith("_r2") for k in metrics)
        else (
            "accuracy",
            "accuracy",
        )
    )
    rows = [
        [split, number(metrics.get(f"{split}_loss")), number(metrics.get(f"{split}_{score}"))]
        for split in ("train", "val", "test")
        if f"{split}_loss" in metrics
    ]
    return table(["split", "loss", header], rows)


def r_squared(model, part, batch_size: int = 1024) -> float | None:
    """1 - SSE / SST of the model's predictions of real-valued targets, in evaluation mode
    (None when the targets do not vary); the model's training flags are put back."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with no_grad():
            predictions = np.concatenate(
                [
                    model(Tensor(part.x[begin : begin + batch_size])).data.reshape(-1)
                    for begin in range(0, len(part), batch_size)
                ]
            )
    finally:
        for module, training in modes:
            object.__setattr__(module, "training", training)
    total = float(np.sum((part.y - part.y.mean()) ** 2))
    residual = float(np.sum((part.y - predictions) ** 2))
    return 1.0 - residual / total if total > 0 else None


def label(entry: Entry) -> str:
    """An optimizer or schedule as the file wrote it: `adam(lr=0.001)`."""
    arguments = ", ".join(f"{key}={_value_text(value)}" for key, value in entry.kwargs.items())
    return f"{entry.name}({arguments})"


def _value_text(value) -> str:
    if isinstance(value, Entry):
        return label(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_value_text(item) for item in value) + ")"
    return str(value)


def save_trained(built: Built, history: History, path, extra: dict) -> Path:
    """The model with its optimizer and schedule (atomic), for `topograd eval`: `extra` with
    the data it was trained on (what `eval` checks); its epoch is the one whose weights the
    model holds (the best one after a stop put it back)."""
    from topograd.engine.train.checkpoint import save_checkpoint

    extra = dict(extra)
    if built.spec.data is not None:
        extra["data"] = data_record(built.spec.data, built.data.preprocess)
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return save_checkpoint(
            path,
            built.model,
            built.optimizer,
            built.schedule,
            rngs={},
            epoch=history.best_epoch if history.stopped else len(history.epochs),
            step=history.steps,
            extra=extra,
        )
    except OSError as error:
        raise cannot_write(path, error) from None
