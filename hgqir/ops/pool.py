"""Pooling over channels-last tensors: max and average, windowed (1d/2d) and global.

Average pooling divides the exact window sum by the element count and truncates (TRN, then
WRAP) into the result type; with a power-of-two count the inferred type makes this exact.
"""

from __future__ import annotations

import math

import numpy as np

from ..fixed import FixedType, OverflowMode, RoundMode, Shape
from ..ir import Op, OpKind
from ..numbers import Exact, bound_bits, scale_of
from ..quantize import _pow2, mantissa_dtype, quantize_exact
from .base import BIG_F, PAD_F, Attr, Cast, Interval, OpRule, Trait, dead, expect, interval_of, register
from .linear import _conv_out_shape, windows

_WINDOWED = {OpKind.MAXPOOL1D: 1, OpKind.MAXPOOL2D: 2, OpKind.AVGPOOL1D: 1, OpKind.AVGPOOL2D: 2}
_AVG = (OpKind.AVGPOOL1D, OpKind.AVGPOOL2D, OpKind.GLOBAL_AVGPOOL)


def _pool_shapes(op: Op) -> list[Shape]:
    x = op.operands[0].shape
    if op.kind in (OpKind.GLOBAL_MAXPOOL, OpKind.GLOBAL_AVGPOOL):
        expect(len(x) >= 2, op, f"needs a spatial axis and a channel axis, got {list(x)}")
        return [(x[-1],)]
    nd = _WINDOWED[op.kind]
    expect(len(x) == nd + 1, op, f"needs rank {nd + 1} channels-last input, got {list(x)}")
    expect(len(op.attrs["pool"]) == nd and len(op.attrs["pad"]) == nd, op, f"pool and pad need {nd} entries")
    for p, (a, b) in zip(op.attrs["pool"], op.attrs["pad"], strict=True):
        expect(a < p and b < p, op, "padding must be smaller than the pool size")
    return [(*_conv_out_shape(op, x[:-1], op.attrs["pool"]), x[-1])]


def _win(op: Op, a: np.ndarray, fill: object, batched: bool) -> np.ndarray:
    """Windows flattened to ``[..., *out, n, C]`` (global pools: ``[..., 1, n, C]``)."""
    if op.kind in (OpKind.GLOBAL_MAXPOOL, OpKind.GLOBAL_AVGPOOL):
        lead = a.shape[:1] if batched else ()
        return a.reshape(*lead, 1, -1, a.shape[-1])
    nd = _WINDOWED[op.kind]
    w = windows(a, op.attrs["pool"], op.attrs["stride"], op.attrs["pad"], fill, batched)
    return w.reshape(*w.shape[: w.ndim - nd - 1], -1, w.shape[-1])


def _counts(op: Op) -> np.ndarray:
    """Divisor per output element of an average pool."""
    x = op.operands[0].shape
    if op.kind is OpKind.GLOBAL_AVGPOOL or op.attrs.get("count_pad", True):
        n = math.prod(x[:-1]) if op.kind is OpKind.GLOBAL_AVGPOOL else math.prod(op.attrs["pool"])
        return np.full(op.results[0].shape if op.results else _pool_shapes(op)[0], n, dtype=np.int64)
    ones = np.ones(x, dtype=np.int64)
    return _win(op, ones, 0, False).sum(axis=-2).reshape(_pool_shapes(op)[0])


def _pool_infer(op: Op) -> list[FixedType]:
    xi = interval_of(op.operands[0])
    shape = _pool_shapes(op)[0]
    if op.kind in _AVG:
        lo, hi = (_win(op, a, 0.0, False).sum(axis=-2).reshape(shape) for a in (xi.lo, xi.hi))
        n = _counts(op)
        extra = np.ceil(np.log2(n)).astype(np.int64)
        f = _win(op, xi.f, PAD_F, False).max(axis=-2).reshape(shape) + extra
        return [Interval(lo / n, hi / n, f).to_type()]
    lo = _win(op, xi.lo, -np.inf, False).max(axis=-2).reshape(shape)
    hi = _win(op, xi.hi, -np.inf, False).max(axis=-2).reshape(shape)
    f = _win(op, xi.f, PAD_F, False).max(axis=-2).reshape(shape)
    return [Interval(lo, hi, f).to_type()]


