"""`topograd run FILE`: train what a model file describes, or show a graph file's gradients.

What happens depends on the file:

- a network with a train section: train it (engine.train.fit), print the final metrics,
  save the curves and a checkpoint; a list of optimizers trains once per optimizer from the
  same start and compares them; `ensemble` trains a snapshot or an independent ensemble and
  saves every member (members/member_<i>.ckpt and ensemble.json, which `eval` reads);
  an `lr_range_test` section runs the range test instead of training;
- graphs only: evaluate each graph and backpropagate from its outputs (`--full`: the whole
  values and gradients).

`--backend torch` trains on PyTorch (dsl.torch_backend: the same batches, guards, History,
metrics, plots and checkpoints), on `--device cpu` or `cuda`, and with `--nproc N` on N
processes (DistributedDataParallel); started by torchrun, each of its processes runs this
command and joins its process group (rank 0 alone prints and writes). PyTorch is imported
only then. A single run, a comparison of optimizers and an independent ensemble train on it;
a snapshot ensemble and the lr range test are the numpy engine's.

Exit 1 when training diverged (an explosion or a non-finite loss stopped it).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from topograd.dsl.build import build_graph
from topograd.dsl.commands.common import FAILED, OK, USAGE, fail, load_spec
from topograd.dsl.datasets import data_record
from topograd.dsl.run_folder import RunFolder, check_writable, resume_target
from topograd.dsl.training import (
    CommandError,
    build_or_report,
    cannot_write,
    diverged,
    final_metrics,
    fit_arguments,
    label,
    metrics_table,
    number,
    plot_losses,
    positive_int,
    rows_of,
    save_plots,
    save_trained,
    show_progress,
    table,
    with_settings,
    write_atomically,
    write_json,
)
from topograd.engine import Tensor
from topograd.engine.data.datasets import batches
from topograd.engine.graph import Graph
from topograd.engine.optim.lr_finder import lr_range_test
from topograd.engine.train.checkpoint import CheckpointError
from topograd.engine.train.checks import InitialLossWarning
from topograd.engine.train.ensemble import (
    EnsembleResult,
    accuracy,
    predict_proba,
    save_ensemble,
    snapshot_ensemble,
)
from topograd.engine.train.fit import best_path, fit
from topograd.engine.train.history import History


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="train a model file (or show a graph file's values and gradients)",
        description="Train the network a model file describes and report its metrics; for a "
        "file of graphs only, evaluate them and backpropagate from their outputs.",
    )
    parser.add_argument("file", help="the model file (.tg)")
    parser.add_argument("--epochs", type=positive_int, help="train this many epochs instead")
    parser.add_argument("--seed", type=int, help="the seed for weights and shuffling instead")
    parser.add_argument("--out", help="folder for curves and the checkpoint (runs/<file stem>)")
    parser.add_argument("--metrics", metavar="JSON", help="also write the final metrics here")
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (it is drawn only when stderr is a terminal)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from the train section's checkpoint"
    )
    parser.add_argument("--no-plots", action="store_true", help="do not save the curves")
    parser.add_argument(
        "--full",
        action="store_true",
        help="graph files: also print every value and gradient whole (numpy's printing)",
    )
    parser.add_argument(
        "--eager",
        action="store_true",
        help="build every training step's graph anew (by default a step is captured once and "
        "replayed: the same numbers, faster)",
    )
    parser.add_argument(
        "--backend",
        choices=("numpy", "torch"),
        default="numpy",
        help="train on the numpy engine (default) or on PyTorch (pip install 'topograd[torch]')",
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), help="with --backend torch: where to train (cpu)"
    )
    parser.add_argument(
        "--nproc",
        type=positive_int,
        help="with --backend torch: train on N processes of this machine "
        "(DistributedDataParallel); started by torchrun, its WORLD_SIZE",
    )


def run(args) -> int:
    if args.backend != "torch" and (args.device is not None or args.nproc is not None):
        return fail("--device and --nproc choose how PyTorch trains: add --backend torch")
    if args.backend == "torch" and args.eager:
        return fail("--eager is for the numpy engine: PyTorch builds every step's graph anyway")
    spec, source = load_spec(args.file)
    if spec is None:
        return USAGE
    role = contextlib.nullcontext()
    if args.backend == "torch":
        from topograd.dsl.torch_backend import TorchMissingError, require_torch

        try:
            require_torch()
            role = _torchrun_role(args)
        except (TorchMissingError, CommandError) as error:
            return fail(str(error))
    try:
        with warnings.catch_warnings(), role:
            warnings.simplefilter("ignore", InitialLossWarning)  # fit prints it itself
            return _dispatch(with_settings(spec, args.epochs, args.seed), source, args)
    except CommandError as error:
        return fail(str(error))


def _torchrun_role(args):
    """Started by torchrun, each process runs this command: --nproc is WORLD_SIZE (a
    different --nproc is refused), and every rank but 0 trains its share and keeps nothing
    (no output, its files in a scratch folder removed at the end; rank 0 sends it the state
    to resume from). A context to run the command in."""
    from topograd.dsl.torch_backend.distributed import torchrun_world

    try:
        launched = torchrun_world()
    except ValueError as error:
        raise CommandError(str(error)) from None
    if launched is None:
        return contextlib.nullcontext()
    rank, world = launched
    if args.nproc is not None and args.nproc != world:
        raise CommandError(
            f"--nproc {args.nproc}, but torchrun started {world} processes (WORLD_SIZE): "
            f"leave --nproc out or give {world}"
        )
    args.nproc = world
    if rank == 0:
        return contextlib.nullcontext()
    scratch = tempfile.TemporaryDirectory(prefix=f"topograd-rank{rank}-")
    args.out, args.resume, args.metrics = scratch.name, False, None
    args.no_plots = args.no_progress = True
    quiet = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 (closed by the stack)
    stack = contextlib.ExitStack()
    stack.enter_context(scratch)
    stack.enter_context(quiet)
    stack.enter_context(contextlib.redirect_stdout(quiet))
    return stack


def _dispatch(spec, source, args) -> int:
    if spec.network is not None and spec.train is not None:
        train = spec.train
        if args.resume and (len(train.optimizers) > 1 or train.ensemble is not None):
            raise CommandError(
                "--resume continues a single run; a comparison of optimizers or an ensemble "
                "starts again"
            )
        if args.backend == "torch" and (
            spec.range_test is not None
            or (train.ensemble is not None and train.ensemble.name == "snapshot")
        ):
            what = "an lr range test" if spec.range_test is not None else "a snapshot ensemble"
            raise CommandError(
                f"--backend torch trains single runs, optimizer comparisons and independent "
                f"ensembles; {what} runs on the numpy engine (leave out --backend torch)"
            )
        if spec.range_test is not None:
            job = _range_test
        elif train.ensemble is not None and train.ensemble.name == "snapshot":
            job = _snapshot
        elif train.ensemble is not None:
            job = _independent
        elif len(train.optimizers) > 1:
            job = _compare
        else:
            job = _single
        _prepare_outputs(spec, source, args)
        try:
            status = job(spec, source, args)
        except KeyboardInterrupt:
            return _interrupted(args, source)
        except CommandError:
            args.folder.finish("failed")
            raise
        ended = {OK: "finished", FAILED: "diverged"}.get(status, "failed")
        args.folder.finish(ended)
        return status
    if spec.graphs:
        return _graphs(spec, args)
    what = "a network but no train section" if spec.network else "no network and no graph"
    return fail(
        f"{source.name} has {what}: `run` trains a network with a train section "
        "(loss, optimizer) or evaluates graphs"
    )


def _prepare_outputs(spec, source, args) -> None:
    """Before any training: the run's folder (a new one, or the one `--resume` continues),
    made and recorded, and every other place the run will write checked writable, so that
    nothing trained is lost to an output that fails at the end."""
    args.state = None  # where fit keeps the training state at every epoch end
    folder = None
    if args.resume:
        folder, args.state = resume_target(source, spec.train.checkpoint, args.out)
        if folder is not None:
            check_writable(folder.path)
            folder.write_record(status="running", resumed=True)
    if folder is None:
        overrides = {
            "epochs": args.epochs,
            "seed": args.seed,
            "backend": args.backend if args.backend != "numpy" else None,
            "device": args.device,
            "nproc": args.nproc,
            "resume": args.resume,
        }
        folder = RunFolder.create(args.out, source, overrides)
    args.folder = folder
    if spec.train.checkpoint is not None:
        check_writable(Path(spec.train.checkpoint).parent)
        args.state = Path(spec.train.checkpoint)
    elif args.state is None:
        args.state = folder.last
    if args.metrics:
        check_writable(Path(args.metrics).parent)
    print(f"run folder: {folder.path}")


def _interrupted(args, source) -> int:
    """Ctrl-C: say what is kept and how to go on."""
    args.folder.finish("interrupted")
    state = args.state
    if state is not None and Path(state).is_file():
        again = f"topograd run {source.name} --resume"
        if args.out:
            again += f" --out {args.out}"
        print(
            f"topograd: interrupted; the training state of the last finished epoch is in "
            f"{state}; continue with: {again}",
            file=sys.stderr,
        )
    else:
        print(
            "topograd: interrupted before the first epoch ended; nothing to resume", file=sys.stderr
        )
    return 130


# --- one training run ----------------------------------------------------------------------------
def _fit(built, args, optimizer_index: int = 0, **options) -> tuple[History, float]:
    """engine.train.fit on the training split (on PyTorch with --backend torch, which leaves
    the final weights in built.model; `optimizer_index` says which of the file's optimizers
    built has, for the processes of --nproc); an engine refusal is a CommandError."""
    started = time.perf_counter()
    try:
        if args.backend == "torch":
            history = _torch_fit(built, args, optimizer_index, **options)
        else:
            options.setdefault("replay", not args.eager)
            history = fit(built.model, built.data.splits.train, built.optimizer, **options)
    except CheckpointError as error:
        raise CommandError(f"cannot resume: {error}") from None
    except (ValueError, TypeError) as error:
        raise CommandError(str(error)) from None
    except BrokenPipeError:
        raise  # `topograd run FILE | head`: the reader left (the command line stops quietly)
    except OSError as error:
        raise cannot_write(error.filename or args.state, error) from None
    return history, time.perf_counter() - started


def _torch_fit(built, args, optimizer_index: int, **options) -> History:
    from topograd.dsl.torch_backend import UnsupportedError
    from topograd.dsl.torch_backend.fit import torch_fit

    device, nproc = args.device or "cpu", args.nproc or 1
    try:
        return torch_fit(
            built, device=device, nproc=nproc, optimizer_index=optimizer_index, **options
        )
    except UnsupportedError as error:
        raise CommandError(f"{error}; train this file without --backend torch") from None


def _single(spec, source, args) -> int:
    built = build_or_report(spec, source)
    if built is None:
        return USAGE
    options = fit_arguments(
        built, show_progress(args.no_progress), resume=args.resume, checkpoint=args.state
    )
    history, seconds = _fit(built, args, **options)
    metrics = final_metrics(built, history, seconds)
    print()
    print(metrics_table(metrics))
    out = args.folder.path
    if not args.no_plots:
        paths = save_plots(history, out)
        print(f"curves: {', '.join(str(p) for p in paths)}")
    print(f"checkpoint: {_checkpoint(built, history, metrics, out)}")
    if args.metrics:
        write_json(args.metrics, metrics)
    return _outcome(history)


def _checkpoint(built, history: History, metrics: dict, out):
    """Where the weights the model ends with are: fit keeps them in the train section's
    checkpoint (in its `.best` twin after a stop put the best epoch back); without one, they
    are saved to <out>/model.ckpt now."""
    path = built.spec.train.checkpoint
    if path is None:
        return _save_model(built, history, metrics, out / "model.ckpt")
    return best_path(path) if history.stopped else path


def _save_model(built, history: History, metrics: dict, path):
    """The model for `topograd eval`, with the run's final metrics."""
    numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    return save_trained(built, history, path, {"metrics": numbers})


