"""The CNN digits sample trains (a short run here) and prints its table next to the MLP's.

It runs as its own process, as a user runs it: the sample pins BLAS to one thread before
numpy loads, which an in-process run could not do once numpy is imported.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

THRESHOLD = 0.93  # measured after 5 epochs, seed 0: see the sample's docstring
SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "digits_cnn.py"


def run_sample(*args):
    return subprocess.run(
        [sys.executable, str(SAMPLE), *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
        timeout=120,
    )


def table_rows(out: str) -> dict[str, list[str]]:
    """The table's rows by model name: params, epochs, test accuracy, seconds."""
    rows = {}
    for line in out.splitlines():
        match = re.match(r"^(\S.*?|  \+ .*?)\s+(\d+)\s+(\d+)\s+(\d\.\d{4})\s+(\S+)$", line)
        if match:
            rows[match.group(1).strip()] = list(match.groups()[1:])
    return rows


def test_short_run_trains_the_cnn_and_prints_both_accuracies():
    done = run_sample("--epochs", "5", "--mlp-epochs", "5")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "epoch   5/5" in out and "update/weight" in out
    assert "digits, 269 test images (one is 0.37 points), seed 0" in out
    header = next(line for line in out.splitlines() if line.startswith("model"))
    assert header.split() == ["model", "params", "epochs", "test", "acc", "seconds"]
    rows = table_rows(out)
    assert list(rows) == [
        "MLP 64-256-256-10",
        "CNN, no augmentation",
        "CNN, shifted batches",
        "+ test-time shifts (5 views)",
    ]
    mlp, plain, cnn, tta = rows.values()
    assert int(mlp[0]) == 64 * 256 + 256 * 256 + 256 * 10 + 2 * 256 + 10 + 4 * 256
    assert int(plain[0]) == int(cnn[0]) == int(tta[0]) < int(mlp[0]) // 10  # far smaller
    assert [row[1] for row in rows.values()] == ["5"] * 4
    # five epochs of either network learn the digits far past chance (10%)
    for row in rows.values():
        assert float(row[2]) >= THRESHOLD, out


def test_options_skip_the_comparisons_and_reject_bad_values():
    done = run_sample("--epochs", "1", "--no-mlp", "--no-plain", "--no-tta", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "epoch   1/1" not in done.stdout and "diagnosis" not in done.stdout
    assert list(table_rows(done.stdout)) == ["CNN, shifted batches"]
    bad = run_sample("--epochs", "0")
    assert bad.returncode == 2
    assert "argument --epochs: must be at least 1, got 0" in bad.stderr
