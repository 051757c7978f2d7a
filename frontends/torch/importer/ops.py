"""Which fx nodes the PyTorch frontend supports, and their normalised form.

:func:`classify` maps one fx node to ``(kind, inputs, module, attrs)``, to ``None`` for nodes
without tensor data (shape arithmetic such as ``x.size(0)``, constants read by other nodes),
or to a string saying why the node cannot be imported exactly. Axes in ``attrs`` count the
*unbatched* tensor's axes from 0.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from . import movers
from .activations import TABLE_FUNCTIONS, TABLE_MODULES, table_function, table_module, threshold
from .pools import ADAPTIVE_FUNCTIONS, POOL_FUNCTIONS, adaptive_function, pool_function, pool_module

Result = tuple[str, list[Any], "nn.Module | None", dict[str, Any]] | str | None

_RELU = {F.relu, torch.relu}
_SIGMOID = {torch.sigmoid, F.sigmoid}
_TANH = {torch.tanh, F.tanh}
_SOFTMAX = {F.softmax, torch.softmax}
_LOG_SOFTMAX = {F.log_softmax, torch.log_softmax}
_FLATTEN = {torch.flatten}
_CAT = {torch.cat, torch.concat, torch.concatenate}
_BINARY = {
    operator.add: "add",
    operator.iadd: "add",
    torch.add: "add",
    operator.sub: "sub",
    operator.isub: "sub",
    torch.sub: "sub",
    operator.mul: "mul",
    operator.imul: "mul",
    torch.mul: "mul",
    torch.maximum: "maximum",
    torch.minimum: "minimum",
    torch.max: "maximum",  # two tensors only (one tensor is a reduction: refused below)
    torch.min: "minimum",
}
_METHOD_BINARY = {"add": "add", "add_": "add", "sub": "sub", "sub_": "sub", "mul": "mul", "mul_": "mul"}
_METHOD_BINARY.update({"maximum": "maximum", "minimum": "minimum"})
_METHOD_UNARY = {"relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "tanh": "tanh"}
_RESHAPES = {"view", "reshape", "flatten", "squeeze", "unsqueeze", "view_as", "reshape_as"}
_IDENTITY_METHODS = {"contiguous", "clone", "detach"}


def classify(gm: fx.GraphModule, node: fx.Node, shapes: dict[str, tuple[int, ...]]) -> Result:
    """Normalised form of ``node`` (see the module docstring); ``shapes`` are batched."""
    if node.op == "placeholder":
        return ("input", [], None, {})
    if node.op == "output":
        return ("output", _flat_outputs(node.args[0]), None, {})
    if node.op == "get_attr":
        return None  # constants are read by their users
    if node.op == "call_module":
        return _module(gm.get_submodule(str(node.target)), node, shapes)
    if node.name not in shapes:
        return _shape_arithmetic(node)
    if node.op == "call_function":
        return _function(node, shapes)
    if node.op == "call_method":
        return _method(node, shapes)
    return f"unknown fx node kind {node.op!r}"


_SHAPE_METHODS = {"size", "dim", "numel"}
_SHAPE_FUNCTIONS = {getattr, operator.getitem, operator.add, operator.sub, operator.mul, operator.floordiv, len}


def _shape_arithmetic(node: fx.Node) -> Result:
    """Nodes without tensor results: allowed only for shape arithmetic (they feed reshapes)."""
    if node.op == "call_method" and node.target in _SHAPE_METHODS:
        return None
    if node.op == "call_function" and node.target in _SHAPE_FUNCTIONS:
        return None
    return "produces a non-tensor value that hgqir cannot follow"


def _flat_outputs(arg: Any) -> list[Any]:
    if isinstance(arg, (tuple, list)):
        out: list[Any] = []
        for a in arg:
            out.extend(_flat_outputs(a))
        return out
    return [arg]


def _rank(node: fx.Node, shapes: dict[str, tuple[int, ...]]) -> int:
    """Unbatched rank of a tensor node's value."""
    return len(shapes[node.name]) - 1


