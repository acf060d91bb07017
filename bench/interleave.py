"""The order interleaved benchmarks run their implementations in: a balanced (Williams) design.

A step's time depends on what ran just before it in the process. In bench/tensor.py at batch
32, a step right after PyTorch's took 0.07 ms longer for the numpy floor and 0.2-0.25 ms longer
for every topograd row (one thread ran them all, so no other thread was spinning; the likely
cause is what torch's kernels leave in the caches and branch predictors, and topograd runs
more distinct Python than the floor). Rotating one fixed order, as the
benchmarks first did, changes who starts a repetition but never who follows whom: "composed,
replayed" ran after torch on every step and paid that toll every time (1.50x the floor; 1.29x
with this design).

Williams' design from crossover trials fixes the neighbours as well as the positions: over its
orders every implementation runs directly after every other equally often (once each for an
even count, twice for an odd one) and sits in every position equally often, so such carryover
costs every row alike. Only the first step of an order follows the previous order's last step,
one neighbour in `count`, outside the balance.
"""

from __future__ import annotations


def balanced_orders(count: int) -> list[list[int]]:
    """Williams' orders of `count` implementations: `count` of them when it is even, twice that
    when it is odd (each order also reversed; one order for one)."""
    if count < 1:
        raise ValueError(f"need at least one implementation, got {count}")
    first, low, high = [0], 1, count - 1
    while len(first) < count:  # 0, 1, n-1, 2, n-2, ...
        first.append(low)
        low += 1
        if len(first) < count:
            first.append(high)
            high -= 1
    orders = [[(index + shift) % count for index in first] for shift in range(count)]
    if count % 2 and count > 1:
        orders += [order[::-1] for order in orders]
    return orders


def order_for(repetition: int, count: int) -> list[int]:
    """The order of the implementations in repetition `repetition` (0, 1, ...)."""
    orders = balanced_orders(count)
    return orders[repetition % len(orders)]
