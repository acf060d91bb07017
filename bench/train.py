"""A whole training run: `fit` on the digits against the same training hand-written in numpy.

Workload: samples/digits_mlp.py's run, 30 epochs of mini-batches of 64 over the 1259 training
digits (600 Adam steps) with an evaluation of the training and validation splits after every
epoch; the network is 64-256-256-10, hidden layers Linear -> BatchNorm1d (fused) -> ReLU ->
Dropout(0.2), softmax cross-entropy, float64. Timed, each from the same initial weights:

- numpy, hand-written: the same network with closed-form backwards for every layer, Adam with
  PyTorch's arithmetic written in place, the same shuffling, dropout masks, batch-norm running
  statistics and end-of-epoch evaluation (loss and accuracy of the training and validation
  splits in evaluation mode). It is the floor for a numpy engine: the same array operations,
  no graph, no checks, no bookkeeping.
- topograd `fit`, as the sample runs it (`track_stats=True`): also records every step's loss
  and lr, each parameter's gradient norm and update/weight ratio, and runs the NaN and
  explosion guards.
- topograd `fit(track_stats=False)`: the guards still run (they need the gradient norms);
  no update ratios.
- topograd `fit(replay=False)`: as the sample runs it, but every step eager (a graph built
  and walked per step) instead of replayed after its check (`tg.replay`, fit's default).

The numpy run draws its batch order and dropout masks exactly as `fit` does (from `seed`), so
the two compute the same training: before timing, the script runs one epoch of each with
dropout and compares the per-step losses (they agree to about 1e-13; the script exits with
status 1 beyond 1e-9).

Runs are interleaved (one run of each in turn, the order rotating every repetition), medians
of `--reps` runs are reported, and the garbage left by setup is frozen out of the collector.
"paired" is the median (and range) of each repetition's ratio to that repetition's numpy run:
on a shared host whose speed drifts over minutes it is steadier than the ratio of medians,
and the target is judged on it.
Threads: one BLAS thread unless OPENBLAS_NUM_THREADS, OMP_NUM_THREADS or MKL_NUM_THREADS are
set (see bench/tensor.py for why).

`--clock cpu` times each run by the thread's CPU time instead of the wall clock (the runs are
single-threaded; see bench/tensor.py).

    python bench/train.py [--reps 5] [--epochs 30] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import gc
import os
import runpy
import statistics
import sys
import time
from pathlib import Path

# One BLAS/OpenMP thread unless the caller's environment says otherwise; this must happen
# before numpy loads its thread pool (see bench/tensor.py).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workloads import batch_norm_backward, batch_norm_train
from topograd import manual_seed
from topograd.optim import Adam
from topograd.train import evaluate, fit

SAMPLE = runpy.run_path(str(Path(__file__).resolve().parent.parent / "samples" / "digits_mlp.py"))
EPOCHS, BATCH_SIZE, LR = SAMPLE["EPOCHS"], SAMPLE["BATCH_SIZE"], SAMPLE["LR"]
DROP = SAMPLE["DROPOUT"]
BETA1, BETA2, ADAM_EPS, BN_EPS, BN_MOMENTUM = 0.9, 0.999, 1e-8, 1e-5, 0.1
SEED = 0
TARGET = 1.15  # issue 22
TOLERANCE = 1e-9


class NumpyMLP:
    """The sample's network and training written out by hand, closed-form backwards."""

    def __init__(self, model):
        """Copy the initial weights of a topograd model built by the sample's build_model."""
        state = model.state_dict()
        self.params = [
            state[name].copy()
            for name in (
                "0.weight", "0.bias", "1.weight", "1.bias",
                "4.weight", "4.bias", "5.weight", "5.bias",
                "8.weight", "8.bias",
            )
        ]  # fmt: skip
        self.running = [state[n].copy() for n in ("1.running_mean", "1.running_var")]
        self.running += [state[n].copy() for n in ("5.running_mean", "5.running_var")]
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.work = [np.empty_like(p) for p in self.params]
        self.t = 0

    def train_step(self, x, labels, dropout_rng):
        """Forward, backward and one Adam step; returns the batch loss."""
        w1, b1, g1, be1, w2, b2, g2, be2, w3, b3 = self.params
        mean1, var1, mean2, var2 = self.running
        h1, saved1 = batch_norm_train(x @ w1 + b1, g1, be1, mean1, var1, BN_EPS, BN_MOMENTUM)
        r1 = np.maximum(h1, 0.0)
        mask1 = (dropout_rng.random(r1.shape) >= DROP) / (1.0 - DROP)
        a1 = r1 * mask1
        h2, saved2 = batch_norm_train(a1 @ w2 + b2, g2, be2, mean2, var2, BN_EPS, BN_MOMENTUM)
        r2 = np.maximum(h2, 0.0)
        mask2 = (dropout_rng.random(r2.shape) >= DROP) / (1.0 - DROP)
        a2 = r2 * mask2
        logits = a2 @ w3 + b3
        loss, dlogits = _cross_entropy(logits, labels, grad=True)

        dw3, db3 = a2.T @ dlogits, dlogits.sum(axis=0)
        dh2 = (dlogits @ w3.T) * mask2 * (r2 > 0.0)
        dz2, dg2, dbe2 = batch_norm_backward(dh2, g2, saved2)
        dw2, db2 = a1.T @ dz2, dz2.sum(axis=0)
        dh1 = (dz2 @ w2.T) * mask1 * (r1 > 0.0)
        dz1, dg1, dbe1 = batch_norm_backward(dh1, g1, saved1)
        dw1, db1 = x.T @ dz1, dz1.sum(axis=0)
        self._adam([dw1, db1, dg1, dbe1, dw2, db2, dg2, dbe2, dw3, db3])
        return loss

    def _adam(self, grads):
        """PyTorch's Adam update, in place (bench/optim.py's "numpy, in place")."""
        self.t += 1
        step_size = LR / (1 - BETA1**self.t)
        root_correction = (1 - BETA2**self.t) ** 0.5
        for p, g, m, v, work in zip(self.params, grads, self.m, self.v, self.work):
            m *= BETA1
            m += (1 - BETA1) * g
            v *= BETA2
            v += (1 - BETA2) * (g * g)
            np.sqrt(v, out=work)
            work /= root_correction
            work += ADAM_EPS
            np.divide(m, work, out=work)
            work *= -step_size
            p += work

    def evaluate(self, x, labels):
        """(loss, accuracy) in evaluation mode: running statistics, no dropout."""
        w1, b1, g1, be1, w2, b2, g2, be2, w3, b3 = self.params
        mean1, var1, mean2, var2 = self.running
        h1 = np.maximum(_batch_norm_eval(x @ w1 + b1, g1, be1, mean1, var1), 0.0)
        h2 = np.maximum(_batch_norm_eval(h1 @ w2 + b2, g2, be2, mean2, var2), 0.0)
        logits = h2 @ w3 + b3
        loss, _ = _cross_entropy(logits, labels, grad=False)
        return loss, float(np.mean(logits.argmax(axis=1) == labels))