def _outcome(*histories: History) -> int:
    """FAILED (after saying why) when any run diverged, else OK."""
    failed = [h for h in histories if diverged(h)]
    for history in failed:
        print(f"topograd: training {history.stopped}: {history.stop_message}", file=sys.stderr)
    return FAILED if failed else OK


# --- comparing optimizers ---------------------------------------------------------------------
def _compare(spec, source, args) -> int:
    """One run per optimizer, each from the same initial weights and shuffling."""
    results, histories = [], {}
    for index, entry in enumerate(spec.train.optimizers):
        name = label(entry)
        print(f"== {name} ==")
        built = build_or_report(spec, source, optimizer_index=index)
        if built is None:
            return USAGE
        options = fit_arguments(built, show_progress(args.no_progress), checkpoint=None)
        history, seconds = _fit(built, args, index, **options)
        histories[name] = history
        results.append({"optimizer": name, **final_metrics(built, history, seconds)})
    print()
    rows = [
        [
            r["optimizer"],
            number(r["train_loss"]),
            number(r.get("val_accuracy")),
            number(r.get("test_accuracy")),
            f"{r['seconds']:.2f}",
            r["stopped"] or "",
        ]
        for r in results
    ]
    print(table(["optimizer", "train loss", "val acc", "test acc", "seconds", "stopped"], rows))
    if spec.train.checkpoint is not None:
        print("(no checkpoint is written when comparing optimizers)")
    if not args.no_plots:
        out = args.folder.path
        path = plot_losses(histories, out / "compare.png", "optimizers from the same start")
        print(f"curves: {path}")
    if args.metrics:
        write_json(args.metrics, {"optimizers": results})
    return _outcome(*histories.values())


