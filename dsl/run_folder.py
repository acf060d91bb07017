"""Every run its own folder, holding what it was made from (as Lightning's `version_N` and
Hydra's dated folders do): nothing a run writes lands on top of another run's files.

`topograd run digits.tg` writes into `runs/digits/1`, the next run into `runs/digits/2`,
each holding `model.tg` (the file exactly as it was read), `run.json` (the file's path and
hash, the command line, the overrides, the versions, when it started and how it ended), the
curves, `last.ckpt` (the whole training state at every epoch end, what `--resume` continues)
and `model.ckpt` (the final model). `--out DIR` names the folder instead.

The folder is made and a file written into it before training starts, so an output that
cannot be written is reported before any work is done.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from topograd.dsl.errors import Source
from topograd.dsl.training import CommandError, cannot_write, write_atomically, write_json

RUNS = Path("runs")
RECORD = "run.json"
LAST = "last.ckpt"


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version(), "numpy": np.__version__}
    for package in ("topograd", "torch"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def file_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def numbered_runs(base: Path) -> list[Path]:
    """The numbered run folders under `base`, oldest first."""
    if not base.is_dir():
        return []
    found = [p for p in base.iterdir() if p.is_dir() and re.fullmatch(r"\d+", p.name)]
    return sorted(found, key=lambda p: int(p.name))


def check_writable(folder: Path) -> None:
    """Make `folder` and write a file in it (removed again); a CommandError saying why not."""
    probe = folder / f".probe.{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise cannot_write(folder, error) from None


@dataclass
class RunFolder:
    path: Path
    source: Source

    @classmethod
    def create(cls, out, source: Source, overrides: dict) -> RunFolder:
        """`out`, or the next numbered folder under runs/<file stem>; made, checked writable
        and recorded (model.tg and run.json) before anything trains."""
        if out:
            path = Path(out)
        else:
            base = RUNS / Path(source.name).stem
            runs = numbered_runs(base)
            path = base / str(int(runs[-1].name) + 1 if runs else 1)
        check_writable(path)
        folder = cls(path, source)
        write_atomically(path / "model.tg", lambda t: t.write_text(source.text, encoding="utf-8"))
        folder.write_record(
            file=str(Path(source.name).resolve()),
            sha256=file_hash(source.text),
            command=["topograd", *sys.argv[1:]],
            overrides={k: v for k, v in overrides.items() if v not in (None, False)},
            versions=_versions(),
            started=_now(),
            status="running",
        )
        return folder

    @classmethod
    def latest(cls, source: Source) -> RunFolder | None:
        """The newest numbered run of this very file (by path) that left a training state."""
        wanted = str(Path(source.name).resolve())
        for path in reversed(numbered_runs(RUNS / Path(source.name).stem)):
            record = read_record(path)
            if record.get("file") == wanted and (path / LAST).is_file():
                return cls(path, source)
        return None

    @property
    def last(self) -> Path:
        return self.path / LAST

    def write_record(self, **fields) -> None:
        record = read_record(self.path)
        record.update(fields)
        write_json(self.path / RECORD, record)

    def finish(self, status: str, **fields) -> None:
        """Say how the run ended ("finished", "diverged", "interrupted", "failed")."""
        self.write_record(status=status, finished=_now(), **fields)


def read_record(folder: Path) -> dict:
    """A run folder's run.json, or {} when it has none (or an unreadable one)."""
    try:
        record = json.loads((Path(folder) / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def resume_target(source: Source, checkpoint: str | None, out) -> tuple[RunFolder | None, Path]:
    """Where `--resume` continues from: the train section's checkpoint (then a new folder
    for the outputs), else `--out`'s training state, else the newest run of this file."""
    if checkpoint is not None:
        return None, Path(checkpoint)
    if out:
        path = Path(out) / LAST
        if not path.is_file():
            raise CommandError(f"--resume: {path} does not exist (no run was saved there)")
        return RunFolder(Path(out), source), path
    folder = RunFolder.latest(source)
    if folder is None:
        raise CommandError(
            f"--resume: no earlier run of {source.name} under {RUNS / Path(source.name).stem} "
            f"left a training state ({LAST}); start it without --resume"
        )
    return folder, folder.last
