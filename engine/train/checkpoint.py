"""Checkpoints that lose nothing: one `.npz` holding everything a run needs to go on exactly.

A checkpoint holds the model's state_dict (parameters and buffers such as batch norm's
running statistics), the optimizer's state (per-parameter moments and step counts, and the
parameter groups' hyperparameters), the schedule's state, the states of the random
generators (so that dropout masks and mini-batch orders continue as if never interrupted),
the epoch and step, and any JSON-like `extra` data such as the history so far. Training 10
epochs in one go, or 5 epochs, save, restart the process, load and 5 more, gives the same
weights bit for bit.

Why `.npz` and JSON, not pickle: loading a pickle runs code chosen by whoever wrote the
file, and a pickle breaks when a class is renamed. Here every array is a plain `.npy` member
of a zip archive, read with ``np.load(allow_pickle=False)``, and everything else is one JSON
document stored as a uint8 array under the reserved key ``__meta__``. JSON has no tuples, no
non-string keys and no numpy scalars, so values of those types are written as small tagged
objects (``{"__tg__": "tuple", "items": [...]}``) and come back with their types: Adam's
``betas`` is a tuple again, the optimizer's state is keyed by int positions again. Arrays
found anywhere inside (optimizer moments, a Mersenne Twister's key, arrays in `extra`) are
stored as members of their own, named by where they sit (``optimizer/state/3/exp_avg``), and
the document lists every member's shape and dtype, so a damaged file is recognised as such.

Why the save is atomic: a run killed while writing (out of time on a cluster, SIGKILL, a
power cut) must not take its last good checkpoint with it. The file is written to a
temporary name in the same folder, flushed and fsynced, then moved onto the target with
`os.replace` (atomic on POSIX and Windows), and the folder is fsynced so the rename itself
survives a crash. A reader therefore sees either the old file or the new one, never a mix.
A killed save leaves its temporary file behind (``.<name>.<pid>.<token>.tmp``); loading
never looks at it, and the next save of the same checkpoint deletes those whose process is
gone.

Why loading validates first: a checkpoint that does not fit (another architecture, another
optimizer, a truncated download) raises `CheckpointError` naming what is wrong, and it does
so before anything is assigned, so a failed load leaves the model, optimizer, schedule and
generators exactly as they were.

>>> import tempfile, pathlib
>>> from topograd.engine import nn, optim
>>> model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
>>> adam = optim.Adam(model.parameters(), lr=0.01)
>>> path = pathlib.Path(tempfile.mkdtemp()) / "run.npz"
>>> _ = save_checkpoint(path, model, adam, epoch=3, extra={"loss": [0.9, 0.5]})
>>> info = load_checkpoint(path, model, adam)
>>> info.epoch, info.extra
(3, {'loss': [0.9, 0.5]})
"""

from __future__ import annotations

import contextlib
import json
import operator
import os
import secrets
import zipfile
import zlib
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from topograd.engine.modes import STATE

FORMAT = "topograd-checkpoint"
VERSION = 1
META_KEY = "__meta__"
_TAG = "__tg__"
_MAPPINGS = {"dict": dict, "Counter": Counter, "OrderedDict": OrderedDict}
_ZIP_MAGIC = b"PK\x03\x04"
_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows would otherwise translate newlines


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: not ours, damaged, or not fitting the objects given."""


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint holds besides the arrays: where the run was, and the user's data.

    `optimizer` and `schedule` are the class names saved (None when none was), `rngs` the
    names of the generator states saved, `version` the file format's version.
    """

    path: Path
    epoch: int
    step: int
    extra: Any
    optimizer: str | None
    schedule: str | None
    rngs: tuple[str, ...]
    version: int


