"""One Adam step on 1,000,000 parameters: topograd's Adam against in-place numpy and PyTorch.

Workload: one 1000 x 1000 float64 parameter with a fixed random gradient; each step is
`optimizer.step()` with lr=1e-3, betas=(0.9, 0.999), eps=1e-8 (no weight decay, no AMSGrad).
Four implementations are timed:

- numpy, in place: PyTorch's arithmetic, in PyTorch's order, written by hand as numpy
  operations into two preallocated scratch arrays (`out=`, `*=`): the floor for an optimizer
  built on numpy, with no parameter groups, state dicts or checks.
- numpy, textbook: the notes' code (`m = beta1 * m + (1 - beta1) * g`, ...), which allocates a
  fresh array for every intermediate. It shows what writing in place buys.
- topograd: `engine.optim.Adam` on an `engine.nn.Parameter`.
- torch: `torch.optim.Adam` on a float64 tensor (on the CPU torch takes its single-tensor path,
  the code topograd's rules mirror).

Steps are interleaved (one step of each in turn, in a random order each round, see
bench/interleave.py) so that machine noise and what the previous step left in the caches hit
all alike; the table reports medians and ratios from the same run. Garbage left by setup is
frozen out of the collector, which stays on during steps.

Threads: one OpenMP/BLAS thread per library unless OMP_NUM_THREADS, OPENBLAS_NUM_THREADS or
MKL_NUM_THREADS are set. numpy's elementwise operations run on one core whatever the setting;
torch's would spread over its OpenMP pool, so one thread compares the implementations core for
core (on the 2-core machine a second torch thread also spins against numpy's pools; see
bench/tensor.py).

Before timing, 20 steps of each from the same start are compared: topograd must equal the
in-place numpy bit for bit (the same operations in the same order) and torch to 1e-12
(torch's kernels fuse multiply-adds, so the last bits differ); the script exits with status 1
if not.

`--clock cpu` times by the thread's CPU time instead of the wall clock (see bench/tensor.py).

    python bench/optim.py [--reps 100] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path

# One BLAS/OpenMP thread per library unless the caller's environment says otherwise; this must
# happen before numpy and torch load their thread pools (see the module docstring).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.interleave import time_interleaved
from topograd.nn import Parameter
from topograd.optim import Adam

SHAPE = (1000, 1000)
LR, BETA1, BETA2, EPS = 1e-3, 0.9, 0.999, 1e-8
CHECK_STEPS = 20
TOLERANCE = 1e-12
TARGET = 1.1  # topograd / numpy in place (issue 22)


def initial_arrays(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(SHAPE), rng.standard_normal(SHAPE)


class NumpyInPlace:
    """torch's single-tensor Adam, operation for operation, into two scratch arrays."""

    def __init__(self, weights, grad):
        self.w, self.g = weights.copy(), grad.copy()
        self.m, self.v = np.zeros(SHAPE), np.zeros(SHAPE)
        self.scratch, self.update = np.empty(SHAPE), np.empty(SHAPE)
        self.t = 0

    def step(self):
        self.t += 1
        w, g, m, v, scratch, update = self.w, self.g, self.m, self.v, self.scratch, self.update
        np.subtract(g, m, out=scratch)  # m.lerp_(g, 1 - beta1) = m + (1 - beta1) * (g - m)
        scratch *= 1 - BETA1
        m += scratch
        v *= BETA2  # v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        np.multiply(g, 1 - BETA2, out=scratch)
        scratch *= g
        v += scratch
        step_size = LR / (1 - BETA1**self.t)
        np.sqrt(v, out=scratch)  # denom = sqrt(v) / sqrt(1 - beta2^t) + eps
        scratch /= (1 - BETA2**self.t) ** 0.5
        scratch += EPS
        np.multiply(m, -step_size, out=update)  # w.addcdiv_(m, denom, value=-step_size)
        update /= scratch
        w += update

    def weights(self):
        return self.w


class NumpyTextbook:
    """The notes' Adam code: every intermediate is a new array."""

    def __init__(self, weights, grad):
        self.w, self.g = weights.copy(), grad.copy()
        self.m, self.v = np.zeros(SHAPE), np.zeros(SHAPE)
        self.t = 0

    def step(self):
        self.t += 1
        self.m = BETA1 * self.m + (1 - BETA1) * self.g
        self.v = BETA2 * self.v + (1 - BETA2) * self.g**2
        m_hat = self.m / (1 - BETA1**self.t)
        v_hat = self.v / (1 - BETA2**self.t)
        self.w = self.w - LR * m_hat / (np.sqrt(v_hat) + EPS)

    def weights(self):
        return self.w