def _cross_entropy(logits, labels, grad):
    n = len(labels)
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    sums = exp.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    loss = float(np.log(sums).mean() - shifted[rows, labels].mean())
    if not grad:
        return loss, None
    dlogits = exp / sums
    dlogits[rows, labels] -= 1.0
    dlogits /= n
    return loss, dlogits


def _batch_norm_eval(z, gamma, beta, running_mean, running_var):
    return (z - running_mean) / np.sqrt(running_var + BN_EPS) * gamma + beta


def numpy_training(splits, epochs, seed=SEED):
    """The hand-written run; returns (network, per-step losses). Batches and dropout masks
    come from the generators `fit` derives from `seed` ([seed, 0] and [seed, 1])."""
    manual_seed(seed)
    net = NumpyMLP(SAMPLE["build_model"]())
    batch_rng = np.random.default_rng([seed, 0])
    dropout_rng = np.random.default_rng([seed, 1])
    train, val = splits.train, splits.val
    losses = []
    for _ in range(epochs):
        order = batch_rng.permutation(len(train.x))
        for start in range(0, len(order), BATCH_SIZE):
            index = order[start : start + BATCH_SIZE]
            losses.append(net.train_step(train.x[index], train.y[index], dropout_rng))
        net.evaluate(train.x, train.y)
        net.evaluate(val.x, val.y)
    return net, losses


def topograd_training(splits, epochs, track_stats, seed=SEED, replay=True):
    """The sample's run through `fit`; returns (model, per-step losses)."""
    manual_seed(seed)
    model = SAMPLE["build_model"]()
    history = fit(model, splits.train, Adam(model.parameters(), lr=LR), epochs=epochs,
                  batch_size=BATCH_SIZE, val=splits.val, seed=seed, track_stats=track_stats,
                  progress=False, log=None, replay=replay)  # fmt: skip
    return model, history.step_loss