# --- saving ---------------------------------------------------------------------------------
def save_checkpoint(
    path,
    model,
    optimizer=None,
    schedule=None,
    *,
    rngs: Mapping[str, np.random.Generator] | None = None,
    epoch: int = 0,
    step: int = 0,
    extra: Any = None,
) -> Path:
    """Write model, optimizer, schedule, generator states, epoch, step and `extra` to `path`.

    `rngs` maps names to numpy Generators whose states are saved (default: the engine's
    shared generator as ``"engine"``, the one dropout and initializers use); add the
    generator that shuffles your mini-batches, and any a module holds of its own, so that a
    resumed run draws the same numbers. `extra` may hold JSON types plus tuples, dicts with
    non-string keys, numpy scalars and arrays. The path is used as given (no suffix added);
    the write is atomic (see the module docstring). Returns the path.
    """
    path = Path(path)
    rngs = {"engine": STATE.rng} if rngs is None else rngs
    encoder = _Encoder()
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "epoch": _count("epoch", epoch),
        "step": _count("step", step),
        "model": {
            "type": type(model).__name__,
            "state": encoder.encode(model.state_dict(), "model"),
        },
        "optimizer": None,
        "schedule": None,
        "rngs": {
            name: encoder.encode(_generator(name, generator).bit_generator.state, f"rngs/{name}")
            for name, generator in rngs.items()
        },
        "extra": encoder.encode(extra, "extra"),
    }
    if optimizer is not None:
        meta["optimizer"] = {
            "type": type(optimizer).__name__,
            "state": encoder.encode(optimizer.state_dict(), "optimizer"),
        }
    if schedule is not None:
        meta["schedule"] = {
            "type": type(schedule).__name__,
            "state": encoder.encode(schedule.state_dict(), "schedule"),
        }
    meta["arrays"] = {
        key: {"shape": list(array.shape), "dtype": array.dtype.str}
        for key, array in encoder.arrays.items()
    }
    document = json.dumps(meta, allow_nan=True).encode("utf-8")
    members = {META_KEY: np.frombuffer(document, dtype=np.uint8), **encoder.arrays}
    _remove_stale_temporaries(path)
    _write_atomically(path, members)
    return path


def _count(name: str, value) -> int:
    try:
        number = operator.index(value)
    except TypeError:
        number = None
    if number is None or isinstance(value, bool) or number < 0:
        raise ValueError(f"save_checkpoint: {name} must be an integer >= 0, got {value!r}")
    return number


def _generator(name: str, generator) -> np.random.Generator:
    if not isinstance(generator, np.random.Generator):
        raise TypeError(
            f"rngs[{name!r}] must be a numpy Generator (np.random.default_rng), "
            f"got {type(generator).__name__}"
        )
    return generator


