"""The benchmarks' interleaving order (bench/interleave.py) is balanced: Williams' design."""

import importlib.util
from collections import Counter
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parent.parent / "bench" / "interleave.py"
_SPEC = importlib.util.spec_from_file_location("bench_interleave", _PATH)
interleave = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(interleave)


@pytest.mark.parametrize("count", range(2, 10))
def test_every_implementation_follows_every_other_equally_often(count):
    orders = interleave.balanced_orders(count)
    assert len(orders) == (count if count % 2 == 0 else 2 * count)
    for order in orders:
        assert sorted(order) == list(range(count))  # each order runs every implementation once
    neighbours = Counter((order[i], order[i + 1]) for order in orders for i in range(count - 1))
    expected = 1 if count % 2 == 0 else 2
    assert set(neighbours) == {(a, b) for a in range(count) for b in range(count) if a != b}
    assert set(neighbours.values()) == {expected}
    positions = Counter(
        (index, position) for order in orders for position, index in enumerate(order)
    )
    assert set(positions.values()) == {expected}


def test_orders_repeat_with_the_repetitions():
    assert interleave.order_for(0, 4) == [0, 1, 3, 2]
    assert interleave.order_for(5, 4) == interleave.order_for(1, 4)
    assert interleave.balanced_orders(1) == [[0]]
    with pytest.raises(ValueError, match="at least one"):
        interleave.balanced_orders(0)
