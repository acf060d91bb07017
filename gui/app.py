"""`topograd gui [FILE]`: start Qt, open the window, and optionally take K steps and save a
screenshot (how the README's pictures are made, and how a test drives a real X server).

Qt is imported here and nowhere in the engine or the language, so the command line runs
without it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from topograd.dsl import allocator
from topograd.dsl.training import CommandError, write_atomically
from topograd.gui.window import MainWindow


def main(
    path=None, steps: int = 0, screenshot=None, size=(1500, 920), collapse=None, train=0
) -> int:
    """Open the window on `path`; with `screenshot`, train `train` epochs (the training panel
    as a person would), take `steps` steps (forward, then backward), save the window as PNG
    there and quit. The exit code: 0, or 1 when the file could not be opened or the
    screenshot could not be saved."""
    allocator.keep_freed_memory()  # steps taken in the window reuse freed arrays
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("topograd")
    window = MainWindow()
    window.resize(*size)
    if path is not None and not window.open_file(path):
        print(f"topograd: cannot open {path}", file=sys.stderr)
        if screenshot is not None:
            return 1
    window.show()
    if screenshot is None:
        return app.exec()
    result = {"code": 1}

    def script() -> None:
        _script(app, window, steps, screenshot, collapse, result)

    if train:
        window.training.trainingFinished.connect(lambda _: QTimer.singleShot(50, script))
        QTimer.singleShot(50, lambda: _train(window, train))
    else:
        QTimer.singleShot(50, script)
    app.exec()
    return result["code"]


def _train(window: MainWindow, epochs: int) -> None:
    """Train `epochs` epochs from the training panel (the script goes on when it is done)."""
    panel = window.training
    panel.unit.setCurrentText("epochs")
    panel.amount.setValue(epochs)
    panel.train()
    if not panel.running:
        print("topograd: --train: the file has nothing to train", file=sys.stderr)
        QApplication.instance().quit()


# How long the window gets to be mapped and painted before the screenshot (a real X server
# shows a window asynchronously).
SETTLE_MS = 400


def _script(app, window: MainWindow, steps: int, screenshot, collapse, result) -> None:
    """Take the steps, give the window time to paint, then save it and quit."""
    try:
        if collapse is not None:
            (window.collapse_all if collapse else window.expand_all)()
            window.show_start()
        for _ in range(steps):
            window.controller.step()
    except Exception:
        app.quit()
        raise

    def finish():
        try:
            if save_screenshot(window, screenshot):
                result["code"] = 0
        finally:
            app.quit()

    QTimer.singleShot(SETTLE_MS, finish)


def save_screenshot(window, path) -> bool:
    """The window as the screen shows it (a real X server) or as Qt renders it (offscreen),
    written atomically as PNG; False with a message when it cannot be written."""
    app = QApplication.instance()
    if app.platformName() == "xcb" and window.windowHandle() is not None:
        picture = window.windowHandle().screen().grabWindow(window.winId())
    else:
        picture = window.grab()

    def write(temporary: Path) -> None:
        if not picture.save(str(temporary), "PNG"):
            raise OSError(f"Qt could not write a PNG to {temporary}")

    try:
        write_atomically(path, write)
    except CommandError as error:
        print(f"topograd: {error}", file=sys.stderr)
        return False
    print(f"saved {path} ({picture.width()}x{picture.height()})")
    return True