def _axis(dim: int, node: fx.Node, shapes: dict[str, tuple[int, ...]]) -> int | None:
    """Unbatched axis of a batched ``dim`` (``None`` if it is the batch axis)."""
    full = _rank(node, shapes) + 1
    d = dim + full if dim < 0 else dim
    return None if d == 0 else d - 1


# ---------------------------------------------------------------- modules
def _module(m: nn.Module, node: fx.Node, shapes: dict[str, tuple[int, ...]]) -> Result:
    x = node.args[0] if node.args else None
    if node.name not in shapes:
        return f"layer type {type(m).__name__} (with non-tensor results) is not supported"
    if isinstance(m, nn.Linear):
        return ("linear", [x], m, {})
    if isinstance(m, (nn.Conv1d, nn.Conv2d)):
        return _conv(m, x)
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        if not m.track_running_stats:
            return "batchnorm without running statistics (track_running_stats=False)"
        return ("batchnorm", [x], m, {})
    simple = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.Identity: "identity"}
    for cls, kind in simple.items():
        if type(m) is cls:
            return (kind, [x], m, {})
    if type(m) in TABLE_MODULES:
        return table_module(m, x)
    if type(m) is nn.LeakyReLU:
        return ("prelu", [x], m, {"alpha": float(m.negative_slope)})
    if type(m) is nn.PReLU:
        return ("prelu", [x], m, {})
    if isinstance(m, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)):
        return ("dropout", [x], m, {})
    if isinstance(m, nn.Softmax):
        return _softmax(node, x, m.dim, shapes)
    if isinstance(m, nn.LogSoftmax):
        return _softmax(node, x, m.dim, shapes, log=True)
    if isinstance(m, nn.Unflatten):
        return _reshape_checked("Unflatten", x, node, shapes)
    if isinstance(m, movers.PAD_MODULES):
        return movers.pad_module(m, x, _rank(x, shapes))
    if isinstance(m, nn.Upsample):
        return movers.upsample_module(m, x, _rank(x, shapes))
    if type(m) is nn.Threshold:
        return threshold(x, m.threshold, m.value, m)
    if isinstance(m, nn.Flatten):
        if m.start_dim == 0 or m.start_dim == -_rank(x, shapes) - 1:
            return "Flatten over the batch axis (start_dim=0)"
        return ("reshape", [x], None, {})
    if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)):
        pooled = pool_module(m, x)
        return pooled if isinstance(pooled, str) or pooled is None else (pooled[0], pooled[1], m, pooled[3])
    if isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)):
        size = m.output_size if isinstance(m.output_size, tuple) else (m.output_size,)
        if any(s != 1 for s in size):
            return f"adaptive pooling to {m.output_size}; only output size 1 (global pooling) is supported"
        kind = "global_avgpool" if "Avg" in type(m).__name__ else "global_maxpool"
        return (kind, [x], m, {})
    return f"layer type {type(m).__name__} is not supported"


def _pair(v: Any, n: int) -> tuple[int, ...]:
    return tuple(int(a) for a in v) if isinstance(v, (tuple, list)) else (int(v),) * n


def _conv(m: nn.Conv1d | nn.Conv2d, x: Any) -> Result:
    nd = 1 if isinstance(m, nn.Conv1d) else 2
    depthwise = m.groups == m.in_channels and m.out_channels % m.in_channels == 0
    if m.groups != 1 and not depthwise:
        return (
            f"grouped convolution (groups={m.groups}); only groups=1 and depthwise (groups=in_channels) are supported"
        )
    dilation = _pair(m.dilation, nd)
    if any(d != 1 for d in dilation) and m.groups != 1:
        return f"dilated depthwise convolution (dilation={m.dilation})"
    if m.padding_mode != "zeros":
        return f"padding_mode={m.padding_mode!r}; only zero padding is supported"
    kernel = tuple((k - 1) * d + 1 for k, d in zip(_pair(m.kernel_size, nd), dilation, strict=True))  # as applied
    if m.padding == "same":
        pads = tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel)
    elif m.padding == "valid":
        pads = ((0, 0),) * nd
    else:
        pads = tuple((p, p) for p in _pair(m.padding, nd))
    attrs = {"nd": nd, "stride": _pair(m.stride, nd), "pads": pads, "kernel": kernel, "groups": int(m.groups)}
    if any(d != 1 for d in dilation):
        attrs["dilation"] = dilation
    return ("conv", [x], m, attrs)


