"""`topograd eval FILE --checkpoint C`: a trained model's loss and accuracy on one split.

The model is rebuilt from the file (same layers, same data split) and the checkpoint's
weights are loaded into it; a checkpoint made for another network, or a damaged file, is
refused with the reason and nothing is evaluated. A checkpoint written by `run` records its
data section (the dataset and a hash of its examples, the split, the preprocessing and its
fitted statistics): one trained on other data than the file describes is refused, naming
every difference, and the split is preprocessed with the checkpoint's own statistics. For
real-valued targets (a regression) the table shows R^2 instead of an accuracy.

`--checkpoint` may also name a run folder (its model.ckpt), or an ensemble that `run` saved:
the run folder holding its `ensemble.json`, or that file. Then every member is evaluated and
the ensemble too: the mean of the averaged members' predicted probabilities, as the run
scored it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from topograd.dsl.build import build_data
from topograd.dsl.commands.common import OK, USAGE, fail, load_spec
from topograd.dsl.datasets import data_record, record_differences
from topograd.dsl.training import (
    CommandError,
    build_or_report,
    number,
    r_squared,
    table,
    write_json,
)
from topograd.engine import functional as F
from topograd.engine.train.checkpoint import (
    CheckpointError,
    checkpoint_info,
    load_checkpoint,
)
from topograd.engine.train.checks import evaluate
from topograd.engine.train.ensemble import accuracy, load_ensemble, predict_proba

SPLITS = ("test", "val", "train")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint's weights on a data split",
        description="Rebuild the model from FILE, load the checkpoint's weights and print "
        "the loss and accuracy on one split of the file's data.",
    )
    parser.add_argument("file", help="the model file (.tg) the checkpoint was trained from")
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="a checkpoint written by `run`, or a run folder: its model.ckpt, or the ensemble "
        "its ensemble.json lists (each member and their average)",
    )
    parser.add_argument("--split", choices=SPLITS, default="test", help="which split (test)")
    parser.add_argument("--metrics", metavar="JSON", help="also write the numbers here")


def run(args) -> int:
    spec, source = load_spec(args.file)
    if spec is None:
        return USAGE
    if spec.network is None or spec.data is None:
        return fail(f"{source.name} has no network and data section to evaluate")
    built = build_or_report(spec, source)
    if built is None:
        return USAGE
    try:
        listing = _ensemble_listing(args)
    except CommandError as error:
        return fail(str(error))
    if listing is not None:
        return _evaluate_ensemble(built, source, args, listing)
    try:
        data = _checked_data(built, source, args.checkpoint)
        info = load_checkpoint(args.checkpoint, built.model, rngs={})
    except CommandError as error:
        return fail(str(error))
    except CheckpointError as error:
        return fail(f"cannot use the checkpoint: {error}")
    except OSError as error:
        return fail(f"cannot read {args.checkpoint}: {error.strerror}")
    part = getattr(data.splits, args.split)
    if not len(part):
        return fail(f"the {args.split} split of {source.name} is empty (its fraction is 0)")
    loss = built.loss or F.cross_entropy
    eval_batch = spec.train.fit_options.get("eval_batch_size", 1024) if spec.train else 1024
    try:
        value, accuracy = evaluate(built.model, part, loss, eval_batch)
        r2 = r_squared(built.model, part, eval_batch) if part.regression else None
    except (ValueError, TypeError) as error:
        return fail(f"cannot evaluate: {error}")
    names = f"; classes {', '.join(part.classes)}" if 0 < len(part.classes) <= 12 else ""
    print(
        f"checkpoint {args.checkpoint} (epoch {info.epoch}), {len(part)} {args.split} "
        f"examples{names}"
    )
    last = ["r2", number(r2)] if part.regression else ["accuracy", number(accuracy)]
    print(table(["split", "loss", last[0]], [[args.split, number(value), last[1]]]))
    if args.metrics:
        numbers = {
            "split": args.split,
            "examples": len(part),
            "checkpoint": str(args.checkpoint),
            "epoch": info.epoch,
            f"{args.split}_loss": value,
            f"{args.split}_accuracy": accuracy,
        }
        if part.regression:
            numbers[f"{args.split}_r2"] = r2
        try:
            write_json(args.metrics, numbers)
        except CommandError as error:
            return fail(str(error))
    return OK


def _checked_data(built, source, checkpoint):
    """The file's data, preprocessed with the checkpoint's fitted statistics, after checking
    that the checkpoint was trained on this data (a CommandError naming every difference);
    a checkpoint that records no data section gets the file's data as built, with a note."""
    spec = built.spec
    extra = checkpoint_info(checkpoint).extra
    saved = extra.get("data") if isinstance(extra, dict) else None
    if saved is None:
        print(
            f"topograd: note: {checkpoint} records no data section (written by an older "
            "topograd, or by fit itself): the data and preprocessing are not checked, and the "
            "preprocessing is fitted again",
            file=sys.stderr,
        )
        return built.data
    differences = record_differences(saved, data_record(spec.data, built.data.preprocess))
    if differences:
        lines = "".join(f"\n  {difference}" for difference in differences)
        raise CommandError(
            f"{checkpoint} was trained on other data than {source.name} describes:{lines}\n"
            "evaluate it with the model file it was trained from, or train again with this one"
        )
    if not spec.data.preprocess:
        return built.data
    try:
        return build_data(spec, statistics=saved.get("statistics", {}))
    except ValueError as error:
        raise CommandError(f"cannot use the checkpoint: {error}") from None


