"""Elementwise ops: add, sub, mul, maximum, minimum (numpy broadcasting between operands), relu
and prelu."""

from __future__ import annotations

import numpy as np

from ..fixed import FixedType, Shape
from ..ir import Op, OpKind
from ..numbers import Exact, bound_bits
from ..quantize import mantissa_dtype
from .base import (
    PAD_F,
    Interval,
    OpRule,
    Trait,
    bcast,
    broadcast_shapes,
    dead,
    derived_infer,
    expect,
    interval_of,
    register,
)


def _binary_shapes(op: Op) -> list[Shape]:
    return [broadcast_shapes(op, [v.shape for v in op.operands])]


def _addsub_infer(op: Op) -> list[FixedType]:
    a, b = (interval_of(v) for v in op.operands)
    if op.kind is OpKind.SUB:
        b = Interval(-b.hi, -b.lo, b.f)
    shape = _binary_shapes(op)[0]
    lo = np.broadcast_to(a.lo + b.lo, shape)
    hi = np.broadcast_to(a.hi + b.hi, shape)
    return [Interval(lo, hi, np.broadcast_to(np.maximum(a.f, b.f), shape)).to_type()]


def _addsub_eval(op: Op, args: list[Exact]) -> list[Exact]:
    a, b = args
    scale = max(a.scale, b.scale)
    ta, tb = (v.type for v in op.operands)
    bits = max(bound_bits(ta, scale), bound_bits(tb, scale)) + 1
    dtype = mantissa_dtype(bits)
    am, bm = (_align(op, n, x.rescaled(scale, dtype)) for n, x in enumerate(args))
    return [Exact(am + bm if op.kind is OpKind.ADD else am - bm, scale)]


def _align(op: Op, n: int, m: np.ndarray) -> np.ndarray:
    """Batched mantissas of a lower-rank operand get unit axes after the batch axis.

    Constants are unbatched, so numpy's right-aligned broadcasting already fits them.
    """
    v = op.operands[n]
    rank = len(_binary_shapes(op)[0])
    if len(v.shape) == rank or (v.producer is not None and v.producer.kind is OpKind.CONST):
        return m
    return m.reshape(m.shape[0], *(1,) * (rank - len(v.shape)), *v.shape)


def _addsub_bops(op: Op) -> float:
    shape = _binary_shapes(op)[0]
    ba, bb = (np.broadcast_to(v.type.bits, shape) for v in op.operands)
    return float(np.sum(np.maximum(ba, bb)))


def _mul_eval(op: Op, args: list[Exact]) -> list[Exact]:
    a, b = args
    ta, tb = (v.type for v in op.operands)
    dtype = mantissa_dtype(bound_bits(ta, a.scale) + bound_bits(tb, b.scale))
    am, bm = (_align(op, n, x.rescaled(x.scale, dtype)) for n, x in enumerate(args))
    return [Exact(am * bm, a.scale + b.scale)]


def _mul_bops(op: Op) -> float:
    shape = _binary_shapes(op)[0]
    ba, bb = (np.broadcast_to(v.type.bits, shape) for v in op.operands)
    return float(np.sum(ba * bb))


def _addsub_transfer(op: Op, ins: list[Interval]) -> Interval:
    a, b = ins
    if op.kind is OpKind.SUB:
        b = Interval(-b.hi, -b.lo, b.f)
    return Interval(*bcast(_binary_shapes(op)[0], a.lo + b.lo, a.hi + b.hi, np.maximum(a.f, b.f)))


def _mul_transfer(op: Op, ins: list[Interval]) -> Interval:
    a, b = ins
    cands = [a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi]
    f = np.where(dead(a.f) | dead(b.f), PAD_F, a.f + b.f)
    return Interval(*bcast(_binary_shapes(op)[0], np.minimum.reduce(cands), np.maximum.reduce(cands), f))


def _relu_transfer(op: Op, ins: list[Interval]) -> Interval:
    x = ins[0]
    return Interval(np.maximum(x.lo, 0.0), np.maximum(x.hi, 0.0), x.f)


def _relu_eval(op: Op, args: list[Exact]) -> list[Exact]:
    m = args[0].m
    return [Exact(np.where(m > 0, m, 0 * m), args[0].scale)]


def _prelu_transfer(op: Op, ins: list[Interval]) -> Interval:
    """``x`` where ``x >= 0``, ``x * alpha`` below: the positive part's range joined with the
    products of the negative part with ``alpha``; LSB ``f_x + f_alpha`` where x can be negative."""
    x, a = ins
    shape = _binary_shapes(op)[0]
    neg_lo, neg_hi = np.minimum(x.lo, 0.0), np.minimum(x.hi, 0.0)
    cands = [neg_lo * a.lo, neg_lo * a.hi, neg_hi * a.lo, neg_hi * a.hi]
    lo = np.minimum(np.maximum(x.lo, 0.0), np.minimum.reduce(cands))
    hi = np.maximum(np.maximum(x.hi, 0.0), np.maximum.reduce(cands))
    can_neg = x.lo < 0
    f = np.where(can_neg & ~dead(a.f), x.f + np.where(dead(a.f), 0, a.f), x.f)
    f = np.where(dead(x.f), PAD_F, f)
    return Interval(*bcast(shape, lo, hi, f))