class Topograd:
    def __init__(self, weights, grad):
        self.param = Parameter(weights.copy())
        self.param.grad = grad
        self.optimizer = Adam([self.param], lr=LR, betas=(BETA1, BETA2), eps=EPS)

    def step(self):
        self.optimizer.step()

    def weights(self):
        return self.param.data


class Torch:
    def __init__(self, weights, grad):
        self.param = torch.tensor(weights, dtype=torch.float64, requires_grad=True)
        self.param.grad = torch.tensor(grad, dtype=torch.float64)
        self.optimizer = torch.optim.Adam([self.param], lr=LR, betas=(BETA1, BETA2), eps=EPS)

    def step(self):
        self.optimizer.step()

    def weights(self):
        return self.param.detach().numpy()


IMPLEMENTATIONS = [
    ("numpy, in place", NumpyInPlace),
    ("numpy, textbook", NumpyTextbook),
    ("topograd", Topograd),
    ("torch.optim.Adam", Torch),
]


def cross_check():
    """Lines describing the agreement after CHECK_STEPS steps, and whether it is good enough."""
    weights, grad = initial_arrays()
    impls = {name: make(weights, grad) for name, make in IMPLEMENTATIONS}
    for impl in impls.values():
        for _ in range(CHECK_STEPS):
            impl.step()
    floor = impls["numpy, in place"].weights()
    lines, ok = [], True
    for name, impl in impls.items():
        difference = np.max(np.abs(impl.weights() - floor)) / np.max(np.abs(floor))
        if name == "topograd":
            good = np.array_equal(impl.weights(), floor)
            rule = "must be bitwise equal"
        else:
            good = difference <= TOLERANCE
            rule = f"must be within {TOLERANCE:.0e}"
        ok &= good
        lines.append(f"  {name:18s} {difference:.1e} ({rule}: {'ok' if good else 'FAILED'})")
    return lines, ok


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


def markdown_table(seconds):
    names = [name for name, _ in IMPLEMENTATIONS]
    floor = seconds[names.index("numpy, in place")]
    reference = seconds[names.index("torch.optim.Adam")]
    lines = [
        "| implementation | ms / step | vs numpy in place | vs torch |",
        "|---|---:|---:|---:|",
    ]
    for name, s in zip(names, seconds, strict=True):
        lines.append(f"| {name} | {1e3 * s:.3f} | {s / floor:.2f}x | {s / reference:.2f}x |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=100, help="timed steps per implementation")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before timing")
    parser.add_argument(
        "--clock",
        choices=tuple(CLOCKS),
        default="wall",
        help="cpu: the thread's CPU time, steadier than the wall clock on a busy machine",
    )
    args = parser.parse_args(argv)

    lines, ok = cross_check()
    print(f"cross-check after {CHECK_STEPS} steps (relative difference from numpy in place):")
    print("\n".join(lines))
    if not ok:
        print("ERROR: the implementations disagree", file=sys.stderr)
        return 1

    weights, grad = initial_arrays()
    impls = [make(weights, grad) for _, make in IMPLEMENTATIONS]
    gc.collect()
    gc.freeze()
    try:
        times = time_interleaved(
            [impl.step for impl in impls], args.reps, args.warmup, CLOCKS[args.clock]
        )
        seconds = [statistics.median(t) for t in times]
    finally:
        gc.unfreeze()

    threads = ", ".join(
        f"{name}={os.environ[name]}"
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    )
    print()
    print(
        f"workload: one Adam step on a {SHAPE[0]}x{SHAPE[1]} float64 parameter "
        f"({SHAPE[0] * SHAPE[1]:,} values); median {args.clock} time over {args.reps} interleaved "
        f"steps; "
        f"{threads}, torch.get_num_threads()={torch.get_num_threads()}, {os.cpu_count()} cores"
    )
    print()
    print(markdown_table(seconds))
    print()
    ratio = seconds[2] / seconds[0]
    verdict = "met" if ratio <= TARGET else "MISSED"
    print(f"target: topograd within {TARGET}x of numpy in place: {verdict} ({ratio:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
