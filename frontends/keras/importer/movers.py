"""Keras layers that only move values, built from the IR's data-movement ops.

``ZeroPadding1D/2D``: concatenation with zero-width constants (the literal 0); ``Cropping1D/2D``:
``slice``; ``UpSampling1D/2D`` (nearest): a unit axis, copies concatenated along it, a reshape;
``RepeatVector``: the same on a new leading axis. Exact for any type (nothing is computed), so
the shim clones these layers as they are and a quantizer's type passes through them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hgqir.fixed import FixedType
from hgqir.ir import OpKind, Value

from ..graph import KNode
from ..support import L
from .convert import PLAIN_CONVERTERS, Emitter


def _pairs(value: Any, n: int) -> list[tuple[int, int]]:
    """Keras' normalized padding / cropping (``(l, r)`` in 1D, ``((t, b), (l, r))`` in 2D) as
    ``(before, after)`` per spatial axis."""
    if n == 1:
        return [(int(value[0]), int(value[1]))]
    return [(int(a), int(b)) for a, b in value]


def _zeros(em: Emitter, shape: tuple[int, ...], name: str) -> Value:
    return em.g.const_mantissa(np.zeros(shape, dtype=np.int64), FixedType.zero(shape), name=em.g.unique_name(name))


def zero_pad(em: Emitter, x: Value, pads: list[tuple[int, int]], name: str) -> Value:
    """``x`` with zeros before / after each spatial axis (channels last)."""
    for axis, (before, after) in enumerate(pads):
        if not before and not after:
            continue
        parts = []
        for size, where in ((before, "before"), (after, "after")):
            if size:
                shape = list(x.shape)
                shape[axis] = size
                parts.append((where, _zeros(em, tuple(shape), f"{name}_zeros")))
        ordered = [v for w, v in parts if w == "before"] + [x] + [v for w, v in parts if w == "after"]
        x = em.add(OpKind.CONCAT, ordered, f"{name}_{axis}", axis=axis)
    return x


def crop(em: Emitter, x: Value, crops: list[tuple[int, int]], name: str) -> Value:
    begin = [b for b, _ in crops] + [0]
    end = [s - a for s, (_, a) in zip(x.shape, crops, strict=False)] + [x.shape[-1]]
    return em.add(OpKind.SLICE, [x], name, begin=tuple(begin), end=tuple(end))


def repeat_axis(em: Emitter, x: Value, axis: int, times: int, name: str) -> Value:
    """Every entry along ``axis`` repeated ``times`` times in place (nearest upsampling)."""
    if times == 1:
        return x
    shape = list(x.shape)
    unit = em.add(OpKind.RESHAPE, [x], f"{name}_unit{axis}", shape=(*shape[: axis + 1], 1, *shape[axis + 1 :]))
    copies = em.add(OpKind.CONCAT, [unit] * times, f"{name}_copies{axis}", axis=axis + 1)
    shape[axis] *= times
    return em.add(OpKind.RESHAPE, [copies], f"{name}_{axis}", shape=tuple(shape))


def _zero_padding(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    layer = node.layer
    n = 1 if isinstance(layer, L.ZeroPadding1D) else 2
    y = zero_pad(em, xs[0], _pairs(layer.padding, n), node.name)
    return [_named(em, y, node.name)]


def _cropping(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    layer = node.layer
    n = 1 if isinstance(layer, L.Cropping1D) else 2
    return [crop(em, xs[0], _pairs(layer.cropping, n), node.name)]


def _upsampling(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    layer = node.layer
    sizes = (int(layer.size),) if isinstance(layer, L.UpSampling1D) else tuple(int(s) for s in layer.size)
    y = xs[0]
    for axis, s in enumerate(sizes):
        y = repeat_axis(em, y, axis, s, node.name)
    return [_named(em, y, node.name)]


def _repeat_vector(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    x = xs[0]
    unit = em.add(OpKind.RESHAPE, [x], f"{node.name}_unit", shape=(1, *x.shape))
    return [repeat_axis(em, unit, 0, int(node.layer.n), node.name)]


def _named(em: Emitter, v: Value, name: str) -> Value:
    """The layer's result under its own name (an identity layer returns its input unchanged)."""
    if v.producer is not None and v.producer.kind is not OpKind.INPUT and v.name != name and name not in em.g._names:
        em.g.rename(v, name)
    return v


CONVERTERS = {
    L.ZeroPadding1D: _zero_padding,
    L.ZeroPadding2D: _zero_padding,
    L.Cropping1D: _cropping,
    L.Cropping2D: _cropping,
    L.UpSampling1D: _upsampling,
    L.UpSampling2D: _upsampling,
    L.RepeatVector: _repeat_vector,
}
"""Keras data-movement layer -> converter (quantized and float models alike)."""
PLAIN_CONVERTERS.update(CONVERTERS)  # movers convert the same in float and quantized models