def _prelu_eval(op: Op, args: list[Exact]) -> list[Exact]:
    x, a = args
    tx, ta = (v.type for v in op.operands)
    sa = max(a.scale, 0)  # an alpha coarser than 1 LSB is taken at scale 0
    dtype = mantissa_dtype(bound_bits(tx, x.scale) + bound_bits(ta, sa) + 1)
    xm = _align(op, 0, x.rescaled(x.scale, dtype))
    pos = _align(op, 0, x.rescaled(x.scale + sa, dtype))
    am = _align(op, 1, a.rescaled(sa, dtype))
    return [Exact(np.where(xm >= 0, pos, xm * am), x.scale + sa)]


def _extreme_transfer(op: Op, ins: list[Interval]) -> Interval:
    a, b = ins
    pick = np.maximum if op.kind is OpKind.MAXIMUM else np.minimum
    f = np.where(dead(a.f), b.f, np.where(dead(b.f), a.f, np.maximum(a.f, b.f)))
    return Interval(*bcast(_binary_shapes(op)[0], pick(a.lo, b.lo), pick(a.hi, b.hi), f))


def _extreme_eval(op: Op, args: list[Exact]) -> list[Exact]:
    a, b = args
    scale = max(a.scale, b.scale)
    ta, tb = (v.type for v in op.operands)
    dtype = mantissa_dtype(max(bound_bits(ta, scale), bound_bits(tb, scale)) + 1)
    am, bm = (_align(op, n, x.rescaled(scale, dtype)) for n, x in enumerate(args))
    pick = np.maximum if op.kind is OpKind.MAXIMUM else np.minimum
    return [Exact(pick(am, bm), scale)]


def _prelu_bops(op: Op) -> float:
    """One constant multiplication per element (as ``mul``): ``bits(x) * bits(alpha)``."""
    return _mul_bops(op)


for _kind, _sym in ((OpKind.ADD, "+"), (OpKind.SUB, "-")):
    register(
        OpRule(
            _kind,
            (2, 2),
            1,
            {},
            shapes=_binary_shapes,
            infer=_addsub_infer,
            eval=_addsub_eval,
            bops=_addsub_bops,
            transfer=_addsub_transfer,
            traits=Trait.MERGES,
            doc=f"Elementwise a {_sym} b with numpy broadcasting.",
        )
    )
register(
    OpRule(
        OpKind.MUL,
        (2, 2),
        1,
        {},
        shapes=_binary_shapes,
        infer=derived_infer(_mul_transfer),
        eval=_mul_eval,
        bops=_mul_bops,
        transfer=_mul_transfer,
        traits=Trait.MERGES | Trait.MULTIPLIES,
        doc="Elementwise a * b with numpy broadcasting.",
    )
)
for _kind in (OpKind.MAXIMUM, OpKind.MINIMUM):
    register(
        OpRule(
            _kind,
            (2, 2),
            1,
            {},
            shapes=_binary_shapes,
            infer=derived_infer(_extreme_transfer),
            eval=_extreme_eval,
            bops=_addsub_bops,  # a comparator per element, costed like an adder
            transfer=_extreme_transfer,
            traits=Trait.MERGES,
            doc=f"Elementwise {_kind.value}(a, b) with numpy broadcasting (EBOPs: max(bits(a), bits(b)) per element).",
        )
    )
register(
    OpRule(
        OpKind.PRELU,
        (2, 2),
        1,
        {},
        shapes=_binary_shapes,
        infer=derived_infer(_prelu_transfer),
        eval=_prelu_eval,
        bops=_prelu_bops,
        transfer=_prelu_transfer,
        check=lambda op: expect(
            op.operands[1].producer is not None and op.operands[1].producer.kind is OpKind.CONST,
            op,
            "alpha must be a const",
        ),
        traits=Trait.CHANNELWISE | Trait.MULTIPLIES,
        operand_names=("x", "alpha"),
        data_operands=1,
        doc="x where x >= 0, alpha * x below (LeakyReLU, PReLU); alpha a const broadcast to x.",
    )
)
register(
    OpRule(
        OpKind.RELU,
        (1, 1),
        1,
        {},
        shapes=lambda op: [op.operands[0].shape],
        infer=derived_infer(_relu_transfer),
        eval=_relu_eval,
        transfer=_relu_transfer,
        traits=Trait.CHANNELWISE,
        kernel="unary",
        doc="max(x, 0).",
    )
)
