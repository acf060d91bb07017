"""Scalar mode against micrograd 0.1.0 on micrograd's own demo workload, in one process.

MLP 2-16-16-1 on 100 two-moons points, hinge loss plus L2, forward + backward + SGD, every
weight a single-number graph node (about 66,000 nodes a step). micrograd runs as people run
it (garbage collector on) and with the collector off; both engines start from the same
weights and the script checks that their losses agree at every step.

"Collector off" is measured two ways. The first table collects garbage between steps,
outside the timed region: micrograd's best case, each step starting from a clean heap. The
second runs many steps in a row with the collector off the whole time, as `gc.disable()`
before a training loop does: micrograd's cyclic graphs then pile up (about 0.2 s a step),
while topograd's acyclic graphs are freed by reference counting as they go.

`--clock cpu` times by the thread's CPU time instead of the wall clock (see bench/tensor.py).

    python bench/scalar.py [--steps 5] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workloads import scalar_mlp_weights, two_moons
from topograd import Graph, Tensor


class TopogradMLP:
    """micrograd's MLP written with topograd 0-d tensors."""

    def __init__(self, weights):
        self.layers = [
            [
                ([Tensor(w, requires_grad=True) for w in ws], Tensor(b, requires_grad=True))
                for ws, b in layer
            ]
            for layer in weights
        ]

    def parameters(self):
        return [p for layer in self.layers for ws, b in layer for p in (*ws, b)]

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def __call__(self, x):
        for depth, layer in enumerate(self.layers):
            last = depth == len(self.layers) - 1
            out = []
            for ws, b in layer:
                act = sum((wi * xi for wi, xi in zip(ws, x, strict=True)), b)
                out.append(act if last else act.relu())
            x = out
        return x[0]


def training_step(model, value, xs, ys, lr):
    """micrograd's demo step, written once for both engines (`value` makes an input node)."""
    scores = [model([value(v) for v in row]) for row in xs]
    losses = [(1 + -yi * si).relu() for yi, si in zip(ys, scores, strict=True)]
    data_loss = sum(losses) * (1.0 / len(losses))
    reg_loss = 1e-4 * sum(p * p for p in model.parameters())
    total = data_loss + reg_loss
    model.zero_grad()
    total.backward()
    for p in model.parameters():
        p.data -= lr * p.grad
    return total


def topograd_step(model, xs, ys, lr):
    return training_step(model, Tensor, xs, ys, lr)


def micrograd_model(weights):
    from micrograd.nn import MLP

    model = MLP(2, [16, 16, 1])
    for layer, layer_weights in zip(model.layers, weights, strict=True):
        for neuron, (ws, b) in zip(layer.neurons, layer_weights, strict=True):
            for value, w in zip(neuron.w, ws, strict=True):
                value.data = w
            neuron.b.data = b
    return model


def micrograd_step(model, xs, ys, lr):
    from micrograd.engine import Value

    return training_step(model, Value, xs, ys, lr)


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


def run_interleaved(configs, weights, xs, ys, steps, clock=time.perf_counter):
    """One step of each configuration in turn, `steps` times; medians of the step times.

    Interleaving spreads machine noise over all engines alike. Garbage is collected between
    steps, outside the timed region, so "gc off" means no collection during a step (and
    micrograd's cyclic graphs do not pile up in memory).
    """
    models = [make(weights) for _, _, make, _ in configs]
    times = [[] for _ in configs]
    losses = [[] for _ in configs]
    for k in range(steps):
        for i, (_, step, _, collector) in enumerate(configs):
            gc.collect()
            (gc.enable if collector else gc.disable)()
            try:
                start = clock()
                total = step(models[i], xs, ys, 1.0 - 0.9 * k / 100)
                times[i].append(clock() - start)
            finally:
                gc.enable()
            losses[i].append(float(total.data))
            del total
    return [statistics.median(t) for t in times], losses


def sustained_run(step, make, weights, xs, ys, steps, clock=time.perf_counter):
    """`steps` steps in a row with the collector off the whole time, as `gc.disable()` before
    a training loop does: nothing is collected between steps, so micrograd's cyclic graphs
    pile up in memory (topograd's graphs have no cycles and are freed as they go)."""
    model = make(weights)
    total = None
    gc.collect()
    gc.disable()
    times = []
    try:
        for k in range(steps):
            start = clock()
            total = step(model, xs, ys, 1.0 - 0.9 * k / 100)
            times.append(clock() - start)
    finally:
        del model, total
        gc.enable()
        gc.collect()
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="training steps per engine")
    parser.add_argument(
        "--sustained-steps",
        type=int,
        default=40,
        help="steps of the whole-run comparison with the collector off (0 skips it)",
    )
    parser.add_argument(
        "--clock",
        choices=tuple(CLOCKS),
        default="wall",
        help="cpu: the thread's CPU time, steadier than the wall clock on a busy machine",
    )
    args = parser.parse_args(argv)
    clock = CLOCKS[args.clock]
    x, y = two_moons()
    xs, ys = x.tolist(), y.tolist()
    weights = scalar_mlp_weights()

    probe = TopogradMLP(weights)
    scores = [probe([Tensor(v) for v in row]) for row in xs]
    nodes = len(
        Graph(sum(((1 + -yi * si).relu() for yi, si in zip(ys, scores, strict=True)))).nodes
    )
    del probe, scores

    configs = [
        ("micrograd 0.1.0, gc on", micrograd_step, micrograd_model, True),
        ("micrograd 0.1.0, gc off", micrograd_step, micrograd_model, False),
        ("topograd scalar, gc on", topograd_step, TopogradMLP, True),
        ("topograd scalar, gc off", topograd_step, TopogradMLP, False),
    ]
    seconds, losses = run_interleaved(configs, weights, xs, ys, args.steps, clock)
    rows = [(c[0], s, l) for c, s, l in zip(configs, seconds, losses, strict=True)]

    reference = rows[1][1]
    print(
        f"workload: MLP 2-16-16-1, 100 moons points, ~{nodes:,} forward nodes a step (loss graph "
        f"without L2), {args.steps} steps, median {args.clock} seconds per step"
    )
    print(f"{'engine':28s} {'s/step':>8s} {'vs micrograd gc off':>20s}")
    for label, seconds, _ in rows:
        print(f"{label:28s} {seconds:8.3f} {seconds / reference:19.2f}x")
    agree = max(abs(a - b) / abs(b) for a, b in zip(rows[0][2], rows[2][2], strict=True))
    print(
        f"largest relative difference between the engines' losses over {args.steps} steps: "
        f"{agree:.1e}"
    )
    if agree > 1e-9:
        print("ERROR: the engines disagree", file=sys.stderr)
        return 1
    if args.sustained_steps > 0:
        micrograd = sustained_run(
            micrograd_step, micrograd_model, weights, xs, ys, args.sustained_steps, clock
        )
        topograd = sustained_run(
            topograd_step, TopogradMLP, weights, xs, ys, args.sustained_steps, clock
        )
        print(
            f"\nwhole run with the collector off ({args.sustained_steps} steps in a row, nothing "
            "collected between steps), median seconds per step"
        )
        print(f"{'engine':28s} {'s/step':>8s} {'vs micrograd gc off':>20s}")
        print(f"{'micrograd 0.1.0, gc off':28s} {micrograd:8.3f} {1.0:19.2f}x")
        print(f"{'topograd scalar, gc off':28s} {topograd:8.3f} {topograd / micrograd:19.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
