"""Softmax as a chain of exact hls4ml layers (see :mod:`.lower_table` for why and how).

With ``x`` held in its union type ``(k, i, f)`` and one row of ``n`` values:

====================  ===============================  ======================================
step                  hls4ml layer                     held in
====================  ===============================  ======================================
``m = max(x)``        Reshape ``[n, 1]`` +             x's type
                      GlobalMaxPooling1D
``d = m - x``         Merge subtract (broadcast m)     ``(0, k + i, f)``: ``d`` in x's LSBs
``e = exp[min(d,)]``  UnaryLUT over ``d``              exp table's type
``s = sum(e)``        Dense, unit weights, no bias     ``inv_in`` with TRN/SAT (the IR's cast)
``r = inv[s]``        UnaryLUT over ``s``              inverse table's type
``y = e * r``         Merge multiply (broadcast r)     the result type
====================  ===============================  ======================================
"""

from __future__ import annotations

import math

import numpy as np

from hgqir.fixed import FixedType, OverflowMode, RoundMode
from hgqir.ir import Op, OpKind
from hgqir.ops.table import MAX_TABLE_BITS

from .builder import Holder, LayerList
from .lower_table import _table_check, table_values, unary_lut
from .precision import Kif, to_precision, union_kif, width
from .registry import lowering


def _softmax_check(op: Op) -> str | None:
    x = op.operands[0]
    rows = int(np.prod(x.shape[:-1]))
    if rows != 1:
        return (
            f"{rows} rows: hls4ml's own Softmax recomputes its tables (not bit-exact) and its "
            "Merge cannot broadcast one maximum per row, so only a single row is supported"
        )
    bits = width(union_kif(x.type)) + 1
    if bits > MAX_TABLE_BITS:
        return f"the exponential table would be indexed by {bits} bits; at most {MAX_TABLE_BITS}"
    if sum(op.attrs["inv_in"]) <= 0:
        return "inv_in has no bits"
    return _table_check(op)


def _row_max(b: LayerList, src: Holder, base: str) -> Holder:
    n = int(np.prod(src.shape))
    prec = {"result": to_precision(src.kif)}
    col = b.add("Reshape", f"{base}_col", [src], {"target_shape": [n, 1]}, prec, forced_result=src.kif)
    attrs = {"n_in": n, "n_filt": 1, "data_format": "channels_last"}
    prec = {"result": to_precision(src.kif), "accum": to_precision(src.kif)}
    name = b.add("GlobalMaxPooling1D", f"{base}_max", [Holder(col, src.kif, (n, 1))], attrs, prec)
    return Holder(name, src.kif, (1,))


def _row_sum(b: LayerList, e: Holder, inv_in: Kif, base: str) -> Holder:
    """``sum(e)`` cast with TRN/SAT into ``inv_in`` by a unit-weight dense layer."""
    n = int(np.prod(e.shape))
    k, i, f = e.kif
    prec = {
        "result": to_precision(inv_in, RoundMode.TRN, OverflowMode.SAT),
        "accum": to_precision((k, i + math.ceil(math.log2(max(n, 1))) + 1, f)),
        "weight": to_precision((0, 1, 0)),
    }
    attrs = {"n_in": n, "n_out": 1, "weight_data": np.ones((n, 1)), "bias_data": None}
    name = b.add("Dense", f"{base}_sum", [e], attrs, prec)
    return Holder(name, inv_in, (1,))


@lowering(OpKind.SOFTMAX, check=_softmax_check)
def lower_softmax(b: LayerList, op: Op) -> None:
    x, exp_table, inv_table = op.operands
    v = op.result
    kif = union_kif(x.type)
    src = b.holder(x)
    if src.kif != kif:
        src = b.quantizer(src, FixedType.uniform(x.shape, *kif), RoundMode.TRN, OverflowMode.WRAP, f"{v.name}_x")
    top = _row_max(b, src, v.name)
    d_kif = (0, kif[0] + kif[1], kif[2])
    d = b.add("Merge", f"{v.name}_diff", [top, src], {"op": "subtract"}, {"result": to_precision(d_kif)})
    exp = table_values(exp_table)
    exp = exp[np.minimum(np.arange(1 << width(d_kif)), exp.size - 1)]  # the IR clamps d at the table end
    d_type = FixedType.uniform((1,), *d_kif)
    e = unary_lut(b, Holder(d, d_kif, x.shape), d_type, exp, union_kif(exp_table.type), f"{v.name}_exp")
    inv_in = op.attrs["inv_in"]
    s = _row_sum(b, e, inv_in, v.name)
    inv = table_values(inv_table)
    r = unary_lut(b, s, FixedType.uniform((1,), *inv_in), inv, union_kif(inv_table.type), f"{v.name}_inv")
    out_kif, prec = b.result_precision(v)
    name = b.add("Merge", v.name, [e, r], {"op": "multiply"}, prec)
    b.finish(op, name, out_kif)
