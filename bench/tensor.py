"""Tensor mode against hand-written numpy and PyTorch eager on a batch-normed MLP, in one process.

Workload: MLP 64-256-256-10, each hidden layer Linear -> BatchNorm1d -> ReLU -> Dropout(0.2),
softmax cross-entropy, forward + backward + a plain SGD update (p -= lr * grad), float64, on
gaussian inputs with random labels (fixed seeds). `--optimizer adam --dropout 0.5` times the
issue's configuration instead: each implementation's Adam (numpy: PyTorch's arithmetic written
in place, as bench/optim.py's floor; topograd: `optim.Adam`; torch: `torch.optim.Adam`) and
dropout 0.5. Four implementations are timed:

- numpy, hand-written: the same network with closed-form backwards for every layer. It is the
  floor for an engine built on numpy: the same array operations, no graph, no bookkeeping.
- topograd, composed batch norm (`BatchNorm1d(fused=False)`): the engine derives its backward.
- topograd, fused batch norm (`BatchNorm1d(fused=True)`): one primitive, closed-form backward.
- PyTorch eager on the CPU (`torch.nn` modules, `F.cross_entropy`, an in-place update loop).
- topograd composed and fused again, replayed: forward and backward through `tg.replay`
  (captured on the first step, checked on the second, replayed after), what `fit` and
  `topograd run` train with.

All four start from the same weights; topograd and numpy also draw the same dropout masks.
Steps are interleaved (one step of each in turn, in a random order each round: a step right
after torch's is slower, see bench/interleave.py) so that machine noise hits all alike, and
the table reports medians and ratios from the same run. Garbage left by setup is frozen out
of the collector, which stays on during steps.

Threads: one BLAS/OpenMP thread for numpy and for torch, unless OPENBLAS_NUM_THREADS,
OMP_NUM_THREADS or MKL_NUM_THREADS are set. On the 2-core machine each library's default pool
(two threads that spin while they wait for work) fights the other's inside one process: with
two threads each, numpy's batch-32 step took about 50 ms instead of 0.8 ms and torch's 300 ms
instead of 1.3 ms. One thread each compares the implementations core for core.

Peak memory is measured in a separate, untimed step: the most bytes that were allocated during
the step and alive at the same time (blocks made before the step are not counted, whether freed
or not). numpy and topograd are measured with tracemalloc (numpy reports its buffers to it;
Python objects such as graph nodes count too). PyTorch's CPU allocator is invisible to
tracemalloc, so its column replays the allocation and free events of torch's profiler (tensor
storage only; autograd's own C++ bookkeeping is not counted).

Before timing, one step with dropout off checks that the losses and first-layer weight
gradients of all implementations agree with numpy's (and one step with dropout on does the same
for topograd, which shares numpy's masks); the script exits with status 1 if they do not.

`--clock cpu` times each step by the thread's CPU time (time.thread_time, page faults
included) instead of the wall clock: on a machine busy with other work it leaves out the time
the step waited for a core, which otherwise dominates the spread.

`--malloc keep` first raises glibc's mmap and trim thresholds as the command line and the
window do (topograd.dsl.allocator); the default, `--malloc default`, leaves glibc's own
behaviour. The setting is process-wide and cannot be undone, so compare the two in separate
runs.

Spread: the timed steps are cut into `--blocks` consecutive blocks; each ratio is also computed
per block (median against median), and the table gives the lowest and highest of them beside
the ratio of the whole run's medians.

    python bench/tensor.py [--reps 200] [--batches 32 128 1024] [--malloc keep|default]
                           [--optimizer sgd|adam] [--dropout 0.2] [--blocks 5]
"""

from __future__ import annotations

import argparse
import functools
import gc
import itertools
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

# One BLAS/OpenMP thread per library unless the caller's environment says otherwise; this must
# happen before numpy and torch load their thread pools (see the module docstring).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from topograd.dsl.allocator import keep_freed_memory

import topograd as tg
from bench.interleave import time_interleaved
from bench.workloads import batch_norm_backward, batch_norm_train
from topograd import functional as F
from topograd import nn, optim

SIZES = (64, 256, 256, 10)
DROP = 0.2
LR = 0.01
ADAM_LR, BETA1, BETA2, ADAM_EPS = 1e-3, 0.9, 0.999, 1e-8
EPS = 1e-5
MOMENTUM = 0.1
TOLERANCE = 1e-10
WEIGHT_SEED, DATA_SEED, DROPOUT_SEED = 0, 1, 2
TARGETS = (
    "(issue 22) composed batch norm within 1.15x of hand-written numpy at batch 128 and 1024, "
    "1.3x at 32; fused within 1.05x; peak memory within 1.3x of PyTorch's at every batch size"
)


