"""Pooling layers and functions in normal form (see :mod:`.ops`).

Modules (``nn.MaxPool2d``, ...), functions (``F.max_pool2d``, ``torch.max_pool2d``, ...) and
adaptive pooling to size 1 share one check of their parameters: ceil mode, dilation,
``return_indices`` and ``divisor_override`` are refused with the reason.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

Result = tuple[str, list[Any], "nn.Module | None", dict[str, Any]] | str | None


def _pair(v: Any, n: int) -> tuple[int, ...]:
    return tuple(int(a) for a in v) if isinstance(v, (tuple, list)) else (int(v),) * n


def pool_module(m: nn.Module, x: Any) -> Result:
    name = type(m).__name__
    params = {a: getattr(m, a) for a in _POOL_PARAMS if hasattr(m, a)}
    return _pool_attrs("maxpool" if "Max" in name else "avgpool", 1 if name.endswith("1d") else 2, x, **params)


_POOL_PARAMS = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
_POOL_PARAMS += ("count_include_pad", "divisor_override")
POOL_FUNCTIONS = {
    F.max_pool1d: ("maxpool", 1, ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")),
    F.max_pool2d: ("maxpool", 2, ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")),
    F.avg_pool1d: ("avgpool", 1, ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")),
    F.avg_pool2d: (
        "avgpool",
        2,
        ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
    ),
}
POOL_FUNCTIONS[torch.max_pool1d] = POOL_FUNCTIONS[F.max_pool1d]
POOL_FUNCTIONS[torch.max_pool2d] = POOL_FUNCTIONS[F.max_pool2d]
POOL_FUNCTIONS[torch.avg_pool1d] = POOL_FUNCTIONS[F.avg_pool1d]
"""Functional pooling: kind, spatial rank, positional parameter names after the input."""
ADAPTIVE_FUNCTIONS = {
    F.adaptive_avg_pool1d: "global_avgpool",
    F.adaptive_avg_pool2d: "global_avgpool",
    F.adaptive_max_pool1d: "global_maxpool",
    F.adaptive_max_pool2d: "global_maxpool",
}


def _pool_attrs(
    kind: str,
    nd: int,
    x: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
    count_include_pad: bool = True,
    divisor_override: Any = None,
) -> Result:
    """A pooling layer or function call in normal form, or why it is refused."""
    if ceil_mode:
        return "pooling with ceil_mode=True"
    if any(d != 1 for d in _pair(dilation, nd)):
        return "dilated pooling"
    if return_indices:
        return "max pooling with return_indices=True"
    if divisor_override is not None:
        return "average pooling with divisor_override"
    if any(isinstance(v, fx.Node) for v in (kernel_size, stride, padding)):
        return "pooling with sizes computed at run time"
    kernel = _pair(kernel_size, nd)
    no_stride = stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0)
    attrs: dict[str, Any] = {
        "nd": nd,
        "kernel": kernel,
        "stride": kernel if no_stride else _pair(stride, nd),
        "pads": tuple((p, p) for p in _pair(padding, nd)),
    }
    if kind == "avgpool":
        attrs["count_pad"] = bool(count_include_pad)
    return (kind, [x], None, attrs)


def pool_function(t: Any, args: Any, kwargs: Any) -> Result:
    kind, nd, names = POOL_FUNCTIONS[t]
    params = dict(zip(names, args[1:], strict=False))
    params.update({k: v for k, v in kwargs.items() if k in names})
    unknown = set(kwargs) - set(names)
    if unknown:
        return f"{t.__name__} with {sorted(unknown)}"
    return _pool_attrs(kind, nd, args[0], **params)


def adaptive_function(t: Any, args: Any, kwargs: Any) -> Result:
    size = args[1] if len(args) > 1 else kwargs.get("output_size")
    sizes = size if isinstance(size, (tuple, list)) else (size,)
    if any(s != 1 for s in sizes):
        return f"adaptive pooling to {size}; only output size 1 (global pooling) is supported"
    return (ADAPTIVE_FUNCTIONS[t], [args[0]], None, {})
