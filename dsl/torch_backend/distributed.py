"""`--nproc N`: one run trained by N processes with DistributedDataParallel: processes this
one starts on this machine, or those torchrun started (on one machine or several).

`distributed_fit` starts N processes (torch.multiprocessing.spawn) that meet over loopback
(MASTER_ADDR 127.0.0.1, a free port) in a process group: gloo on the CPU, NCCL with
`device="cuda"` (one GPU per process). Every process builds the model file's engine objects,
loads the caller's current state into them (weights, optimizer, schedule: passed as an
engine checkpoint), translates them to torch and wraps the module in
DistributedDataParallel. Each process then runs engine.train.fit's loop (dsl.torch_backend.fit)
over the same global batches as one process would draw (the same shuffling generator) and
takes its contiguous shard of each one: rows [n r / N, n (r + 1) / N) of a batch of n rows.

The gradient is that of the global batch's mean loss exactly, also when a batch does not
split evenly: rank r's loss (mean over its n_r rows, plus the L2 term) is scaled by
n_r N / n, so DDP's average over the N processes is sum_r (n_r / n) (mean_r + L2) = the
global mean + L2. The loss the History records is that global value (one all-reduce per step),
so every process sees the same losses and gradients and takes the same decisions (guards,
early stopping); each one measures the whole training and validation sets at the end of an
epoch. Only rank 0 prints, shows the progress bar and writes checkpoints; at the end it hands
the History and the final state back to the calling process, which puts them into the
caller's engine objects.

Batch norm statistics are the global batch's: on CUDA with torch.nn.SyncBatchNorm; on the CPU,
where SyncBatchNorm refuses to run (PyTorch 2.13 implements it for GPUs only),
with `GlobalBatchNorm` below, which all-reduces the sums that the mean and variance need (in
the forward pass and, through autograd, in the backward pass). Either way N processes compute
what one process computes on the whole batch, so they end with the same parameters up to
rounding. Dropout masks differ from one process's (each process draws its own).

Processes on the CPU share the machine's cores: each one uses cores / N torch threads.

A process's exception comes back to the calling process as JSON in error-RANK.json (its class
by name, message and traceback), never as a pickle: loading a file must not run code. The
calling process rebuilds it from a fixed table of classes (`_REBUILT`) and raises rank 0's
first.

Under torchrun (RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set: `torchrun_world`) nothing
is spawned: every process runs the whole command itself, builds the file's objects (the same
seed gives the same weights and batches), and `torchrun_fit` joins torchrun's process group
(env://, once per process) and trains its shard in this process with the same Group. Rank 0
reads a checkpoint to resume from and sends it to the others over the group (as bytes, never
a pickle), so only rank 0's machine needs its files.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import json
import os
import socket
import sys
import tempfile
import traceback
from pathlib import Path

from topograd.dsl.build import build
from topograd.dsl.errors import Source
from topograd.dsl.torch_backend import UnsupportedError, require_torch
from topograd.dsl.torch_backend.fit import TorchRun, torch_device
from topograd.dsl.training import replace_atomically
from topograd.engine.data.datasets import DataError
from topograd.engine.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from topograd.engine.train.fit import best_path, fit
from topograd.engine.train.history import History

torch = require_torch()
dist = torch.distributed


def distributed_fit(
    built,
    *,
    nproc: int,
    device: str = "cpu",
    dtype=None,
    optimizer_index: int = 0,
    **options,
) -> History:
    """engine.train.fit of `built` on `nproc` processes (see the module docstring); the final
    state is left in built.model, built.optimizer and built.schedule.

    `built.optimizer` must be the file's optimizer number `optimizer_index` (the processes
    build it again), and `options` fit's keyword arguments with the file's own loss and
    schedule; `callback` is not supported (it would run in another process).
    """
    _check(built, nproc, device, options)
    with tempfile.TemporaryDirectory(prefix="topograd-nproc-") as scratch:
        folder = Path(scratch)
        save_checkpoint(folder / "start.npz", built.model, built.optimizer, built.schedule, rngs={})
        options = {k: v for k, v in options.items() if k not in ("loss", "schedule")}
        job = _Job(built.spec, optimizer_index, options, device, dtype, _free_port(), folder)
        try:
            torch.multiprocessing.spawn(_process, args=(nproc, job), nprocs=nproc, join=True)
        except (
            torch.multiprocessing.ProcessRaisedException,
            torch.multiprocessing.ProcessExitedException,
        ):
            _raise_saved_error(folder, nproc)
            raise
        info = load_checkpoint(
            folder / "result.npz", built.model, built.optimizer, built.schedule, rngs={}
        )
    return History.from_dict(info.extra["history"])


# --- started by torchrun --------------------------------------------------------------------------
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def torchrun_world() -> tuple[int, int] | None:
    """(rank, world size) when torchrun (or a launcher that sets the same variables: RANK,
    WORLD_SIZE, MASTER_ADDR, MASTER_PORT) started this process, else None. ValueError when
    only some are set, or RANK and WORLD_SIZE are no ranks."""
    found = {name: os.environ.get(name) for name in TORCHRUN_VARIABLES}
    if all(value is None for value in found.values()):
        return None
    missing = [name for name, value in found.items() if value is None]
    if missing:
        if found["RANK"] is None and found["WORLD_SIZE"] is None:
            return None  # MASTER_ADDR alone says nothing about this process
        raise ValueError(
            f"RANK and WORLD_SIZE are set but {' and '.join(missing)} not: start the processes "
            "with torchrun, which sets all four"
        )
    try:
        rank, world = int(found["RANK"]), int(found["WORLD_SIZE"])
    except ValueError:
        raise ValueError(
            f"RANK {found['RANK']!r} and WORLD_SIZE {found['WORLD_SIZE']!r} must be whole numbers"
        ) from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK {rank} is not a rank of WORLD_SIZE {world}")
    return rank, world


def torchrun_fit(
    built, *, nproc: int | None = None, device: str = "cpu", dtype=None, **options
) -> History:
    """engine.train.fit of `built` by this process as one of torchrun's: join its process
    group (env://, once per process) and train this rank's shard of every batch, as the
    processes `distributed_fit` spawns do. `nproc`, when given, must be WORLD_SIZE. The
    final state is left in built.model, built.optimizer and built.schedule (the same in every
    process); only rank 0 prints, shows the progress bar and writes checkpoints, and a
    checkpoint that rank 0 resumes from is sent to the others."""
    launched = torchrun_world()
    if launched is None:
        raise ValueError("torchrun_fit: this process was not started by torchrun (no RANK)")
    rank, world = launched
    if nproc is not None and nproc != world:
        raise ValueError(
            f"nproc {nproc}, but torchrun started {world} processes (WORLD_SIZE): give "
            f"{world} or leave it out"
        )
    torch_device(device)
    if device == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.device_count() <= local:
            raise ValueError(
                f"LOCAL_RANK {local} on cuda needs a GPU per process of this machine; "
                f"{torch.cuda.device_count()} found"
            )
        torch.cuda.set_device(local)
        where = torch.device("cuda", local)
    else:
        where = torch.device("cpu")
    _join_torchrun("nccl" if device == "cuda" else "gloo", rank, world)
    options, runner = _rank_runner(built, rank, world, where, dtype, options)
    with tempfile.TemporaryDirectory(prefix="topograd-resume-") as scratch:
        options = _shared_resume(options, rank, Path(scratch), where)
        return fit(built.model, built.data.splits.train, built.optimizer, runner=runner, **options)


def _rank_runner(built, rank: int, world: int, device, dtype, options: dict):
    """fit's options for this process (only rank 0 shows progress and logs) and the runner
    that trains its share of each batch in the group."""
    options = dict(options)
    if rank != 0:
        options.update(progress=False, log=None)
    group = Group(rank, world)
    runner = functools.partial(
        TorchRun,
        spec=built.spec,
        device=device,
        dtype=dtype,
        group=group,
        wrap=group.synchronize_batch_norm,
        parallel=group.parallel,
    )
    return options, runner


def _join_torchrun(backend: str, rank: int, world: int) -> None:
    """Join torchrun's process group once per process (left when the process ends)."""
    if dist.is_initialized():
        return
    dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world)
    atexit.register(_leave)


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _shared_resume(options: dict, rank: int, scratch: Path, device) -> dict:
    """Every rank resumes as rank 0 does: rank 0 sends the checkpoint it resumes from (and
    its best-epoch twin) over the group, and the others resume from those copies. Without a
    checkpoint to resume from, every rank starts afresh."""
    checkpoint = options.get("checkpoint")
    resumes = rank == 0 and options.get("resume") and checkpoint and Path(checkpoint).exists()
    files = [Path(checkpoint), best_path(checkpoint)] if resumes else []
    sent = _broadcast_bytes(files[0].read_bytes() if resumes else None, rank, device)
    best = None
    if resumes and files[1].exists():
        best = files[1].read_bytes()
    best = _broadcast_bytes(best, rank, device)
    if rank == 0:
        return options
    if sent is None:
        return dict(options, resume=False)
    copy = scratch / "resume.ckpt"
    copy.write_bytes(sent)
    if best is not None:
        best_path(copy).write_bytes(best)
    return dict(options, resume=True, checkpoint=copy)


