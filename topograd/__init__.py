"""topograd: an autodiff computation-graph engine you can see.

The public face follows PyTorch's habits:

>>> import topograd as tg
>>> import topograd.functional as F
>>> x = tg.Tensor([1.0, -2.0, 3.0], requires_grad=True)
>>> (F.relu(x) * x).sum().backward()
>>> x.grad.tolist()
[2.0, 0.0, 6.0]

`tg.nn`, `tg.optim`, `tg.functional`, `tg.data`, `tg.train` and `tg.testing` re-export the
engine's layers, optimizers, functions, data kit, training kit and gradient-testing kit; the
parts themselves are `topograd.engine`, `topograd.dsl` (the model language and the command
line) and `topograd.gui` (the window, imported only when asked for).
"""

import importlib
import sys

from topograd import data, functional, nn, optim, train
from topograd.engine import (
    AnomalyError,
    Graph,
    NodeInfo,
    Op,
    StepEvent,
    Stepper,
    Tensor,
    define_op,
    detect_anomaly,
    enable_grad,
    gradcheck,
    is_grad_enabled,
    manual_seed,
    no_grad,
    register_op,
    replay,
    unregister_op,
)
from topograd.train import History, fit


def __getattr__(name):
    """`tg.testing` (hypothesis), `tg.draw` (the picture code), `tg.from_torch` and
    `tg.from_onnx` (the importers) and `tg.__version__` (importlib.metadata) load on first use:
    they would double the time `import topograd` takes."""
    if name == "testing":
        return importlib.import_module("topograd.testing")
    if name == "draw":
        return importlib.import_module("topograd.gui.notebook").draw
    if name in ("from_torch", "from_onnx"):  # PyTorch and onnx stay optional
        return getattr(importlib.import_module("topograd.dsl.importers"), name)
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("topograd")
        except PackageNotFoundError:  # a checkout that was never installed
            return "unknown"
    raise AttributeError(f"module 'topograd' has no attribute {name!r}")


__all__ = [
    "AnomalyError",
    "Graph",
    "History",
    "NodeInfo",
    "Op",
    "StepEvent",
    "Stepper",
    "Tensor",
    "__version__",
    "data",
    "define_op",
    "detect_anomaly",
    "draw",
    "enable_grad",
    "fit",
    "from_onnx",
    "from_torch",
    "functional",
    "gradcheck",
    "is_grad_enabled",
    "manual_seed",
    "nn",
    "no_grad",
    "optim",
    "register_op",
    "replay",
    "testing",
    "train",
    "unregister_op",
]


def _register_notebook_display() -> None:
    """Inside IPython (a notebook, a qtconsole), show graphs, modules and training histories
    as pictures: registered here, from outside the engine, which knows nothing of IPython."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is not None:
        importlib.import_module("topograd.gui.notebook").register(shell)


_register_notebook_display()
