"""The benchmarks' interleaving (bench/interleave.py): one step of each implementation per
round, in an order that favours no position and no neighbour."""

import importlib.util
import itertools
from collections import Counter
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parent.parent / "bench" / "interleave.py"
_SPEC = importlib.util.spec_from_file_location("bench_interleave", _PATH)
interleave = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(interleave)


def test_every_round_runs_every_implementation_once():
    rounds = list(interleave.orders(6, 300))
    assert len(rounds) == 300
    assert all(sorted(order) == list(range(6)) for order in rounds)


def test_no_implementation_keeps_a_neighbour_or_a_place():
    """Over 3,000 rounds of 6, each implementation follows each other (and sits in each place)
    about equally often, at distance one and two: within 15% of the mean count (a rotation of
    one order puts one implementation behind another every time)."""
    steps = [i for order in interleave.orders(6, 3000) for i in order]
    for distance in (1, 2):
        pairs = Counter((a, b) for a, b in zip(steps, steps[distance:], strict=False) if a != b)
        mean = sum(pairs.values()) / len(pairs)
        assert len(pairs) == 30
        assert max(abs(n - mean) for n in pairs.values()) < 0.15 * mean
    places = Counter(
        (i, place) for order in interleave.orders(6, 3000) for place, i in enumerate(order)
    )
    assert max(abs(n - 500) for n in places.values()) < 75


def test_a_seed_repeats_its_orders_and_another_does_not():
    first = list(interleave.orders(5, 20, seed=3))
    assert first == list(interleave.orders(5, 20, seed=3))
    assert first != list(interleave.orders(5, 20, seed=4))
    assert list(itertools.chain.from_iterable(interleave.orders(1, 3))) == [0, 0, 0]
    with pytest.raises(ValueError, match="at least one"):
        list(interleave.orders(0, 1))


def test_time_interleaved_keeps_every_call_after_the_warmup():
    calls = []
    steps = [lambda name=name: calls.append(name) for name in "abc"]
    ticks = iter(range(1000))
    times = interleave.time_interleaved(steps, reps=4, warmup=2, clock=lambda: next(ticks))
    assert sorted(calls) == sorted("abc" * 6)
    assert [len(t) for t in times] == [4, 4, 4]
    assert all(t == 1 for row in times for t in row)  # one tick between start and end
