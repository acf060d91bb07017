"""topograd's conv2d against PyTorch eager on the CPU: forward + backward of one layer.

Workload: x (64, 16, 32, 32), weight (16, 16, 3, 3), bias (16,), stride 1, padding 1, float64
and float32; backward from one fixed upstream gradient into x, the weight and the bias. Steps
are interleaved (one of each in turn, the order alternating every repetition) so that machine
noise hits both alike, and the table reports medians and their ratio from the same run. One
BLAS/OpenMP thread for numpy and for torch unless the environment says otherwise (see
bench/tensor.py for why). Before timing, the outputs and gradients are checked to agree.

`--clock cpu` times by the thread's CPU time instead of the wall clock (see bench/tensor.py).

    python bench/conv.py [--reps 30] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from topograd import Tensor
from topograd import functional as F

X_SHAPE, W_SHAPE, PADDING = (64, 16, 32, 32), (16, 16, 3, 3), 1
TARGET = 1.5  # topograd within 1.5x of PyTorch eager (issue 22)
TOLERANCES = {np.float64: 1e-10, np.float32: 1e-4}


def make_arrays(dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(X_SHAPE).astype(dtype)
    w = (rng.standard_normal(W_SHAPE) / np.sqrt(16 * 9)).astype(dtype)
    b = rng.standard_normal(W_SHAPE[0]).astype(dtype)
    upstream = rng.standard_normal((X_SHAPE[0], W_SHAPE[0], *X_SHAPE[2:])).astype(dtype)
    return x, w, b, upstream


class Topograd:
    """Leaf tensors made once (their constructor copies); each step clears the grads."""

    def __init__(self, x, w, b, upstream):
        self.leaves = [Tensor(a, requires_grad=True) for a in (x, w, b)]
        self.upstream = upstream

    def step(self):
        for leaf in self.leaves:
            leaf.grad = None
        out = F.conv2d(*self.leaves, padding=PADDING)
        out.backward(self.upstream)
        return out.data, [leaf.grad for leaf in self.leaves]


class Torch:
    def __init__(self, x, w, b, upstream):
        self.leaves = [torch.from_numpy(a.copy()).requires_grad_() for a in (x, w, b)]
        self.upstream = torch.from_numpy(upstream)

    def step(self):
        for leaf in self.leaves:
            leaf.grad = None
        out = torch.nn.functional.conv2d(*self.leaves, padding=PADDING)
        out.backward(self.upstream)
        return out.detach().numpy(), [leaf.grad.numpy() for leaf in self.leaves]


def cross_check(impls, tolerance):
    """Largest relative difference of the output and the three gradients."""
    (ours, our_grads), (theirs, their_grads) = (impl.step() for impl in impls)
    worst = 0.0
    for a, b in zip([ours, *our_grads], [theirs, *their_grads]):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        worst = max(worst, float(np.linalg.norm(a - b) / np.linalg.norm(b)))
    return worst, worst <= tolerance


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


def time_interleaved(impls, reps, warmup, clock=time.perf_counter):
    """Median ms per step of each implementation, one step of each in turn."""
    times = [[] for _ in impls]
    for k in range(warmup + reps):
        order = range(len(impls)) if k % 2 == 0 else reversed(range(len(impls)))
        for i in order:
            start = clock()
            impls[i].step()
            elapsed = clock() - start
            if k >= warmup:
                times[i].append(elapsed)
    return [1e3 * statistics.median(t) for t in times]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=30, help="timed steps per implementation")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    parser.add_argument(
        "--clock",
        choices=tuple(CLOCKS),
        default="wall",
        help="cpu: the thread's CPU time, steadier than the wall clock on a busy machine",
    )
    args = parser.parse_args(argv)

    rows, ok = [], True
    for dtype in (np.float64, np.float32):
        arrays = make_arrays(dtype)
        impls = (Topograd(*arrays), Torch(*arrays))
        difference, agree = cross_check(impls, TOLERANCES[dtype])
        ok &= agree
        gc.collect()
        ms = time_interleaved(impls, args.reps, args.warmup, CLOCKS[args.clock])
        rows.append((np.dtype(dtype).name, *ms, difference))
    threads = ", ".join(
        f"{name}={os.environ[name]}"
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    )
    print(
        f"workload: conv2d x {X_SHAPE}, weight {W_SHAPE}, bias, padding {PADDING}, forward + "
        f"backward; median {args.clock} ms over {args.reps} interleaved steps; {threads}, "
        f"torch.get_num_threads()={torch.get_num_threads()}, {os.cpu_count()} cores"
    )
    print()
    print("| dtype | topograd ms | torch ms | topograd/torch | max rel. difference |")
    print("|---|---:|---:|---:|---:|")
    for name, ours, theirs, difference in rows:
        print(f"| {name} | {ours:.2f} | {theirs:.2f} | {ours / theirs:.2f}x | {difference:.1e} |")
    worst = max(ours / theirs for _, ours, theirs, _ in rows)
    verdict = "met" if worst <= TARGET else "MISSED"
    print()
    print(f"target: within {TARGET}x of PyTorch eager: {verdict} (largest ratio {worst:.2f}x)")
    if not ok:
        print("ERROR: topograd and PyTorch disagree", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
