"""One import name: the distribution installs `topograd` and nothing else at the top, and a
user's own `engine.py` or `gui/` neither shadows it nor is shadowed by it."""

from __future__ import annotations

import ast
import inspect
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import topograd as tg

ROOT = Path(__file__).resolve().parents[1]
PARTS = {
    "topograd": "topograd",
    "topograd.engine": "engine",
    "topograd.dsl": "dsl",
    "topograd.gui": "gui",
}
OLD_NAMES = {"engine", "dsl", "gui"}
SOURCE_FOLDERS = ("topograd", "engine", "dsl", "gui", "tests", "bench", "samples")


def _python(code: str, cwd: Path, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def _package_folders() -> dict[str, Path]:
    """Every package the repository holds, by its installed name."""
    packages = {}
    for name, folder in PARTS.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            relative = init.parent.relative_to(ROOT / folder)
            packages[".".join((name, *relative.parts))] = init.parent
    return packages


def test_pyproject_lists_every_package_and_maps_the_folders():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert sorted(config["packages"]) == sorted(_package_folders())
    assert config["package-dir"] == PARTS


@pytest.mark.slow
def test_an_installed_copy_holds_only_topograd_and_all_its_files(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in PARTS.values():
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr

    top = sorted(path.name for path in target.iterdir())
    assert top == ["bin", "topograd", "topograd-0.1.0.dist-info"], top
    assert [path.name for path in (target / "bin").iterdir()] == ["topograd"]

    installed = {
        path.relative_to(target / "topograd").as_posix()
        for path in (target / "topograd").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    expected = set()
    for name, folder in PARTS.items():
        prefix = Path(*name.split(".")[1:])
        for path in (ROOT / folder).rglob("*"):
            shipped = (
                path.suffix in (".py", ".js", ".css")
                or path.name == "grammar.lark"
                or "files" in path.parts
            )
            if shipped and path.is_file() and "__pycache__" not in path.parts:
                expected.add((prefix / path.relative_to(ROOT / folder)).as_posix())
    assert installed == expected

    # the installed copy alone (no checkout on the path) imports, reads its data and parses
    probe = _python(
        "import topograd as tg, topograd.dsl as dsl\n"
        "print(tg.engine.__file__)\n"
        "print(tg.data.load_iris().x.shape)\n"
        "text = 'graph g { input x = 1.0  output y = x * x }'\n"
        "print(len(dsl.load(dsl.Source('g.tg', text)).graphs))\n",
        cwd=tmp_path,
        env_extra={"PYTHONPATH": str(target)},
    )
    assert probe.returncode == 0, probe.stderr
    engine_file, iris_shape, graphs = probe.stdout.split("\n")[:3]
    assert Path(engine_file).is_relative_to(target / "topograd" / "engine")
    assert iris_shape == "(150, 4)" and graphs == "1"


def test_a_users_own_engine_and_gui_neither_shadow_nor_are_shadowed(tmp_path):
    (tmp_path / "engine.py").write_text("WHOSE = 'the user'\n")
    (tmp_path / "gui").mkdir()
    (tmp_path / "gui" / "__init__.py").write_text("WHOSE = 'the user'\n")
    (tmp_path / "dsl.py").write_text("WHOSE = 'the user'\n")
    probe = _python(
        "import topograd as tg\n"
        "import engine, gui, dsl\n"
        "import topograd.dsl, topograd.engine\n"
        "x = tg.Tensor([1.0, -2.0], requires_grad=True)\n"
        "(x * x).sum().backward()\n"
        "print(engine.WHOSE, gui.WHOSE, dsl.WHOSE)\n"
        "print(tg.engine.__file__)\n"
        "print(tg.dsl.__file__)\n"
        "print(x.grad.tolist())\n",
        cwd=tmp_path,
    )
    assert probe.returncode == 0, probe.stderr
    whose, engine_file, dsl_file, grad = probe.stdout.split("\n")[:4]
    assert whose == "the user the user the user"
    assert Path(engine_file) == ROOT / "engine" / "__init__.py"
    assert Path(dsl_file) == ROOT / "dsl" / "__init__.py"
    assert grad == "[2.0, -4.0]"


def test_python_dash_m_topograd_runs_the_command_line(tmp_path):
    model = tmp_path / "square.tg"
    model.write_text("graph square { input x = 3.0  output y = x * x }\n")
    result = subprocess.run(
        [sys.executable, "-m", "topograd", "check", str(model)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    version = subprocess.run(
        [sys.executable, "-m", "topograd", "--version"], capture_output=True, text=True, timeout=60
    )
    assert version.stdout.strip() == f"topograd {tg.__version__}"


def _old_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules = [node.module or ""]
        else:
            continue
        found += [f"{path}:{node.lineno} {m}" for m in modules if m.split(".")[0] in OLD_NAMES]
    return found


def test_nothing_imports_the_old_top_level_names():
    offenders = []
    for folder in SOURCE_FOLDERS:
        for path in (ROOT / folder).rglob("*.py"):
            offenders += _old_imports(path)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    offenders += re.findall(r"^\s*(?:from|import) (?:engine|dsl|gui)\b.*$", readme, re.M)
    assert offenders == []


def test_the_public_face_is_the_engines_own_objects():
    from topograd.engine import data, functional, nn, optim, testing, train

    from topograd import engine

    assert tg.Tensor is engine.Tensor and tg.Graph is engine.Graph
    assert tg.Stepper is engine.Stepper and tg.no_grad is engine.no_grad
    assert tg.gradcheck is engine.gradcheck and tg.define_op is engine.define_op
    assert tg.fit is train.fit and tg.History is train.History
    assert tg.nn.Linear is nn.Linear and tg.optim.Adam is optim.Adam
    assert tg.optim.schedules.CosineAnnealingLR is optim.schedules.CosineAnnealingLR
    assert tg.functional.cross_entropy is functional.cross_entropy
    assert tg.nn.functional.relu is functional.relu and tg.nn.init.he is engine.init.he
    assert tg.data.load_digits is data.load_digits
    assert tg.testing.assert_gradients is testing.assert_gradients


@pytest.mark.parametrize(
    ("facade", "module"),
    [
        ("topograd.nn", "topograd.engine.nn"),
        ("topograd.optim", "topograd.engine.optim"),
        ("topograd.optim.schedules", "topograd.engine.optim.schedules"),
        ("topograd.functional", "topograd.engine.functional"),
        ("topograd.nn.init", "topograd.engine.init"),
        ("topograd.data", "topograd.engine.data"),
        ("topograd.train", "topograd.engine.train"),
        ("topograd.testing", "topograd.engine.testing"),
    ],
)
def test_each_facade_offers_every_public_name_of_its_module(facade, module):
    """A function or class added to the engine is reachable under `tg.` the moment it is."""
    import importlib

    facade, module = importlib.import_module(facade), importlib.import_module(module)
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__.startswith(module.__name__)
    }
    missing = sorted(
        name for name in public if getattr(facade, name, None) is not vars(module)[name]
    )
    assert missing == []
