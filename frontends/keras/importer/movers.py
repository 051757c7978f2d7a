"""Keras layers that only move values, built from the IR's data-movement ops.

``ZeroPadding1D/2D``: concatenation with zero-width constants (the literal 0); ``Cropping1D/2D``:
``slice``; ``UpSampling1D/2D`` (nearest): a unit axis, copies concatenated along it, a reshape;
``RepeatVector``: the same on a new leading axis. Exact for any type (nothing is computed), so
the shim clones these layers as they are and a quantizer's type passes through them.
"""

from __future__ import annotations

from typing import Any

from hgqir.ir import OpKind, Value

from ...movers import crop, named, repeat_axis, zero_pad
from ..graph import KNode
from ..support import L
from .convert import PLAIN_CONVERTERS, Emitter


def _pairs(value: Any, n: int) -> list[tuple[int, int]]:
    """Keras' normalized padding / cropping (``(l, r)`` in 1D, ``((t, b), (l, r))`` in 2D) as
    ``(before, after)`` per spatial axis."""
    if n == 1:
        return [(int(value[0]), int(value[1]))]
    return [(int(a), int(b)) for a, b in value]


def _zero_padding(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    layer = node.layer
    n = 1 if isinstance(layer, L.ZeroPadding1D) else 2
    y = zero_pad(em.g, xs[0], dict(enumerate(_pairs(layer.padding, n))), node.name)
    return [named(em.g, y, node.name)]


def _cropping(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    layer = node.layer
    n = 1 if isinstance(layer, L.Cropping1D) else 2
    return [named(em.g, crop(em.g, xs[0], dict(enumerate(_pairs(layer.cropping, n))), node.name), node.name)]


def _upsampling(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    layer = node.layer
    sizes = (int(layer.size),) if isinstance(layer, L.UpSampling1D) else tuple(int(s) for s in layer.size)
    y = xs[0]
    for axis, s in enumerate(sizes):
        y = repeat_axis(em.g, y, axis, s, node.name)
    return [named(em.g, y, node.name)]


def _repeat_vector(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    x = xs[0]
    unit = em.add(OpKind.RESHAPE, [x], f"{node.name}_unit", shape=(1, *x.shape))
    return [named(em.g, repeat_axis(em.g, unit, 0, int(node.layer.n), node.name), node.name)]


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
