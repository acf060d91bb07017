"""Plugins: Python modules that register custom ops (or layers, losses...) before a model file
is read. A model file never runs Python; the person running topograd names the code to load:
`topograd --plugin myops.py run model.tg`, or an installed package declares an entry point
in the group `topograd.plugins`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from importlib.metadata import entry_points
from pathlib import Path

ENTRY_POINT_GROUP = "topograd.plugins"


class PluginError(Exception):
    """A plugin could not be found or raised while loading; the message says which."""


def load_plugin(spec: str) -> None:
    """Import `spec`: a path to a .py file, or a module name (found from the current folder
    too). Loading the same one twice imports it once."""
    try:
        if spec.endswith(".py") or "/" in spec or "\\" in spec:
            _load_file(Path(spec))
        else:
            _load_module(spec)
    except PluginError:
        raise
    except Exception as error:  # a plugin's own code may raise anything
        raise PluginError(f"plugin {spec}: {type(error).__name__}: {error}") from error


def _load_file(path: Path) -> None:
    if not path.is_file():
        raise PluginError(f"plugin {path}: no such file")
    resolved = path.resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:12]
    name = f"topograd_plugin_{resolved.stem}_{digest}"
    if name in sys.modules:
        return
    module_spec = importlib.util.spec_from_file_location(name, resolved)
    if module_spec is None or module_spec.loader is None:
        raise PluginError(f"plugin {path}: not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]  # a fixed file can be loaded again
        raise


def _load_module(name: str) -> None:
    added = str(Path.cwd())
    sys.path.insert(0, added)
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name == name or name.startswith(f"{error.name}."):
            raise PluginError(f"plugin {name}: no module named {error.name!r}") from None
        raise
    finally:
        sys.path.remove(added)


_installed_loaded = False


def load_installed_plugins() -> list[str]:
    """Load every entry point in the group `topograd.plugins` (once per process); returns
    a warning for each that failed, so that one broken package does not stop topograd."""
    global _installed_loaded
    if _installed_loaded:
        return []
    _installed_loaded = True
    warnings = []
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
        except Exception as error:  # a plugin's own code may raise anything
            warnings.append(f"plugin {entry.name} ({entry.value}): {type(error).__name__}: {error}")
    return warnings
