"""Layers with PyTorch's names: Module, Linear, BatchNorm1d, Dropout, norms, activations,
the image layers (Conv2d, pooling, Flatten, BatchNorm2d, InstanceNorm2d) and the blocks
that branch (Residual, Concat, Merge)."""

from topograd.engine.nn.activations_extra import GELU, LogSoftmax, Softmax
from topograd.engine.nn.branch import Concat, Merge, Residual
from topograd.engine.nn.conv import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Flatten,
    InstanceNorm2d,
    MaxPool2d,
    Unflatten,
)
from topograd.engine.nn.layers import (
    ELU,
    LAYERS,
    Dropout,
    LeakyReLU,
    Linear,
    Maxout,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
)
from topograd.engine.nn.module import LayerTag, Module, Parameter
from topograd.engine.nn.norm import BatchNorm1d, GroupNorm, LayerNorm
from topograd.engine.nn.scalar import Neuron, ScalarLinear, ScalarSequential

__all__ = [
    "ELU",
    "GELU",
    "LAYERS",
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Concat",
    "Conv2d",
    "Dropout",
    "Flatten",
    "GroupNorm",
    "InstanceNorm2d",
    "LayerNorm",
    "LayerTag",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "MaxPool2d",
    "Maxout",
    "Merge",
    "Module",
    "Neuron",
    "Parameter",
    "ReLU",
    "Residual",
    "ScalarLinear",
    "ScalarSequential",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "Unflatten",
]
