"""Started by torchrun, `topograd run FILE --backend torch` joins torchrun's process group
instead of spawning processes of its own. Truth: the run that `--nproc 2` spawns, which the
torchrun processes must end equal to (the same shards, the same global batch norm), also when
resumed half-way. Each torchrun start costs several seconds, so there are few such runs.

The batch of 25 rows splits 12/13 over two processes, so the uneven shard is always there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
from topograd.dsl import build, load, read_source
from topograd.dsl.cli import main
from topograd.dsl.torch_backend.distributed import torchrun_world

from topograd.train import load_checkpoint

MODEL = """data { dataset moons(n=200, noise=0.2)  val 0.2  test 0.2 }
network net { linear(16)  batchnorm  relu  linear }
train { loss cross_entropy  optimizer adam(lr=0.02)  epochs 3  batch 25  seed 0 }
"""
COMMON = ["--backend", "torch", "--no-progress", "--no-plots"]
TORCHRUN = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")
LAUNCHER = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK")


def torchrun(folder: Path, *arguments) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node 2 -m topograd ARGUMENTS` in `folder`."""
    environment = {k: v for k, v in os.environ.items() if k not in LAUNCHER}
    done = subprocess.run(
        [*TORCHRUN, "-m", "topograd", *arguments],
        cwd=folder,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done


def state(path: Path, checkpoint: Path) -> dict:
    """Every parameter and buffer a checkpoint holds, by name."""
    source = read_source(path)
    built = build(load(source), source)
    load_checkpoint(checkpoint, built.model, rngs={})
    found = {name: p.data.copy() for name, p in built.model.named_parameters()}
    found.update((name, np.asarray(b).copy()) for name, b in built.model.named_buffers())
    return found


def assert_same(ours: dict, theirs: dict) -> None:
    assert ours.keys() == theirs.keys()
    for name in ours:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.fixture(scope="module")
def spawned(tmp_path_factory):
    """The file, and the model that `--nproc 2` (two spawned processes) trains from it."""
    folder = tmp_path_factory.mktemp("spawned")
    path = folder / "moons.tg"
    path.write_text(MODEL)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        assert main(["run", str(path), *COMMON, "--nproc", "2", "--out", "spawned"]) == 0
    finally:
        os.chdir(cwd)
    return path, state(path, folder / "spawned" / "model.ckpt")


def test_torchrun_processes_train_as_the_spawned_ones(spawned, tmp_path):
    path, expected = spawned
    done = torchrun(tmp_path, "run", str(path), *COMMON, "--out", "A", "--metrics", "m.json")
    assert_same(state(path, tmp_path / "A" / "model.ckpt"), expected)
    # rank 0 alone prints and writes: one metrics table, one run folder, no runs/ of rank 1
    assert done.stdout.count("split    loss  accuracy") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["A", "m.json"]
    record = json.loads((tmp_path / "A" / "run.json").read_text())
    assert record["status"] == "finished" and record["overrides"]["nproc"] == 2


def test_torchrun_resumes_from_rank_0s_checkpoint(spawned, tmp_path):
    path, expected = spawned
    torchrun(tmp_path, "run", str(path), *COMMON, "--out", "C", "--epochs", "2")
    done = torchrun(tmp_path, "run", str(path), *COMMON, "--out", "C", "--resume")
    assert "resumed from C/last.ckpt at epoch 2" in done.stdout
    assert_same(state(path, tmp_path / "C" / "model.ckpt"), expected)


# --- reading torchrun's variables (no processes) --------------------------------------------------
def launched(monkeypatch, **variables):
    for name in LAUNCHER:
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


def test_the_variables_say_which_process_this_is(monkeypatch):
    launched(monkeypatch)
    assert torchrun_world() is None
    launched(monkeypatch, MASTER_ADDR="host")  # left by something else: not a launch
    assert torchrun_world() is None
    launched(monkeypatch, RANK="1", WORLD_SIZE="4", MASTER_ADDR="host", MASTER_PORT="29500")
    assert torchrun_world() == (1, 4)
    launched(monkeypatch, RANK="1", WORLD_SIZE="4")
    with pytest.raises(ValueError, match="MASTER_ADDR and MASTER_PORT not"):
        torchrun_world()
    launched(monkeypatch, RANK="4", WORLD_SIZE="4", MASTER_ADDR="host", MASTER_PORT="29500")
    with pytest.raises(ValueError, match="RANK 4 is not a rank of WORLD_SIZE 4"):
        torchrun_world()


def test_a_nproc_other_than_the_world_size_is_refused(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "moons.tg"
    path.write_text(MODEL)
    launched(monkeypatch, RANK="0", WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT="1")
    assert main(["run", str(path), *COMMON, "--nproc", "3"]) == 2
    err = capsys.readouterr().err
    assert "--nproc 3, but torchrun started 2 processes (WORLD_SIZE): leave --nproc out" in err
    assert not (tmp_path / "runs").exists()  # refused before anything was made
