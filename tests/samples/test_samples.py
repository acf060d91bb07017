"""Every sample runs; the bundled main job learns its task."""

import runpy
import subprocess
import sys
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def test_moons_sample_learns_and_writes_its_graph(tmp_path):
    sample = runpy.run_path(str(SAMPLES / "moons_mlp.py"))
    dot = tmp_path / "graph.dot"
    train_acc, test_acc, _ = sample["train"](epochs=15, seed=0, dot_path=dot, log=lambda *_: None)
    assert train_acc > 0.95
    assert test_acc > 0.95
    text = dot.read_text()
    assert text.startswith("digraph topograd") and "subgraph cluster_" in text


def test_demo_command_runs_and_rejects_bad_options():
    run = [sys.executable, "-m", "topograd", "demo", "--epochs", "2"]
    done = subprocess.run(run, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "test accuracy" in done.stdout
    bad = subprocess.run([*run[:-1], "0"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2
    assert "--epochs must be at least 1" in bad.stderr