def _broadcast_bytes(data: bytes | None, rank: int, device) -> bytes | None:
    """Rank 0's `data` (or None) in every process, as a tensor of bytes (no pickle)."""
    length = torch.tensor([-1 if data is None else len(data)], dtype=torch.int64, device=device)
    dist.broadcast(length, src=0)
    size = int(length.item())
    if size <= 0:
        return None if size < 0 else b""
    if rank == 0:
        buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(device)
    else:
        buffer = torch.empty(size, dtype=torch.uint8, device=device)
    dist.broadcast(buffer, src=0)
    return buffer.cpu().numpy().tobytes()


# --- spawned processes ----------------------------------------------------------------------------
def _check(built, nproc: int, device: str, options: dict) -> None:
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc must be an integer >= 1, got {nproc!r}")
    torch_device(device)
    if device == "cuda" and torch.cuda.device_count() < nproc:
        raise ValueError(
            f"nproc {nproc} on cuda needs a GPU per process; {torch.cuda.device_count()} found"
        )
    if options.get("callback") is not None:
        raise ValueError("a callback runs in the calling process: it needs nproc 1")
    for name in ("loss", "schedule"):
        if name in options and options[name] is not getattr(built, name):
            raise ValueError(
                f"nproc > 1 trains with the file's own {name}: every process builds it again"
            )


