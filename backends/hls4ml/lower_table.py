"""Lowering of ``lut`` (table semantics: :mod:`hgqir.ops.table`); ``softmax`` reuses it.

``lut`` becomes hls4ml's ``UnaryLUT``, which indexes its table by the raw bits of the input
type (two's complement read as unsigned); the IR's table is re-ordered into that order and
the input is first held in exactly the IR's union type, so every reachable index is an IR
entry. hls4ml's own ``Softmax`` computes its tables itself and cannot take the IR's bit-true
tables, so :mod:`.lower_softmax` builds the IR's recipe from exact layers, two of them
``UnaryLUT`` made here.
"""

from __future__ import annotations

import numpy as np

from hgqir.fixed import FixedType, OverflowMode, RoundMode
from hgqir.ir import Op, OpKind, Value
from hgqir.ops.linear import const_exact

from .builder import Holder, LayerList
from .precision import DOUBLE_BITS, Kif, to_precision, union_kif, width
from .registry import is_const, lowering


def _ir_index(kif: Kif, x_union: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """For each raw bit pattern of ``kif``: the IR table index of its value, and validity."""
    k, i, f = kif
    bits = k + i + f
    raw = np.arange(1 << bits, dtype=np.int64)
    m = raw - (k * (raw >= (1 << (bits - 1))) << bits) if k else raw
    ku, iu, fu = x_union
    shift = fu - f
    if shift >= 0:
        mu, valid = m << shift, np.ones(raw.shape, dtype=bool)
    else:
        mu, valid = m >> -shift, (m & ((1 << -shift) - 1)) == 0
    lo = -ku * (1 << max(iu + fu, 0))
    idx = mu - lo
    valid &= (idx >= 0) & (idx < (1 << max(ku + iu + fu, 0)))
    return np.where(valid, idx, 0), valid


def hls_table(kif: Kif, x_union: tuple[int, int, int], table: np.ndarray) -> np.ndarray:
    """The IR table (indexed from x's lowest value) in UnaryLUT's raw-bits order over ``kif``."""
    idx, valid = _ir_index(kif, x_union)
    return np.where(valid, table[idx], 0.0)


def table_values(v: Value) -> np.ndarray:
    return np.asarray(const_exact(v).values(), dtype=np.float64)


def _table_check(op: Op) -> str | None:
    x = op.operands[0]
    if is_const(x):
        return f"input %{x.name} is a constant; hls4ml has no constant tensors"
    for t in op.operands[1:]:
        if width(union_kif(t.type)) > DOUBLE_BITS:
            return f"table %{t.name} is wider than {DOUBLE_BITS} bits; hls4ml writes tables through double"
    return None


def unary_lut(b: LayerList, src: Holder, x_type: FixedType, table: np.ndarray, tkif: Kif, base: str) -> Holder:
    """A ``UnaryLUT`` of the IR ``table`` (values, held in ``tkif``) read at ``src`` of IR type ``x_type``."""
    kif = union_kif(x_type)
    if src.kif != kif:  # same values in x's own union type: the table then has the IR's size
        src = b.quantizer(src, FixedType.uniform(src.shape, *kif), RoundMode.TRN, OverflowMode.WRAP, f"{base}_index")
    data = hls_table(src.kif, x_type.union(), table)
    attrs = {
        "table_data": data,
        "table_t": to_precision(tkif),
        "n_in": int(np.prod(src.shape)),
        "activation": "unary_lut",
    }
    prec = {"result": to_precision(tkif), "table": to_precision(tkif)}
    name = b.add("UnaryLUT", base, [src], attrs, prec)
    return Holder(name, tkif, src.shape)


@lowering(OpKind.LUT, check=_table_check)
def lower_lut(b: LayerList, op: Op) -> None:
    x, table = op.operands
    values, tkif = table_values(table), union_kif(table.type)
    held = unary_lut(b, b.holder(x), x.type, values, tkif, op.result.name)
    b.finish(op, held.layer, held.kif)
