"""`topograd search FILE`: the file's search section, one short training run per trial.

Each trial replaces the searched `let`s with sampled values and checks the file again (it
is parsed once), so a value that breaks the file (a width that no longer fits a shape) is a
failed trial with the checker's message, not a crash. Trials train with the file's settings
for the search's `epochs` (the train section's when not given), all from the same seed, and
are ranked by the search's metric; the best values are printed as `let` lines to paste back.

A search gets its own run folder (dsl.run_folder: `runs/<file stem>/N`, or `--out`) holding
the file as it was read, `run.json`, and, written after every trial, `search.json` (the
settings and every finished trial, exactly) and `search.csv`. At the end the folder also holds
`search.png`, `best.tg` (the file with the best trial's `let` values) and `best.ckpt` (that
trial's trained model, saved when it finished, so `topograd eval best.tg --checkpoint
best.ckpt` works). `--resume` continues the newest search of the file (or `--out`'s): the
recorded trials are not run again, and the same seed draws the same remaining trials.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from topograd.dsl import ast
from topograd.dsl.build import build, distribution
from topograd.dsl.check import check
from topograd.dsl.commands.common import FAILED, OK, USAGE, fail, source_of
from topograd.dsl.errors import DslError
from topograd.dsl.parser import parse
from topograd.dsl.run_folder import RUNS, RunFolder, file_hash, numbered_runs, read_record
from topograd.dsl.training import (
    CommandError,
    fit_arguments,
    positive_int,
    report,
    save_trained,
    write_atomically,
    write_json,
)
from topograd.engine.train.checkpoint import CheckpointError, checkpoint_info
from topograd.engine.train.fit import fit
from topograd.engine.train.search import (
    SearchResult,
    Trial,
    TrialResult,
    coarse_to_fine,
    random_search,
)
from tqdm import tqdm

INVALID = "invalid"
ERROR = "error"
RECORD = "search.json"
BEST_FILE, BEST_CHECKPOINT = "best.tg", "best.ckpt"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "search",
        help="run the file's hyperparameter search",
        description="Sample the search section's distributions, train once per trial, rank "
        "the trials and print the best values as `let` lines. The search's folder keeps "
        "search.json and search.csv (written after every trial, so --resume runs only the "
        "missing ones), best.tg (the file with the best values) and best.ckpt (that trial's "
        "model).",
    )
    parser.add_argument("file", help="the model file (.tg) with a search section")
    parser.add_argument(
        "--trials", type=positive_int, help="trials per stage instead of the file's"
    )
    parser.add_argument("--out", help="the search's folder (default: the next runs/<file stem>/N)")
    parser.add_argument("--seed", type=int, help="the seed that draws the trials instead")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the newest search of this file (or --out's): trials recorded in its "
        "search.json are not run again",
    )


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
    try:
        folder, recorded = _folder(source, args)
        settings = _settings(search, spec, args, recorded)
    except CommandError as error:
        return fail(str(error))
    try:
        done = [Trial.from_dict(trial) for trial in recorded.get("trials", [])]
    except ValueError as error:
        return fail(f"--resume: {folder.path / RECORD}: {error}")
    print(f"search folder: {folder.path}")
    if done:
        print(f"resuming: {len(done)} trials recorded in {folder.path / RECORD} are not run again")
    total = settings["trials"] * search.stages
    bar = tqdm(
        total=total,
        initial=min(len(done), total),
        desc="search",
        unit="trial",
        file=sys.stderr,
        disable=True if args.no_progress else None,  # None: off when stderr is no tty
        dynamic_ncols=True,
    )
    objective = _Objective(program, source, settings, folder.path, done)
    space = {name: distribution(entry) for name, entry in search.space.items()}
    recorder = _Recorder(folder.path, settings, list(space), done)

    def counted(params):
        try:
            return objective(params)
        finally:
            bar.update(1)

    options = {
        "seed": settings["seed"],
        "minimize": search.minimize,
        "log": bar.write,
        "done": done,
        "on_trial": recorder,
    }
    try:
        recorder.write()  # before the first trial: an interrupted search resumes from here
        if search.stages == 1:
            result = random_search(space, counted, settings["trials"], **options)
        else:
            result = coarse_to_fine(
                space,
                counted,
                settings["trials"],
                stages=search.stages,
                shrink=search.shrink,
                top=search.top,
                **options,
            )
    except KeyboardInterrupt:
        bar.close()
        return _interrupted(folder, source, args, len(recorder.trials), total)
    except ValueError as error:  # a setting only the search itself can judge (shrink 1)
        bar.close()
        folder.finish("failed")
        return fail(f"search: {error}")
    except CommandError as error:  # a trial's checkpoint could not be written
        bar.close()
        folder.finish("failed")
        return fail(str(error))
    bar.close()
    print()
    print(result.table())
    try:
        _write(result, folder.path, search.metric)
        if not any(trial.result.ok for trial in result.trials):
            folder.finish("failed")
            print("topograd: every trial failed", file=sys.stderr)
            return FAILED
        best = result.best
        print(f"\n# best: trial {best.number}, {search.metric} {best.value:.4f}")
        for name, value in best.params.items():
            print(f"let {name} = {_literal(value)}")
        _write_best(program, source, best, objective, folder.path, search.metric)
    except CommandError as error:
        folder.finish("failed")
        return fail(str(error))
    folder.finish("finished", best_trial=best.number)
    return OK


def _folder(source, args) -> tuple[RunFolder, dict]:
    """The search's folder and what it recorded: a new folder and {}, or with --resume the
    folder of the search to continue and its search.json."""
    if not args.resume:
        overrides = {"trials": args.trials, "seed": args.seed}
        return RunFolder.create(args.out, source, overrides), {}
    if args.out:
        path = Path(args.out)
        if not (path / RECORD).is_file():
            raise CommandError(
                f"--resume: {path / RECORD} does not exist (no search was saved there)"
            )
    else:
        path = _latest_search(source)
    try:
        recorded = json.loads((path / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CommandError(f"--resume: cannot read {path / RECORD}: {error}") from None
    if not isinstance(recorded, dict) or not isinstance(recorded.get("trials"), list):
        raise CommandError(f"--resume: {path / RECORD} is not a search record")
    if recorded.get("sha256") != file_hash(source.text):
        raise CommandError(
            f"--resume: {source.name} changed since the search in {path} started (it holds the "
            "file as it was, model.tg); its trials would not be this file's: start a new search "
            "without --resume"
        )
    folder = RunFolder(path, source)
    folder.write_record(status="running", resumed=True)
    return folder, recorded


def _latest_search(source) -> Path:
    """The newest numbered folder under runs/<file stem> holding a search of this very file."""
    wanted = str(Path(source.name).resolve())
    base = RUNS / Path(source.name).stem
    for path in reversed(numbered_runs(base)):
        if read_record(path).get("file") == wanted and (path / RECORD).is_file():
            return path
    raise CommandError(
        f"--resume: no earlier search of {source.name} under {base} left a {RECORD}; "
        "start it without --resume"
    )


def _settings(search, spec, args, recorded: dict) -> dict:
    """What decides the trials (the seed, the trials per stage) and how they train; a resumed
    search keeps its own, and a --seed or --trials that differs from them is refused."""
    settings = {
        "seed": search.seed if args.seed is None else args.seed,
        "trials": args.trials or search.trials,
        "stages": search.stages,
        "epochs": search.epochs or spec.train.epochs,
        "metric": search.metric,
        "minimize": search.minimize,
    }
    saved = recorded.get("settings")
    if saved is None:
        return settings
    for option, name in (("--seed", "seed"), ("--trials", "trials")):
        given = getattr(args, name)
        if given is not None and given != saved.get(name):
            raise CommandError(
                f"--resume: the search was recorded with {option} {saved.get(name)}, not {given}: "
                "the remaining trials are drawn as it drew them"
            )
    settings.update({name: saved[name] for name in ("seed", "trials") if name in saved})
    return settings


def _interrupted(folder, source, args, recorded: int, total: int) -> int:
    folder.finish("interrupted")
    again = f"topograd search {source.name} --resume"
    if args.out:
        again += f" --out {args.out}"
    print(
        f"topograd: interrupted after {recorded} of {total} trials, recorded in "
        f"{folder.path / RECORD}; continue with: {again}",
        file=sys.stderr,
    )
    return 130


class _Recorder:
    """Keeps search.json and search.csv up to date: called with every new trial."""

    def __init__(self, folder: Path, settings: dict, names: list[str], done: list[Trial]):
        self.folder, self.settings, self.names = folder, settings, names
        self.trials = list(done)

    def __call__(self, trial: Trial) -> None:
        self.trials.append(trial)
        self.write()

    def write(self) -> None:
        sha = read_record(self.folder).get("sha256")
        record = {
            "sha256": sha,
            "settings": self.settings,
            "trials": [trial.to_dict() for trial in self.trials],
        }
        write_json(self.folder / RECORD, record)
        table = SearchResult(self.trials, [], param_names=self.names)
        write_atomically(self.folder / "search.csv", table.write_csv)


class _Objective:
    """One trial: check the file with the trial's values, build it, train it briefly; the
    model of every trial that beats the best so far is saved as best.ckpt at once."""

    def __init__(self, program, source, settings: dict, folder: Path, done: list[Trial]):
        self.program, self.source, self.folder = program, source, folder
        self.epochs, self.metric = settings["epochs"], settings["metric"]
        self.minimize = settings["minimize"]
        self.number = len(done)  # the number of the next trial the search runs
        finished = [t.value for t in done if t.result.ok]
        self.best = (min if self.minimize else max)(finished) if finished else None

    def __call__(self, params: dict) -> TrialResult:
        number, self.number = self.number, self.number + 1
        outcome = self.train(params)
        if isinstance(outcome, TrialResult):
            return outcome
        built, history, result = outcome
        if result.ok and math.isfinite(result.value) and self._beats(result.value):
            self.best = result.value
            self.save(built, history, number, params, result.value)
        return result

    def _beats(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best if self.minimize else value > self.best

    def train(self, params: dict):
        """(built, history, result) of one trial, or the failed trial's TrialResult."""
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
        return built, history, TrialResult.from_history(history, self.metric)

    def save(self, built, history, number: int, params: dict, value: float) -> Path:
        """best.ckpt: the trial's model with its optimizer and schedule, the data it was
        trained on (what `eval` checks) and which trial it is."""
        extra = {"search": {"trial": number, "params": params, self.metric: value}}
        return save_trained(built, history, self.folder / BEST_CHECKPOINT, extra)