def initial_weights(seed=WEIGHT_SEED):
    """Per linear layer (W of shape (in, out), b); per batch norm (gamma, beta); float64."""
    rng = np.random.default_rng(seed)
    linears = [
        (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in), 0.1 * rng.standard_normal(n_out))
        for n_in, n_out in itertools.pairwise(SIZES)
    ]
    norms = [
        (1.0 + 0.1 * rng.standard_normal(width), 0.1 * rng.standard_normal(width))
        for width in SIZES[1:-1]
    ]
    return linears, norms


def make_batch(size, seed=DATA_SEED):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((size, SIZES[0])), rng.integers(0, SIZES[-1], size)


class Topograd:
    """The network as engine layers, updated by the engine's own `optim.SGD` (or `optim.Adam`),
    which write the step into scratch arrays (no weight-sized temporary, as torch's in-place
    update). With `replayed`, forward and backward go through `tg.replay` (engine/capture.py)."""

    def __init__(self, weights, p, optimizer, fused, replayed=False):
        linears, norms = weights
        rng = np.random.default_rng(DROPOUT_SEED)
        layers = []
        for depth, (w, b) in enumerate(linears):
            linear = nn.Linear(*w.shape)
            linear.weight.data, linear.bias.data = w.copy(), b.copy()  # the setter aliases
            layers.append(linear)
            if depth < len(norms):
                norm = nn.BatchNorm1d(w.shape[1], eps=EPS, momentum=MOMENTUM, fused=fused)
                norm.weight.data, norm.bias.data = (a.copy() for a in norms[depth])
                layers += [norm, nn.ReLU(), nn.Dropout(p, rng=rng)]
        self.model = nn.Sequential(*layers)
        self.params = self.model.parameters()
        self.adam = None
        if optimizer == "adam":
            self.adam = optim.Adam(self.params, lr=ADAM_LR, betas=(BETA1, BETA2), eps=ADAM_EPS)
        self.sgd = optim.SGD(self.params, lr=LR)
        self.replayed = tg.replay(self.loss) if replayed else None

    def loss(self, x, labels):
        return F.cross_entropy(self.model(x), labels)

    def step(self, x, labels, lr):
        for p in self.params:
            p.grad = None
        if self.replayed is not None:
            loss = self.replayed(x, labels)
        else:
            loss = self.loss(x, labels)
            loss.backward()
        if self.adam is not None:
            self.adam.step()
        else:
            self.sgd.param_groups[0]["lr"] = lr
            self.sgd.step()  # p -= lr * grad, the product written into a scratch array
        return loss.item()

    def first_weight_grad(self):
        return self.model[0].weight.grad


