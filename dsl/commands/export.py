"""`topograd export FILE -o model.py`: the model file as a standalone PyTorch script.

The script (it imports only numpy and torch) trains the file's network as `topograd run` does;
the data and the initial weights go beside it in an .npz of the same stem (model.npz), which it
loads. The file must describe one training run: a network with data and a train section.
Graph files are refused (a graph is a formula with values, not a training loop; `topograd run`
shows its values and gradients), and so is any construct PyTorch has no counterpart for, each
named with its line; nothing is written then (exit 2).
"""

from __future__ import annotations

from pathlib import Path

from topograd.dsl.commands.common import OK, USAGE, fail, load_spec
from topograd.dsl.training import CommandError, build_or_report, positive_int, with_settings


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write a standalone PyTorch script of a model file's network and training",
        description="Write a readable PyTorch script (numpy and torch only) that trains the "
        "file's network as `topograd run` does: same initial weights, data, batches, loss, "
        "optimizer and schedule. The data and initial weights go beside it in an .npz.",
    )
    parser.add_argument("file", help="the model file (.tg)")
    parser.add_argument(
        "-o",
        "--output",
        metavar="SCRIPT",
        help="the script to write (default: <file stem>.py in the current folder); its data "
        "go beside it as <script stem>.npz",
    )
    parser.add_argument("--epochs", type=positive_int, help="the script's default epochs instead")
    parser.add_argument("--seed", type=int, help="the seed for weights and shuffling instead")


def run(args) -> int:
    from topograd.dsl.torch_backend import UnsupportedError
    from topograd.dsl.torch_backend.export import export, write_export

    script = Path(args.output) if args.output else Path(Path(args.file).stem + ".py")
    data = script.with_suffix(".npz")
    if script.suffix == ".npz":
        return fail(f"{script}: the script's data go to <script stem>.npz; name the script .py")
    spec, source = load_spec(args.file)
    if spec is None:
        return USAGE
    if spec.network is None:
        return fail(
            f"cannot export {source.name}: it has graphs and no network; export writes a "
            "network's training as a PyTorch script (`topograd run` shows a graph's values "
            "and gradients)"
        )
    if spec.data is None or spec.train is None:
        return fail(
            f"cannot export {source.name}: export writes a training run, which needs a data "
            "and a train section"
        )
    built = build_or_report(with_settings(spec, args.epochs, args.seed), source)
    if built is None:
        return USAGE
    try:
        exported = export(built, data.name, Path(source.name).name)
    except (UnsupportedError, CommandError) as error:
        return fail(f"cannot export {source.name}: {error}")
    try:
        script, data = write_export(exported, script, data)
    except CommandError as error:
        return fail(str(error))
    print(f"wrote {script} and {data}")
    print(f"train it with: python {script}")
    return OK
