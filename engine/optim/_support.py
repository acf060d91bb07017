"""What the update rules share: reusable scratch arrays and checks for the non-numeric options.

The rules in sgd.py, adaptive.py and adam.py write every intermediate into scratch arrays
(numpy's `out=`), because an update allocates several parameter-sized temporaries otherwise:
on a 1,000,000-parameter model that is tens of megabytes a step, which glibc maps and unmaps
each time (page faults cost more than the arithmetic). The scratch arrays are views into one
flat buffer per dtype, sized for the largest parameter, so they cost a few parameters' worth of
memory however many parameters there are. They hold nothing between steps and are never saved.
"""

from __future__ import annotations

import numpy as np


class Workspace:
    """Scratch arrays shaped like a parameter, carved from one growing buffer per dtype."""

    def __init__(self):
        self._buffers: dict[np.dtype, np.ndarray] = {}
        self._views: dict[tuple, list[np.ndarray]] = {}  # (dtype, shape, count) -> views

    def take(self, like: np.ndarray, count: int) -> list[np.ndarray]:
        """`count` distinct, uninitialized arrays with the shape and dtype of `like` (the same
        views for the same request, made once)."""
        key = (like.dtype, like.shape, count)
        views = self._views.get(key)
        if views is not None:
            return views
        size = like.size
        buffer = self._buffers.get(like.dtype)
        if buffer is None or buffer.size < count * size:
            buffer = self._buffers[like.dtype] = np.empty(count * size, dtype=like.dtype)
            self._views.clear()  # views into the old buffer would keep it alive
        views = [buffer[i * size : (i + 1) * size].reshape(like.shape) for i in range(count)]
        self._views[key] = views
        return views


def check_flag(name: str, value) -> None:
    """Raise ValueError unless `value` is a bool (a truthy string would silently pass)."""
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"invalid {name}: expected True or False, got {value!r}")


def check_choice(name: str, value, choices: tuple[str, ...]) -> None:
    """Raise ValueError naming the choices unless `value` is one of them."""
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"invalid {name}: {value!r}; choose one of {options}")
