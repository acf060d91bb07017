"""The file behind the editor: open and save (atomically), whether it has unsaved edits,
news of another program changing it, and the recently opened files."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QFileSystemWatcher, QObject, QSettings, QTimer, Signal
from topograd.dsl.training import replace_atomically

UNTITLED = "untitled.tg"
BOM = b"\xef\xbb\xbf"
SETTLE_MS = 50
"""How long to let a burst of file-system notices settle before looking at the file."""


class Document(QObject):
    """The model file being edited: its path (None until first saved), its unsaved-edits
    flag, and a watch on the file that reports changes made by other programs."""

    dirtyChanged = Signal(bool)
    pathChanged = Signal(object)  # a Path, or None if untitled
    changedOnDisk = Signal(str)  # the file no longer holds our text

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._path: Path | None = None
        self._dirty = False
        self._known: bytes | None = None  # the file's bytes as we last read, wrote or saw them
        self._bom = False
        self._newline = "\n"
        self._settle = QTimer(self)
        self._settle.setSingleShot(True)
        self._settle.setInterval(SETTLE_MS)
        self._settle.timeout.connect(self._look_at_disk)
        self._watcher = QFileSystemWatcher(self)
        self._watcher.fileChanged.connect(self._settle.start)
        self._watcher.directoryChanged.connect(self._settle.start)

    @property
    def path(self) -> Path | None:
        """The file's absolute path, or None for a document never saved."""
        return self._path

    @property
    def name(self) -> str:
        """The name checks and messages use: the path, or "untitled.tg"."""
        return str(self._path) if self._path is not None else UNTITLED

    @property
    def dirty(self) -> bool:
        """Whether the editor holds edits that are not in the file."""
        return self._dirty

    def set_dirty(self, dirty: bool) -> None:
        """Record whether there are unsaved edits; dirtyChanged tells when that flips."""
        if dirty != self._dirty:
            self._dirty = dirty
            self.dirtyChanged.emit(dirty)

    def new(self) -> None:
        """Start an untitled document."""
        self._adopt(None, None)

    def open(self, path) -> str:
        """Read a model file (UTF-8, a BOM skipped as the CLI does) and make it this
        document; its text has "\\n" line ends. Raises OSError or UnicodeDecodeError."""
        path = Path(os.path.abspath(path))
        data = path.read_bytes()
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            reason = f"{error.reason} in {path}"
            raise UnicodeDecodeError(error.encoding, data, error.start, error.end, reason) from None
        self._bom = data.startswith(BOM)
        self._newline = "\r\n" if b"\r\n" in data else "\n"
        self._adopt(path, data)
        return text.replace("\r\n", "\n")

    def save(self, text: str) -> None:
        """Write the text to the document's file, keeping its BOM and line ends."""
        if self._path is None:
            raise ValueError("an untitled document is saved with save_as(path, text)")
        self.save_as(self._path, text)

    def save_as(self, path, text: str) -> None:
        """Write the text to `path` atomically and make that file this document."""
        path = Path(os.path.abspath(path))
        lines = text.replace("\r\n", "\n")
        if self._newline != "\n":
            lines = lines.replace("\n", self._newline)
        data = (BOM if self._bom else b"") + lines.encode("utf-8")
        replace_atomically(path, lambda temporary: temporary.write_bytes(data))
        self._adopt(path, data)

    def _adopt(self, path: Path | None, data: bytes | None) -> None:
        self._known = data
        self._settle.stop()
        if path != self._path:
            self._unwatch()
            self._path = path
            self.pathChanged.emit(path)
        if path is None:
            self._bom, self._newline = False, "\n"
        self._watch()
        self.set_dirty(False)

    def _watch(self) -> None:
        """Watch the file and its folder: a file replaced by a rename drops out of the
        watcher, and the folder's notice tells when it is back."""
        if self._path is None:
            return
        wanted = [str(self._path.parent)]
        if self._path.exists():
            wanted.append(str(self._path))
        watched = set(self._watcher.files()) | set(self._watcher.directories())
        missing = [path for path in wanted if path not in watched]
        if missing:
            self._watcher.addPaths(missing)

    def _unwatch(self) -> None:
        watched = self._watcher.files() + self._watcher.directories()
        if watched:
            self._watcher.removePaths(watched)

    def _look_at_disk(self) -> None:
        if self._path is None:
            return
        self._watch()
        try:
            now = self._path.read_bytes()
        except OSError:
            now = None
        if now != self._known:
            self._known = now
            self.changedOnDisk.emit(str(self._path))


RECENT_KEY = "recent_files"
RECENT_LIMIT = 10


class RecentFiles:
    """The files opened lately, most recent first, kept in the user's settings."""

    def __init__(self, settings: QSettings | None = None, limit: int = RECENT_LIMIT):
        self.settings = settings if settings is not None else QSettings("topograd", "topograd")
        self.limit = limit

    def paths(self) -> list[str]:
        """The remembered files that still exist, most recent first."""
        stored = self.settings.value(RECENT_KEY, [], type=list)
        existing = [path for path in stored if os.path.isfile(path)]
        if existing != stored:
            self._store(existing)
        return existing

    def add(self, path) -> list[str]:
        """Put a file first (once); the oldest fall off past the limit."""
        path = os.path.abspath(path)
        paths = [path, *(other for other in self.paths() if other != path)][: self.limit]
        self._store(paths)
        return paths

    def remove(self, path) -> list[str]:
        """Forget a file, e.g. one that could not be opened."""
        path = os.path.abspath(path)
        paths = [other for other in self.paths() if other != path]
        self._store(paths)
        return paths

    def _store(self, paths: list[str]) -> None:
        self.settings.setValue(RECENT_KEY, paths)
        self.settings.sync()