# --- ensembles -----------------------------------------------------------------------------------
def _eval_split(built) -> tuple[str, object]:
    """Ensembles are scored on the test split, or on the validation split without one."""
    for name in ("test", "val"):
        part = rows_of(getattr(built.data.splits, name))
        if part is not None and part.regression:
            raise CommandError(
                "an ensemble averages the members' predicted class probabilities: it needs "
                "class labels, and this file's targets are real-valued (a regression)"
            )
        if part is not None:
            return name, part
    raise CommandError("an ensemble is scored on held-out data: give the data section test or val")


def _snapshot(spec, source, args) -> int:
    if args.epochs is not None:
        raise CommandError("--epochs: a snapshot ensemble's length is cycles x epochs_per_cycle")
    built = build_or_report(spec, source)
    if built is None:
        return USAGE
    split, part = _eval_split(built)
    options = fit_arguments(built, show_progress(args.no_progress), replay=not args.eager)
    for name in ("epochs", "schedule", "checkpoint"):  # snapshot_ensemble sets these itself
        options.pop(name)
    started = time.perf_counter()
    try:
        result = snapshot_ensemble(
            built.model,
            built.data.splits.train,
            built.optimizer,
            eval=part,
            **spec.train.ensemble.kwargs,
            **options,
        )
    except RuntimeError as error:  # the first cycle diverged: no snapshot at all
        print(f"topograd: {error}", file=sys.stderr)
        return FAILED
    except (ValueError, TypeError) as error:
        raise CommandError(str(error)) from None
    history = _joined(result.histories)
    metrics = final_metrics(built, history, time.perf_counter() - started)
    metrics.update(
        eval_split=split,
        single_accuracy=result.single_accuracy,
        ensemble_accuracy=result.ensemble_accuracy,
        snapshot_accuracies=result.snapshot_accuracies,
    )
    print()
    print(metrics_table(metrics))
    print()
    print(result.table())
    _print_gain(result.single_accuracy, result.ensemble_accuracy, split, "the final model")
    ends = np.cumsum([len(h.epochs) for h in result.histories])
    first_averaged = len(result.snapshots) - result.last
    members = [
        {
            "name": f"snapshot {index + 1}",
            "state": state,
            "averaged": index >= first_averaged,
            "epoch": int(ends[index]),
            f"{split}_accuracy": score,
        }
        for index, (state, score) in enumerate(zip(result.snapshots, result.snapshot_accuracies))
    ]
    ensemble = ("snapshot", members, split, result.ensemble_accuracy)
    return _finish_ensemble(built, history, metrics, args, _outcome(*result.histories), ensemble)


