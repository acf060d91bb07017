"""The order interleaved benchmarks run their implementations in: a fresh random one each round.

A step's time depends on what ran before it in the process. In bench/tensor.py at batch 32, a
step right after PyTorch's took 0.07 ms longer for the numpy floor and 0.2-0.25 ms longer for
every topograd row, and the toll reaches the step after that too (one thread ran them all, so
no other thread was spinning; the likely cause is what torch's kernels leave in the caches and
branch predictors, and topograd runs more distinct Python than the floor).

Rotating one fixed order, as the benchmarks first did, changes who starts a round but never
who follows whom: "composed, replayed" ran right after torch on every step (1.50x the floor;
1.29x with torch's toll shared out). Designs that balance the direct neighbours exactly
(Williams' squares; a cycle through every ordered pair) still left the step two places on
unbalanced: two copies of one implementation measured 4% apart, and up to 7% across the seam
between one square's orders. Orders drawn at random (seeded, so a run can be repeated)
favour no position and no neighbour at any distance: the two copies came within 1%.
"""

from __future__ import annotations

import random
import time


def orders(count: int, rounds: int, seed: int = 0):
    """`rounds` orders of the implementations 0 .. count-1, each a random permutation."""
    if count < 1:
        raise ValueError(f"need at least one implementation, got {count}")
    draw = random.Random(seed)
    for _ in range(rounds):
        order = list(range(count))
        draw.shuffle(order)
        yield order


def time_interleaved(steps, reps, warmup, clock=time.perf_counter, seed: int = 0):
    """Seconds of every timed call of each of `steps` (callables taking no argument): one call
    of each in turn, in a random order each round; the first `warmup` rounds are not kept."""
    times = [[] for _ in steps]
    for k, order in enumerate(orders(len(steps), warmup + reps, seed)):
        for i in order:
            start = clock()
            steps[i]()
            elapsed = clock() - start
            if k >= warmup:
                times[i].append(elapsed)
    return times
