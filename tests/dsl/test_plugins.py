"""Plugins on the command line: `topograd --plugin P COMMAND FILE` and `COMMAND FILE --plugin
P` load a file or a module that defines custom ops before the model file is read; installed
packages do it through entry points. What cannot be loaded is reported in one line, exit 2,
without a traceback; a file that uses a custom op without its plugin fails in the checker."""

from __future__ import annotations

import json
import re
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from cli_helpers import run_cli as run
from topograd.dsl.plugins import ENTRY_POINT_GROUP, PluginError, load_plugin
from topograd.engine import OPS, unregister_op
from topograd.engine.custom_ops import CUSTOM

from topograd import dsl

ROOT = Path(__file__).resolve().parents[2]
SWISH = "samples/plugins/swish.py"  # relative to ROOT, as the README writes it
MOONS = "samples/plugins/swish_moons.tg"
GRAPH = "samples/plugins/swish_graph.tg"

CUBE_PLUGIN = """
from topograd import define_op

def cube(x):
    return x**3

def cube_vjp(g, out, x):
    return (3.0 * g * x**2,)

define_op("{name}", cube, cube_vjp, formula="x^3")
"""

CUBE_GRAPH = """
graph cubed {{
  input x = [1.0, -2.0]
  output y = sum({name}(x))
}}
"""


@pytest.fixture(autouse=True)
def unloaded(monkeypatch):
    """Run from the repository root; afterwards unregister what the test's plugins defined and
    forget their modules, so that the next test loads them afresh."""
    monkeypatch.chdir(ROOT)
    ops, modules = set(CUSTOM), set(sys.modules)
    yield
    for name in set(CUSTOM) - ops:
        unregister_op(name)
    for name in set(sys.modules) - modules:
        if name.startswith("topograd_plugin_") or name.startswith("tg_test_"):
            del sys.modules[name]


def cube_files(folder: Path, module: str, op: str) -> Path:
    """A plugin module `module` defining the op `op`, and a graph file calling it."""
    (folder / f"{module}.py").write_text(CUBE_PLUGIN.format(name=op))
    graph = folder / f"{module}.tg"
    graph.write_text(CUBE_GRAPH.format(name=op))
    return graph


# --- loading ------------------------------------------------------------------------------
def test_the_global_option_loads_swish_and_the_sample_trains(tmp_path, capsys):
    metrics = tmp_path / "metrics.json"
    argv = ["--plugin", SWISH, "run", MOONS, "--epochs", "2", "--no-progress", "--no-plots"]
    out = run([*argv, "--out", str(tmp_path), "--metrics", str(metrics)], capsys).out
    assert "epoch   2/2" in out
    assert json.loads(metrics.read_text())["val_accuracy"] > 0.8
    assert OPS["swish"] is CUSTOM["swish"].op


def test_the_option_after_the_command_works_too(capsys):
    out = run(["check", GRAPH, "--plugin", SWISH], capsys).out
    assert "checking graph swish_layer" in out and "ok: 5 gradients match" in out


def test_a_module_name_is_found_from_the_current_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    graph = cube_files(tmp_path, "tg_test_cube", "cube_test")
    path_before = list(sys.path)
    out = run(["--plugin", "tg_test_cube", "step", graph.name, "--all"], capsys).out
    assert "cube_test" in out and "x^3" in out
    assert "done: 2 forward steps" in out
    assert sys.path == path_before  # the current folder was only added while importing


