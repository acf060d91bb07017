"""The snapshot-ensemble sample runs (short cycles here) and prints its comparison table.

The claim itself (ensemble >= single model on the same budget, at the sample's settings) is
tested in tests/engine/test_ensemble.py; this checks the sample's plumbing and its output.
"""

import runpy
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "snapshot_ensemble.py"


@pytest.fixture(scope="module")
def sample():
    return runpy.run_path(str(SAMPLE))


def test_sample_prints_the_comparison_table(sample, capsys):
    argv = ["--seeds", "2", "--cycles", "2", "--epochs-per-cycle", "3", "--independent"]
    results = sample["main"](argv)
    assert [r.seed for r in results] == [0, 1]
    for r in results:
        assert len(r.snapshots) == len(r.by_last) == 2
        assert r.ensemble == r.by_last[-1]
        assert r.gain == pytest.approx(r.ensemble - r.single)
        assert 0.5 < r.single <= 1.0 and 0.5 < r.independent <= 1.0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("snapshot ensemble vs single model on digits (MLP): 2 cycles x 3")
    assert lines[1].split() == [
        "seed",
        "single",
        "snap1",
        "snap2",
        "ensemble",
        "ens-single",
        "indep",
    ]
    assert lines[4].split()[0] == "mean"
    assert "ensemble of the last k snapshots (mean): k=1" in out
    assert "ensemble >= single in" in out and "standard error" in out


@pytest.mark.parametrize("bad", [["--seeds", "0"], ["--lr", "-1"], ["--baseline", "linear"]])
def test_sample_rejects_bad_options(sample, bad):
    with pytest.raises(SystemExit) as stop:
        sample["main"](bad)
    assert stop.value.code == 2