class Numpy:
    """The same network written out by hand: cached forward values and closed-form backwards."""

    def __init__(self, weights, p, optimizer):
        (w1, b1), (w2, b2), (w3, b3) = weights[0]
        (g1, be1), (g2, be2) = weights[1]
        self.params = [a.copy() for a in (w1, b1, g1, be1, w2, b2, g2, be2, w3, b3)]
        self.running = [f(width) for width in SIZES[1:-1] for f in (np.zeros, np.ones)]
        self.p = p
        self.rng = np.random.default_rng(DROPOUT_SEED)
        self.grads = None
        self.adam = None
        if optimizer == "adam":  # m, v and two scratch arrays per parameter, step count
            self.adam = [[np.zeros_like(a) for _ in range(4)] for a in self.params], [0]

    def step(self, x, labels, lr):
        w1, b1, g1, be1, w2, b2, g2, be2, w3, b3 = self.params
        mean1, var1, mean2, var2 = self.running
        n = x.shape[0]

        h1, norm1 = batch_norm_train(x @ w1 + b1, g1, be1, mean1, var1, EPS, MOMENTUM)
        r1 = np.maximum(h1, 0.0)
        a1, mask1 = self._dropout(r1)
        h2, norm2 = batch_norm_train(a1 @ w2 + b2, g2, be2, mean2, var2, EPS, MOMENTUM)
        r2 = np.maximum(h2, 0.0)
        a2, mask2 = self._dropout(r2)
        logits = a2 @ w3 + b3

        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        sums = exp.sum(axis=1, keepdims=True)
        rows = np.arange(n)
        loss = np.log(sums).mean() - shifted[rows, labels].mean()
        dlogits = exp / sums
        dlogits[rows, labels] -= 1.0
        dlogits /= n

        dw3, db3 = a2.T @ dlogits, dlogits.sum(axis=0)
        da2 = dlogits @ w3.T
        dr2 = da2 if mask2 is None else da2 * mask2
        dz2, dg2, dbe2 = batch_norm_backward(dr2 * (r2 > 0.0), g2, norm2)
        dw2, db2 = a1.T @ dz2, dz2.sum(axis=0)
        da1 = dz2 @ w2.T
        dr1 = da1 if mask1 is None else da1 * mask1
        dz1, dg1, dbe1 = batch_norm_backward(dr1 * (r1 > 0.0), g1, norm1)
        dw1, db1 = x.T @ dz1, dz1.sum(axis=0)

        self.grads = [dw1, db1, dg1, dbe1, dw2, db2, dg2, dbe2, dw3, db3]
        if self.adam is not None:
            self._adam()
        else:
            for param, grad in zip(self.params, self.grads):
                param -= lr * grad
        return float(loss)

    def _adam(self):
        """PyTorch's Adam in PyTorch's order, in place (bench/optim.py's "numpy, in place")."""
        buffers, count = self.adam
        count[0] += 1
        step_size = ADAM_LR / (1 - BETA1 ** count[0])
        root_correction = (1 - BETA2 ** count[0]) ** 0.5
        for w, g, (m, v, scratch, update) in zip(self.params, self.grads, buffers):
            np.subtract(g, m, out=scratch)
            scratch *= 1 - BETA1
            m += scratch
            v *= BETA2
            np.multiply(g, 1 - BETA2, out=scratch)
            scratch *= g
            v += scratch
            np.sqrt(v, out=scratch)
            scratch /= root_correction
            scratch += ADAM_EPS
            np.multiply(m, -step_size, out=update)
            update /= scratch
            w += update

    def _dropout(self, x):
        """Inverted dropout with topograd's recipe, so a shared seed gives the same masks."""
        if self.p == 0.0:
            return x, None
        mask = (self.rng.random(x.shape) >= self.p) / (1.0 - self.p)
        return x * mask, mask

    def first_weight_grad(self):
        return self.grads[0]


class Torch:
    """torch.nn modules in float64; the update is a no-grad loop of in-place adds."""

    def __init__(self, weights, p, optimizer):
        linears, norms = weights
        layers = []
        for depth, (w, b) in enumerate(linears):
            linear = torch.nn.Linear(*w.shape, dtype=torch.float64)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(w.T))
                linear.bias.copy_(torch.from_numpy(b))
            layers.append(linear)
            if depth < len(norms):
                norm = torch.nn.BatchNorm1d(
                    w.shape[1], eps=EPS, momentum=MOMENTUM, dtype=torch.float64
                )
                with torch.no_grad():
                    norm.weight.copy_(torch.from_numpy(norms[depth][0]))
                    norm.bias.copy_(torch.from_numpy(norms[depth][1]))
                layers += [norm, torch.nn.ReLU(), torch.nn.Dropout(p)]
        self.model = torch.nn.Sequential(*layers)
        self.params = list(self.model.parameters())
        self.adam = None
        if optimizer == "adam":
            self.adam = torch.optim.Adam(
                self.params, lr=ADAM_LR, betas=(BETA1, BETA2), eps=ADAM_EPS, foreach=False
            )

    def step(self, x, labels, lr):
        for p in self.params:
            p.grad = None
        logits = self.model(torch.from_numpy(x))
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels))
        loss.backward()
        if self.adam is not None:
            self.adam.step()
        else:
            with torch.no_grad():
                for p in self.params:
                    p.add_(p.grad, alpha=-lr)
        return loss.item()

    def first_weight_grad(self):
        return self.model[0].weight.grad.numpy().T


# (name, constructor(weights, p, optimizer)); numpy first (the reference), then the rows that
# share its dropout masks, then torch.
IMPLEMENTATIONS = (
    ("numpy, hand-written", Numpy),
    ("topograd composed", functools.partial(Topograd, fused=False)),
    ("topograd fused", functools.partial(Topograd, fused=True)),
    ("torch eager", Torch),
    ("composed, replayed", functools.partial(Topograd, fused=False, replayed=True)),
    ("fused, replayed", functools.partial(Topograd, fused=True, replayed=True)),
)
SHARED_MASKS = 3  # numpy and the rows after it that draw its masks (the replayed rows too)


