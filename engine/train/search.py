"""Hyperparameter search as the notes teach it: random, in log space, coarse to fine.

The notes' advice (lecture 002, "Hyperparameter optimization"), and how it shows up here:

- **Random beats grid.** With a budget of n trials, a grid over two parameters tries only
  sqrt(n) values of each; if one of them hardly matters, half the budget is wasted on
  repeating values of the important one. Random search tries n distinct values of every
  parameter. `random_search` and `grid_search` take the same objective so the two compare.
- **Search in log space** for scale parameters (learning rate, regularization strength):
  `LogUniform(1e-5, 1e-1)` puts as many trials in [1e-5, 1e-4] as in [1e-2, 1e-1], where a
  plain uniform draw would put 90% of them in the top decade.
- **Coarse to fine.** A first stage of short trials over wide ranges, then a second stage
  over ranges narrowed around the best trials (`coarse_to_fine`), possibly with longer
  trials (one objective per stage).
- **Break out early on explosions.** "If the cost is ever > 3 * original cost, break out
  early": `fit_objective` trains with `fit`'s explosion guard, and a trial that stopped is
  kept in the results with its reason and ranked after every trial that finished.

Results go to a CSV table (`SearchResult.write_csv`) and a picture of the objective against
one parameter, coloured by stage (`SearchResult.plot`). A search can be resumed: pass the
trials already run as `done` (`Trial.to_dict` / `Trial.from_dict` keep them as JSON) and the
same seed, and only the remaining trials call the objective; `on_trial` sees each new trial as
it finishes, to record it.

>>> space = {"lr": LogUniform(1e-4, 1.0), "momentum": Uniform(0.5, 0.99)}
>>> def objective(params):  # a cheap stand-in for training: best at lr = 1e-2
...     return -abs(np.log10(params["lr"]) + 2)
>>> result = coarse_to_fine(space, objective, trials_per_stage=20, seed=0)
>>> bool(abs(np.log10(result.best.params["lr"]) + 2) < 0.2)
True
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import math
import numbers
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from topograd.engine import manual_seed
from topograd.engine.registry import Registry
from topograd.engine.train.fit import fit
from topograd.engine.train.history import EARLY_STOPPING

# --- distributions -----------------------------------------------------------------------


def _check_bounds(kind: str, low, high, *, positive: bool = False, equal_ok: bool = False):
    for name, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{kind} {name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{kind} {name} must be finite, got {value!r}")
        if positive and value <= 0:
            raise ValueError(f"{kind} {name} must be > 0 (log scale), got {value!r}")
    if high < low or (high == low and not equal_ok):
        raise ValueError(f"{kind} needs low < high, got low={low!r}, high={high!r}")


class _Numeric:
    """A range sampled uniformly in search coordinates u = t(value) (t: identity or log).

    Narrowing and grids work in those coordinates, which is what makes a log-scale
    parameter's second stage shrink by decades rather than by absolute amounts.
    """

    low: float
    high: float
    log: bool

    def _to(self, value):
        return np.log(value) if self.log else np.asarray(value, dtype=np.float64)

    def _from(self, u):
        return np.exp(u) if self.log else u

    def _make(self, low, high):
        raise NotImplementedError

    def _cast(self, values):
        return values

    def sample(self, rng: np.random.Generator):
        """One value drawn from `rng`."""
        u = rng.uniform(self._to(self.low), self._to(self.high))
        return self._cast(float(self._from(u)))

    def grid(self, points: int) -> list:
        """`points` values evenly spaced in search coordinates, both ends included."""
        if isinstance(points, bool) or not isinstance(points, int) or points < 1:
            raise ValueError(f"grid points must be an integer >= 1, got {points!r}")
        if points == 1:
            u = np.array([(self._to(self.low) + self._to(self.high)) / 2])
        else:
            u = np.linspace(self._to(self.low), self._to(self.high), points)
        values = [self._cast(float(v)) for v in self._from(u)]
        return list(dict.fromkeys(values))  # an integer grid may repeat values

    def contains(self, value) -> bool:
        return self.low <= value <= self.high

    def narrow(self, values: Sequence, shrink: float = 0.5):
        """The next stage's range: `shrink` times as wide in search coordinates, centred on
        the median of `values` (the best trials' values, best first), moved to contain the
        very best and to stay inside this range.

        The median of several good trials is a steadier centre than the single best one (a
        noisy objective makes the best partly luck), and staying inside keeps the bounds the
        user chose (dropout < 1, a positive lr); if the best trials crowd an edge, the range
        was too narrow to begin with, and widening it is the user's call.
        """
        if not 0 < shrink < 1:
            raise ValueError(f"shrink must be in (0, 1), got {shrink!r}")
        if len(values) == 0:
            raise ValueError("narrow needs the values of at least one trial")
        u = self._to(np.asarray(values, dtype=np.float64))
        low, high = float(self._to(self.low)), float(self._to(self.high))
        width = shrink * (high - low)
        start = float(np.median(u)) - width / 2
        start = min(max(start, float(u[0]) - width), float(u[0]))  # the best stays inside
        start = min(max(start, low), high - width)  # and the window inside this range
        return self._make(float(self._from(start)), float(self._from(start + width)))


@dataclass(frozen=True)
class Uniform(_Numeric):
    """A real number drawn uniformly from [low, high] (dropout, momentum)."""

    low: float
    high: float

    def __post_init__(self):
        _check_bounds("Uniform", self.low, self.high)

    @property
    def log(self) -> bool:
        return False

    def _make(self, low, high):
        return Uniform(low, high)


@dataclass(frozen=True)
class LogUniform(_Numeric):
    """A positive number whose logarithm is uniform on [log low, log high] (lr, weight decay):
    every decade of the range gets the same share of the trials."""

    low: float
    high: float

    def __post_init__(self):
        _check_bounds("LogUniform", self.low, self.high, positive=True)

    @property
    def log(self) -> bool:
        return True

    def _make(self, low, high):
        return LogUniform(low, high)


@dataclass(frozen=True)
class IntUniform(_Numeric):
    """An integer from low to high inclusive (hidden units, epochs), uniform, or uniform in
    log space with ``log=True`` (so 16..1024 hidden units is not mostly above 100)."""

    low: int
    high: int
    log: bool = False

    def __post_init__(self):
        for name, value in (("low", self.low), ("high", self.high)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"IntUniform {name} must be an integer, got {value!r}")
        _check_bounds("IntUniform", self.low, self.high, positive=self.log, equal_ok=True)

    def sample(self, rng):
        """Uniform: a draw from [low - 0.5, high + 0.5) rounded, so the end values get a full
        share, not half of one. Log: a log-uniform draw from [low, high + 1) floored, so k
        gets a share proportional to log((k + 1) / k)."""
        if self.log:
            value = math.floor(math.exp(rng.uniform(math.log(self.low), math.log(self.high + 1))))
        else:
            value = round(rng.uniform(self.low - 0.5, self.high + 0.5))
        return int(min(max(value, self.low), self.high))

    def _cast(self, values):
        return round(values)

    def _make(self, low, high):
        low_int, high_int = math.floor(low + 1e-9), math.ceil(high - 1e-9)
        low_int, high_int = max(low_int, self.low), min(high_int, self.high)
        return IntUniform(low_int, max(low_int, high_int), self.log)


@dataclass(frozen=True)
class Choice:
    """One of a fixed list of options (an activation, an optimizer name), equally likely."""

    options: tuple

    def __post_init__(self):
        options = tuple(self.options)
        if not options:
            raise ValueError("Choice needs at least one option")
        object.__setattr__(self, "options", options)

    log = False

    def sample(self, rng: np.random.Generator):
        return self.options[int(rng.integers(len(self.options)))]

    def grid(self, points: int | None = None) -> list:
        """Every option (a grid over a choice has nothing to space out)."""
        return list(self.options)

    def contains(self, value) -> bool:
        return value in self.options

    def narrow(self, values: Sequence, shrink: float = 0.5) -> Choice:
        """The options that the best trials used, in their original order: a choice that no
        good trial made is dropped in the next stage."""
        kept = tuple(option for option in self.options if option in list(values))
        return Choice(kept or self.options)


Distribution = Uniform | LogUniform | IntUniform | Choice


def choice(*options) -> Choice:
    """`choice(32, 64, 128)`: the model language's spelling of Choice."""
    return Choice(options)


DISTRIBUTIONS = Registry("distribution")
"""Search distributions by name, as model files write them (`lr ~ loguniform(1e-4, 1e-1)`)."""
for _name, _distribution in (
    ("uniform", Uniform),
    ("loguniform", LogUniform),
    ("intuniform", IntUniform),
    ("choice", choice),
):
    DISTRIBUTIONS.register(_name)(_distribution)


def _check_space(space: Mapping) -> dict:
    if not isinstance(space, Mapping) or not space:
        raise ValueError("a search space is a non-empty dict of name -> distribution")
    for name, dist in space.items():
        if not isinstance(dist, (Uniform, LogUniform, IntUniform, Choice)):
            raise TypeError(
                f"search space entry {name!r} must be Uniform, LogUniform, IntUniform or "
                f"Choice, got {type(dist).__name__}"
            )
    return dict(space)


def sample_params(space: Mapping, rng: np.random.Generator) -> dict:
    """One point of `space`: each parameter drawn in the space's order (so a seed repeats)."""
    return {name: dist.sample(rng) for name, dist in space.items()}


# --- trials ------------------------------------------------------------------------------

OK = "ok"
ERROR = "error"
NONFINITE = "non-finite"


@dataclass
class TrialResult:
    """What one trial measured. `value` is the number trials are ranked by (see the search's
    `minimize`); a status other than "ok" (fit's "exploded", "non-finite loss", or "error")
    ranks the trial after every finished one, whatever its value."""

    value: float
    val_loss: float | None = None
    val_acc: float | None = None
    status: str = OK
    reason: str = ""
    epochs: int | None = None

    @classmethod
    def from_history(cls, history, metric: str = "val_acc") -> TrialResult:
        """A fit History as a trial: `metric` at the epoch whose weights the model kept (the
        last one, or the best one after early stopping), and fit's stop reason.

        Early stopping is not a failure (the run found its best epoch and kept it); an
        explosion or a NaN is, whatever the metric said before it.
        """
        if metric not in ("val_acc", "val_loss", "train_acc", "train_loss"):
            raise ValueError(f"metric must be val_acc, val_loss, train_acc or train_loss: {metric}")
        index = -1
        if history.stopped == EARLY_STOPPING and history.best_epoch in history.epochs:
            index = history.epochs.index(history.best_epoch)

        def at(values):
            return float(values[index]) if values else None

        failed = history.stopped not in (None, EARLY_STOPPING)
        value = at(getattr(history, metric))
        return cls(
            value=math.nan if value is None else value,
            val_loss=at(history.val_loss),
            val_acc=at(history.val_acc),
            status=history.stopped if failed else OK,
            reason=history.stop_message if failed else "",
            epochs=len(history.epochs),
        )

    @property
    def ok(self) -> bool:
        return self.status == OK


@dataclass
class Trial:
    """One evaluated point: its number (from 0, across stages), stage, params and result."""

    number: int
    stage: int
    params: dict
    result: TrialResult
    seconds: float = 0.0

    @property
    def value(self) -> float:
        return self.result.value

    def to_dict(self) -> dict:
        """The trial as JSON values (a non-finite number as the string "nan", "inf" or
        "-inf"), which `from_dict` reads back exactly."""
        result = dataclasses.asdict(self.result)
        result = {key: _json_number(value) for key, value in result.items()}
        return {
            "number": self.number,
            "stage": self.stage,
            "params": dict(self.params),
            "result": result,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Trial:
        """A trial that `to_dict` wrote; ValueError naming what is missing or malformed."""
        try:
            fields = {f.name for f in dataclasses.fields(TrialResult)}
            result = {k: v for k, v in data["result"].items() if k in fields}
            for key in ("value", "val_loss", "val_acc"):
                if isinstance(result.get(key), str):
                    result[key] = float(result[key])
            return cls(
                number=int(data["number"]),
                stage=int(data["stage"]),
                params=dict(data["params"]),
                result=TrialResult(**result),
                seconds=float(data.get("seconds", 0.0)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"not a recorded trial ({type(error).__name__}: {error})") from None


def _json_number(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _as_result(outcome) -> TrialResult:
    if isinstance(outcome, TrialResult):
        result = outcome
    elif isinstance(outcome, numbers.Real) and not isinstance(outcome, bool):
        result = TrialResult(float(outcome))
    else:
        raise TypeError(f"an objective returns a TrialResult or a number, got {outcome!r}")
    if result.ok and not math.isfinite(result.value):
        result.status, result.reason = NONFINITE, f"objective value {result.value}"
    return result


def _run_trial(objective, params, number, stage, log) -> Trial:
    """Evaluate one point. Arithmetic failures (a FloatingPointError from anomaly detection,
    an overflow) are recorded as a failed trial so that one bad corner of the space does not
    end the search; any other exception is a bug and propagates."""
    started = time.perf_counter()
    try:
        result = _as_result(objective(dict(params)))
    except ArithmeticError as error:
        result = TrialResult(math.nan, status=ERROR, reason=f"{type(error).__name__}: {error}")
    trial = Trial(number, stage, dict(params), result, time.perf_counter() - started)
    if log is not None:
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())
        outcome = f"{result.value:.4g}" if result.ok else f"{result.status} ({result.reason})"
        log(f"trial {number:3d} stage {stage}  {shown}  ->  {outcome}")
    return trial


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class _Trials:
    """Runs the trials of one search in order: a trial that `done` holds (a resumed search) is
    taken from there, after checking that the search drew the same point for it; any other
    is evaluated and handed to `on_trial`."""

    def __init__(self, objective, log, done: Sequence[Trial] = (), on_trial=None):
        self.objective, self.log, self.on_trial = objective, log, on_trial
        self.done = list(done)

    def __call__(self, params: dict, number: int, stage: int, objective=None) -> Trial:
        if number < len(self.done):
            recorded = self.done[number]
            if (recorded.number, recorded.stage, recorded.params) != (number, stage, params):
                raise ValueError(
                    f"recorded trial {recorded.number} (stage {recorded.stage}, "
                    f"{recorded.params}) is not the search's trial {number} (stage {stage}, "
                    f"{params}): it was drawn with another seed, space or trial count"
                )
            return recorded
        trial = _run_trial(objective or self.objective, params, number, stage, self.log)
        if self.on_trial is not None:
            self.on_trial(trial)
        return trial

    def check_used(self, count: int) -> None:
        """A search of `count` trials took every recorded one (ValueError if not)."""
        if len(self.done) > count:
            raise ValueError(
                f"{len(self.done)} trials are recorded but this search has {count}: it was "
                "recorded with another trial count"
            )


# --- results -----------------------------------------------------------------------------


@dataclass
class SearchResult:
    """Every trial of a search, the space of each stage, and what ranks first.

    `spaces[s]` is the space stage s sampled from (one entry for random and grid search).
    """

    trials: list[Trial]
    spaces: list[dict]
    minimize: bool = False
    kind: str = "random"
    param_names: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not self.param_names:
            self.param_names = list(self.spaces[0]) if self.spaces else []

    def ranked(self, stage: int | None = None) -> list[Trial]:
        """Finished trials best first, then the failed ones in the order they ran."""
        trials = [t for t in self.trials if stage is None or t.stage == stage]
        finished = sorted(
            (t for t in trials if t.result.ok),
            key=lambda t: (t.value if self.minimize else -t.value, t.number),
        )
        return finished + [t for t in trials if not t.result.ok]

    @property
    def best(self) -> Trial:
        """The best finished trial (ValueError if every trial failed)."""
        ranked = self.ranked()
        if not ranked or not ranked[0].result.ok:
            raise ValueError(f"no trial finished: {len(self.trials)} trials, all failed")
        return ranked[0]

    @property
    def best_params(self) -> dict:
        return dict(self.best.params)

    @property
    def failed(self) -> list[Trial]:
        return [t for t in self.trials if not t.result.ok]

    def distinct_values(self, name: str) -> int:
        """How many different values of `name` the trials tried (random vs grid coverage)."""
        return len({t.params[name] for t in self.trials})

    # --- output ---------------------------------------------------------------------------
    COLUMNS = ("value", "val_loss", "val_acc", "status", "reason", "seconds")

    def rows(self) -> list[dict]:
        """One plain dict per trial in run order, with the CSV's columns."""
        rows = []
        for t in self.trials:
            row = {"trial": t.number, "stage": t.stage}
            row.update({name: t.params.get(name, "") for name in self.param_names})
            result = t.result
            row.update(
                value=result.value,
                val_loss="" if result.val_loss is None else result.val_loss,
                val_acc="" if result.val_acc is None else result.val_acc,
                status=result.status,
                reason=result.reason,
                seconds=round(t.seconds, 4),
            )
            rows.append(row)
        return rows

    def write_csv(self, path) -> Path:
        """The results table: trial, stage, each parameter, value, val_loss, val_acc,
        status, reason, seconds; one row per trial in the order they ran."""
        path = Path(path)
        with path.open("w", newline="") as file:
            writer = csv.DictWriter(file, ["trial", "stage", *self.param_names, *self.COLUMNS])
            writer.writeheader()
            writer.writerows(self.rows())
        return path

    def table(self, limit: int | None = 10) -> str:
        """The best `limit` trials (None: all) and the failed ones, as aligned text."""
        ranked = self.ranked()
        shown = [t for t in ranked if t.result.ok][:limit] + [t for t in ranked if not t.result.ok]
        names = self.param_names
        header = ["rank", "trial", "stage", *names, "value", "status"]
        lines = [header]
        for rank, t in enumerate(shown, start=1):
            value = f"{t.value:.4f}" if t.result.ok else "-"
            status = t.result.status if t.result.ok else f"{t.result.status}: {t.result.reason}"
            params = [_fmt(t.params[name]) for name in names]
            lines.append([str(rank), str(t.number), str(t.stage), *params, value, status])
        widths = [max(len(row[i]) for row in lines) for i in range(len(header) - 1)]
        return "\n".join(
            "  ".join(cell.rjust(width) for cell, width in zip(row, widths)) + "  " + row[-1]
            for row in lines
        )

    def plot(
        self,
        path,
        param: str | None = None,
        title: str | None = None,
        value_label: str | None = None,
    ) -> Path:
        """A PNG of the objective against `param` (default: the first numeric one; a log axis
        for LogUniform and log IntUniform), one colour per stage, with each stage's range of
        `param` shaded and failed trials as crosses along the bottom edge. `value_label`
        names the y axis ("val accuracy"); by default it says which way is better."""
        param = param or next(
            (n for n in self.param_names if not isinstance(self.spaces[0][n], Choice)),
            self.param_names[0],
        )
        if param not in self.param_names:
            raise ValueError(f"plot: unknown parameter {param!r}; known: {self.param_names}")
        figure = _figure()
        axes = figure.add_subplot()
        finished = [t.value for t in self.trials if t.result.ok]
        bottom = min(finished) if finished else 0.0
        for stage, space in enumerate(self.spaces):
            colour = f"C{stage % 10}"
            dist = space[param]
            if isinstance(dist, _Numeric) and len(self.spaces) > 1:
                axes.axvspan(dist.low, dist.high, color=colour, alpha=0.08)
            ok = [t for t in self.trials if t.stage == stage and t.result.ok]
            bad = [t for t in self.trials if t.stage == stage and not t.result.ok]
            axes.scatter(
                [t.params[param] for t in ok],
                [t.value for t in ok],
                color=colour,
                s=22,
                label=f"stage {stage} ({len(ok)} finished)",
            )
            if bad:
                axes.scatter(
                    [t.params[param] for t in bad],
                    [bottom] * len(bad),
                    color=colour,
                    marker="x",
                    s=40,
                    label=f"stage {stage}: {len(bad)} failed",
                )
        if finished:
            best = self.best
            axes.scatter(
                [best.params[param]],
                [best.value],
                s=140,
                facecolors="none",
                edgecolors="black",
                label="best",
            )
        if _log_axis(self.spaces[0][param]):
            axes.set_xscale("log")
        axes.set_xlabel(param)
        better = "lower is better" if self.minimize else "higher is better"
        axes.set_ylabel(value_label or f"value ({better})")
        axes.set_title(title or f"{self.kind} search: {len(self.trials)} trials")
        axes.legend(fontsize="small")
        axes.grid(True, alpha=0.3)
        path = Path(path)
        figure.tight_layout()
        figure.savefig(path, format="png")
        return path


def _log_axis(dist) -> bool:
    """A log axis for log-scale ranges, and for a grid of positive numbers spanning two
    decades or more (a learning-rate grid reads as a line of points only on a log axis)."""
    if isinstance(dist, Choice):
        values = dist.options
        numeric = all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values)
        return numeric and min(values) > 0 and max(values) >= 100 * min(values)
    return dist.log


def _figure():
    """A Figure on its own Agg canvas: no display, and pyplot's global state untouched."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        message = "SearchResult.plot needs matplotlib: pip install topograd[plot]"
        raise ImportError(message) from error
    figure = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    return figure


# --- searches ----------------------------------------------------------------------------


def _check_count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def random_search(
    space: Mapping,
    objective: Callable,
    trials: int,
    *,
    seed: int = 0,
    minimize: bool = False,
    log: Callable | None = None,
    done: Sequence[Trial] = (),
    on_trial: Callable | None = None,
) -> SearchResult:
    """`trials` points drawn independently from `space`, each passed to `objective(params)`.

    `objective` returns a number or a `TrialResult`; trials rank by it, highest first (lowest
    with `minimize=True`). The draws depend only on `seed` and the space, so a search repeats
    exactly when the objective does. `done` resumes a search: the first trials, as an
    earlier search with the same seed ran them (ValueError if it drew other points); only the
    rest are evaluated, and `on_trial(trial)` is called after each of those.
    """
    space = _check_space(space)
    _check_count("trials", trials)
    run = _Trials(objective, log, done, on_trial)
    run.check_used(trials)
    rng = np.random.default_rng(seed)
    trials_run = [run(sample_params(space, rng), n, 0) for n in range(trials)]
    return SearchResult(trials_run, [space], minimize, "random")


def grid_search(
    grid: Mapping[str, Sequence],
    objective: Callable,
    *,
    minimize: bool = False,
    log: Callable | None = None,
    done: Sequence[Trial] = (),
    on_trial: Callable | None = None,
) -> SearchResult:
    """Every combination of the listed values (the last name varies fastest): the layout the
    notes compare random search against. Build a value list with a distribution's `grid(n)`
    to spread it evenly (in log space for LogUniform). `done` and `on_trial` resume a search
    as in `random_search`."""
    if not isinstance(grid, Mapping) or not grid:
        raise ValueError("a grid is a non-empty dict of name -> list of values")
    for name, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ValueError(f"grid entry {name!r} must be a non-empty list, got {values!r}")
    names = list(grid)
    points = [dict(zip(names, combo)) for combo in itertools.product(*grid.values())]
    run = _Trials(objective, log, done, on_trial)
    run.check_used(len(points))
    trials_run = [run(params, n, 0) for n, params in enumerate(points)]
    space = {name: Choice(tuple(values)) for name, values in grid.items()}
    return SearchResult(trials_run, [space], minimize, "grid")


def narrow_space(space: Mapping, best: Sequence[Trial], shrink: float = 0.5) -> dict:
    """The next stage's space: every parameter narrowed around the `best` trials (best first)."""
    if not best:
        raise ValueError("narrow_space needs at least one finished trial")
    return {
        name: dist.narrow([t.params[name] for t in best], shrink) for name, dist in space.items()
    }


def coarse_to_fine(
    space: Mapping,
    objective: Callable | Sequence[Callable],
    trials_per_stage: int | Sequence[int],
    *,
    stages: int = 2,
    shrink: float = 0.5,
    top: float = 0.2,
    seed: int = 0,
    minimize: bool = False,
    log: Callable | None = None,
    done: Sequence[Trial] = (),
    on_trial: Callable | None = None,
) -> SearchResult:
    """Random search in stages, each over ranges narrowed around the previous stage's best.

    After each stage, the best `top` fraction of its finished trials (at least one) decide
    the next stage's space: each numeric range becomes `shrink` times as wide (in log space
    for LogUniform), centred on those trials' median value and always containing the best
    one; a Choice keeps the options they used. `objective` may be one callable or one per
    stage, for the notes' "first stage: only a few epochs; second stage: longer running
    time"; `trials_per_stage` likewise one count or one per stage. Values from different
    objectives do not compare (longer trials score higher), so with one objective per stage
    read the last stage's ranking, ``result.ranked(stage=stages - 1)``, rather than `best`.
    `done` and `on_trial` resume a search as in `random_search` (the recorded trials also
    decide the narrowed spaces, so the remaining trials are those an unbroken search draws).
    """
    space = _check_space(space)
    _check_count("stages", stages)
    if not 0 < top <= 1:
        raise ValueError(f"top must be a fraction in (0, 1], got {top!r}")
    objectives = list(objective) if isinstance(objective, Sequence) else [objective] * stages
    many = isinstance(trials_per_stage, Sequence)
    counts = list(trials_per_stage) if many else [trials_per_stage] * stages
    if len(objectives) != stages or len(counts) != stages:
        raise ValueError(
            f"coarse_to_fine: {stages} stages need {stages} objectives and trial counts, "
            f"got {len(objectives)} and {len(counts)}"
        )
    for count in counts:
        _check_count("trials_per_stage", count)
    run = _Trials(objectives[0], log, done, on_trial)
    run.check_used(sum(counts))
    rng = np.random.default_rng(seed)
    result = SearchResult([], [], minimize, "coarse-to-fine", list(space))
    for stage in range(stages):
        if stage > 0:
            finished = [t for t in result.ranked(stage - 1) if t.result.ok]
            if not finished:
                if log is not None:
                    log(f"stage {stage - 1}: every trial failed; stopping the search")
                break
            keep = finished[: max(1, math.ceil(top * len(finished)))]
            space = narrow_space(space, keep, shrink)
        result.spaces.append(space)
        for _ in range(counts[stage]):
            number = len(result.trials)
            params = sample_params(space, rng)
            result.trials.append(run(params, number, stage, objectives[stage]))
    return result


# --- training trials ---------------------------------------------------------------------


def fit_objective(
    make_model: Callable,
    make_optimizer: Callable,
    train,
    val,
    *,
    epochs: int = 5,
    metric: str = "val_acc",
    seed: int = 0,
    **fit_options,
) -> Callable:
    """An objective that trains `make_model(params)` with `make_optimizer(model, params)` for
    `epochs` epochs of `fit` and returns the trial's `TrialResult` (`metric` at the end).

    Every trial starts from the same engine seed and shuffling (`seed`), so trials differ
    only in their hyperparameters. fit's explosion guard stays on (3x the first loss unless
    `explosion_factor` says otherwise): a diverging learning rate ends its trial after a few
    steps instead of burning the budget, and the trial is recorded as "exploded". Progress
    bars and epoch lines are off unless asked for, since a search runs many short fits.
    """
    fit_options.setdefault("progress", False)
    fit_options.setdefault("log", None)

    def objective(params: dict) -> TrialResult:
        manual_seed(seed)
        model = make_model(params)
        optimizer = make_optimizer(model, params)
        history = fit(model, train, optimizer, epochs=epochs, val=val, seed=seed, **fit_options)
        return TrialResult.from_history(history, metric)

    return objective


__all__ = [
    "Choice",
    "Distribution",
    "IntUniform",
    "LogUniform",
    "SearchResult",
    "Trial",
    "TrialResult",
    "Uniform",
    "coarse_to_fine",
    "fit_objective",
    "grid_search",
    "narrow_space",
    "random_search",
    "sample_params",
]
