"""`topograd eval FILE --checkpoint C`: a trained model's loss and accuracy on one split.

The model is rebuilt from the file (same layers, same data split and preprocessing) and the
checkpoint's weights are loaded into it; a checkpoint made for another network, or a damaged
file, is refused with the reason and nothing is evaluated.
"""

from __future__ import annotations

from topograd.dsl.commands.common import OK, USAGE, fail, load_spec
from topograd.dsl.training import CommandError, build_or_report, number, table, write_json
from topograd.engine import functional as F
from topograd.engine.train.checkpoint import CheckpointError, load_checkpoint
from topograd.engine.train.checks import evaluate

SPLITS = ("test", "val", "train")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint's weights on a data split",
        description="Rebuild the model from FILE, load the checkpoint's weights and print "
        "the loss and accuracy on one split of the file's data.",
    )
    parser.add_argument("file", help="the model file (.tg) the checkpoint was trained from")
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by `run`")
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
    part = getattr(built.data.splits, args.split)
    if not len(part):
        return fail(f"the {args.split} split of {source.name} is empty (its fraction is 0)")
    try:
        info = load_checkpoint(args.checkpoint, built.model, rngs={})
    except CheckpointError as error:
        return fail(f"cannot use the checkpoint: {error}")
    except OSError as error:
        return fail(f"cannot read {args.checkpoint}: {error.strerror}")
    loss = built.loss or F.cross_entropy
    eval_batch = spec.train.fit_options.get("eval_batch_size", 1024) if spec.train else 1024
    try:
        value, accuracy = evaluate(built.model, part, loss, eval_batch)
    except (ValueError, TypeError) as error:
        return fail(f"cannot evaluate: {error}")
    print(f"checkpoint {args.checkpoint} (epoch {info.epoch}), {len(part)} {args.split} examples")
    print(table(["split", "loss", "accuracy"], [[args.split, number(value), number(accuracy)]]))
    if args.metrics:
        try:
            write_json(
                args.metrics,
                {
                    "split": args.split,
                    "examples": len(part),
                    "checkpoint": str(args.checkpoint),
                    "epoch": info.epoch,
                    f"{args.split}_loss": value,
                    f"{args.split}_accuracy": accuracy,
                },
            )
        except CommandError as error:
            return fail(str(error))
    return OK
