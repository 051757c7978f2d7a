"""Classification of PyTorch data movement the IR builds from concat, slice and reshape
(:mod:`hgqir.frontends.movers`): tensor slicing ``x[..., a:b]``, zero padding (``F.pad``,
``nn.ZeroPad1d/2d``, ``nn.ConstantPad1d/2d`` with value 0) and nearest upsampling by integer
factors (``nn.Upsample``, ``F.interpolate``). Axes count the unbatched tensor's axes (PyTorch
layout)."""

from __future__ import annotations

import operator
from typing import Any

import torch.fx as fx
import torch.nn.functional as F
from torch import nn

Result = tuple[str, list[Any], "nn.Module | None", dict[str, Any]] | str | None

PAD_MODULES = (nn.ZeroPad1d, nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d)


def slicing(node: fx.Node, shapes: dict[str, tuple[int, ...]]) -> Result:
    """``x[:, a:b, ...]`` with step 1 (the batch axis whole); None when ``node`` is no slicing."""
    if node.target is not operator.getitem or not isinstance(node.args[0], fx.Node):
        return None
    x, index = node.args[0], node.args[1]
    if x.name not in shapes:
        return None
    items = list(index) if isinstance(index, tuple) else [index]
    if not all(isinstance(i, slice) or i is Ellipsis for i in items):
        return "indexing other than slices (integers, masks, tensors) is not supported"
    full = shapes[x.name]
    if Ellipsis in items:
        at = items.index(Ellipsis)
        items = items[:at] + [slice(None)] * (len(full) - len(items) + 1) + items[at + 1 :]
    items += [slice(None)] * (len(full) - len(items))
    if items[0] != slice(None):
        return "slicing the batch axis"
    begin, end = [], []
    for item, size in zip(items[1:], full[1:], strict=True):
        if any(isinstance(v, fx.Node) for v in (item.start, item.stop, item.step)):
            return "slicing with bounds computed at run time"
        b, e, step = item.indices(size)
        if step != 1 or e <= b:
            return "slicing with a step other than 1, or an empty slice"
        begin.append(b)
        end.append(e)
    return ("slice", [x], None, {"begin": tuple(begin), "end": tuple(end)})


def _pairs(flat: Any, rank: int) -> dict[int, tuple[int, int]] | str:
    """``F.pad``'s ``(left_last, right_last, left_prev, ...)`` as ``{axis: (before, after)}``."""
    flat = [int(v) for v in flat]
    if len(flat) % 2 or len(flat) // 2 > rank:
        return f"padding {flat} does not fit a tensor of rank {rank}"
    if any(v < 0 for v in flat):
        return "negative padding (cropping by F.pad)"
    return {rank - 1 - n: (flat[2 * n], flat[2 * n + 1]) for n in range(len(flat) // 2)}


def padding(x: Any, flat: Any, mode: str, value: Any, rank: int) -> Result:
    if mode != "constant" or float(value or 0.0) != 0.0:
        return f"padding with mode={mode!r}, value={value}; only zero padding is supported"
    pads = _pairs(flat, rank)
    return pads if isinstance(pads, str) else ("pad", [x], None, {"pads": pads})


def pad_module(m: nn.Module, x: Any, rank: int) -> Result:
    return padding(x, m.padding, "constant", getattr(m, "value", 0.0), rank)  # type: ignore[arg-type]


def pad_function(args: Any, kwargs: Any, rank: int) -> Result:
    flat = args[1] if len(args) > 1 else kwargs.get("pad")
    mode = args[2] if len(args) > 2 else kwargs.get("mode", "constant")
    value = args[3] if len(args) > 3 else kwargs.get("value", 0.0)
    return padding(args[0], flat, mode, value, rank)


def upsampling(x: Any, scale: Any, mode: str, size: Any, rank: int) -> Result:
    """Nearest upsampling by integer factors on the spatial axes (1 to ``rank - 1``)."""
    if mode != "nearest":
        return f"upsampling with mode={mode!r}; only 'nearest' is exact"
    if size is not None or scale is None:
        return "upsampling to a size (give an integer scale_factor)"
    factors = list(scale) if isinstance(scale, (tuple, list)) else [scale] * (rank - 1)
    if any(float(f) != int(f) or int(f) < 1 for f in factors):
        return f"upsampling by {scale}; only integer factors are supported"
    return ("upsample", [x], None, {"factors": {1 + n: int(f) for n, f in enumerate(factors)}})


def upsample_module(m: nn.Module, x: Any, rank: int) -> Result:
    return upsampling(x, m.scale_factor, str(m.mode), m.size, rank)  # type: ignore[arg-type]


def interpolate(args: Any, kwargs: Any, rank: int) -> Result:
    size = args[1] if len(args) > 1 else kwargs.get("size")
    scale = args[2] if len(args) > 2 else kwargs.get("scale_factor")
    mode = args[3] if len(args) > 3 else kwargs.get("mode", "nearest")
    return upsampling(args[0], scale, mode, size, rank)


FUNCTIONS = {F.pad: pad_function, F.interpolate: interpolate}