def test_plugins_repeat_and_a_plugin_named_twice_loads_once(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = cube_files(tmp_path, "tg_test_twice", "cube_twice")
    absolute = str(ROOT / SWISH)
    argv = ["--plugin", SWISH, "--plugin", "tg_test_twice", "check", str(graph)]
    run([*argv, "--plugin", absolute, "--plugin", "tg_test_twice"], capsys)
    assert {"swish", "cube_twice"} <= set(CUSTOM)
    load_plugin(absolute)  # not run again: running it would define swish a second time
    assert len([name for name in sys.modules if name.startswith("topograd_plugin_swish")]) == 1


# --- what cannot be loaded -----------------------------------------------------------------
BROKEN = {
    "clash.py": ('define_op("tanh", abs, abs)', "ValueError: the name 'tanh' is already a "),
    "syntax.py": ("def (:", "SyntaxError"),
    "imports.py": ("import tg_test_not_installed", "No module named 'tg_test_not_installed'"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_plugin_that_raises_is_one_line_and_exit_2(name, tmp_path, capsys):
    body, message = BROKEN[name]
    plugin = tmp_path / name
    plugin.write_text(f"from topograd import define_op\n{body}\n")
    captured = run(["--plugin", str(plugin), "check", GRAPH], capsys, expected=2)
    assert captured.out == ""  # the command did not run
    assert captured.err.startswith(f"topograd: plugin {plugin}: ")
    assert message in captured.err and len(captured.err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_dir/ops.py", "topograd: plugin no_such_dir/ops.py: no such file"),
        ("tg_test_missing", "topograd: plugin tg_test_missing: no module named 'tg_test_missing'"),
        ("tg_test_pkg.sub", "topograd: plugin tg_test_pkg.sub: no module named 'tg_test_pkg'"),
    ],
)
def test_a_missing_plugin_is_named_and_exit_2(spec, message, capsys):
    captured = run(["run", MOONS, "--plugin", spec], capsys, expected=2)
    assert captured.err.strip() == message and captured.out == ""


def test_a_fixed_plugin_file_loads_after_a_failure(tmp_path):
    plugin = tmp_path / "later.py"
    plugin.write_text("raise RuntimeError('not yet')\n")
    with pytest.raises(PluginError, match="RuntimeError: not yet"):
        load_plugin(str(plugin))
    plugin.write_text(CUBE_PLUGIN.format(name="cube_later"))
    load_plugin(str(plugin))
    assert "cube_later" in CUSTOM


# --- without the plugin ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "what"), [(MOONS, "unknown layer 'swish'"), (GRAPH, "unknown function 'swish'")]
)
def test_a_file_using_swish_without_the_plugin_fails_in_the_checker(path, what, capsys):
    assert "swish" not in CUSTOM
    lines = (ROOT / path).read_text().splitlines()
    row, use = next(
        (row, use)
        for row, line in enumerate(lines, 1)
        if not line.startswith("#") and (use := re.search(r"\bswish\b", line))
    )
    column = use.start() + 1
    err = run(["check", path], capsys, expected=2).err
    assert f"{path}:{row}:{column}: error: {what}" in err


# --- installed plugins ----------------------------------------------------------------------
def fake_entry_points(monkeypatch, entries):
    """Make `entries` the installed plugins, not yet loaded; returns the list of lookups."""
    lookups = []

    def entry_points(group):
        lookups.append(group)
        return [EntryPoint(name, value, group) for name, value in entries]

    monkeypatch.setattr(dsl.plugins, "entry_points", entry_points)
    monkeypatch.setattr(dsl.plugins, "_installed_loaded", False)
    return lookups


def test_an_installed_plugin_is_loaded_without_an_option(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = cube_files(tmp_path, "tg_test_installed", "cube_installed")
    lookups = fake_entry_points(monkeypatch, [("cubes", "tg_test_installed")])
    out = run(["check", str(graph)], capsys).out
    assert "ok: 1 gradients match" in out
    run(["check", str(graph)], capsys)
    assert lookups == [ENTRY_POINT_GROUP]  # once per process


def test_a_broken_installed_plugin_warns_and_the_command_runs(monkeypatch, capsys):
    fake_entry_points(monkeypatch, [("broken", "tg_test_not_installed:ops")])
    captured = run(["--plugin", SWISH, "check", GRAPH], capsys)
    assert captured.err.startswith(
        "topograd: warning: plugin broken (tg_test_not_installed:ops): ModuleNotFoundError"
    )
    assert "ok: 5 gradients match" in captured.out