def _independent(spec, source, args) -> int:
    """K models from seeds seed..seed+K-1 (weights and shuffling), their probabilities
    averaged. Each member is built from the file on its own, so its loss (with l2) and its
    schedule belong to its own weights and optimizer."""
    first = spec.train.seed
    seeds = list(range(first, first + spec.train.ensemble.kwargs.get("members", 5)))
    members, started = [], time.perf_counter()
    for seed in seeds:
        print(f"== member seed {seed} ==")
        built = build_or_report(with_settings(spec, seed=seed), source)
        if built is None:
            return USAGE
        if not members:
            _eval_split(built)  # refused before any training, not after
        history, _ = _fit(
            built, args, **fit_arguments(built, show_progress(args.no_progress), checkpoint=None)
        )
        members.append((built, history))
    built, history = members[0]
    split, part = _eval_split(built)
    result = _ensemble_result(seeds, members, part)
    metrics = final_metrics(built, history, time.perf_counter() - started)
    metrics.update(
        eval_split=split,
        single_accuracy=result.single_accuracies[0],
        mean_single_accuracy=result.mean_single,
        ensemble_accuracy=result.ensemble_accuracy,
        member_accuracies=result.single_accuracies,
        excluded_seeds=result.excluded,
    )
    print()
    print(metrics_table(metrics))
    print()
    print(result.table())
    _print_gain(result.single_accuracies[0], result.ensemble_accuracy, split, f"seed {first}")
    if not args.no_plots:
        out = args.folder.path
        curves = {f"seed {s}": h for s, (_, h) in zip(seeds, members)}
        print(f"members: {plot_losses(curves, out / 'members.png', 'ensemble members')}")
    status = _outcome(*(h for _, h in members))
    saved = [
        {
            "name": f"seed {seed}",
            "state": model.model.state_dict(),
            "averaged": seed not in result.excluded,
            "epoch": trained.best_epoch if trained.stopped else len(trained.epochs),
            "seed": seed,
            f"{split}_accuracy": score,
        }
        for seed, (model, trained), score in zip(seeds, members, result.single_accuracies)
    ]
    ensemble = ("independent", saved, split, result.ensemble_accuracy)
    return _finish_ensemble(built, history, metrics, args, status, ensemble)