def _softmax(node: fx.Node, x: Any, dim: Any, shapes: dict[str, tuple[int, ...]], log: bool = False) -> Result:
    what = "log_softmax" if log else "softmax"
    if dim is None:
        return f"{what} without an explicit dim"
    axis = _axis(int(dim), x, shapes)
    if axis is None:
        return f"{what} over the batch axis"
    return ("softmax", [x], None, {"axis": axis, "log": log})


# ---------------------------------------------------------------- functions and methods
def _function(node: fx.Node, shapes: dict[str, tuple[int, ...]]) -> Result:
    t = node.target
    args, kwargs = node.args, node.kwargs
    if t in _RELU:
        return ("relu", [args[0]], None, {})
    if t in _SIGMOID:
        return ("sigmoid", [args[0]], None, {})
    if t in _TANH:
        return ("tanh", [args[0]], None, {})
    if t in TABLE_FUNCTIONS:
        return table_function(t, args, kwargs)
    if t is F.leaky_relu:
        slope = args[1] if len(args) > 1 else kwargs.get("negative_slope", 0.01)
        if not isinstance(slope, (int, float)) or isinstance(slope, bool):
            return "leaky_relu with a slope computed at run time"
        return ("prelu", [args[0]], None, {"alpha": float(slope)})
    if t in _SOFTMAX or t in _LOG_SOFTMAX:
        dim = args[1] if len(args) > 1 else kwargs.get("dim")
        return _softmax(node, args[0], dim, shapes, log=t in _LOG_SOFTMAX)
    if t in POOL_FUNCTIONS:
        return pool_function(t, args, kwargs)
    if t in ADAPTIVE_FUNCTIONS:
        return adaptive_function(t, args, kwargs)
    if t in _FLATTEN:
        start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
        if _axis(int(start), args[0], shapes) is None:
            return "torch.flatten over the batch axis (start_dim=0)"
        return ("reshape", [args[0]], None, {})
    if t in (torch.reshape, torch.squeeze, torch.unsqueeze):
        return _reshape_checked(f"torch.{t.__name__}", args[0], node, shapes)
    if t in _CAT:
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        axis = _axis(int(dim), node, shapes)
        return "concatenation along the batch axis" if axis is None else ("cat", list(args[0]), None, {"axis": axis})
    if t is torch.stack:
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        axis = _axis(int(dim), node, shapes)
        return "stacking along the batch axis" if axis is None else ("stack", list(args[0]), None, {"axis": axis})
    if t in _BINARY:
        return _binary(_BINARY[t], node, args, kwargs, shapes)
    if t is torch.permute:
        return _permute(node, args[0], args[1], shapes)
    if t is torch.transpose:
        return _transpose(node, args[0], args[1], args[2], shapes)
    if t is operator.getitem and isinstance(args[0], fx.Node) and args[0].name not in shapes:
        return None  # an item of an unsupported layer's tuple result: the layer itself is reported
    if t is operator.getitem:
        return movers.slicing(node, shapes) or "indexing is not supported"
    if t is F.threshold:
        th = args[1] if len(args) > 1 else kwargs.get("threshold")
        value = args[2] if len(args) > 2 else kwargs.get("value")
        return threshold(args[0], th, value, None)
    if t in movers.FUNCTIONS:
        return movers.FUNCTIONS[t](args, kwargs, _rank(args[0], shapes))
    if t is F.dropout:
        return ("dropout", [args[0]], None, {"p": float(args[1] if len(args) > 1 else kwargs.get("p", 0.5))})
    return "function is not supported"