# --- ensembles -----------------------------------------------------------------------------------
ENSEMBLE = "ensemble.json"  # what `run` writes beside members/ (dsl/commands/run.py)


def _ensemble_listing(args):
    """The ensemble `--checkpoint` names (a listing, or a run folder holding one), or None
    for one checkpoint; a run folder without a listing names its model.ckpt (args changed)."""
    path = Path(args.checkpoint)
    if path.is_dir():
        if (path / ENSEMBLE).is_file():
            path = path / ENSEMBLE
        elif (path / "model.ckpt").is_file():
            args.checkpoint = str(path / "model.ckpt")
            return None
        else:
            raise CommandError(f"{path} is a folder without a model.ckpt or an {ENSEMBLE}")
    if path.suffix != ".json":
        return None
    try:
        return load_ensemble(path)
    except ValueError as error:
        raise CommandError(f"cannot use the ensemble: {error}") from None
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror}") from None


def _evaluate_ensemble(built, source, args, listing) -> int:
    """Each member's loss and accuracy on the split, and the ensemble's accuracy: the mean of
    the averaged members' predicted probabilities (engine.train.ensemble.ensemble_proba)."""
    spec = built.spec
    try:  # the members were trained on one data section: the first one's record checks it
        data = _checked_data(built, source, listing.members[0].checkpoint)
    except CommandError as error:
        return fail(str(error))
    except CheckpointError as error:
        return fail(f"cannot use the ensemble: {error}")
    part = getattr(data.splits, args.split)
    if not len(part):
        return fail(f"the {args.split} split of {source.name} is empty (its fraction is 0)")
    if part.regression:
        return fail("an ensemble averages predicted class probabilities; these targets are real")
    loss = built.loss or F.cross_entropy
    eval_batch = spec.train.fit_options.get("eval_batch_size", 1024) if spec.train else 1024
    rows, members, probas = [], [], []
    for member in listing.members:
        try:
            load_checkpoint(member.checkpoint, built.model, rngs={})
            value, score = evaluate(built.model, part, loss, eval_batch)
            proba = predict_proba(built.model, part.x, eval_batch)
        except CheckpointError as error:
            return fail(f"cannot use {member.checkpoint}: {error}")
        except (ValueError, TypeError) as error:
            return fail(f"cannot evaluate {member.name}: {error}")
        if member.averaged:
            probas.append(proba)
        rows.append([member.name, number(value), number(score), "yes" if member.averaged else "no"])
        members.append(
            {
                "name": member.name,
                "checkpoint": str(member.checkpoint),
                "averaged": member.averaged,
                f"{args.split}_loss": value,
                f"{args.split}_accuracy": score,
            }
        )
    ensemble = accuracy(np.mean(probas, axis=0), part.y)
    rows.append(["ensemble", "-", number(ensemble), f"mean of {len(probas)}"])
    kind = listing.info.get("kind", "an")
    print(
        f"{kind} ensemble {listing.path}: {len(listing.members)} members, {len(probas)} "
        f"averaged; {len(part)} {args.split} examples"
    )
    print(table(["model", "loss", "accuracy", "averaged"], rows))
    print("ensemble: the mean of the averaged members' predicted probabilities")
    if args.metrics:
        numbers = {
            "split": args.split,
            "examples": len(part),
            "ensemble": str(listing.path),
            f"{args.split}_accuracy": ensemble,
            "members": members,
        }
        try:
            write_json(args.metrics, numbers)
        except CommandError as error:
            return fail(str(error))
    return OK