def _ensemble_result(seeds, members, part) -> EnsembleResult:
    """Score the members alone and averaged (members predicting non-finite values left out),
    in the engine's EnsembleResult so that its table prints them."""
    probas = [predict_proba(built.model, part.x) for built, _ in members]
    excluded = [s for s, p in zip(seeds, probas) if not np.all(np.isfinite(p))]
    kept = [p for s, p in zip(seeds, probas) if s not in excluded]
    if not kept:
        raise CommandError("every ensemble member predicts non-finite values")
    by_size = [accuracy(np.mean(kept[:count], axis=0), part.y) for count in range(1, len(kept) + 1)]
    return EnsembleResult(
        seeds=seeds,
        models=[built.model for built, _ in members],
        histories=[history for _, history in members],
        single_accuracies=[accuracy(p, part.y) for p in probas],
        ensemble_accuracy=by_size[-1],
        accuracy_by_size=by_size,
        excluded=excluded,
    )


def _print_gain(single: float, ensemble: float, split: str, which: str) -> None:
    gain = 100 * (ensemble - single)
    print(
        f"{split} accuracy: single model ({which}) {single:.4f}, ensemble {ensemble:.4f} "
        f"({gain:+.2f} points)"
    )


def _finish_ensemble(built, history, metrics, args, status: int, ensemble) -> int:
    """The single model's curves and checkpoint, every member's checkpoint with the listing
    that `topograd eval --checkpoint <run folder>` reads, and the metrics file. `ensemble` is
    (kind, members for engine.train.ensemble.save_ensemble, eval split, ensemble accuracy)."""
    out = args.folder.path
    if not args.no_plots:
        print(f"curves: {', '.join(str(p) for p in save_plots(history, out))}")
    path = built.spec.train.checkpoint
    saved = _save_model(built, history, metrics, out / "model.ckpt" if path is None else Path(path))
    print(f"checkpoint (the single model): {saved}")
    kind, members, split, score = ensemble
    extra = None
    if built.spec.data is not None:  # what `eval` checks the model file's data against
        extra = {"data": data_record(built.spec.data, built.data.preprocess)}
    info = {"kind": kind, "split": split, f"{split}_accuracy": score}
    try:
        listing = save_ensemble(out / ENSEMBLE, built.model, members, info=info, extra=extra)
    except OSError as error:
        raise cannot_write(error.filename or out / ENSEMBLE, error) from None
    averaged = sum(member["averaged"] for member in members)
    which = "all averaged" if averaged == len(members) else f"{averaged} averaged"
    print(f"ensemble: {listing} ({len(members)} members in {out / 'members'}, {which})")
    print(f"  topograd eval {args.file} --checkpoint {out}")
    metrics["ensemble"] = str(listing)
    if args.metrics:
        write_json(args.metrics, metrics)
    return status


