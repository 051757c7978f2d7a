"""Fused float64 kernels behind ``Graph.run``: same bits as the op rules, fewer passes over data.

The generic interpreter (:mod:`hgqir.interp`) evaluates one op at a time on :class:`Exact`
tensors (one scale per tensor), rescaling and re-checking at every step. For the hot paths of
quantized networks this module keeps values as :class:`Scaled` (float64 integer mantissas
with a per-element exponent) and runs a ``dense -> relu -> quant`` chain as one BLAS product
plus about three passes: per-element exponents fold into the weights, the quantizer's scale
and half-LSB fold into weights and bias, ReLU folds into the saturation bound.

Exactness argument, checked statically before a kernel runs: every mantissa is an integer
below 2**52, every scaling is by a power of two that stays inside float64's normal range, and
every accumulator is bounded below 2**51 LSBs, so every float64 operation is exact. Where a
proof fails (wide types, extreme exponents) or an operand arrived as int64 / Python ints, the
op runs through its generic rule instead: never silently inexact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import HgqirError
from .fixed import FixedType, OverflowMode, RoundMode
from .ir import Op, OpKind, Value
from .numbers import Exact, bound_bits, dtype_for, exact_from_mantissas
from .quantize import FLOAT_BITS, _overflow, _pow2, _round_float, convert

SAFE = 2.0**51
"""Accumulator bound (in LSBs) below which every float64 sum here is exact, with a guard bit."""
MAX_SHIFT = 52
"""Largest right shift for which ``floor(v + 1/2)`` on ``v = n * 2**-s`` (``|n| < 2**52``) is exact."""
_GRID_ROUND = {
    RoundMode.TRN: (0.0, np.floor),
    RoundMode.TRN_ZERO: (0.0, np.trunc),
    RoundMode.RND: (0.5, np.floor),
    RoundMode.RND_MIN_INF: (-0.5, np.ceil),
    RoundMode.RND_CONV: (0.0, np.rint),
}
"""Rounding of grid values ``n * 2**-s`` as ``fn(v + half)``; the other modes use _round_float."""


@dataclass
class Scaled:
    """Values ``m * 2**-e``: float64 integer mantissas ``m`` (batch first, ``|m| < 2**52``),
    int64 exponents ``e`` broadcast over the unbatched shape."""

    m: np.ndarray
    e: np.ndarray

    @classmethod
    def of(cls, x: Exact | Scaled) -> Scaled | None:
        """``x`` as Scaled, or None when its mantissas are not float64."""
        if isinstance(x, Scaled):
            return x
        return cls(x.m, np.asarray(x.scale, dtype=np.int64)) if x.m.dtype == np.float64 else None

    def to_exact(self, t: FixedType) -> Exact:
        """One scale for the whole tensor (the generic rules' form), in the narrowest exact dtype."""
        e = np.broadcast_to(self.e, t.shape)
        scale = int(e.max(initial=0))
        up = scale - e
        if not up.any():
            return Exact(self.m, scale)
        dtype = dtype_for(t, scale)
        if dtype == np.float64:
            return Exact(self.m * np.ldexp(1.0, up), scale)
        return Exact(convert(self.m, dtype) * _pow2(up, dtype), scale)

    def to_float(self) -> np.ndarray:
        e = np.asarray(self.e)
        if e.size and (e.max() > 1000 or e.min() < -1000):
            return np.ldexp(self.m, -e) + 0.0
        return self.m * np.ldexp(1.0, -e) + 0.0  # exact: results stay normal; + 0.0 clears -0.0


# ---------------------------------------------------------------- quantization on grid values
@dataclass
class QuantPlan:
    """Precomputed constants of one quantization of grid values into per-element types."""

    scale: np.ndarray
    """Multiplier ``2**(f - e_in)`` per element (0 for pruned results)."""
    half: float
    rounder: Any
    """``fn(v + half)`` rounds; None: use the exact general rounding."""
    mode: RoundMode
    overflow: OverflowMode | None
    """None when the input range provably fits (no overflow handling needed)."""
    lo: np.ndarray | None
    hi: np.ndarray | None
    """Saturation bounds in result LSBs (ReLU folded into ``lo``); None where that side cannot overflow."""
    wrap: tuple[np.ndarray, np.ndarray, np.ndarray] | None
    """WRAP's offset and modulus per element."""
    out_e: np.ndarray

    def round(self, v: np.ndarray) -> np.ndarray:
        """Round in place where possible; ``v`` already holds ``m * scale``, plus ``half`` if folded."""
        if self.rounder is None:
            return _round_float(v, self.mode)
        return self.rounder(v, out=v)

    def overflow_fix(self, q: np.ndarray, relu: bool) -> np.ndarray:
        """Overflow handling of rounded grid values ``q`` (``|q| < 2**52``), in place where possible."""
        if self.overflow in (OverflowMode.SAT, OverflowMode.SAT_SYM):
            if self.hi is not None:
                np.minimum(q, self.hi, out=q)
            if self.lo is not None:
                np.maximum(q, self.lo, out=q)
            return q
        if relu:
            np.maximum(q, 0.0, out=q)
        if self.overflow is None:
            return q
        if self.wrap is not None:
            return wrap_grid(q, *self.wrap)
        return np.where((q < self.lo) | (q > self.hi), 0.0, q)  # SAT_ZERO


def quant_plan(
    e_in: np.ndarray, src: FixedType, dst: FixedType, rmode: RoundMode, omode: OverflowMode, relu: bool
) -> QuantPlan | None:
    """Plan quantizing grid values of type ``src`` (exponents ``e_in``) into ``dst``; None if not exact."""
    if int(np.max(dst.width, initial=0)) > FLOAT_BITS:
        return None
    live = ~dst.zero_mask
    shift = np.broadcast_to(e_in, dst.shape) - dst.f
    top = np.where(src.zero_mask, -(2**30), src.i) + dst.f
    if np.any(live & ((shift > MAX_SHIFT) | (top > FLOAT_BITS - 1) | (shift < -1000))):
        return None
    half, fn = _GRID_ROUND.get(rmode, (0.0, None))
    lo, hi = _bounds(dst, omode, relu)
    need_lo, need_hi = _overflow_sides(src, dst, lo, hi, relu)
    overflow = omode if (need_lo or need_hi) else None
    if omode in (OverflowMode.SAT, OverflowMode.SAT_SYM) and relu:
        need_lo = True  # the clip's low end is the ReLU
        overflow = omode
    wrap = None
    if overflow is OverflowMode.WRAP:
        w = np.maximum(dst.width, 1)
        wrap = (np.where(dst.k == 1, np.ldexp(1.0, w - 1), 0.0), np.ldexp(1.0, w), np.ldexp(1.0, -w))
    return QuantPlan(
        np.where(live, np.ldexp(1.0, np.where(live, -shift, 0)), 0.0),
        half,
        fn,
        rmode,
        overflow,
        lo if need_lo or overflow is OverflowMode.SAT_ZERO else None,
        hi if need_hi or overflow is OverflowMode.SAT_ZERO else None,
        wrap,
        np.where(live, dst.f, 0),
    )


def _bounds(dst: FixedType, omode: OverflowMode, relu: bool) -> tuple[np.ndarray, np.ndarray]:
    """Mantissa bounds of ``dst`` as floats (SAT_SYM's symmetric low end, ReLU's 0 folded in)."""
    live = ~dst.zero_mask
    e = np.where(live, dst.i + dst.f, 0)
    hi = np.where(live, np.ldexp(1.0, e) - 1.0, 0.0)
    lo = np.where(live, -dst.k * np.ldexp(1.0, e), 0.0)
    if omode is OverflowMode.SAT_SYM:
        lo = np.where((dst.k == 1) & (dst.width > 1), -hi, lo)
    return (np.maximum(lo, 0.0) if relu else lo), hi


def _overflow_sides(src: FixedType, dst: FixedType, lo: np.ndarray, hi: np.ndarray, relu: bool) -> tuple[bool, bool]:
    """Whether rounded values of ``src`` can fall below ``lo`` / rise above ``hi`` (pruned results are 0 anyway)."""
    lo_v = np.maximum(src.lo, 0.0) if relu else src.lo
    below = np.floor(np.ldexp(lo_v, dst.f)) < lo
    above = np.ceil(np.ldexp(src.hi, dst.f)) > hi
    live = ~dst.zero_mask
    return bool(np.any(below & live)), bool(np.any(above & live))


def run_quant(x: Scaled, p: QuantPlan, relu: bool = False) -> Scaled:
    v = x.m * p.scale
    if p.half and p.rounder is not None:
        v += p.half
    return Scaled(p.overflow_fix(p.round(v), relu), p.out_e)


# ---------------------------------------------------------------- input conversion
@dataclass
class InputPlan:
    """Static part of converting external floats into an input's type (see :func:`run_input`)."""

    scale: np.ndarray
    f: np.ndarray
    max_f: int
    k: np.ndarray
    width: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    rmode: RoundMode
    omode: OverflowMode
    wrap: tuple[np.ndarray, np.ndarray, np.ndarray]
    """WRAP's offset, modulus and inverse modulus per element (for :func:`wrap_grid`)."""


def input_plan(op: Op) -> InputPlan | None:
    """None when the fast path cannot prove exactness for this input's type."""
    t = op.result.type
    if t.size == 0 or int(t.width.max()) > FLOAT_BITS:
        return None
    live = ~t.zero_mask
    f = np.where(live, t.f, 0)
    if f.min() < 0 or f.max() > 1000:
        return None  # scaling could leave float64's normal range: generic path
    omode = op.attrs["overflow"]
    lo, hi = _bounds(t, omode, False)
    scale = np.where(live, np.ldexp(1.0, f), 0.0)
    w = np.maximum(t.width, 1)
    wrap = (np.where(t.k == 1, np.ldexp(1.0, w - 1), 0.0), np.ldexp(1.0, w), np.ldexp(1.0, -w))
    return InputPlan(scale, f, int(f.max()), t.k, t.width, lo, hi, op.attrs["round"], omode, wrap)


def run_input(p: InputPlan, x: np.ndarray) -> Scaled | None:
    """External float data (any finite values) into the type, exactly; None if out of the plan's reach."""
    top = max(abs(float(x.min(initial=0.0))), abs(float(x.max(initial=0.0))))
    if not np.isfinite(top):
        raise HgqirError("input holds NaN or infinity; fixed-point inputs must be finite")
    if top * 2.0**p.max_f >= 2.0**1000:
        return None
    v = x * p.scale  # exact: scaling up by 2**f stays normal
    if p.omode in (OverflowMode.SAT, OverflowMode.SAT_SYM):
        # saturating first gives the same result: the bounds are integers and rounding is monotone
        np.minimum(v, p.hi, out=v)
        np.maximum(v, p.lo, out=v)
        return Scaled(round_any(v, p.rmode), p.f)
    if p.omode is OverflowMode.WRAP and top * 2.0**p.max_f < 2.0**51:  # grid values stay below 2**52
        return Scaled(wrap_grid(round_any(v, p.rmode), *p.wrap), p.f)
    return Scaled(_overflow(round_any(v, p.rmode), p.k, p.width, p.omode), p.f)


def wrap_grid(q: np.ndarray, off: np.ndarray, mod: np.ndarray, inv: np.ndarray) -> np.ndarray:
    """WRAP of integer grid values ``q`` (``|q| < 2**52``) into ``[-off, mod - off)``, in place.

    ``q - mod * floor((q + off) / mod)``: ``mod`` is a power of two, so the division is an exact
    scaling, ``floor`` is exact and so are the product and the difference of integers below
    2**53 (2.4x faster than ``np.mod``, which also handles non-integer and negative divisors).
    """
    t = np.add(q, off)
    np.multiply(t, inv, out=t)
    np.floor(t, out=t)
    np.multiply(t, mod, out=t)
    return np.subtract(q, t, out=q)


def round_any(v: np.ndarray, mode: RoundMode) -> np.ndarray:
    """:func:`_round_float` (exact for any finite float64), reusing ``v``'s memory where it can."""
    if mode is RoundMode.TRN:
        return np.floor(v, out=v)
    if mode is RoundMode.TRN_ZERO:
        return np.trunc(v, out=v)
    if mode is RoundMode.RND_CONV:
        return np.rint(v, out=v)
    if mode is not RoundMode.RND:
        return _round_float(v, mode)
    r = np.rint(v)
    np.subtract(v, r, out=v)  # exact remainder in [-1/2, 1/2]
    return np.add(r, v == 0.5, out=r)  # ties that rint sent down go up


# ---------------------------------------------------------------- fused dense chains
def fusable_chain(op: Op, casts: dict[int, bool]) -> list[Op]:
    """``[dense]``, ``[dense, relu]``, ``[dense, quant]`` or ``[dense, relu, quant]`` starting at ``op``.

    Intermediate values must have no other user and need no cast; the dense input is rank 1.
    """
    if op.kind is not OpKind.DENSE or len(op.operands[0].shape) != 1 or casts[id(op)]:
        return [op]
    chain = [op]
    nxt = _sole_user(op.result)
    if nxt is not None and nxt.kind is OpKind.RELU and not casts[id(nxt)]:
        chain.append(nxt)
        nxt = _sole_user(nxt.result)
    if nxt is not None and nxt.kind is OpKind.QUANT:
        chain.append(nxt)
    return chain


def _sole_user(v: Value) -> Op | None:
    return v.users[0] if len(v.users) == 1 else None


def _const(v: Value) -> tuple[np.ndarray, FixedType] | None:
    """int64 mantissas (pruned elements 0, as the generic rules read them) and type of a constant."""
    data = v.producer.attrs["data"]  # type: ignore[union-attr]
    if data.dtype != np.int64 or int(np.max(v.type.width, initial=0)) > FLOAT_BITS:
        return None
    return np.where(v.type.zero_mask, 0, data), v.type


def dense_weights(dense: Op, e_x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Integer weights ``W'`` and bias ``b'`` at per-column exponents ``E`` with ``x @ W' + b'`` exact."""
    x = dense.operands[0]
    w = _const(dense.operands[1])
    b = _const(dense.operands[2]) if len(dense.operands) == 3 else None
    if w is None or (len(dense.operands) == 3 and b is None):
        return None
    (wd, wt), n_out = w, dense.operands[1].shape[1]
    x_live = ~x.type.zero_mask
    ex = np.broadcast_to(e_x, x.shape).astype(np.int64)
    nz = (wd != 0) & x_live[:, None]
    expo = ex[:, None] + wt.f
    floor = np.iinfo(np.int32).min
    big_e = np.max(np.where(nz, expo, floor), axis=0, initial=floor)
    bd, bz = (np.zeros(n_out, dtype=np.int64), np.zeros(n_out, dtype=bool)) if b is None else (b[0], b[0] != 0)
    if b is not None:
        big_e = np.maximum(big_e, np.where(bz, b[1].f, floor))
    big_e = np.where(big_e == floor, 0, big_e)
    with np.errstate(over="ignore"):
        w1 = np.where(nz, np.ldexp(wd.astype(np.float64), np.where(nz, big_e - expo, 0)), 0.0)
        b1 = np.where(bz, np.ldexp(bd.astype(np.float64), np.where(bz, big_e - (0 if b is None else b[1].f), 0)), 0.0)
    x_top = np.where(x_live, np.ldexp(1.0, np.where(x_live, x.type.i + ex, 0)), 0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        bound = x_top @ np.abs(w1) + np.abs(b1)
    if not np.all(bound < SAFE):
        return None
    return w1, b1, big_e


@dataclass
class DensePlan:
    """A fused ``dense [-> relu] [-> quant]``: ``round(x @ weights + bias)``, then overflow handling."""

    weights: np.ndarray
    bias: np.ndarray
    quant: QuantPlan | None
    relu: bool
    out_e: np.ndarray


def dense_plan(chain: list[Op], e_x: np.ndarray) -> DensePlan | None:
    """Plan a fused chain for input exponents ``e_x``; None when float64 cannot be proven exact."""
    got = dense_weights(chain[0], e_x)
    if got is None:
        return None
    w1, b1, big_e = got
    relu = any(op.kind is OpKind.RELU for op in chain)
    quant = chain[-1] if chain[-1].kind is OpKind.QUANT else None
    if quant is None:
        return DensePlan(w1, b1, None, relu, big_e)
    src = chain[-2].result.type
    p = quant_plan(big_e, src, quant.result.type, quant.attrs["round"], quant.attrs["overflow"], relu)
    if p is None:
        return None
    bias = b1 * p.scale + (p.half if p.rounder is not None else 0.0)
    return DensePlan(w1 * p.scale, bias, p, relu, p.out_e)


def run_dense(x: Scaled, d: DensePlan) -> Scaled:
    acc = x.m @ d.weights
    acc += d.bias
    if d.quant is None:
        if d.relu:
            np.maximum(acc, 0.0, out=acc)
        return Scaled(acc, d.out_e)
    return Scaled(d.quant.overflow_fix(d.quant.round(acc), d.relu), d.out_e)


def bound_ok(x: Exact | Scaled, t: FixedType) -> bool:
    """Whether a float64 operand of type ``t`` is within the fast path's mantissa limits."""
    if isinstance(x, Scaled):
        return True
    return x.m.dtype == np.float64 and bound_bits(t, x.scale) <= FLOAT_BITS


def const_exact(v: Value) -> Exact:
    return exact_from_mantissas(v.producer.attrs["data"], v.type)  # type: ignore[union-attr]


__all__ = [
    "Scaled",
    "QuantPlan",
    "DensePlan",
    "quant_plan",
    "dense_plan",
    "run_quant",
    "run_dense",
    "run_input",
    "fusable_chain",
]
