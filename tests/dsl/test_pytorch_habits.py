"""PyTorch habits get messages that say what the language does instead, and one check reports
every mistake it can (not one per run)."""

from __future__ import annotations

import warnings

import pytest
from cli_helpers import run_cli
from topograd.dsl import DslCheckError, Source, check, parse

HEAD = "data { dataset digits  val 0.15  test 0.15 }\n"
TAIL = "\ntrain { loss cross_entropy  optimizer adam(lr=0.01)  epochs 1 }\n"


def problems(network: str):
    text = HEAD + network + TAIL
    with pytest.raises(DslCheckError) as raised:
        check(parse(text, "habit.tg"), Source("habit.tg", text))
    return [(p.pos.line, p.message, p.hint) for p in raised.value.problems]


def test_linear_with_two_sizes_says_the_input_size_is_inferred():
    ((line, message, hint),) = problems("network n {\n  linear(64, 32)\n  relu\n  linear\n}")
    assert line == 3 and "reads like PyTorch's Linear(in_features, out_features)" in message
    assert "inferred from the layer before (64)" in message and hint == "write linear(32)"


def test_conv2d_with_input_channels_says_they_are_inferred():
    network = "network n {\n  conv2d(1, 16, 3, padding=1)\n  flatten\n  linear\n}"
    ((line, message, hint),) = problems(network)
    assert "Conv2d(in_channels, out_channels, kernel_size)" in message
    assert "input channels are inferred (1)" in message and hint == "write conv2d(16, 3)"
    assert line == 3


def test_dropout_with_a_bare_probability_is_one_error():
    ((line, message, hint),) = problems("network n {\n  linear(32)\n  dropout(0.2)\n  linear\n}")
    assert line == 4 and "by name" in message and "dropout(drop=0.2)" in hint


def test_a_forgotten_flatten_gets_a_hint():
    network = "network n {\n  conv2d(8, 3, padding=1)\n  relu\n  linear\n}"
    ((line, message, hint),) = problems(network)
    assert line == 5 and "input has shape (8, 8, 8) per example" in message
    assert "add `flatten` before it" in hint


def test_every_mistake_is_reported_at_once():
    network = """network n {
  a = linear(64, 32)
  dropout(0.2)
  a = relu
  linear(16)
  batchnorm(32)
  linear
}"""
    found = problems(network)
    lines = [line for line, _, _ in found]
    assert lines == [3, 4, 5, 7]  # linear, dropout, the duplicate label, the batchnorm size
    assert "already used on line 3" in found[2][1]
    assert "num_features=32 does not match" in found[3][1]


def test_warnings_are_one_line_for_a_person(tmp_path, capsys, monkeypatch):
    """No Python source path and line in a command's output."""
    from topograd.dsl.commands import check as check_command

    def warn_then_check(args):
        warnings.warn("something to know", UserWarning, stacklevel=1)
        return 0

    monkeypatch.setattr(check_command, "run", warn_then_check)
    path = tmp_path / "any.tg"
    path.write_text("graph g { input x = 1.0  output y = x * x }")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        captured = run_cli(["check", str(path)], capsys)
    assert captured.err == "topograd: warning: something to know\n"