def _free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclasses.dataclass(frozen=True)
class _Job:
    """What every process needs (picklable: the engine objects are rebuilt from the spec)."""

    spec: object
    optimizer_index: int
    options: dict
    device: str
    dtype: object
    port: int
    folder: Path


def _process(rank: int, world: int, job: _Job) -> None:
    """One process of the group: build, train its shard, and (rank 0) hand back the result."""
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(job.port)
    if sys.platform.startswith("linux"):  # gloo on loopback, whatever the host name resolves to
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    device = job.device
    if device == "cuda":
        torch.cuda.set_device(rank)
        device = f"cuda:{rank}"
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group("nccl" if job.device == "cuda" else "gloo", rank=rank, world_size=world)
    try:
        built = build(job.spec, Source("<model file>", ""), optimizer_index=job.optimizer_index)
        load_checkpoint(
            job.folder / "start.npz", built.model, built.optimizer, built.schedule, rngs={}
        )
        options, runner = _rank_runner(
            built,
            rank,
            world,
            torch.device(device),
            job.dtype,
            dict(job.options, loss=built.loss, schedule=built.schedule),
        )
        history = fit(
            built.model, built.data.splits.train, built.optimizer, runner=runner, **options
        )
        if rank == 0:
            save_checkpoint(
                job.folder / "result.npz",
                built.model,
                built.optimizer,
                built.schedule,
                rngs={},
                extra={"history": history.to_dict()},
            )
    except Exception as error:
        _save_error(job.folder / f"error-{rank}.json", error)
        raise
    finally:
        dist.destroy_process_group()


def _type_name(kind: type) -> str:
    """The name an error file gives a class: "ValueError" for a built-in one, else its module
    and qualified name (so that another package's CheckpointError is not taken for ours)."""
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