ENSEMBLE = "ensemble.json"  # beside members/member_<i>.ckpt in the run folder


def _joined(histories: list[History]) -> History:
    """A snapshot ensemble's cycles as one History (epochs numbered on), for its curves."""
    joined = History(best_metric=histories[0].best_metric, shapes=dict(histories[0].shapes))
    joined.initial_loss = histories[0].initial_loss
    for history in histories:
        offset = len(joined.epochs)
        joined.step_loss += history.step_loss
        joined.lr += history.lr
        for store, part in (
            (joined.grad_norms, history.grad_norms),
            (joined.update_ratios, history.update_ratios),
        ):
            for name, values in part.items():
                store.setdefault(name, []).extend(values)
        joined.epochs += [offset + epoch for epoch in history.epochs]
        for name in ("batch_loss", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"):
            getattr(joined, name).extend(getattr(history, name))
        joined.best_epoch = offset + history.best_epoch
        joined.diagnosis = history.diagnosis
        if history.stopped and joined.stopped is None:
            joined.stopped, joined.stop_message = history.stopped, history.stop_message
    return joined


# --- the learning-rate range test ----------------------------------------------------------------
def _range_test(spec, source, args) -> int:
    """Smith's range test with the file's model, loss, optimizer and batches; no training."""
    built = build_or_report(spec, source)
    if built is None:
        return USAGE
    train = built.data.splits.train
    settings = spec.train
    generator = np.random.default_rng(settings.seed)
    drop_last = settings.fit_options.get("drop_last", False)

    def stream():
        while True:
            yield from batches(
                train.x, train.y, settings.batch_size, rng=generator, drop_last=drop_last
            )

    def loss(model, batch):
        return built.loss(model(Tensor(batch[0])), batch[1])

    try:
        result = lr_range_test(
            built.model, loss, stream(), built.optimizer, **spec.range_test.options
        )
    except (ValueError, TypeError) as error:
        raise CommandError(str(error)) from None
    lrs = result.lrs
    print(f"tested lr from {lrs[0]:.3g} to {lrs[-1]:.3g} in {len(lrs)} steps ({result.reason})")
    metrics = {
        "suggested_lr": result.suggestion,
        "start_lr": float(lrs[0]),
        "end_lr": float(lrs[-1]),
        "steps": len(lrs),
        "reason": result.reason,
        "stopped_early": result.stopped_early,
    }
    if result.suggestion is None:
        print("no suggestion: no loss was finite", file=sys.stderr)
    else:
        lowest = float(lrs[np.nanargmin(result.smoothed_losses)])
        metrics["lowest_loss_lr"] = lowest
        print(f"the smoothed loss was lowest at lr {lowest:.3g}")
        print(f"suggested lr: {result.suggestion:.3g} (a tenth of that)")
    if not args.no_plots:
        out = args.folder.path
        path = write_atomically(out / "lr_range_test.png", result.plot)
        print(f"plot: {path}")
    if args.metrics:
        write_json(args.metrics, metrics)
    return OK if result.suggestion is not None else FAILED


# --- graph files ---------------------------------------------------------------------------------
def _graphs(spec, args) -> int:
    """Each graph's lines with their values and gradients (one column per output)."""
    document = {}
    for graph in spec.graphs:
        values = build_graph(graph, seed=0 if args.seed is None else args.seed)
        grads, notes = {}, []
        for name, output in values.outputs.items():
            if not output.requires_grad:
                notes.append(f"{name} depends on no input or param: it has no gradients")
                continue
            traced = Graph(output)
            if output.size == 1:
                traced.backward()
            else:
                traced.backward(np.ones(output.shape))
                notes.append(f"{name} is not a scalar {output.shape}: gradients of sum({name})")
            grads[name] = traced.grads
        columns = ["grad"] if len(grads) == 1 else [f"grad {name}" for name in grads]
        rows, records = [], []
        for name, tensor in values.tensors.items():
            found = [g.get(tensor.id) for g in grads.values()]
            rows.append(
                [name, values.roles[name], str(tuple(tensor.shape)), _summary(tensor.data)]
                + [_summary(g) for g in found]
            )
            records.append(
                {
                    "name": name,
                    "role": values.roles[name],
                    "shape": list(tensor.shape),
                    "value": _stats(tensor.data),
                    "grads": {out: _stats(g) for out, g in zip(grads, found)},
                    **_values(tensor.data, dict(zip(grads, found))),
                }
            )
        print(f"graph {graph.name}")
        print(table(["name", "role", "shape", "value", *columns], rows, left=3))
        for note in notes:
            print(f"note: {note}")
        if args.full:
            _print_whole(values, grads)
        document[graph.name] = records
    if args.metrics:
        write_json(args.metrics, {"graphs": document})
    return OK


VALUES_LIMIT = 1000  # --metrics lists a tensor's values up to this size (numpy's threshold)


def _values(value, grads: dict) -> dict:
    """--metrics' whole values: `values` (nested lists) and `grad_values` (one per output with
    a gradient), for tensors of at most VALUES_LIMIT elements."""
    found = {}
    if np.size(value) <= VALUES_LIMIT:
        found["values"] = np.asarray(value, dtype=np.float64).tolist()
    whole = {
        out: np.asarray(g, dtype=np.float64).tolist()
        for out, g in grads.items()
        if g is not None and np.size(g) <= VALUES_LIMIT
    }
    if whole:
        found["grad_values"] = whole
    return found


def _print_whole(values, grads: dict) -> None:
    """`--full`: every tensor's value and gradients, whole, with numpy's printing."""
    for name, tensor in values.tensors.items():
        print(f"\n{name} ({values.roles[name]}, shape {tuple(tensor.shape)})")
        print(f"value =\n{_whole(tensor.data)}")
        for out, found in grads.items():
            grad = found.get(tensor.id)
            if grad is not None:
                label = "grad" if len(grads) == 1 else f"grad {out}"
                print(f"{label} =\n{_whole(grad)}")


def _whole(array) -> str:
    return np.array2string(np.asarray(array), threshold=sys.maxsize, separator=" ")


def _stats(array):
    """A scalar's value, or a tensor's mean, std, min and max; None for no gradient."""
    if array is None:
        return None
    array = np.asarray(array, dtype=np.float64)
    if array.size == 1:
        return float(array.reshape(()))
    return {
        "mean": float(array.mean()),
        "std": float(array.std()),
        "min": float(array.min()),
        "max": float(array.max()),
    }


def _summary(array) -> str:
    stats = _stats(array)
    if stats is None:
        return "-"
    if isinstance(stats, float):
        return f"{stats:.6g}"
    return " ".join(f"{key} {value:.4g}" for key, value in stats.items())
