"""Named registries (layers, initializers, losses, ...) that the DSL resolves names through.

An unknown name raises a KeyError-derived error that lists the known names and suggests the
closest one, so a typo in a model file reads "did you mean 'batchnorm'?".
"""

from __future__ import annotations

import difflib


class UnknownNameError(KeyError):
    """A registry lookup failed; `suggestion` is the closest known name or None."""

    def __init__(self, kind, name, known):
        self.kind = kind
        self.name = name
        self.known = sorted(known)
        close = difflib.get_close_matches(name, self.known, n=1)
        self.suggestion = close[0] if close else None
        hint = f"; did you mean {self.suggestion!r}?" if self.suggestion else ""
        super().__init__(f"unknown {kind} {name!r}{hint} (known: {', '.join(self.known)})")

    def __str__(self):
        return self.args[0]


class Registry:
    """A name -> object table filled by a decorator: `@LAYERS.register("linear")`."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, object] = {}

    def register(self, name: str):
        def add(obj):
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return add

    def unregister(self, name: str) -> None:
        """Remove an entry (a custom op's, when its plugin removes it again)."""
        self.get(name)  # the same error for an unknown name
        del self._entries[name]

    def get(self, name: str):
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._entries) from None

    def __contains__(self, name) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)

    def items(self):
        return self._entries.items()
