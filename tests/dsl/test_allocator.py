"""dsl/allocator.py: the applications raise glibc's thresholds; importing topograd does not.

A fake C library stands in for glibc where a test checks which mallopt calls are made (the
real setting is process-wide and cannot be undone); a subprocess checks the real one.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest
from topograd.dsl import allocator
from topograd.dsl.cli import main

MiB = 2**20

NEURON = "graph neuron { input x = 2.0  param w = -3.0  output y = tanh(x * w) }\n"

# Spies on every symbol looked up through ctypes, imports topograd and its parts, then applies
# the setting for real and checks that a 16 MiB block then comes from the heap, not from mmap.
IMPORTS_THEN_APPLY = textwrap.dedent(
    """
    import ctypes, json

    looked_up = []
    lookup = ctypes.CDLL.__getitem__

    def spy(self, name):
        looked_up.append(name)
        return lookup(self, name)

    ctypes.CDLL.__getitem__ = spy

    import topograd, topograd.engine, topograd.dsl, topograd.dsl.cli
    from topograd.dsl import allocator

    report = {"on_import": "mallopt" in looked_up, "applied_before": allocator.applied()}
    report["result"] = allocator.keep_freed_memory()
    report["applied_after"] = allocator.applied()
    report["on_call"] = "mallopt" in looked_up

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = Mallinfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = (ctypes.c_void_p,)
    mapped = libc.mallinfo2().hblkhd
    block = libc.malloc(16 * 2**20)
    report["mmapped_16_mib"] = libc.mallinfo2().hblkhd - mapped
    libc.free(block)
    print(json.dumps(report))
    """
)


class FakeLibc:
    """A C library that records mallopt calls and answers `answer` (glibc: 1 done, 0 refused)."""

    def __init__(self, glibc=True, answer=1):
        self.calls = []
        if glibc:
            self.gnu_get_libc_version = lambda: b"2.36"

        def mallopt(parameter, value):
            self.calls.append((parameter, value))
            return answer

        self.mallopt = mallopt


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    """Each test starts as a process that set nothing, with TOPOGRAD_MALLOC unset."""
    monkeypatch.setattr(allocator, "_applied", None)
    monkeypatch.delenv(allocator.ENVIRONMENT, raising=False)


def use_libc(monkeypatch, libc: FakeLibc) -> FakeLibc:
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: libc)
    return libc


def test_importing_topograd_sets_nothing_and_the_call_applies_for_real():
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("the real setting is glibc's")
    environment = {k: v for k, v in os.environ.items() if k != allocator.ENVIRONMENT}
    done = subprocess.run(
        [sys.executable, "-c", IMPORTS_THEN_APPLY],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
    )
    report = json.loads(done.stdout)
    assert report["on_import"] is False
    assert report["on_call"] is True  # the spy sees a lookup of mallopt
    assert report["applied_before"] is None
    assert report["result"] is True
    assert report["applied_after"] == [allocator.MMAP_THRESHOLD, allocator.TRIM_THRESHOLD]
    assert report["mmapped_16_mib"] == 0  # glibc's default threshold would mmap it


def test_sets_mmap_then_trim_threshold_once(monkeypatch):
    libc = use_libc(monkeypatch, FakeLibc())
    assert allocator.keep_freed_memory(8 * MiB, 64 * MiB) is True
    assert allocator.keep_freed_memory(8 * MiB, 64 * MiB) is True
    assert libc.calls == [
        (allocator.M_MMAP_THRESHOLD, 8 * MiB),
        (allocator.M_TRIM_THRESHOLD, 64 * MiB),
    ]
    assert allocator.applied() == (8 * MiB, 64 * MiB)
    assert (allocator.M_TRIM_THRESHOLD, allocator.M_MMAP_THRESHOLD) == (-1, -3)  # malloc.h


def test_other_values_are_applied_again(monkeypatch):
    libc = use_libc(monkeypatch, FakeLibc())
    allocator.keep_freed_memory()
    assert allocator.keep_freed_memory(4 * MiB, 32 * MiB) is True
    assert libc.calls[2:] == [(-3, 4 * MiB), (-1, 32 * MiB)]


def test_environment_default_is_a_no_op(monkeypatch):
    libc = use_libc(monkeypatch, FakeLibc())
    monkeypatch.setenv(allocator.ENVIRONMENT, "default")
    assert allocator.keep_freed_memory() is False
    assert libc.calls == []
    assert allocator.applied() is None


def test_an_unknown_environment_value_warns_and_keeps(monkeypatch):
    use_libc(monkeypatch, FakeLibc())
    monkeypatch.setenv(allocator.ENVIRONMENT, "defualt")
    with pytest.warns(UserWarning, match="TOPOGRAD_MALLOC='defualt'"):
        assert allocator.keep_freed_memory() is True


def test_not_glibc_is_a_no_op(monkeypatch):
    libc = use_libc(monkeypatch, FakeLibc(glibc=False))
    assert allocator.keep_freed_memory() is False
    assert libc.calls == []
    assert allocator.applied() is None


def test_a_refused_value_reports_false(monkeypatch):
    libc = use_libc(monkeypatch, FakeLibc(answer=0))
    assert allocator.keep_freed_memory() is False
    assert libc.calls == [(-3, allocator.MMAP_THRESHOLD)]  # the trim is left as it was
    assert allocator.applied() is None


@pytest.mark.parametrize("value", [-1, 2**31, 1.5, True])
def test_a_threshold_mallopt_cannot_take_is_an_error(monkeypatch, value):
    libc = use_libc(monkeypatch, FakeLibc())
    with pytest.raises(ValueError, match=f"trim_threshold must be .*got {value!r}"):
        allocator.keep_freed_memory(trim_threshold=value)
    assert libc.calls == []


def test_the_command_line_applies_it_first(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append("kept") or True)
    model = tmp_path / "neuron.tg"
    model.write_text(NEURON)
    assert main(["check", str(model)]) == 0
    assert calls == ["kept"]


def test_the_window_applies_it_before_qt_starts(monkeypatch):
    pytest.importorskip("PySide6")
    from topograd.gui import app

    class StartedError(Exception):
        pass

    def keep_freed_memory():
        raise StartedError

    monkeypatch.setattr(allocator, "keep_freed_memory", keep_freed_memory)
    with pytest.raises(StartedError):
        app.main()
