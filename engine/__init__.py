"""topograd's engine: scalar and tensor autodiff on numpy, layers, and a steppable graph.

>>> from topograd.engine import Tensor
>>> x = Tensor([1.0, -2.0, 3.0], requires_grad=True)
>>> (x.relu() * x).sum().backward()
>>> x.grad.tolist()
[2.0, 0.0, 6.0]
"""

from topograd.engine import conv as _conv  # noqa: F401  (registers conv2d and the pooling ops)
from topograd.engine import functional, init, nn
from topograd.engine import fused as _fused  # noqa: F401  (registers the fused batch norm)
from topograd.engine import primitives as _primitives  # noqa: F401  (registers the primitive ops)
from topograd.engine.capture import ReplayedStep, ReplayWarning, replay
from topograd.engine.custom_ops import OpFunction, define_op, unregister_op
from topograd.engine.executor import topological_order
from topograd.engine.gradcheck import GradcheckResult, gradcheck, relative_error
from topograd.engine.graph import Graph, NodeInfo, StepEvent
from topograd.engine.modes import (
    AnomalyError,
    default_rng,
    detect_anomaly,
    enable_grad,
    is_grad_enabled,
    manual_seed,
    no_grad,
)
from topograd.engine.ops import OPS, Op, register_op, unbroadcast
from topograd.engine.stepper import Stepper
from topograd.engine.tensor import Tensor, apply

__all__ = [
    "OPS",
    "AnomalyError",
    "GradcheckResult",
    "Graph",
    "NodeInfo",
    "Op",
    "OpFunction",
    "ReplayWarning",
    "ReplayedStep",
    "StepEvent",
    "Stepper",
    "Tensor",
    "apply",
    "default_rng",
    "define_op",
    "detect_anomaly",
    "enable_grad",
    "functional",
    "gradcheck",
    "init",
    "is_grad_enabled",
    "manual_seed",
    "nn",
    "no_grad",
    "register_op",
    "relative_error",
    "replay",
    "topological_order",
    "unbroadcast",
    "unregister_op",
]