class _Encoder:
    """Turns a nested Python value into JSON, moving its arrays out into `arrays`.

    Each array is stored under the path where it was found, so the archive's member names
    say what they are; every type that JSON would change is tagged so that it comes back.
    """

    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}

    def encode(self, value, key: str):
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, np.generic):  # before float: np.float64 is a float subclass
            return {_TAG: "scalar", "key": self._store(np.asarray(value), key)}
        if isinstance(value, int | float):
            return value
        if isinstance(value, np.ndarray):
            return {_TAG: "array", "key": self._store(value, key)}
        if isinstance(value, list):
            return [self.encode(item, f"{key}/{index}") for index, item in enumerate(value)]
        if isinstance(value, tuple):
            items = [self.encode(item, f"{key}/{index}") for index, item in enumerate(value)]
            return {_TAG: "tuple", "items": items}
        kind = next((name for name, cls in _MAPPINGS.items() if type(value) is cls), None)
        if kind == "dict" and _TAG not in value and all(isinstance(k, str) for k in value):
            return {k: self.encode(v, f"{key}/{k}") for k, v in value.items()}
        if kind is not None:
            items = [
                [self.encode(k, f"{key}/key{index}"), self.encode(v, f"{key}/{k}")]
                for index, (k, v) in enumerate(value.items())
            ]
            return {_TAG: kind, "items": items}
        raise TypeError(
            f"cannot store a {type(value).__name__} at {key!r} in a checkpoint: use None, bool, "
            "int, float, str, list, tuple, dict, numpy scalars or arrays"
        )

    def _store(self, array: np.ndarray, key: str) -> str:
        if array.dtype.hasobject:
            raise TypeError(
                f"cannot store the object array at {key!r} in a checkpoint: it would need pickle"
            )
        unique, number = key, 1
        while unique in self.arrays or unique == META_KEY:
            number += 1
            unique = f"{key}~{number}"
        self.arrays[unique] = array
        return unique


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def _write_atomically(path: Path, members: dict[str, np.ndarray]) -> None:
    """Write the archive beside `path`, make it durable, then rename it over `path`.

    The temporary file is created with mode 0o666 (less the umask), as `open` would, so the
    checkpoint gets the permissions of any other file the user writes.
    """
    temporary = path.with_name(f"{_temporary_prefix(path)}{os.getpid()}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            np.savez(handle, allow_pickle=False, **members)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable (POSIX; Windows cannot open a folder and needs no such step)."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove_stale_temporaries(path: Path) -> None:
    """Delete temporary files that earlier, killed saves of this checkpoint left behind.

    Only those whose writing process no longer exists: another process (or thread) may be
    saving the same checkpoint right now, and its file must not vanish under it.
    """
    prefix = _temporary_prefix(path)
    folder = path.parent
    if not folder.is_dir():
        return
    for candidate in folder.iterdir():
        name = candidate.name
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid = name[len(prefix) :].split(".")[0]
        if pid.isdigit() and not _process_exists(int(pid)):
            with contextlib.suppress(OSError):
                candidate.unlink()


def _process_exists(pid: int) -> bool:
    """Whether `pid` runs (POSIX). Elsewhere, answer True: signal 0 would kill on Windows."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


# --- loading --------------------------------------------------------------------------------
def load_checkpoint(
    path,
    model,
    optimizer=None,
    schedule=None,
    *,
    rngs: Mapping[str, np.random.Generator] | None = None,
) -> CheckpointInfo:
    """Restore `model` (and `optimizer`, `schedule`, generators) from `path`; return the rest.

    Build the objects as for a new run, then load: everything is checked first (names and
    shapes against the model, the optimizer's class, groups and state shapes, the schedule's
    class and fields, the generators' kinds), and nothing changes unless all of it fits;
    a misfit, a damaged file or a foreign file raises `CheckpointError` saying which.
    `rngs` maps names to the Generators to restore, each of which the checkpoint must hold;
    the default restores the engine's shared generator if the checkpoint saved one.
    Arrays are never unpickled.
    """
    path = Path(path)
    meta, arrays = _read(path)
    decoded = _decode_meta(path, meta, arrays)
    targets = _rng_targets(decoded["rngs"], rngs)
    problems = _model_problems(decoded["model"], model)
    if optimizer is not None:
        problems += _optimizer_problems(decoded["optimizer"], optimizer)
    if schedule is not None:
        problems += _schedule_problems(decoded["schedule"], schedule)
    problems += _rng_problems(decoded["rngs"], targets)
    if problems:
        raise CheckpointError(f"{path} does not fit: " + "; ".join(problems))

    model.load_state_dict(decoded["model"]["state"])
    if optimizer is not None:
        optimizer.load_state_dict(decoded["optimizer"]["state"])
    if schedule is not None:  # after the optimizer, as PyTorch's protocol asks
        schedule.load_state_dict(decoded["schedule"]["state"])
    for name, generator in targets.items():
        generator.bit_generator.state = decoded["rngs"][name]
    return _info(path, decoded)


def checkpoint_info(path) -> CheckpointInfo:
    """Read and verify a checkpoint without restoring anything (for "resume from epoch N?")."""
    path = Path(path)
    meta, arrays = _read(path)
    return _info(path, _decode_meta(path, meta, arrays))


def _info(path: Path, decoded: dict) -> CheckpointInfo:
    return CheckpointInfo(
        path=path,
        epoch=decoded["epoch"],
        step=decoded["step"],
        extra=decoded["extra"],
        optimizer=None if decoded["optimizer"] is None else decoded["optimizer"]["type"],
        schedule=None if decoded["schedule"] is None else decoded["schedule"]["type"],
        rngs=tuple(decoded["rngs"]),
        version=decoded["version"],
    )


def _read(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The JSON document and every array, after checking the file is an intact checkpoint."""
    with open(path, "rb") as handle:
        head = handle.read(len(_ZIP_MAGIC))
    if not head:
        raise CheckpointError(f"{path} is empty: truncated or corrupt")
    if not _ZIP_MAGIC.startswith(head):
        raise CheckpointError(f"{path} is not a topograd checkpoint (not a zip archive)")
    if len(head) < len(_ZIP_MAGIC):
        raise CheckpointError(f"{path} is truncated or corrupt ({len(head)} bytes)")
    try:
        # (an open file of our own: np.load leaves its own handle open when the zip is bad)
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as archive:
            if META_KEY not in archive.files:
                raise CheckpointError(
                    f"{path} is not a topograd checkpoint (an .npz without {META_KEY!r})"
                )
            meta = _parse_meta(path, _member(path, archive, META_KEY))
            arrays = {key: _member(path, archive, key) for key in archive.files if key != META_KEY}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        raise CheckpointError(
            f"{path} is truncated or corrupt ({type(error).__name__}: {error})"
        ) from error
    _check_index(path, meta, arrays)
    return meta, arrays


def _member(path: Path, archive, key: str) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise CheckpointError(
                f"{path} holds a pickled object array {key!r}; checkpoints are never unpickled"
            ) from error
        raise CheckpointError(f"{path} is truncated or corrupt ({key!r}: {error})") from error


def _parse_meta(path: Path, array: np.ndarray) -> dict:
    if array.dtype != np.uint8 or array.ndim != 1:
        raise CheckpointError(f"{path} is not a topograd checkpoint ({META_KEY!r} is not text)")
    try:
        meta = json.loads(array.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is truncated or corrupt (its index: {error})") from error
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a topograd checkpoint (no {FORMAT!r} index)")
    version = meta.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(
            f"{path} has format version {version!r}; this topograd reads up to {VERSION}"
        )
    return meta


def _check_index(path: Path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """Every array the index lists is there with its shape and dtype, and no other."""
    index = meta.get("arrays")
    if not isinstance(index, dict):
        raise CheckpointError(f"{path} is truncated or corrupt (its index lists no arrays)")
    problems = []
    missing = sorted(set(index) - set(arrays))
    unlisted = sorted(set(arrays) - set(index))
    if missing:
        problems.append(f"arrays missing: {', '.join(missing)}")
    if unlisted:
        problems.append(f"arrays not in its index: {', '.join(unlisted)}")
    for key in sorted(set(index) & set(arrays)):
        entry, array = index[key], arrays[key]
        if not isinstance(entry, dict):
            problems.append(f"{key!r}: malformed index entry")
        elif list(array.shape) != entry.get("shape") or array.dtype.str != entry.get("dtype"):
            problems.append(
                f"{key!r} is {array.dtype.str} {array.shape}, its index says "
                f"{entry.get('dtype')} {tuple(entry.get('shape') or ())}"
            )
    if problems:
        raise CheckpointError(f"{path} is truncated or corrupt: " + "; ".join(problems))


def _decode_meta(path: Path, meta: dict, arrays: dict[str, np.ndarray]) -> dict:
    """The document with tagged values and arrays put back; a malformed one is corrupt."""
    try:
        decoded = {
            "version": meta["version"],
            "epoch": meta["epoch"],
            "step": meta["step"],
            "model": {
                "type": meta["model"]["type"],
                "state": _decode(meta["model"]["state"], arrays),
            },
            "rngs": {name: _decode(state, arrays) for name, state in meta["rngs"].items()},
            "extra": _decode(meta["extra"], arrays),
        }
        for part in ("optimizer", "schedule"):
            saved = meta[part]
            decoded[part] = (
                None
                if saved is None
                else {"type": saved["type"], "state": _decode(saved["state"], arrays)}
            )
        model_state = decoded["model"]["state"]
        if not isinstance(model_state, dict) or not all(
            isinstance(v, np.ndarray) for v in model_state.values()
        ):
            raise TypeError("the model's state is not a dict of arrays")
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CheckpointError(
            f"{path} is truncated or corrupt (malformed index: {error!r})"
        ) from None
    return decoded


def _decode(value, arrays: dict[str, np.ndarray]):
    if isinstance(value, list):
        return [_decode(item, arrays) for item in value]
    if not isinstance(value, dict):
        return value
    kind = value.get(_TAG)
    if kind is None:
        return {k: _decode(v, arrays) for k, v in value.items()}
    if kind == "array":
        return arrays[value["key"]]
    if kind == "scalar":
        return arrays[value["key"]][()]
    if kind == "tuple":
        return tuple(_decode(item, arrays) for item in value["items"])
    if kind in _MAPPINGS:
        pairs = {_decode(k, arrays): _decode(v, arrays) for k, v in value["items"]}
        return _MAPPINGS[kind](pairs)  # from a dict: Counter(pairs) would count the pairs
    raise ValueError(f"unknown tag {kind!r}")


# --- checking the fit -----------------------------------------------------------------------
def _model_problems(saved: dict, model) -> list[str]:
    state = saved["state"]
    current = {name: np.shape(value) for name, value in model.state_dict().items()}
    problems = []
    missing = sorted(set(current) - set(state))
    unexpected = sorted(set(state) - set(current))
    if missing:
        problems.append(f"missing keys (in the model, not in the checkpoint): {', '.join(missing)}")
    if unexpected:
        problems.append(
            f"unexpected keys (in the checkpoint, not in the model): {', '.join(unexpected)}"
        )
    for name in sorted(set(state) & set(current)):
        if state[name].shape != current[name]:
            problems.append(
                f"{name}: checkpoint shape {state[name].shape} != model shape {current[name]}"
            )
    return problems


def _optimizer_problems(saved: dict | None, optimizer) -> list[str]:
    kind = type(optimizer).__name__
    if saved is None:
        return [f"the checkpoint holds no optimizer state to load into {kind}"]
    if saved["type"] != kind:
        return [f"the checkpoint holds {saved['type']} state, the optimizer is {kind}"]
    groups, state = saved["state"]["param_groups"], saved["state"]["state"]
    if len(groups) != len(optimizer.param_groups):
        return [
            f"optimizer: the checkpoint has {len(groups)} parameter groups, "
            f"{kind} has {len(optimizer.param_groups)}"
        ]
    problems = []
    for number, (old, new) in enumerate(zip(groups, optimizer.param_groups, strict=True)):
        if len(old["params"]) != len(new["params"]):
            problems.append(
                f"optimizer group {number}: the checkpoint has {len(old['params'])} parameters, "
                f"{kind} has {len(new['params'])}"
            )
    if problems:
        return problems
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for position, entry in state.items():
        if not 0 <= position < len(params):
            problems.append(f"optimizer state for parameter {position}, which {kind} lacks")
            continue
        for name, value in entry.items():
            shape = params[position].shape
            if isinstance(value, np.ndarray) and value.ndim and value.shape != shape:
                problems.append(
                    f"optimizer state {name!r} of parameter {position}: checkpoint shape "
                    f"{value.shape} != parameter shape {shape}"
                )
    return problems


def _schedule_problems(saved: dict | None, schedule) -> list[str]:
    kind = type(schedule).__name__
    if saved is None:
        return [f"the checkpoint holds no schedule state to load into {kind}"]
    if saved["type"] != kind:
        return [f"the checkpoint holds {saved['type']} state, the schedule is {kind}"]
    return _field_problems(saved["state"], schedule.state_dict(), f"schedule {kind}")


def _field_problems(saved, current, where: str) -> list[str]:
    """Schedules save their attributes; the same class with other fields is another version,
    and a warm-up saved with a schedule `after` it cannot restore one without."""
    if (saved is None) != (current is None):
        which = "has none" if saved is None else "has one"
        return [f"{where}: the checkpoint {which}, this one differs"]
    if not isinstance(saved, dict) or not isinstance(current, dict):
        return []
    if set(saved) != set(current):
        difference = sorted(set(saved) ^ set(current))
        return [f"{where}: fields differ ({', '.join(difference)})"]
    if "after" in current:
        return _field_problems(saved["after"], current["after"], f"{where}.after")
    return []


def _rng_targets(saved: dict, rngs) -> dict[str, np.random.Generator]:
    if rngs is None:
        return {"engine": STATE.rng} if "engine" in saved else {}
    return {name: _generator(name, generator) for name, generator in rngs.items()}


def _rng_problems(saved: dict, targets: dict[str, np.random.Generator]) -> list[str]:
    problems = []
    for name, generator in targets.items():
        if name not in saved:
            known = ", ".join(saved) or "none"
            problems.append(f"no random generator state named {name!r} (saved: {known})")
            continue
        bit_generator = type(generator.bit_generator)
        try:  # try the state on a scratch generator of the same kind, so a misfit changes nothing
            bit_generator().state = saved[name]
        except (TypeError, ValueError, KeyError) as error:
            problems.append(
                f"random generator {name!r}: the saved state does not fit a "
                f"{bit_generator.__name__} ({error})"
            )
    return problems


__all__ = [
    "CheckpointError",
    "CheckpointInfo",
    "checkpoint_info",
    "load_checkpoint",
    "save_checkpoint",
]
