"""GUI tests run without a screen: Qt's offscreen platform, set before Qt is imported."""

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PySide6")


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    """A main window with its own layout cache and settings file, shut down afterwards."""
    from PySide6.QtCore import QSettings
    from topograd.gui.documents import RecentFiles
    from topograd.gui.window import MainWindow

    monkeypatch.setenv("TOPOGRAD_CACHE", str(tmp_path / "layouts"))
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    shown = MainWindow(recent=RecentFiles(settings))
    qtbot.addWidget(shown)
    yield shown
    shown.training.shutdown()
