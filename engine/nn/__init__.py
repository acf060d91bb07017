"""Layers with PyTorch's names: Module, Linear, BatchNorm1d, Dropout, norms, activations."""

from engine.nn.layers import (
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
from engine.nn.module import LayerTag, Module, Parameter
from engine.nn.norm import BatchNorm1d, GroupNorm, LayerNorm

__all__ = [
    "ELU",
    "LAYERS",
    "BatchNorm1d",
    "Dropout",
    "GroupNorm",
    "LayerNorm",
    "LayerTag",
    "LeakyReLU",
    "Linear",
    "Maxout",
    "Module",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Tanh",
]
