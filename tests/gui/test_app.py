"""`topograd gui FILE --steps K --screenshot out.png`, run as a person would: a separate
process, offscreen, and on a real X server (Xvfb) with Qt's xcb platform."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtGui import QImage

ROOT = Path(__file__).resolve().parents[2]
NEURON = ROOT / "samples" / "neuron.tg"


def topograd_gui(args, env_extra, tmp_path, wrapper=()):
    env = dict(os.environ, TOPOGRAD_CACHE=str(tmp_path / "cache"), **env_extra)
    command = [*wrapper, sys.executable, "-m", "topograd", "gui", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)


def distinct_colours(image: QImage) -> int:
    """How many colours a coarse grid of the picture holds (a blank window has one or two)."""
    colours = set()
    for y in range(0, image.height(), 7):
        for x in range(0, image.width(), 7):
            colours.add(image.pixel(x, y))
    return len(colours)


def check_screenshot(result, shot: Path, size=(1200, 800)) -> None:
    assert result.returncode == 0, result.stderr
    assert f"saved {shot} ({size[0]}x{size[1]})" in result.stdout
    image = QImage(str(shot))
    assert (image.width(), image.height()) == size
    assert distinct_colours(image) > 20  # editor, graph and inspector were painted


def test_screenshot_offscreen(tmp_path):
    shot = tmp_path / "shot.png"
    result = topograd_gui(
        [NEURON, "--steps", 7, "--screenshot", shot, "--size", "1200x800"],
        {"QT_QPA_PLATFORM": "offscreen"},
        tmp_path,
    )
    check_screenshot(result, shot)
    assert list(tmp_path.glob("*.png")) == [shot]  # written atomically: no temporary left


@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="Xvfb is not installed")
def test_screenshot_on_a_real_x_server(tmp_path):
    shot = tmp_path / "x.png"
    result = topograd_gui(
        [NEURON, "--steps", 12, "--screenshot", shot, "--size", "1200x800"],
        {"QT_QPA_PLATFORM": "xcb"},
        tmp_path,
        wrapper=("xvfb-run", "-a", "-s", "-screen 0 1600x1000x24"),
    )
    check_screenshot(result, shot)


def test_a_screenshot_that_cannot_be_written_fails_cleanly(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    result = topograd_gui(
        [NEURON, "--screenshot", blocked / "shot.png"], {"QT_QPA_PLATFORM": "offscreen"}, tmp_path
    )
    assert result.returncode == 1
    assert "cannot write" in result.stderr and "Traceback" not in result.stderr