def relative_difference(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def cross_check(batch_size, optimizer, drop):
    """One step from the same weights: losses and first-layer weight grads must agree.

    With dropout off every implementation is compared with numpy; with dropout on only
    topograd is (torch draws its masks from its own generator). Returns the report lines and
    whether everything agreed within TOLERANCE.
    """
    x, labels = make_batch(batch_size)
    weights = initial_weights()
    lines, ok = [], True
    shared = IMPLEMENTATIONS[:SHARED_MASKS] + IMPLEMENTATIONS[TORCH + 1 :]
    for p, compared in ((0.0, IMPLEMENTATIONS), (drop, shared)):
        results = []
        for name, make in compared:
            impl = make(weights, p, optimizer)
            if getattr(impl, "replayed", None) is not None:  # its replays, not its capture
                for _ in range(2):
                    impl.step(x, labels, 0.0)
                impl = _rewound(impl, make(weights, p, optimizer))
            results.append((name, impl.step(x, labels, LR), impl.first_weight_grad()))
        _, ref_loss, ref_grad = results[0]
        for name, loss, grad in results[1:]:
            loss_diff = abs(loss - ref_loss) / abs(ref_loss)
            grad_diff = relative_difference(grad, ref_grad)
            agree = loss_diff <= TOLERANCE and grad_diff <= TOLERANCE
            ok &= agree
            lines.append(
                f"  dropout p={p}: {name:18s} vs numpy: loss {loss_diff:.1e}, "
                f"dL/dW1 {grad_diff:.1e}  {'ok' if agree else 'DISAGREE'}"
            )
    return lines, ok


def _rewound(warmed, fresh):
    """`warmed` (a replayed implementation past its capture and check) with `fresh`'s
    weights, optimizer state, running statistics and dropout generators: its next step is a
    replay of the same step the others take."""
    warmed.model.load_state_dict(fresh.model.state_dict())
    if warmed.adam is not None:
        warmed.adam.load_state_dict(fresh.adam.state_dict())
    for mine, theirs in zip(warmed.model.generators(), fresh.model.generators()):
        mine.bit_generator.state = theirs.bit_generator.state
    return warmed


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


def ratio(times, numerator, denominator, blocks):
    """(ratio of the medians, lowest and highest ratio of the blocks' medians)."""
    a, b = times[numerator], times[denominator]
    whole = statistics.median(a) / statistics.median(b)
    size = max(1, len(a) // blocks)
    per_block = [
        statistics.median(a[start : start + size]) / statistics.median(b[start : start + size])
        for start in range(0, size * blocks, size)
        if a[start : start + size]
    ]
    return whole, min(per_block), max(per_block)


def traced_peak(impl, x, labels):
    """Most bytes allocated during one step and alive at the same time, seen by tracemalloc."""
    tracemalloc.start()
    try:
        impl.step(x, labels, LR)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


def torch_peak(impl, x, labels):
    """Most bytes allocated during one step and alive at once, from torch's profiler events.

    The profiler cannot size frees of blocks made before it started, so like tracemalloc it
    counts only the step's own allocations; the previous step's gradients are released first
    (the step would drop them anyway) to keep torch from warning about them.
    """
    for p in impl.params:
        p.grad = None
    with torch.autograd.profiler.profile(profile_memory=True) as prof:
        impl.step(x, labels, LR)
    events = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
    )
    return int(np.cumsum([nbytes for _, nbytes in events]).max(initial=0))


def measure_peaks(impls, x, labels):
    return [
        torch_peak(impl, x, labels) if isinstance(impl, Torch) else traced_peak(impl, x, labels)
        for impl in impls
    ]


NUMPY, COMPOSED, FUSED, TORCH, COMPOSED_REPLAYED, FUSED_REPLAYED = range(6)


def markdown_table(rows, blocks):
    header = (
        "| batch | numpy ms | topograd composed ms | topograd fused ms | torch ms "
        "| composed replayed ms | fused replayed ms "
        "| composed/numpy | fused/numpy | fused/torch | composed replayed/numpy "
        "| fused replayed/numpy "
        "| peak MiB numpy | composed | fused | torch | composed replayed | fused replayed "
        "| composed/torch peak |"
    )
    lines = [header, "|" + "---:|" * (header.count("|") - 1)]
    for size, times, peaks in rows:
        ms = [1e3 * statistics.median(t) for t in times]
        cells = [
            str(size),
            *(f"{t:.3f}" for t in ms),
            *(
                "{:.2f}x ({:.2f}-{:.2f})".format(*ratio(times, a, b, blocks))
                for a, b in (
                    (COMPOSED, NUMPY),
                    (FUSED, NUMPY),
                    (FUSED, TORCH),
                    (COMPOSED_REPLAYED, NUMPY),
                    (FUSED_REPLAYED, NUMPY),
                )
            ),
            *(f"{b / 2**20:.2f}" for b in peaks),
            f"{peaks[COMPOSED] / peaks[TORCH]:.2f}x",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def check_targets(rows, blocks):
    """Each target of issue 22 with its verdict and the deciding figures, for the rows."""
    verdicts = []
    for size, times, peaks in rows:
        limit = 1.3 if size <= 32 else 1.15
        for row, name, bound in (
            (COMPOSED, "composed (eager)", limit),
            (COMPOSED_REPLAYED, "composed, replayed", limit),
            (FUSED, "fused (eager)", 1.05),
            (FUSED_REPLAYED, "fused, replayed", 1.05),
        ):
            whole, low, high = ratio(times, row, NUMPY, blocks)
            verdicts.append(
                (
                    f"{name} within {bound}x of numpy at batch {size}",
                    f"{_verdict(whole <= bound)} ({whole:.3f}x; blocks {low:.2f}-{high:.2f})",
                )
            )
        worst = max(peaks[i] for i in (COMPOSED, FUSED, COMPOSED_REPLAYED, FUSED_REPLAYED))
        verdicts.append(
            (
                f"peak memory within 1.3x of torch at batch {size}",
                f"{_verdict(worst / peaks[TORCH] <= 1.3)} (worst topograd row "
                f"{worst / peaks[TORCH]:.2f}x; composed {peaks[COMPOSED] / peaks[TORCH]:.2f}x, "
                f"replayed {peaks[COMPOSED_REPLAYED] / peaks[TORCH]:.2f}x)",
            )
        )
    return verdicts


def _verdict(met):
    return "met" if met else "MISSED"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200, help="timed steps per implementation")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before timing")
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128, 1024])
    parser.add_argument(
        "--malloc",
        choices=("default", "keep"),
        default="default",
        help="keep: raise glibc's mmap and trim thresholds first, as `topograd` does",
    )
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    parser.add_argument("--dropout", type=float, default=DROP, help="dropout probability")
    parser.add_argument("--blocks", type=int, default=5, help="blocks for the ratios' spread")
    parser.add_argument(
        "--clock",
        choices=tuple(CLOCKS),
        default="wall",
        help="cpu: the thread's CPU time (page faults included), steadier on a loaded machine",
    )
    args = parser.parse_args(argv)
    malloc = "default"
    if args.malloc == "keep":
        malloc = "keep" if keep_freed_memory() else "default (not glibc, or TOPOGRAD_MALLOC)"

    check_size = min(args.batches)
    check_lines, ok = cross_check(check_size, args.optimizer, args.dropout)
    print(
        f"cross-check, one step at batch {check_size} (relative differences, "
        f"tolerance {TOLERANCE:.0e}):"
    )
    print("\n".join(check_lines))
    if not ok:
        print("ERROR: the implementations disagree", file=sys.stderr)
        return 1

    weights = initial_weights()
    rows = []
    for size in args.batches:
        x, labels = make_batch(size)
        impls = [make(weights, args.dropout, args.optimizer) for _, make in IMPLEMENTATIONS]
        gc.collect()
        gc.freeze()
        try:
            steps = [functools.partial(impl.step, x, labels, LR) for impl in impls]
            times = time_interleaved(steps, args.reps, args.warmup, CLOCKS[args.clock])
        finally:
            gc.unfreeze()
        rows.append((size, times, measure_peaks(impls, x, labels)))

    threads = ", ".join(
        f"{name}={os.environ[name]}"
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    )
    print()
    print(
        f"workload: MLP {'-'.join(map(str, SIZES))}, hidden layers Linear-BatchNorm1d-ReLU-"
        f"Dropout({args.dropout}), softmax cross-entropy, forward + backward + "
        f"{args.optimizer.upper() if args.optimizer == 'sgd' else 'Adam'}, float64; "
        f"median {args.clock} ms per step over {args.reps} interleaved steps (ratio spread: "
        f"lowest-highest of {args.blocks} blocks); {threads}, "
        f"torch.get_num_threads()={torch.get_num_threads()}, {os.cpu_count()} cores; "
        f"malloc {malloc}; peak MiB "
        "= most bytes allocated during one step and alive at once"
    )
    print()
    print(markdown_table(rows, args.blocks))
    print()
    print(f"targets: {TARGETS}")
    for label, verdict in check_targets(rows, args.blocks):
        print(f"  {label}: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
