"""Table ops: ``lut`` (any unary function) and ``softmax``; exact by construction.

The tables are ``const`` operands computed once (in float64, then quantized), so every
implementation (interpreter, C++, framework shims) reads the same bit-true entries.

``lut(x, table)``: let ``(k, i, f)`` be the union type of ``x`` and ``lo = -k*2**(i+f)`` its
lowest mantissa; ``y = table[m - lo]`` where ``m`` is the mantissa of ``x`` at ``f``.

``softmax(x, exp_table, inv_table)`` along the last axis, with ``x``'s union LSB ``2**-f``:
``d = max(x) - x`` in LSBs; ``e = exp_table[min(d, len-1)]``; ``s = sum(e)`` quantized with
TRN/SAT into ``inv_in``; ``r = inv_table[mantissa(s) - lo(inv_in)]``; ``y = e * r``.
With ``log = true`` (log_softmax) the second table holds ``log(s)`` instead of ``1/s`` and
``y = -d * 2**-f - r``: ``x - max(x)`` exactly, minus the table's logarithm of the sum.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..fixed import FixedType, OverflowMode, RoundMode, Shape
from ..ir import Graph, Op, OpKind, Value
from ..numbers import Exact
from ..quantize import convert, mantissa_dtype, quantize, quantize_exact
from .base import PAD_F, Attr, Interval, OpRule, Trait, expect, interval_of, register

MAX_TABLE_BITS = 20
"""Largest table index width (2**20 entries)."""


def _union_lo(t: FixedType) -> tuple[int, int]:
    k, i, f = t.union()
    return -k * (1 << max(i + f, 0)), k + i + f


def _table_values(table: Value) -> Exact:
    from .linear import const_exact

    return const_exact(table)


def _lut_check(op: Op) -> None:
    x, table = op.operands
    expect(table.producer is not None and table.producer.kind is OpKind.CONST, op, "table must be a const")
    _, bits = _union_lo(x.type)
    expect(bits <= MAX_TABLE_BITS, op, f"input is {bits} bits wide; tables allow {MAX_TABLE_BITS}")
    expect(table.shape == (1 << max(bits, 0),), op, f"table needs {1 << max(bits, 0)} entries, has {list(table.shape)}")


def _lut_infer(op: Op) -> list[FixedType]:
    k, i, f = op.operands[1].type.union()
    return [FixedType.uniform(op.operands[0].shape, k, i, f)]


def index_mantissas(x: Exact, f: int) -> np.ndarray:
    """int64 mantissas of ``x`` at LSB ``2**-f`` (table indices need exactly the union type's LSB).

    An operand's runtime scale may be finer than its type's (an uncast exact result): its
    values still lie on the type's grid, so the shift below is exact.
    """
    d = x.scale - f
    if x.m.dtype == np.float64:
        return np.ldexp(x.m, -d).astype(np.int64)
    m = x.m if x.m.dtype == object or abs(d) < 62 else x.m.astype(object)
    if d > 0:
        m = m // (1 << d)
    elif d < 0:
        m = m * (1 << -d)
    return convert(m, np.int64)


def _lut_eval(op: Op, args: list[Exact]) -> list[Exact]:
    x, table = args
    lo, _ = _union_lo(op.operands[0].type)
    idx = index_mantissas(x, op.operands[0].type.union()[2]) - lo
    return [Exact(table.m[idx], table.scale)]


def make_table(
    fn: Callable[[np.ndarray], np.ndarray],
    in_kif: tuple[int, int, int],
    out_kif: tuple[int, int, int],
    round: RoundMode | str = "RND",
    overflow: OverflowMode | str = "SAT",
) -> tuple[np.ndarray, FixedType]:
    """Mantissas and type of a table of ``fn`` over every value of ``in_kif``, quantized to ``out_kif``."""
    k, i, f = in_kif
    bits = k + i + f
    if sum(out_kif) > 53:
        raise ValueError(
            f"table output type {tuple(out_kif)} is {sum(out_kif)} bits wide; table entries are "
            "computed in float64 and can be exact only up to 53 bits"
        )
    if bits > MAX_TABLE_BITS:
        raise ValueError(f"table input of {bits} bits exceeds {MAX_TABLE_BITS}")
    lo = -k * (1 << max(i + f, 0))
    xs = np.ldexp(np.arange(lo, lo + (1 << max(bits, 0)), dtype=np.float64), -f)
    ys = quantize(np.asarray(fn(xs), dtype=np.float64), *out_kif, round=round, overflow=overflow)
    t = FixedType.uniform(xs.shape, *out_kif)
    return np.ldexp(ys, out_kif[2]).astype(np.int64), t


def build_lut(
    g: Graph,
    x: Value,
    fn: Callable[[np.ndarray], np.ndarray],
    out_kif: tuple[int, int, int],
    func: str = "",
    name: str = "lut",
    **modes: Any,
) -> Value:
    """Add ``lut`` of ``fn`` applied to ``x`` (table built over x's union type)."""
    data, t = make_table(fn, x.type.union(), out_kif, **modes)
    table = g.const_mantissa(data, t, name=f"{name}_table")
    return g.add(OpKind.LUT, [x, table], {"func": func}, name=name).result


def _lut_transfer(op: Op, ins: list[Interval]) -> Interval:
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


register(
    OpRule(
        OpKind.LUT,
        (2, 2),
        1,
        {"func": Attr("str", "")},
        shapes=lambda op: [op.operands[0].shape],
        infer=_lut_infer,
        eval=_lut_eval,
        check=_lut_check,
        transfer=_lut_transfer,
        traits=Trait.CHANNELWISE | Trait.READS_TABLE,
        operand_names=("x", "table"),
        data_operands=1,
        doc="y = table[x - lowest(x)] over x's union type; `func` names the function for humans.",
    )
)


# ---------------------------------------------------------------- softmax
def _sm_shapes(op: Op) -> list[Shape]:
    x, et, it = (v.shape for v in op.operands)
    expect(len(x) >= 1, op, "needs at least one axis")
    expect(len(et) == 1 and len(it) == 1, op, "tables must be 1-D")
    k, i, f = op.attrs["inv_in"]
    expect(it[0] == 1 << max(k + i + f, 0), op, f"inv_table needs {1 << max(k + i + f, 0)} entries")
    return [x]


def _sm_infer(op: Op) -> list[FixedType]:
    ei, ri = interval_of(op.operands[1]), interval_of(op.operands[2])
    ek, ef = op.operands[1].type.union(), op.operands[2].type.union()
    shape = op.operands[0].shape
    if op.attrs.get("log", False):
        xk, xi, xf = op.operands[0].type.union()
        span = (xk + 1) * 2.0**xi if xk + xi + xf > 0 else 0.0  # max(x) - x < (hi - lo) of the union type
        lo = np.full(shape, -span - float(ri.hi.max()))
        hi = np.full(shape, -float(ri.lo.min()))
        return [Interval(lo, hi, np.full(shape, max(xf, ef[2]))).to_type()]
    cands = [a * b for a in (ei.lo.min(), ei.hi.max()) for b in (ri.lo.min(), ri.hi.max())]
    lo, hi = np.full(shape, min(cands)), np.full(shape, max(cands))
    return [Interval(lo, hi, np.full(shape, ek[2] + ef[2])).to_type()]


def _sm_eval(op: Op, args: list[Exact]) -> list[Exact]:
    x, et, it = args
    fx = op.operands[0].type.union()[2]
    xm = index_mantissas(x, fx)
    d = xm.max(axis=-1, keepdims=True) - xm
    e = et.m[np.minimum(d, et.m.shape[0] - 1)]
    etype = op.operands[1].type
    s_bits = int(etype.i.max() + et.scale) + int(np.ceil(np.log2(max(xm.shape[-1], 1)))) + 2
    s = convert(e, mantissa_dtype(s_bits)).sum(axis=-1, keepdims=True)
    k, i, f = op.attrs["inv_in"]
    shape = s.shape
    one = np.ones(shape, dtype=np.int64)
    sq, sscale = quantize_exact(s, et.scale, one * k, one * i, one * f, RoundMode.TRN, OverflowMode.SAT)
    lo = -k * (1 << max(i + f, 0))
    idx = convert(sq, np.int64) // (1 << (sscale - f) if sscale > f else 1) - lo
    r = it.m[idx]
    if op.attrs.get("log", False):
        scale = max(fx, it.scale)
        xk, xi, _ = op.operands[0].type.union()
        rt = op.operands[2].type
        bits = max(xk + xi + 1 + scale, int((rt.k + rt.i).max()) + scale) + 2
        dtype = mantissa_dtype(bits)
        return [Exact(-Exact(d, fx).rescaled(scale, dtype) - Exact(r, it.scale).rescaled(scale, dtype), scale)]
    dtype = mantissa_dtype(s_bits + int(op.operands[2].type.i.max()) + it.scale + 2)
    return [Exact(convert(e, dtype) * convert(r, dtype), et.scale + it.scale)]


register(
    OpRule(
        OpKind.SOFTMAX,
        (3, 3),
        1,
        {"inv_in": Attr("kif", required=True), "log": Attr("bool", False)},
        shapes=_sm_shapes,
        infer=_sm_infer,
        eval=_sm_eval,
        transfer=lambda op, ins: Interval.of(_sm_infer(op)[0]),
        traits=Trait.READS_TABLE,
        operand_names=("x", "exp_table", "inv_table"),
        data_operands=1,
        doc="Table softmax (log_softmax with `log`) over the last axis (module docstring: the exact recipe).",
    )
)
