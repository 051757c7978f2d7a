"""Activations the PyTorch frontend imports as exact tables (``lut``), in normal form (see
:mod:`.ops`): the smooth functions (modules and functions, with the parameters they support)
and ``nn.Threshold`` / ``F.threshold`` (``max(x, t)`` when the value is the threshold)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...activations import threshold_name

Result = tuple[str, list[Any], "nn.Module | None", dict[str, Any]] | str | None

TABLE_MODULES = {
    nn.ELU: "elu",
    nn.SELU: "selu",
    nn.Softplus: "softplus",
    nn.SiLU: "silu",
    nn.GELU: "gelu",
    nn.Mish: "mish",
    nn.Hardswish: "hard_swish",
    nn.Hardsigmoid: "hard_sigmoid",
    nn.ReLU6: "relu6",
    nn.Hardtanh: "hard_tanh",
}
"""Smooth activation modules imported as exact tables (``lut``; see ``frontends/torch/smooth.py``)."""
TABLE_FUNCTIONS = {
    F.elu: "elu",
    F.selu: "selu",
    torch.selu: "selu",
    F.softplus: "softplus",
    F.silu: "silu",
    F.gelu: "gelu",
    F.mish: "mish",
    F.hardswish: "hard_swish",
    F.hardsigmoid: "hard_sigmoid",
    F.relu6: "relu6",
    F.hardtanh: "hard_tanh",
}

_TABLE_PARAMS = ("alpha", "beta", "approximate", "threshold", "min_val", "max_val")


def _table_params(
    func: str,
    alpha: float = 1.0,
    beta: float = 1.0,
    approximate: str = "none",
    threshold: float = 20.0,
    min_val: float = -1.0,
    max_val: float = 1.0,
) -> Result:
    """The table function for ``func`` with its parameters, or why they are not supported."""
    if func == "softplus" and float(threshold) != 20.0:
        return f"Softplus with threshold={threshold}; only the default threshold=20 is supported"
    if func == "elu" and float(alpha) != 1.0:
        return f"ELU with alpha={alpha}; only alpha=1 is supported"
    if func == "softplus" and float(beta) != 1.0:
        return f"Softplus with beta={beta}; only beta=1 is supported"
    if func == "hard_tanh" and (float(min_val), float(max_val)) != (-1.0, 1.0):
        return f"Hardtanh({min_val}, {max_val}); only the default range [-1, 1] is supported"
    if func == "gelu" and approximate == "tanh":
        func = "gelu_tanh"
    return ("table", [], None, {"func": func})


def table_module(m: nn.Module, x: Any) -> Result:
    func = TABLE_MODULES[type(m)]
    params = {a: getattr(m, a) for a in _TABLE_PARAMS if hasattr(m, a) and func != "selu"}
    r = _table_params(func, **params)
    return r if isinstance(r, str) or r is None else ("table", [x], m, r[3])


def table_function(t: Any, args: Any, kwargs: Any) -> Result:
    func = TABLE_FUNCTIONS[t]
    names = {"elu": ["alpha"], "softplus": ["beta", "threshold"], "hard_tanh": ["min_val", "max_val"]}.get(func, [])
    params = {n: args[1 + j] for j, n in enumerate(names) if len(args) > 1 + j}
    params.update({n: kwargs[n] for n in _TABLE_PARAMS if n in kwargs})
    r = _table_params(func, **params)
    return r if isinstance(r, str) or r is None else ("table", [args[0]], None, r[3])


def threshold(x: Any, threshold: Any, value: Any, m: nn.Module | None) -> Result:
    """``x if x > t else v``: ``max(x, t)`` (exact arithmetic) when ``v == t``, else an exact table."""
    if not all(isinstance(a, (int, float)) for a in (threshold, value)):
        return "threshold with bounds computed at run time"
    if float(threshold) == float(value):
        return ("maximum", [x, float(threshold)], m, {})
    return ("table", [x], m, {"func": threshold_name(threshold, value)})