IMPLEMENTATIONS = (
    ("numpy, hand-written", numpy_training),
    ("topograd fit", lambda splits, epochs: topograd_training(splits, epochs, True)),
    (
        "topograd fit, track_stats=False",
        lambda splits, epochs: topograd_training(splits, epochs, False),
    ),
    (
        "topograd fit, replay=False",
        lambda splits, epochs: topograd_training(splits, epochs, True, replay=False),
    ),
)


def cross_check(splits):
    """One epoch each: the per-step losses must agree (same batches, masks and arithmetic)."""
    _, reference = numpy_training(splits, 1)
    lines, ok = [], True
    for name, run in IMPLEMENTATIONS[1:]:
        _, losses = run(splits, 1)
        difference = max(abs(a - b) / abs(b) for a, b in zip(losses, reference, strict=True))
        agree = difference <= TOLERANCE
        ok &= agree
        lines.append(
            f"  {name:32s} vs numpy over {len(reference)} steps: largest relative loss "
            f"difference {difference:.1e}  {'ok' if agree else 'DISAGREE'}"
        )
    return lines, ok


def test_accuracy(result, splits):
    model = result[0]
    if isinstance(model, NumpyMLP):
        return model.evaluate(splits.test.x, splits.test.y)[1]
    return evaluate(model, splits.test)[1]


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


def time_interleaved(splits, epochs, reps, clock=time.perf_counter):
    """Median seconds of each implementation's whole run, and each one's last test accuracy."""
    times = [[] for _ in IMPLEMENTATIONS]
    accuracies = [None] * len(IMPLEMENTATIONS)
    order = list(range(len(IMPLEMENTATIONS)))
    for k in range(reps):
        rotation = order[k % len(order) :] + order[: k % len(order)]
        for i in rotation:
            gc.collect()
            gc.freeze()
            start = clock()
            result = IMPLEMENTATIONS[i][1](splits, epochs)
            times[i].append(clock() - start)
            gc.unfreeze()
            accuracies[i] = test_accuracy(result, splits)
    return [statistics.median(t) for t in times], times, accuracies


def paired_ratios(times, index):
    """Each repetition's run of `index` over the same repetition's numpy run: runs next to
    each other in time share the machine's state, so a slow spell of the machine (a
    neighbour's load on a shared host) cancels out of these, not out of the medians."""
    return sorted(mine / floor for mine, floor in zip(times[index], times[0]))


def markdown_table(medians, times, accuracies):
    lines = [
        "| implementation | median s | min s | max s | vs numpy | paired vs numpy "
        "| test accuracy |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for index, ((name, _), median, runs, accuracy) in enumerate(
        zip(IMPLEMENTATIONS, medians, times, accuracies)
    ):
        paired = paired_ratios(times, index)
        lines.append(
            f"| {name} | {median:.3f} | {min(runs):.3f} | {max(runs):.3f} | "
            f"{median / medians[0]:.2f}x | {statistics.median(paired):.2f}x "
            f"({paired[0]:.2f}-{paired[-1]:.2f}) | {accuracy:.4f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="timed runs per implementation")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument(
        "--clock",
        choices=tuple(CLOCKS),
        default="wall",
        help="cpu: the thread's CPU time, steadier than the wall clock on a busy machine",
    )
    args = parser.parse_args(argv)
    splits = SAMPLE["load_splits"]()

    lines, ok = cross_check(splits)
    print("cross-check, one epoch with dropout (same batches and masks):")
    print("\n".join(lines))
    if not ok:
        print("ERROR: the implementations disagree", file=sys.stderr)
        return 1

    medians, times, accuracies = time_interleaved(
        splits, args.epochs, args.reps, CLOCKS[args.clock]
    )
    threads = ", ".join(
        f"{name}={os.environ[name]}"
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    )
    steps = args.epochs * -(-len(splits.train) // BATCH_SIZE)
    print()
    print(
        f"workload: samples/digits_mlp.py, {args.epochs} epochs x batch {BATCH_SIZE} "
        f"({steps} Adam steps) on {len(splits.train)} digits plus a train and val evaluation "
        f"per epoch; median {args.clock} time of {args.reps} interleaved runs; {threads}, "
        f"{os.cpu_count()} cores"
    )
    print()
    print(markdown_table(medians, times, accuracies))
    print()
    for index in (1, 2):
        ratio = medians[index] / medians[0]
        paired = statistics.median(paired_ratios(times, index))
        verdict = "met" if paired <= TARGET else "MISSED"
        print(f"target: {IMPLEMENTATIONS[index][0]} within {TARGET}x of numpy: {verdict} "
              f"(paired {paired:.2f}x; ratio of medians {ratio:.2f}x)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
