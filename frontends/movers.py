"""Data movement that the IR builds from concat, slice and reshape, shared by both frontends.

Zero padding is a concatenation with zero-width constants (the literal 0), cropping a
``slice``, nearest upsampling along an axis a unit axis with copies concatenated along it and a
reshape. All exact for any type: nothing is computed.
"""

from __future__ import annotations

import numpy as np

from hgqir.fixed import FixedType
from hgqir.ir import Graph, OpKind, Value


def _add(g: Graph, kind: OpKind, operands: list[Value], name: str, **attrs: object) -> Value:
    return g.add(kind, operands, attrs, name=g.unique_name(name)).result


def zero_pad(g: Graph, x: Value, pads: dict[int, tuple[int, int]], name: str) -> Value:
    """``x`` with ``before`` / ``after`` zeros on each axis of ``pads`` (unbatched axes)."""
    for axis, (before, after) in sorted(pads.items()):
        if not before and not after:
            continue
        parts: list[Value] = []
        for size in (before, after):
            if size:
                shape = list(x.shape)
                shape[axis] = size
                zeros = tuple(shape)
                parts.append(
                    g.const_mantissa(
                        np.zeros(zeros, dtype=np.int64), FixedType.zero(zeros), name=g.unique_name(f"{name}_zeros")
                    )
                )
            else:
                parts.append(None)  # type: ignore[arg-type]
        ordered = [p for p in (parts[0], x, parts[1]) if p is not None]
        x = _add(g, OpKind.CONCAT, ordered, f"{name}_pad{axis}", axis=axis)
    return x


def _zeros(g: Graph, x: Value, axis: int, size: int, name: str) -> Value:
    """Zero-width zeros shaped like ``x`` but ``size`` long on ``axis``."""
    shape = tuple(size if a == axis else s for a, s in enumerate(x.shape))
    return g.const_mantissa(np.zeros(shape, dtype=np.int64), FixedType.zero(shape), name=g.unique_name(f"{name}_zeros"))


def crop(g: Graph, x: Value, crops: dict[int, tuple[int, int]], name: str) -> Value:
    """``x`` without ``before`` / ``after`` entries on each axis of ``crops``."""
    begin = [crops.get(a, (0, 0))[0] for a in range(len(x.shape))]
    end = [s - crops.get(a, (0, 0))[1] for a, s in enumerate(x.shape)]
    return _add(g, OpKind.SLICE, [x], name, begin=tuple(begin), end=tuple(end))


def repeat_axis(g: Graph, x: Value, axis: int, times: int, name: str) -> Value:
    """Every entry along ``axis`` repeated ``times`` times in place (nearest upsampling)."""
    if times == 1:
        return x
    shape = list(x.shape)
    unit = _add(g, OpKind.RESHAPE, [x], f"{name}_unit{axis}", shape=(*shape[: axis + 1], 1, *shape[axis + 1 :]))
    copies = _add(g, OpKind.CONCAT, [unit] * times, f"{name}_copies{axis}", axis=axis + 1)
    shape[axis] *= times
    return _add(g, OpKind.RESHAPE, [copies], f"{name}_up{axis}", shape=tuple(shape))


def named(g: Graph, v: Value, name: str) -> Value:
    """``v`` under ``name`` when that is free and ``v`` is not a graph input (an identity move)."""
    if v.producer is not None and v.producer.kind is not OpKind.INPUT and v.name != name:
        if g.unique_name(name) == name:  # the name is free
            g.rename(v, name)
    return v
