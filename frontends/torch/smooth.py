"""PyTorch versions of the table functions of :mod:`hgqir.frontends.activations` (training forward)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_TORCH_NAMES = {
    "sigmoid": ("sigmoid", {}),
    "tanh": ("tanh", {}),
    "elu": ("elu", {}),
    "selu": ("selu", {}),
    "softplus": ("softplus", {}),
    "silu": ("silu", {}),
    "gelu": ("gelu", {}),
    "gelu_tanh": ("gelu", {"approximate": "tanh"}),
    "mish": ("mish", {}),
    "hard_swish": ("hardswish", {}),
    "hard_sigmoid": ("hardsigmoid", {}),
    "relu6": ("relu6", {}),
    "hard_tanh": ("hardtanh", {}),
}


def torch_fn(name: str) -> Callable[[Any], Any]:
    """``torch.nn.functional`` version of table function ``name`` (torch imported on first call)."""
    fname, kwargs = _TORCH_NAMES[name]

    def call(x: Any) -> Any:
        import torch
        import torch.nn.functional as F

        fn = getattr(torch, fname) if fname in ("sigmoid", "tanh") else getattr(F, fname)
        return fn(x, **kwargs)

    return call