# The classes a saved exception is raised again as: those the run's callers tell apart
# (dsl/commands/run.py: a checkpoint that does not fit, a construct PyTorch lacks, a bad option,
# a file that cannot be written) and the engine's own. Looked up by name, never imported.
_REBUILT = {
    _type_name(kind): kind
    for kind in (
        CheckpointError,
        DataError,
        UnsupportedError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        RuntimeError,
        FileNotFoundError,
        PermissionError,
        OSError,
    )
}
# An error file's fields with their JSON types; an OSError's errno, strerror and filename
# (which callers read) come with it when the system gave them.
_FIELDS = {"type": (str,), "bases": (list,), "message": (str,), "traceback": (str,)}
_OS_FIELDS = {"errno": (int,), "strerror": (str,), "filename": (str, type(None))}


def _save_error(path: Path, error: Exception) -> None:
    """Keep a process's exception for the calling process to raise, so that an error of the
    run (a checkpoint that does not fit, a construct PyTorch lacks) reads the same as with one
    process. A file that cannot be written is let go: the exception still ends the process,
    and spawn's ProcessRaisedException brings its traceback to the caller."""
    text = json.dumps(_record(error))
    with contextlib.suppress(OSError):
        replace_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def _record(error: Exception) -> dict:
    """An error file's content: plain names and text, which the caller reads without running
    anything (see _rebuilt)."""
    record = {
        "type": _type_name(type(error)),
        "bases": [_type_name(kind) for kind in type(error).__mro__[1:] if kind is not object],
        "message": _message(error),
        "traceback": "".join(traceback.format_exception(error)),
    }
    if isinstance(error, OSError) and isinstance(error.errno, int):
        filename = error.filename if isinstance(error.filename, str) else None
        record.update(errno=error.errno, strerror=str(error.strerror), filename=filename)
    return record


def _message(error: Exception) -> str:
    """str(error), but a KeyError's key as it is: its str() is the key's repr, which the
    rebuilt KeyError would quote a second time."""
    if type(error) is KeyError and len(error.args) == 1:
        return str(error.args[0])
    return str(error)


def _raise_saved_error(folder: Path, nproc: int) -> None:
    """Raise the first saved exception, rank 0's first, if a process saved one (the others'
    are often only echoes of it: a peer that left the group)."""
    for rank in range(nproc):
        path = folder / f"error-{rank}.json"
        if path.exists():
            raise _loaded_error(path, rank)