def _pool_eval(op: Op, args: list[Exact]) -> list[Exact]:
    x = args[0]
    t = op.operands[0].type
    n_out = (x.m.shape[0], *op.results[0].shape)
    if op.kind not in _AVG:
        floor = -_pow2(bound_bits(t, x.scale), x.m.dtype)
        return [Exact(_win(op, x.m, floor, True).max(axis=-2).reshape(n_out), x.scale)]
    count = _counts(op)
    out_t = op.results[0].type
    scale = scale_of(out_t)
    up = max(scale - x.scale, 0)
    extra = int(math.ceil(math.log2(max(int(count.max(initial=1)), 1)))) + 1
    dtype = mantissa_dtype(bound_bits(t, x.scale) + extra + up + 1)
    xm = x.rescaled(x.scale, dtype)
    total = _win(op, xm, 0, True).sum(axis=-2).reshape(n_out)
    den = count * _pow2(max(x.scale - scale, 0), dtype) if x.scale > scale else count.astype(dtype)
    num = total * _pow2(up, dtype) if up else total
    q = np.floor_divide(num, den)  # exact floor for integer-valued operands of every dtype
    m, s = quantize_exact(q, scale, out_t.k, out_t.i, out_t.f, RoundMode.TRN, OverflowMode.WRAP)
    return [Exact(m, s)]


def _maxpool_transfer(op: Op, ins: list[Interval]) -> Interval:
    x = ins[0]
    shape = _pool_shapes(op)[0]
    lo, hi = (_win(op, a, -np.inf, False).max(axis=-2).reshape(shape) for a in (x.lo, x.hi))
    f = _win(op, x.f, PAD_F, False).max(axis=-2).reshape(shape)
    return Interval(lo, hi, f)


def _avgpool_transfer(op: Op, ins: list[Interval]) -> Interval:
    x = ins[0]
    shape = _pool_shapes(op)[0]
    lo, hi = (_win(op, a, 0.0, False).sum(axis=-2).reshape(shape) for a in (x.lo, x.hi))
    n = _counts(op)
    pow2 = (n & (n - 1)) == 0
    extra = np.round(np.log2(n)).astype(np.int64)
    f = _win(op, x.f, PAD_F, False).max(axis=-2).reshape(shape)
    f = np.where(dead(f), PAD_F, np.where(pow2, f + extra, BIG_F))
    return Interval(lo / n, hi / n, f)


_POOL_ATTRS = {
    "pool": Attr("ints", required=True),
    "stride": Attr("ints", required=True),
    "pad": Attr("pads", required=True),
}
for _kind in _WINDOWED:
    attrs = dict(_POOL_ATTRS)
    if _kind in _AVG:
        attrs["count_pad"] = Attr("bool", True)
    register(
        OpRule(
            _kind,
            (1, 1),
            1,
            attrs,
            shapes=_pool_shapes,
            infer=_pool_infer,
            eval=_pool_eval,
            transfer=_avgpool_transfer if _kind in _AVG else _maxpool_transfer,
            traits=Trait.CHANNELWISE,
            cast=Cast.BY_EVAL if _kind in _AVG else Cast.AFTER_EVAL,
            doc=("Average" if _kind in _AVG else "Max") + " pooling over windows `pool` with `stride` "
            "and padding `pad`"
            + (
                " (padding counts in the divisor when `count_pad`)."
                if _kind in _AVG
                else " (padding never wins the max)."
            ),
        )
    )
register(
    OpRule(
        OpKind.GLOBAL_MAXPOOL,
        (1, 1),
        1,
        {},
        shapes=_pool_shapes,
        infer=_pool_infer,
        eval=_pool_eval,
        transfer=_maxpool_transfer,
        traits=Trait.CHANNELWISE,
        doc="Max over every axis but the last (channels).",
    )
)
register(
    OpRule(
        OpKind.GLOBAL_AVGPOOL,
        (1, 1),
        1,
        {},
        shapes=_pool_shapes,
        infer=_pool_infer,
        eval=_pool_eval,
        transfer=_avgpool_transfer,
        traits=Trait.CHANNELWISE,
        cast=Cast.BY_EVAL,
        doc="Mean over every axis but the last, truncated into the result type.",
    )
)
