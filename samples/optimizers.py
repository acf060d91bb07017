"""Optimizers on an ill-conditioned quadratic and on Rosenbrock's valley, side by side.

Runs plain SGD (at the best learning rate of a grid search, which
tests/engine/test_optim_results.py repeats and checks), SGD with momentum, Nesterov, RMSprop
(plain and with momentum), Adam and AMSGrad from the same start, prints how many steps each
needs to bring the loss under 1e-6, and draws the trajectories over the contours and the loss
curves (log scale). Everything is engine Tensors and engine backward; matplotlib draws
headless (its Agg canvas, no window).

    python samples/optimizers.py [--out DIR] [--steps N] [--combined-only]

writes DIR/optimizers.png (both problems; the README's picture is `--out docs
--combined-only`) and DIR/optimizers_quadratic.png, DIR/optimizers_rosenbrock.png.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from topograd import Tensor
from topograd.optim import SGD, Adam, RMSprop

TOL = 1e-6


def quadratic(x, y):
    """(x^2 + 100 y^2) / 2: curvatures 1 and 100 along the axes (condition number 100)."""
    return 0.5 * (x * x + 100.0 * (y * y))


def rosenbrock(x, y):
    """Rosenbrock's banana valley, minimum 0 at (1, 1)."""
    return (1.0 - x) ** 2 + 100.0 * (y - x * x) ** 2


@dataclass
class Problem:
    name: str
    objective: object
    start: tuple[float, float]
    minimum: tuple[float, float]
    cap: int
    optimizers: dict  # label -> (hyperparameters as text, factory(params) -> optimizer)


def _optimizers(sgd_lr, polyak, nesterov, rmsprop_lr, adam_lr):
    """The line-up; momentum settings are (lr, momentum) pairs, chosen per problem."""
    return {
        "SGD": (f"lr={sgd_lr:.3g} (best of grid)", lambda p: SGD(p, lr=sgd_lr)),
        "momentum": (
            f"lr={polyak[0]:.3g}, momentum={polyak[1]:.3g}",
            lambda p: SGD(p, lr=polyak[0], momentum=polyak[1]),
        ),
        "Nesterov": (
            f"lr={nesterov[0]:.3g}, momentum={nesterov[1]:.3g}",
            lambda p: SGD(p, lr=nesterov[0], momentum=nesterov[1], nesterov=True),
        ),
        "RMSprop": (
            f"lr={rmsprop_lr:g}, alpha=0.99",
            lambda p: RMSprop(p, lr=rmsprop_lr, alpha=0.99),
        ),
        "RMSprop+momentum": (
            "lr=0.001, alpha=0.99, momentum=0.9",
            lambda p: RMSprop(p, lr=1e-3, alpha=0.99, momentum=0.9),
        ),
        "Adam": (f"lr={adam_lr:g}, betas=(0.9, 0.999)", lambda p: Adam(p, lr=adam_lr)),
        "AMSGrad": (f"lr={adam_lr:g}, amsgrad", lambda p: Adam(p, lr=adam_lr, amsgrad=True)),
    }


def problems(cap=None):
    """The two problems with their optimizers. SGD's lr is the fastest of the test's grid
    (10^-1.725 and 10^-2.7). On the quadratic, momentum and Nesterov use the textbook tuning
    for curvatures in [1, 100] (Polyak's heavy ball; Nesterov's lr = 1/L, momentum
    (sqrt(k) - 1) / (sqrt(k) + 1)); on Rosenbrock the usual momentum 0.9. Plain RMSprop stalls
    on Rosenbrock at a loss of about 225 lr^2 (its steps stay ~lr long near the minimum), so
    RMSprop with momentum is there too."""
    return [
        Problem(
            "quadratic",
            quadratic,
            (-1.0, 0.15),
            (0.0, 0.0),
            cap or 5_000,
            _optimizers(10**-1.725, (4 / 121, (9 / 11) ** 2), (0.01, 9 / 11), 0.01, 0.1),
        ),
        Problem(
            "rosenbrock",
            rosenbrock,
            (-1.2, 1.0),
            (1.0, 1.0),
            cap or 20_000,
            _optimizers(10**-2.7, (1e-3, 0.9), (1e-3, 0.9), 1e-3, 0.02),
        ),
    ]


@dataclass
class Run:
    label: str
    hyperparameters: str
    path: list = field(default_factory=list)  # (x, y) before each step
    losses: list = field(default_factory=list)
    steps_to_tol: int | None = None