def _loaded_error(path: Path, rank: int) -> Exception:
    """The exception process `rank` saved in `path`, with its traceback as a note (the
    process's own frames are the ones worth reading); a RuntimeError naming the file when it
    is not a whole error file."""
    try:
        record = _checked(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as error:  # JSONDecodeError, UnicodeDecodeError included
        raise RuntimeError(
            f"process {rank} failed, and its error file {path} cannot be read: {error}"
        ) from error
    error = _rebuilt(record)
    error.add_note(f"traceback of process {rank}:\n{record['traceback'].rstrip()}")
    return error


def _checked(record) -> dict:
    """`record` when it holds every field of an error file with its type (and an OSError's,
    when it has "errno"); a ValueError naming the first field that does not, otherwise."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    fields = {**_FIELDS, **_OS_FIELDS} if "errno" in record else _FIELDS
    for name, types in fields.items():
        value = record.get(name)
        if not isinstance(value, types):
            wanted = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise ValueError(f"field {name!r} should be {wanted}, got {value!r:.60}")
    if not all(isinstance(name, str) for name in record["bases"]):
        raise ValueError(f"field 'bases' should list class names, got {record['bases']!r:.60}")
    return record


def _rebuilt(record: dict) -> Exception:
    """The saved exception as the first class of _REBUILT among its own and its bases (the
    message then starts with its own name, unless it is that class), or a RuntimeError
    "Type: message" when none is. Names are only looked up in that fixed table: nothing the
    file names is imported or called."""
    name, message = record["type"], record["message"]
    kind = next((_REBUILT[n] for n in (name, *record["bases"]) if n in _REBUILT), None)
    if kind is None:
        return RuntimeError(f"{name}: {message}")
    if issubclass(kind, OSError) and "errno" in record:
        return kind(record["errno"], record["strerror"], record["filename"])
    error = kind.__new__(kind)  # not kind(message): UnsupportedError's __init__ words its own
    error.args = (message if _REBUILT.get(name) is kind else f"{name}: {message}",)
    return error


class Group:
    """This process's place in the group: its shard of every batch, the loss scaled so that
    DDP's average is the global batch's gradient, and the module's wrappers."""

    def __init__(self, rank: int, world: int):
        self.rank, self.world = rank, world

    def shard(self, rows: int) -> slice:
        """This rank's contiguous part of a batch of `rows` rows (sizes differ by one at most)."""
        return slice(rows * self.rank // self.world, rows * (self.rank + 1) // self.world)

    def forward(self, run: TorchRun, xb, yb):
        """The global batch's loss value, and (the scaled shard loss, the batch) for backward."""
        rows = len(xb)
        part = self.shard(rows)
        x, y = xb[part], yb[part]
        outputs = run.network(run.torch.tensor(x))
        if len(x):
            loss = run.torch_loss(outputs, y)
            scaled = loss * (len(x) * self.world / rows)
            share = loss.detach() * (len(x) / rows)
        else:  # fewer rows than processes: no loss here, but DDP needs every gradient (zero)
            scaled = outputs.sum() * 0.0
            share = torch.zeros((), dtype=outputs.dtype, device=outputs.device)
        share = share.reshape(1).clone()
        dist.all_reduce(share)
        return share.item(), (scaled, xb, yb)

    def synchronize_batch_norm(self, module):
        """Batch norm layers with the global batch's statistics (see the module docstring)."""
        if next(module.parameters()).device.type == "cuda":
            return torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
        return GlobalBatchNorm.convert(module)

    def parallel(self, module):
        device_ids = None
        parameter = next(module.parameters(), None)
        if parameter is not None and parameter.device.type == "cuda":
            device_ids = [parameter.device.index]
        # buffers need no broadcast: the global statistics are the same in every process
        return torch.nn.parallel.DistributedDataParallel(
            module, device_ids=device_ids, forward_sync_buffers=False
        )


class _AllReduceSum(torch.autograd.Function):
    """The sum over processes, differentiable: the gradient is the sum of the gradients."""

    @staticmethod
    def forward(ctx, tensor):
        total = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad):
        total = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total)
        return total


class GlobalBatchNorm(torch.nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are those of the global batch (every process's
    shard): the channel sums and the row count, then the squared deviations, are summed over
    the processes. In eval mode (or outside a process group) it is plain batch norm.
    PyTorch's SyncBatchNorm does the same on GPUs only."""

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    @classmethod
    def convert(cls, module):
        """`module` with every BatchNorm1d/2d replaced by a GlobalBatchNorm that shares its
        parameters and buffers (so names and order stay)."""
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            converted = cls(
                module.num_features,
                module.eps,
                module.momentum,
                module.affine,
                module.track_running_stats,
                device=module.running_mean.device if module.running_mean is not None else None,
                dtype=module.weight.dtype if module.affine else None,
            )
            if module.affine:
                converted.weight, converted.bias = module.weight, module.bias
            converted.running_mean = module.running_mean
            converted.running_var = module.running_var
            converted.num_batches_tracked = module.num_batches_tracked
            converted.training = module.training
            return converted
        for name, child in module.named_children():
            module.add_module(name, cls.convert(child))
        return module

    def forward(self, x):
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        self._check_input_dim(x)
        axes = [0, *range(2, x.dim())]
        shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
        rows = x.new_full((1,), x.numel() // x.shape[1])
        sums = _AllReduceSum.apply(torch.cat([x.sum(axes), rows]))
        count = sums[-1].detach()
        mean = sums[:-1] / count
        centered = x - mean.view(shape)
        var = _AllReduceSum.apply((centered * centered).sum(axes)) / count
        y = centered / torch.sqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            self._update_running(mean.detach(), var.detach(), count)
        return y

    @torch.no_grad()
    def _update_running(self, mean, var, count) -> None:
        self.num_batches_tracked.add_(1)
        factor = self.momentum
        if factor is None:  # a cumulative average
            factor = 1.0 / float(self.num_batches_tracked)
        unbiased = var * (count / (count - 1)) if count > 1 else var
        self.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
