"""GUI tests run without a screen: Qt's offscreen platform, set before Qt is imported."""

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PySide6")
