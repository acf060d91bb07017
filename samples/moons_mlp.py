"""Train a small MLP with batch norm and dropout on two moons, using only the engine.

This is the bundled main job until the model language lands: `topograd demo` runs it.
SGD with Nesterov momentum, no weight decay on biases and batch-norm parameters, and a
cosine learning-rate schedule, all from engine.optim.

    python samples/moons_mlp.py [--epochs 60] [--seed 0] [--dot graph.dot]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from topograd import Graph, Tensor, manual_seed, nn, no_grad
from topograd import functional as F
from topograd.optim import SGD
from topograd.optim.schedules import CosineAnnealingLR


def two_moons(n, noise, rng):
    """Two interleaved half circles (scikit-learn's make_moons recipe), labels 0 and 1."""
    half = n // 2
    angles_top = rng.uniform(0, np.pi, half)
    angles_bottom = rng.uniform(0, np.pi, n - half)
    top = np.c_[np.cos(angles_top), np.sin(angles_top)]
    bottom = np.c_[1 - np.cos(angles_bottom), 0.5 - np.sin(angles_bottom)]
    x = np.concatenate([top, bottom]) + rng.normal(scale=noise, size=(n, 2))
    y = np.concatenate([np.zeros(half, dtype=int), np.ones(n - half, dtype=int)])
    order = rng.permutation(n)
    return x[order], y[order]


def build_model():
    return nn.Sequential(
        nn.Linear(2, 32, init="he"),
        nn.BatchNorm1d(32),
        nn.ReLU(),
        nn.Dropout(0.1),
        nn.Linear(32, 32, init="he"),
        nn.BatchNorm1d(32),
        nn.ReLU(),
        nn.Linear(32, 2),
    )


def accuracy(model, x, y):
    model.eval()
    with no_grad():
        predicted = model(Tensor(x)).data.argmax(axis=1)
    model.train()
    return float((predicted == y).mean())


def make_optimizer(model, lr, momentum, weight_decay):
    """Decay only the weight matrices: biases and batch-norm scales/shifts get none."""
    matrices = [p for p in model.parameters() if p.ndim == 2]
    others = [p for p in model.parameters() if p.ndim != 2]
    groups = [{"params": matrices}, {"params": others, "weight_decay": 0.0}]
    return SGD(groups, lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)


def train(epochs=60, seed=0, batch_size=32, lr=0.1, momentum=0.9, dot_path=None, log=print):
    """Train and return (train accuracy, test accuracy, seconds)."""
    rng = np.random.default_rng(seed)
    manual_seed(seed)
    x, y = two_moons(600, 0.15, rng)
    x_train, y_train, x_test, y_test = x[:500], y[:500], x[500:], y[500:]
    model = build_model()
    optimizer = make_optimizer(model, lr, momentum, weight_decay=1e-4)
    batches_per_epoch = -(-len(x_train) // batch_size)
    schedule = CosineAnnealingLR(optimizer, T_max=epochs * batches_per_epoch)
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(x_train))
        losses = []
        for begin in range(0, len(order), batch_size):
            batch = order[begin : begin + batch_size]
            loss = F.cross_entropy(model(Tensor(x_train[batch])), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
        if epoch == 1 or epoch % 10 == 0 or epoch == epochs:
            log(
                f"epoch {epoch:3d}  loss {np.mean(losses):.4f}  "
                f"lr {schedule.get_last_lr()[0]:.4f}  "
                f"train acc {accuracy(model, x_train, y_train):.3f}  "
                f"test acc {accuracy(model, x_test, y_test):.3f}"
            )
    seconds = time.perf_counter() - start
    if dot_path is not None:
        graph = Graph(F.cross_entropy(model(Tensor(x_train[:8])), y_train[:8]))
        Path(dot_path).write_text(graph.to_dot())
        log(f"wrote the graph of one step ({len(graph)} nodes) to {dot_path}")
    return accuracy(model, x_train, y_train), accuracy(model, x_test, y_test), seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description="Train an MLP on two moons with topograd.")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dot", help="also write the graph of one training step as DOT")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    train_acc, test_acc, seconds = train(args.epochs, args.seed, dot_path=args.dot)
    print(f"done in {seconds:.1f} s: train accuracy {train_acc:.3f}, test accuracy {test_acc:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
