"""Time per epoch of the digits network on the numpy engine and on PyTorch (1 and 2 processes).

Workload: samples/digits.tg as `topograd run` trains it (MLP 64-256-256-10 with batch norm,
ReLU, dropout, Adam, cosine schedule, batches of 64, an evaluation of the training and
validation splits after every epoch), through the command line, each run in its own process
exactly as a user starts it:

- numpy: `topograd run samples/digits.tg`
- torch: `topograd run samples/digits.tg --backend torch`
- torch, 2 processes: `... --backend torch --nproc 2` (DistributedDataParallel over gloo on
  loopback, each process on half of every batch, batch norm synchronized)

The time is the training time the run itself reports (`seconds` in its --metrics JSON: the
fit loop, not Python's start-up or importing torch), divided by the epochs. Runs are
interleaved (one of each in turn, the order rotating), and the table shows medians of `--reps`
runs and the ratio to the numpy engine's median. Every process gets one BLAS/OpenMP thread
(OPENBLAS_NUM_THREADS=OMP_NUM_THREADS=MKL_NUM_THREADS=1, so torch's intra-op pool has one thread
too) unless the caller's environment says otherwise: one process uses one core, two use two.

    python bench/backends.py [--reps 3] [--epochs 15]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "digits.tg"
TOPOGRAD = [sys.executable, "-m", "topograd"]

VARIANTS = {
    "numpy engine": [],
    "torch, 1 process": ["--backend", "torch"],
    "torch, 2 processes": ["--backend", "torch", "--nproc", "2"],
}


def one_run(extra: list[str], epochs: int, folder: Path) -> dict:
    """Run the sample once with `extra` options; its metrics JSON."""
    metrics = folder / "metrics.json"
    command = [
        *TOPOGRAD, "run", str(SAMPLE), "--epochs", str(epochs), "--no-progress", "--no-plots",
        "--out", str(folder / "out"), "--metrics", str(metrics), *extra,
    ]  # fmt: skip
    environment = dict(os.environ)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        environment.setdefault(name, "1")
    done = subprocess.run(
        command, cwd=ROOT, env=environment, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(metrics.read_text())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args(argv)
    names = list(VARIANTS)
    per_epoch = {name: [] for name in names}
    accuracy = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as scratch:
        for rep in range(args.reps):
            order = names[rep % len(names) :] + names[: rep % len(names)]
            for name in order:
                metrics = one_run(VARIANTS[name], args.epochs, Path(scratch))
                per_epoch[name].append(metrics["seconds"] / metrics["epochs"])
                accuracy[name].append(metrics["test_accuracy"])
    reference = statistics.median(per_epoch["numpy engine"])
    print(
        f"workload: samples/digits.tg, {args.epochs} epochs of batches of 64 (20 steps each), "
        f"median of {args.reps} interleaved runs, seconds of training per epoch"
    )
    print("| run | s/epoch (median) | min | max | vs numpy | test accuracy |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in names:
        times, middle = per_epoch[name], statistics.median(per_epoch[name])
        print(
            f"| {name} | {middle:.3f} | {min(times):.3f} | {max(times):.3f} "
            f"| {middle / reference:.2f}x | {statistics.median(accuracy[name]):.4f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
