"""Keep freed array memory in the process instead of handing it back to the OS every step.

glibc's malloc serves a block at or above M_MMAP_THRESHOLD with its own mmap and unmaps it at
free, and gives the top of the heap back to the OS once more than M_TRIM_THRESHOLD of it is
free. Its thresholds start at 128 KiB and only creep up (to at most 32 MiB for mmap, twice
that for the trim) as blocks are freed. A training step allocates and frees the same large
arrays every step, so with those defaults the step keeps mapping fresh pages and pays a page
fault on the first touch of each 4 KiB: at batch 1024, bench/tensor.py took 17 times the page
faults and its composed batch-norm step 1.6 times as long (the README's "Allocator settings").
Raising both thresholds at start lets the next step reuse the pages the last one freed. Both,
because setting either one stops glibc adapting the other: the trim threshold alone leaves
every block of 128 KiB or more to mmap and made the numpy step 2.7 times slower.

The setting is process-wide and cannot be undone, so only the applications call it (the
command line and the window), never an import of the engine: a program that imports topograd
keeps its own allocator settings. TOPOGRAD_MALLOC=default turns it off.
"""

from __future__ import annotations

import ctypes
import os
import warnings

# mallopt's parameter numbers, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MiB = 2**20
# Blocks below this come from the heap. 32 MiB is the most glibc's own adaptive threshold
# reaches and the largest value older glibc accepts (HEAP_MAX_SIZE / 2 on 64-bit; 2.36 takes
# more); a batch-1024 activation of width 256 in float64 is 2 MiB, and 256 MiB measured the same.
MMAP_THRESHOLD = 32 * MiB
# The free memory the heap top may keep, and so the most that stays mapped after a step. 64 MiB
# was enough for bench/tensor.py at batch 1024 but not at 4096, whose step frees more than that
# (the heap was still trimmed every step); 256 MiB and 1 GiB measured the same there.
TRIM_THRESHOLD = 256 * MiB

ENVIRONMENT = "TOPOGRAD_MALLOC"
INT_MAX = 2**31 - 1  # mallopt takes a C int

_applied: tuple[int, int] | None = None


def keep_freed_memory(
    mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD
) -> bool:
    """Raise glibc's mmap and trim thresholds (bytes) so that freed arrays are reused.

    Returns True when the thresholds are in place (calling again with the same values does
    nothing more). Returns False, changing nothing, when TOPOGRAD_MALLOC=default or the C
    library is not glibc (macOS, Windows, musl), and False when glibc refuses a value.

    >>> from topograd.dsl.allocator import keep_freed_memory
    >>> keep_freed_memory()  # on glibc; False elsewhere
    True
    """
    global _applied
    wanted = (
        _checked("mmap_threshold", mmap_threshold),
        _checked("trim_threshold", trim_threshold),
    )
    if _applied == wanted:
        return True
    if not _wanted_by_environment():
        return False
    libc = _glibc()
    if libc is None or libc.mallopt(M_MMAP_THRESHOLD, wanted[0]) != 1:
        return False
    if libc.mallopt(M_TRIM_THRESHOLD, wanted[1]) != 1:
        return False
    _applied = wanted
    return True


def applied() -> tuple[int, int] | None:
    """The (mmap, trim) thresholds this process set, or None while it has set none."""
    return _applied


def _checked(name: str, value: int) -> int:
    """A threshold mallopt can take: a C int of at least 0 (Python ints would overflow it)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INT_MAX:
        raise ValueError(f"{name} must be an int of bytes in [0, {INT_MAX}], got {value!r}")
    return value


def _wanted_by_environment() -> bool:
    """False when TOPOGRAD_MALLOC=default asks for glibc's own behaviour; warns on a typo."""
    value = os.environ.get(ENVIRONMENT, "keep").strip().lower()
    if value not in ("keep", "default"):
        warnings.warn(
            f"{ENVIRONMENT}={value!r} is neither 'keep' nor 'default'; keeping freed memory",
            stacklevel=3,
        )
    return value != "default"


def _glibc():
    """The process's C library when it is glibc, else None: mallopt's parameter numbers are
    glibc's, and only glibc exports gnu_get_libc_version (musl, macOS and Windows do not)."""
    if os.name != "posix":
        return None
    libc = ctypes.CDLL(None)  # the symbols already loaded: the malloc this process uses
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    libc.mallopt.restype = ctypes.c_int
    return libc