def _method(node: fx.Node, shapes: dict[str, tuple[int, ...]]) -> Result:
    name = str(node.target)
    args, kwargs = node.args, node.kwargs
    if name in _METHOD_UNARY:
        return (_METHOD_UNARY[name], [args[0]], None, {})
    if name in _METHOD_BINARY:
        return _binary(_METHOD_BINARY[name], node, args, kwargs, shapes)
    if name in ("softmax", "log_softmax"):
        dim = args[1] if len(args) > 1 else kwargs.get("dim")
        return _softmax(node, args[0], dim, shapes, log=name == "log_softmax")
    if name in _RESHAPES:
        return _reshape_checked(f"Tensor.{name}", args[0], node, shapes)
    if name in _IDENTITY_METHODS:
        return ("identity", [args[0]], None, {})
    if name == "permute":
        dims = args[1:] if len(args) > 2 or not isinstance(args[1], (tuple, list)) else args[1]
        return _permute(node, args[0], dims, shapes)
    if name == "transpose":
        return _transpose(node, args[0], args[1], args[2], shapes)
    return "tensor method is not supported"


def _reshape_checked(what: str, x: Any, node: fx.Node, shapes: dict[str, tuple[int, ...]]) -> Result:
    """A reshape, provided the batch axis stays first and unchanged."""
    src, out = shapes[x.name], shapes[node.name]
    if not out or out[0] != src[0]:
        return f"{what} changes the batch axis ({list(src)} -> {list(out)})"
    return ("reshape", [x], None, {})


def _binary(kind: str, node: fx.Node, args: Any, kwargs: Any, shapes: dict[str, tuple[int, ...]]) -> Result:
    if kind in ("maximum", "minimum"):
        if len(args) != 2 or kwargs or not all(isinstance(a, fx.Node) for a in args):
            return f"torch.{'max' if kind == 'maximum' else 'min'} as a reduction (only of two tensors: elementwise)"
    if kwargs.get("alpha", 1) != 1 or len(args) > 2:
        return f"{kind} with alpha"
    ops: list[Any] = []
    for a in args[:2]:
        if isinstance(a, fx.Node) and a.op == "get_attr":
            ops.append(a)  # a parameter or buffer: quantized like a weight
            continue
        if isinstance(a, fx.Node):
            if a.name not in shapes:
                return f"{kind} of a non-tensor value"
            ops.append(a)
        elif isinstance(a, (int, float)) and not isinstance(a, bool):
            ops.append(float(a))
        else:
            return f"{kind} with an operand of type {type(a).__name__}"
    tensors = [a for a in ops if isinstance(a, fx.Node) and a.op != "get_attr"]
    if not tensors:
        return None
    for a in ops:
        if isinstance(a, fx.Node) and a.op == "get_attr":
            shape = shapes.get(a.name, ())
            full = len(shapes[tensors[0].name])
            if len(shape) > full or (len(shape) == full and shape[0] != 1):
                return f"{kind} with attribute {a.target} of shape {list(shape)} that spans the batch axis"
    if len(tensors) == 2 and _rank(tensors[0], shapes) != _rank(tensors[1], shapes):
        return (
            f"{kind} of tensors of different rank {list(shapes[tensors[0].name])} and {list(shapes[tensors[1].name])}"
        )
    if len(tensors) == 2 and any(shapes[t.name][0] != shapes[node.name][0] for t in tensors):
        return f"{kind} broadcasting over the batch axis"
    return (kind, ops, None, {})


def _permute(node: fx.Node, x: Any, dims: Any, shapes: dict[str, tuple[int, ...]]) -> Result:
    full = _rank(x, shapes) + 1
    dims = [int(d) + full if int(d) < 0 else int(d) for d in dims]
    if dims[0] != 0:
        return f"permute moves the batch axis (dims={dims})"
    return ("permute", [x], None, {"perm": tuple(d - 1 for d in dims[1:])})


def _transpose(node: fx.Node, x: Any, a: int, b: int, shapes: dict[str, tuple[int, ...]]) -> Result:
    full = _rank(x, shapes) + 1
    dims = list(range(full))
    a, b = (int(v) + full if int(v) < 0 else int(v) for v in (a, b))
    dims[a], dims[b] = dims[b], dims[a]
    return _permute(node, x, dims, shapes)