def _write_best(program, source, best: Trial, objective: _Objective, folder: Path, metric):
    """best.tg, and best.ckpt when it is not the best trial's already (a search resumed from
    a record whose checkpoint went missing): the best trial trained again, which repeats it."""
    header = (
        f"# the best trial of a search of {source.name}: trial {best.number}, {metric} "
        f"{best.value:.6g}; its `let` values below, the rest as the file was\n"
    )
    text = header + with_lets(program, source.text, best.params)
    best_file = folder / BEST_FILE
    write_atomically(best_file, lambda temporary: temporary.write_text(text, encoding="utf-8"))
    checkpoint = folder / BEST_CHECKPOINT
    if _saved_trial(checkpoint) != best.number:
        print(f"training trial {best.number} again for {checkpoint}")
        outcome = objective.train(best.params)
        if isinstance(outcome, TrialResult):
            raise CommandError(f"trial {best.number} failed when trained again: {outcome.reason}")
        built, history, _ = outcome
        objective.save(built, history, best.number, best.params, best.value)
    print(f"best model: {best_file} (the file with these values), {checkpoint} (its weights)")
    print(f"  topograd eval {best_file} --checkpoint {checkpoint}")


def _saved_trial(path: Path) -> int | None:
    """Which trial best.ckpt holds (None when there is none, or it cannot be read)."""
    try:
        extra = checkpoint_info(path).extra
    except (OSError, CheckpointError):
        return None
    search = extra.get("search") if isinstance(extra, dict) else None
    return search.get("trial") if isinstance(search, dict) else None


def with_lets(program, text: str, values: dict) -> str:
    """`text` with the value of each `let` named in `values` replaced by that value, written
    exactly (a float with all its digits); everything else, comments included, as it was."""
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def offset(line: int, column: int) -> int:
        return starts[line - 1] + column - 1

    spans = []
    for let in program.of_type(ast.Let):
        if let.name in values:
            where = let.value.pos
            spans.append(
                (
                    offset(where.line, where.column),
                    offset(where.end_line, where.end_column),
                    let.name,
                )
            )
    for begin, end, name in sorted(spans, reverse=True):
        text = text[:begin] + _literal(values[name], exact=True) + text[end:]
    return text


def _write(result, folder, metric: str) -> None:
    csv = write_atomically(folder / "search.csv", result.write_csv)
    print(f"\nresults: {csv}")
    if any(trial.result.ok for trial in result.trials):
        picture = write_atomically(
            folder / "search.png", lambda path: result.plot(path, value_label=metric)
        )
        print(f"plot: {picture}")


def _literal(value, exact: bool = False) -> str:
    """A value as the model language writes it (a float to 6 digits, or every digit)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if exact else f"{value:.6g}"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
