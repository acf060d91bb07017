"""The digits samples back their claims: >= 97% test accuracy within 30 epochs, and the
initialization/batch-norm ordering.

Each runs as its own process, as a user runs it: the samples pin BLAS to one thread before
numpy loads (on a busy 2-core machine a spinning second BLAS thread made the 30-epoch run ten
times slower), which an in-process run could not do once numpy is imported.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_sample(name, *args):
    done = subprocess.run(
        [sys.executable, str(SAMPLES / name), *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_digits_mlp_reaches_97_percent_test_accuracy_within_30_epochs(tmp_path):
    out = run_sample("digits_mlp.py", "--epochs", "30", "--plots", str(tmp_path))
    assert "sanity check passed: memorized 20 examples" in out
    assert "epoch  30/30" in out and "update/weight" in out
    accuracy = float(re.search(r"test accuracy (\d\.\d+)", out).group(1))
    assert accuracy >= 0.97, out
    assert "(claim >= 0.97 within 30 epochs: met)" in out
    assert re.search(r"diagnosis \(epoch 30\): (high variance|neither)", out)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["accuracy.png", "activations.png", "loss.png", "lr.png", "update_ratios.png"]
    assert all(p.read_bytes().startswith(PNG_SIGNATURE) for p in tmp_path.iterdir())


def test_small_random_init_without_batch_norm_trains_far_worse():
    out = run_sample("init_and_batchnorm.py", "--epochs", "5")
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 7 and cells[0] and not cells[0].startswith(("configuration", "---")):
            rows[cells[0]] = [float(c) for c in cells[1:]]
    assert list(rows) == [
        "BN + He",
        "BN + small_random",
        "no BN + He",
        "no BN + Xavier",
        "no BN + small_random",
    ]
    std1, std2, grad, _, accuracy, loss = range(6)
    bad = rows.pop("no BN + small_random")
    # the notes' mechanism: activations shrink layer by layer, and the gradient with them
    assert bad[std2] < 0.2 * bad[std1] < 0.02  # x 0.11 a layer
    assert all(bad[grad] < 0.05 * row[grad] for row in rows.values())
    # and the consequence: every other configuration is far ahead after 5 epochs
    assert all(row[accuracy] > 0.93 for row in rows.values())
    assert bad[accuracy] < min(row[accuracy] for row in rows.values()) - 0.3
    assert bad[loss] > 1.0 > max(row[loss] for row in rows.values())
    # batch norm removes the dependence on the initialization's scale
    assert abs(rows["BN + small_random"][accuracy] - rows["BN + He"][accuracy]) < 0.03
