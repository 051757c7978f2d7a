"""Interval transfer rules: the exact result interval of each op kind from operand intervals.

The rules mirror the op table's ``infer`` functions (:mod:`hgqir.ops`) but take operand
*intervals* instead of operand types, so that ranges narrower than a type's stay narrow
through the graph. ``input``, ``const`` and ``quant`` are handled by
:mod:`hgqir.passes.intervals` itself; ``softmax`` reuses its rule's type inference.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hgqir.ir import Op, OpKind
from hgqir.ops.base import PAD_F, Interval
from hgqir.ops.linear import contract_interval, unfold
from hgqir.ops.pool import _counts, _win
from hgqir.ops.table import _union_lo

BIG_F = 1 << 30
"""LSB exponent of results that have no finite exact LSB (a division by a non power of two)."""

Rule = Callable[[Op, list[Interval]], Interval]


def _dead(f: np.ndarray) -> np.ndarray:
    return f <= PAD_F // 2


def _bcast(shape: tuple[int, ...], *arrays: np.ndarray) -> list[np.ndarray]:
    return [np.broadcast_to(a, shape) for a in arrays]


def _dense(op: Op, ins: list[Interval]) -> Interval:
    bias = ins[2] if len(ins) == 3 else None
    return contract_interval(ins[0], ins[1].lo, ins[1].f, bias)


def _conv(op: Op, ins: list[Interval]) -> Interval:
    x = ins[0]
    patches = Interval(unfold(x.lo, op, 0.0, False), unfold(x.hi, op, 0.0, False), unfold(x.f, op, PAD_F, False))
    cout = op.operands[1].shape[-1]
    w = ins[1]
    bias = ins[2] if len(ins) == 3 else None
    return contract_interval(patches, w.lo.reshape(-1, cout), w.f.reshape(-1, cout), bias)


def _addsub(op: Op, ins: list[Interval]) -> Interval:
    a, b = ins
    if op.kind is OpKind.SUB:
        b = Interval(-b.hi, -b.lo, b.f)
    shape = op.result.shape
    return Interval(*_bcast(shape, a.lo + b.lo, a.hi + b.hi, np.maximum(a.f, b.f)))


def _mul(op: Op, ins: list[Interval]) -> Interval:
    a, b = ins
    cands = [a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi]
    f = np.where(_dead(a.f) | _dead(b.f), PAD_F, a.f + b.f)
    return Interval(*_bcast(op.result.shape, np.minimum.reduce(cands), np.maximum.reduce(cands), f))


def _relu(op: Op, ins: list[Interval]) -> Interval:
    x = ins[0]
    return Interval(np.maximum(x.lo, 0.0), np.maximum(x.hi, 0.0), x.f)


def _batchnorm(op: Op, ins: list[Interval]) -> Interval:
    x, s, o = ins
    cands = [x.lo * s.lo, x.lo * s.hi, x.hi * s.lo, x.hi * s.hi]
    fprod = np.where(_dead(x.f) | _dead(s.f), PAD_F, x.f + s.f)
    lo = np.minimum.reduce(cands) + o.lo
    hi = np.maximum.reduce(cands) + o.hi
    return Interval(*_bcast(op.result.shape, lo, hi, np.maximum(fprod, o.f)))


def _concat(op: Op, ins: list[Interval]) -> Interval:
    axis = op.attrs["axis"]
    lo, hi, f = (np.concatenate([np.asarray(getattr(i, n)) for i in ins], axis=axis) for n in ("lo", "hi", "f"))
    return Interval(lo, hi, f)


def _reshape(op: Op, ins: list[Interval]) -> Interval:
    shape = op.attrs["shape"]
    x = ins[0]
    return Interval(*(np.reshape(a, shape) for a in _bcast(op.operands[0].shape, x.lo, x.hi, x.f)))


def _transpose(op: Op, ins: list[Interval]) -> Interval:
    perm = op.attrs["perm"]
    x = ins[0]
    return Interval(*(np.transpose(a, perm) for a in _bcast(op.operands[0].shape, x.lo, x.hi, x.f)))


def _maxpool(op: Op, ins: list[Interval]) -> Interval:
    x = ins[0]
    shape = op.result.shape
    lo, hi = (_win(op, a, -np.inf, False).max(axis=-2).reshape(shape) for a in (x.lo, x.hi))
    f = _win(op, x.f, PAD_F, False).max(axis=-2).reshape(shape)
    return Interval(lo, hi, f)


def _avgpool(op: Op, ins: list[Interval]) -> Interval:
    x = ins[0]
    shape = op.result.shape
    lo, hi = (_win(op, a, 0.0, False).sum(axis=-2).reshape(shape) for a in (x.lo, x.hi))
    n = _counts(op)
    pow2 = (n & (n - 1)) == 0
    extra = np.round(np.log2(n)).astype(np.int64)
    f = _win(op, x.f, PAD_F, False).max(axis=-2).reshape(shape)
    f = np.where(_dead(f), PAD_F, np.where(pow2, f + extra, BIG_F))
    return Interval(lo / n, hi / n, f)


def _lut(op: Op, ins: list[Interval]) -> Interval:
    """Only the table entries that inputs in range can index."""
    x, table = ins
    xt = op.operands[0].type
    low, _ = _union_lo(xt)
    fu = xt.union()[2]
    top = table.lo.shape[0] - 1
    idx_lo, idx_hi = (np.clip(np.ldexp(a, fu) - low, 0, top).astype(np.int64) for a in (x.lo, x.hi))
    pairs, inverse = np.unique(np.stack([idx_lo.reshape(-1), idx_hi.reshape(-1)], axis=1), axis=0, return_inverse=True)
    out = np.empty((len(pairs), 3))
    for n, (a, b) in enumerate(pairs):
        out[n] = (table.lo[a : b + 1].min(), table.hi[a : b + 1].max(), table.f[a : b + 1].max())
    lo, hi, f = (out[inverse.reshape(-1), c].reshape(x.lo.shape) for c in range(3))
    return Interval(lo, hi, np.where(f <= PAD_F // 2, PAD_F, f).astype(np.int64))


def _softmax(op: Op, ins: list[Interval]) -> Interval:
    return Interval.of(op.rule.infer(op)[0])


TRANSFER: dict[OpKind, Rule] = {
    OpKind.DENSE: _dense,
    OpKind.CONV1D: _conv,
    OpKind.CONV2D: _conv,
    OpKind.ADD: _addsub,
    OpKind.SUB: _addsub,
    OpKind.MUL: _mul,
    OpKind.RELU: _relu,
    OpKind.BATCHNORM: _batchnorm,
    OpKind.CONCAT: _concat,
    OpKind.RESHAPE: _reshape,
    OpKind.TRANSPOSE: _transpose,
    OpKind.MAXPOOL1D: _maxpool,
    OpKind.MAXPOOL2D: _maxpool,
    OpKind.GLOBAL_MAXPOOL: _maxpool,
    OpKind.AVGPOOL1D: _avgpool,
    OpKind.AVGPOOL2D: _avgpool,
    OpKind.GLOBAL_AVGPOOL: _avgpool,
    OpKind.LUT: _lut,
    OpKind.SOFTMAX: _softmax,
}
"""Exact result interval per op kind (input, const, quant and output are not in the table)."""
