"""The babysitting pictures as PNG files: loss and accuracy curves, the learning rate, the
update/weight ratios per layer, and per-layer activation histograms.

Every figure is a `matplotlib.figure.Figure` drawn on an Agg canvas directly: no display is
needed and pyplot's global state (its current figure, its backend) is never touched, so
plotting is safe next to a running Qt application and leaks no figures. matplotlib is
imported on first use (`pip install topograd[plot]`).

What each picture is for (the notes' "babysitting the learning process"):

- loss: the per-step loss (noisy, light) with the epoch losses on the training and the
  validation data; a loss that goes up, or stays flat, says the learning rate is wrong.
- accuracy: training against validation; a big gap is overfitting (more regularization),
  no gap with both low is underfitting (more capacity).
- lr: what the schedule did.
- update/weight ratios: one line per weight matrix on a log scale, with the 1e-3 guide;
  far below it the layer barely learns (lr too low), far above it the lr is too high.
- activation histograms: the initialization lecture's figure; activations piling up at 0
  (too small an initialization) or saturating (too large) show up at a glance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from topograd.engine.train.checks import activation_statistics
from topograd.engine.train.history import History

UPDATE_RATIO_GUIDE = 1e-3


def new_figure(width: float = 7.0, height: float = 4.5):
    """A new Figure on its own Agg canvas (no pyplot)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "topograd's training plots need matplotlib: pip install topograd[plot]"
        ) from error
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path) -> Path:
    path = Path(path)
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path


def _steps_per_epoch(history: History) -> float:
    return history.steps / len(history.epochs) if history.epochs else 1.0


def finish_loss_axes(history: History, axes, title: str) -> None:
    """A log scale when the batch losses span over two decades (a run that diverges would
    flatten everything else), and the reason a run stopped early in the title."""
    finite = [v for v in history.step_loss if np.isfinite(v) and v > 0]
    if finite and max(finite) / min(finite) > 100:
        axes.set_yscale("log")
    if history.stopped:
        title += f" (stopped: {history.stopped})"
    axes.set_title(title)


def plot_loss(history: History, path) -> Path:
    """Per-step loss (light) and the epoch losses on training and validation data."""
    figure = new_figure()
    axes = figure.add_subplot()
    per_epoch = _steps_per_epoch(history)
    steps = np.arange(1, history.steps + 1) / per_epoch
    axes.plot(steps, history.step_loss, color="0.75", linewidth=0.8, label="batch loss")
    if history.epochs:
        axes.plot(history.epochs, history.train_loss, "o-", color="C0", label="train (eval mode)")
    if history.val_loss:
        axes.plot(history.epochs, history.val_loss, "o-", color="C1", label="validation")
    if history.best_epoch:
        axes.axvline(history.best_epoch, color="C2", linestyle=":", label="best epoch")
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss")
    finish_loss_axes(history, axes, "loss")
    axes.legend()
    return _save(figure, path)


def plot_accuracy(history: History, path) -> Path:
    """Training against validation accuracy per epoch: the gap is the overfitting."""
    figure = new_figure()
    axes = figure.add_subplot()
    axes.plot(history.epochs, history.train_acc, "o-", color="C0", label="train")
    if history.val_acc:
        axes.plot(history.epochs, history.val_acc, "o-", color="C1", label="validation")
        axes.fill_between(
            history.epochs, history.train_acc, history.val_acc, color="C1", alpha=0.15
        )
    axes.set_xlabel("epoch")
    axes.set_ylabel("accuracy")
    title = "accuracy"
    if history.diagnosis is not None:
        title += f" ({history.diagnosis.label})"
    axes.set_title(title)
    axes.legend()
    return _save(figure, path)


def plot_lr(history: History, path) -> Path:
    """The learning rate each step used."""
    figure = new_figure(7.0, 3.5)
    axes = figure.add_subplot()
    axes.plot(np.arange(1, len(history.lr) + 1), history.lr, color="C0")
    axes.set_xlabel("step")
    axes.set_ylabel("learning rate")
    axes.set_title("learning rate")
    return _save(figure, path)


def plot_update_ratios(history: History, path, names=None) -> Path:
    """||W_after - W_before|| / ||W_before|| per step for each weight matrix, log scale.

    `names` picks parameters; by default the weight matrices (parameters with two or more
    axes), or every parameter when there are none. The dashed line is the notes' target of
    about 1e-3.
    """
    if names is None:
        names = [n for n in history.weight_matrices() if n in history.update_ratios]
        names = names or list(history.update_ratios)
    figure = new_figure()
    axes = figure.add_subplot()
    for index, name in enumerate(names):
        ratios = np.asarray(history.update_ratios[name], dtype=np.float64)
        ratios = np.where(ratios > 0, ratios, np.nan)  # log scale: no zeros
        axes.plot(np.arange(1, len(ratios) + 1), ratios, color=f"C{index % 10}", label=name)
    axes.axhline(UPDATE_RATIO_GUIDE, color="k", linestyle="--", linewidth=1, label="1e-3 guide")
    axes.set_yscale("log")
    axes.set_xlabel("step")
    axes.set_ylabel("update / weight")
    axes.set_title("update/weight ratio per layer")
    axes.legend(fontsize=8)
    return _save(figure, path)


def save_training_plots(history: History, folder) -> list[Path]:
    """Write loss.png, accuracy.png (when accuracy was measured), lr.png and
    update_ratios.png (when tracked) into `folder` (created if missing); return the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [plot_loss(history, folder / "loss.png")]
    if history.train_acc and np.isfinite(history.train_acc).any():
        paths.append(plot_accuracy(history, folder / "accuracy.png"))
    if history.lr:
        paths.append(plot_lr(history, folder / "lr.png"))
    if history.update_ratios:
        paths.append(plot_update_ratios(history, folder / "update_ratios.png"))
    return paths


def plot_activation_histograms(model, x, path, bins: int = 50, training: bool = True) -> Path:
    """One histogram per activation layer of `model` on the batch `x`, with its mean and
    standard deviation (the initialization lecture's figure). See
    `engine.train.checks.activation_statistics` for how the layers' outputs are found and
    what `training` means; nothing about the model changes."""
    stats = activation_statistics(model, x, training=training)
    if not stats:
        raise ValueError(
            f"plot_activation_histograms: {type(model).__name__} has no activation layers "
            "(ReLU, Tanh, Sigmoid, LeakyReLU, ELU, Maxout) on this input"
        )
    figure = new_figure(max(3.0, 2.6 * len(stats)), 3.2)
    shared = None
    for index, layer in enumerate(stats):
        axes = figure.add_subplot(1, len(stats), index + 1, sharey=shared)
        shared = shared or axes
        axes.hist(layer.values.ravel(), bins=bins, color=f"C{index % 10}")
        axes.set_title(f"{layer.layer} ({layer.kind})\nmean {layer.mean:.3f} std {layer.std:.3f}")
        axes.tick_params(labelsize=7)
        axes.title.set_fontsize(8)
    return _save(figure, path)
