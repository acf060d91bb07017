"""`topograd search FILE`: the file's search section, one short training run per trial.

Each trial replaces the searched `let`s with sampled values and checks the file again (it
is parsed once), so a value that breaks the file (a width that no longer fits a shape) is a
failed trial with the checker's message, not a crash. Trials train with the file's settings
for the search's `epochs` (the train section's when not given), all from the same seed, and
are ranked by the search's metric; the best values are printed as `let` lines to paste back.
"""

from __future__ import annotations

import math
import sys

from topograd.dsl.build import build, distribution
from topograd.dsl.check import check
from topograd.dsl.commands.common import FAILED, OK, USAGE, fail, source_of
from topograd.dsl.errors import DslError
from topograd.dsl.parser import parse
from topograd.dsl.training import (
    CommandError,
    fit_arguments,
    output_folder,
    positive_int,
    report,
    write_atomically,
)
from topograd.engine.train.fit import fit
from topograd.engine.train.search import TrialResult, coarse_to_fine, random_search
from tqdm import tqdm

INVALID = "invalid"
ERROR = "error"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "search",
        help="run the file's hyperparameter search",
        description="Sample the search section's distributions, train once per trial, rank "
        "the trials and print the best values as `let` lines.",
    )
    parser.add_argument("file", help="the model file (.tg) with a search section")
    parser.add_argument(
        "--trials", type=positive_int, help="trials per stage instead of the file's"
    )
    parser.add_argument("--out", help="folder for search.csv and search.png (runs/<file stem>)")
    parser.add_argument("--seed", type=int, help="the seed that draws the trials instead")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    source = source_of(args.file)
    if source is None:
        return USAGE
    try:  # parsed once: every trial checks the same program with its own values
        program = parse(source.text, source.name)
        spec = check(program, source)
    except DslError as error:
        report(error)
        return USAGE
    if spec.search is None:
        return fail(f"{source.name} has no search section")
    search = spec.search
    trials = args.trials or search.trials
    seed = search.seed if args.seed is None else args.seed
    space = {name: distribution(entry) for name, entry in search.space.items()}
    bar = tqdm(
        total=trials * search.stages,
        desc="search",
        unit="trial",
        file=sys.stderr,
        disable=True if args.no_progress else None,  # None: off when stderr is no tty
        dynamic_ncols=True,
    )
    objective = _Objective(program, source, search.epochs or spec.train.epochs, search.metric)

    def counted(params):
        try:
            return objective(params)
        finally:
            bar.update(1)

    options = {"seed": seed, "minimize": search.minimize, "log": bar.write}
    try:
        if search.stages == 1:
            result = random_search(space, counted, trials, **options)
        else:
            result = coarse_to_fine(
                space,
                counted,
                trials,
                stages=search.stages,
                shrink=search.shrink,
                top=search.top,
                **options,
            )
    except ValueError as error:  # a setting only the search itself can judge (shrink 1)
        return fail(f"search: {error}")
    finally:
        bar.close()
    print()
    print(result.table())
    try:
        _write(result, output_folder(args.out, args.file), search.metric)
    except CommandError as error:
        return fail(str(error))
    if not any(trial.result.ok for trial in result.trials):
        print("topograd: every trial failed", file=sys.stderr)
        return FAILED
    best = result.best
    print(f"\n# best: trial {best.number}, {search.metric} {best.value:.4f}")
    for name, value in best.params.items():
        print(f"let {name} = {_literal(value)}")
    return OK


class _Objective:
    """One trial: check the file with the trial's values, build it, train it briefly."""

    def __init__(self, program, source, epochs: int, metric: str):
        self.program, self.source, self.epochs, self.metric = program, source, epochs, metric

    def __call__(self, params: dict) -> TrialResult:
        try:
            built = build(check(self.program, self.source, overrides=params), self.source)
        except DslError as error:
            problem = error.problems[0]
            where = f"line {problem.pos.line}: " if problem.pos.line else ""
            return TrialResult(math.nan, status=INVALID, reason=where + problem.message)
        options = fit_arguments(built, False, epochs=self.epochs, checkpoint=None, log=None)
        try:
            history = fit(built.model, built.data.splits.train, built.optimizer, **options)
        except (ValueError, TypeError) as error:
            return TrialResult(math.nan, status=ERROR, reason=str(error))
        return TrialResult.from_history(history, self.metric)


def _write(result, folder, metric: str) -> None:
    csv = write_atomically(folder / "search.csv", result.write_csv)
    print(f"\nresults: {csv}")
    if any(trial.result.ok for trial in result.trials):
        picture = write_atomically(
            folder / "search.png", lambda path: result.plot(path, value_label=metric)
        )
        print(f"plot: {picture}")


def _literal(value) -> str:
    """A value as the model language writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)