def run(problem, label):
    """Optimize from the problem's start until the loss is under TOL, diverges or hits the cap."""
    hyperparameters, make = problem.optimizers[label]
    params = [Tensor(float(v), requires_grad=True) for v in problem.start]
    optimizer = make(params)
    result = Run(label, hyperparameters)
    for step in range(problem.cap + 1):
        loss = problem.objective(*params)
        value = loss.item()
        result.path.append((params[0].item(), params[1].item()))
        result.losses.append(value)
        if value < TOL:
            result.steps_to_tol = step
            break
        if not value < 1e10:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return result


def _limits(problem, runs):
    """A box around the start, the minimum and every finite point of every path."""
    points = np.array([p for r in runs for p in r.path] + [problem.start, problem.minimum])
    points = points[np.isfinite(points).all(axis=1) & (np.abs(points) < 10).all(axis=1)]
    low, high = points.min(axis=0), points.max(axis=0)
    pad = 0.08 * (high - low)
    return low - pad, high + pad


def draw(problem, runs, trajectory_axes, loss_axes):
    """Trajectories over log-spaced contours, and loss against steps on log-log axes."""
    (x_low, y_low), (x_high, y_high) = _limits(problem, runs)
    grid_x, grid_y = np.meshgrid(np.linspace(x_low, x_high, 300), np.linspace(y_low, y_high, 300))
    heights = problem.objective(grid_x, grid_y)
    top = float(heights.max())
    levels = np.geomspace(max(1e-4, top * 1e-5), top, 18)
    trajectory_axes.contour(grid_x, grid_y, heights, levels=levels, colors="0.75", linewidths=0.6)
    for run_ in runs:
        path = np.array(run_.path)
        style = {"lw": 1.0, "label": run_.label, "ls": "--" if run_.label == "AMSGrad" else "-"}
        trajectory_axes.plot(path[:, 0], path[:, 1], **style)
        loss_axes.plot(np.arange(1, len(run_.losses) + 1), run_.losses, **style)
    trajectory_axes.plot(*problem.start, "ko", ms=4)
    trajectory_axes.plot(*problem.minimum, "k*", ms=9)
    trajectory_axes.set(xlim=(x_low, x_high), ylim=(y_low, y_high), xlabel="x", ylabel="y")
    trajectory_axes.set_title(f"{problem.name}: paths from {problem.start}")
    loss_axes.axhline(TOL, color="k", ls=":", lw=0.8)
    loss_axes.set(xscale="log", yscale="log", xlabel="step + 1", ylabel="loss")
    loss_axes.set_ylim(bottom=TOL / 10)
    loss_axes.set_title(f"{problem.name}: loss (dotted: {TOL:g})")
    loss_axes.legend(fontsize=7, loc="lower left")


def figure(rows):
    from matplotlib.figure import Figure  # the Agg canvas: no display, no pyplot state

    height = 4.8 * rows
    fig = Figure(figsize=(12, height))
    # fixed margins (in inches over the height): constrained layout would measure every
    # log-scale tick label, which takes seconds
    fig.subplots_adjust(
        left=0.06, right=0.98, bottom=0.5 / height, top=1 - 0.35 / height, wspace=0.18, hspace=0.3
    )
    return fig, fig.subplots(rows, 2, squeeze=False)


def table(results):
    """Steps to TOL per optimizer as aligned text ('-' where a run never got there)."""
    lines = [f"{'problem':<11} {'optimizer':<17} {'steps to 1e-6':>13}  {'best loss':>9}  settings"]
    for problem, runs in results.items():
        for r in runs:
            steps = "-" if r.steps_to_tol is None else str(r.steps_to_tol)
            best = min(r.losses)
            lines.append(
                f"{problem:<11} {r.label:<17} {steps:>13}  {best:9.2e}  {r.hyperparameters}"
            )
    return "\n".join(lines)


def main(argv=None):
    """Run everything, print the table, write the PNGs; return (results, written paths)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for the PNGs")
    parser.add_argument("--steps", type=int, help="step cap per run (5000 / 20000 by default)")
    parser.add_argument(
        "--combined-only", action="store_true", help="write only optimizers.png (both problems)"
    )
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    args.out.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    chosen = problems(args.steps)
    results = {p.name: [run(p, label) for label in p.optimizers] for p in chosen}
    print(table(results))
    print(f"({time.perf_counter() - started:.1f} s)")

    written = []
    combined, axes = figure(len(chosen))
    for row, problem in zip(axes, chosen):
        draw(problem, results[problem.name], *row)
        if not args.combined_only:
            single, (single_axes,) = figure(1)
            draw(problem, results[problem.name], *single_axes)
            written.append(args.out / f"optimizers_{problem.name}.png")
            single.savefig(written[-1], dpi=110)
    written.append(args.out / "optimizers.png")
    combined.savefig(written[-1], dpi=110)
    for path in written:
        print(f"wrote {path}")
    return results, written


if __name__ == "__main__":
    main(sys.argv[1:])
