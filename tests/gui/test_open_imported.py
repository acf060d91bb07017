"""`topograd gui model.onnx` and `topograd gui file.py:ClassName` open a model that is not a
model file: imported first (as `topograd import` does), then stepped like any other."""

from __future__ import annotations

import pytest
from test_app import check_screenshot, topograd_gui

MODULE = """
import torch
from torch import nn


class Skip(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 4)
        self.fc2 = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc2(torch.relu(x + self.fc1(x)))
"""


@pytest.fixture
def module_file(tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "skip.py"
    path.write_text(MODULE)
    return path


def test_a_pytorch_module_opens_in_the_window_and_steps(tmp_path, module_file):
    shot = tmp_path / "shot.png"
    result = topograd_gui(
        [
            f"{module_file}:Skip",
            "--input-shape",
            "4",
            "--steps",
            "9",
            "--screenshot",
            shot,
            "--size",
            "1200x800",
        ],
        {"QT_QPA_PLATFORM": "offscreen"},
        tmp_path,
    )
    check_screenshot(result, shot)
    assert f"imported {module_file}:Skip as " in result.stdout


def test_an_unsupported_module_is_refused_before_the_window_opens(tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "lstm.py"
    path.write_text(
        "import torch\n\nclass Recurrent(torch.nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.rnn = torch.nn.LSTM(4, 4)\n\n"
        "    def forward(self, x):\n        return self.rnn(x)[0]\n"
    )
    result = topograd_gui([f"{path}:Recurrent", "--input-shape", "3,4"], {}, tmp_path)
    assert result.returncode == 2
    assert "cannot import" in result.stderr and "LSTM" in result.stderr
    assert "Traceback" not in result.stderr
