"""Softmax as a chain of exact hls4ml layers (see :mod:`.lower_table` for why).

``x`` is viewed as ``R`` rows of ``n`` values and held in its union type ``(k, i, f)``. hls4ml
cannot broadcast one value per row with ``Merge``, so a pointwise convolution with unit
weights spreads a ``[R, 1]`` column over ``[R, n]`` (each output is one input times 1), and
another sums each row (``[R, n] -> [R, 1]``):

=======================  ==========================================  ===============================
step                     hls4ml layers                               held in
=======================  ==========================================  ===============================
``m = max(row)``         Transpose ``[n, R]`` + GlobalMaxPooling1D   x's type
``d = m - x``            pointwise Conv1D (spread m) + Merge         ``(0, k + i, f)``: d in x's LSBs
``e = exp[min(d, L)]``   UnaryLUT over ``d``                         exp table's type
``s = sum(row e)``       pointwise Conv1D, unit weights              ``inv_in`` with TRN/SAT
``r = inv[s]``           UnaryLUT over ``s``                         inverse table's type
``y = e * r``            pointwise Conv1D (spread r) + Merge         the result type
=======================  ==========================================  ===============================

log_softmax (``log``): the second table holds ``log(s)``, and ``y = (x - m) - r`` with two
``Merge`` subtractions (``x - m`` held in ``(1, k + i, f)``, exact).
"""

from __future__ import annotations

import math

import numpy as np

from hgqir.fixed import FixedType, OverflowMode, RoundMode
from hgqir.ir import Op, OpKind
from hgqir.ops.table import MAX_TABLE_BITS

from .builder import Holder, LayerList
from .lower_linear import _conv_attrs
from .lower_table import _table_check, table_values, unary_lut
from .precision import Kif, to_precision, union_kif, width
from .registry import lowering


def _softmax_check(op: Op) -> str | None:
    x = op.operands[0]
    bits = width(union_kif(x.type))  # d = max - x needs as many bits as x
    if bits > MAX_TABLE_BITS:
        return f"the exponential table would be indexed by {bits} bits; at most {MAX_TABLE_BITS}"
    if sum(op.attrs["inv_in"]) <= 0:
        return "inv_in has no bits"
    return _table_check(op)


def _pointwise(
    b: LayerList, src: Holder, n_out: int, kif: Kif, accum: Kif, base: str, overflow: OverflowMode = OverflowMode.WRAP
) -> Holder:
    """``[R, a] -> [R, n_out]`` with unit weights: spreads a column (a=1) or sums a row (n_out=1)."""
    rows, a = src.shape
    attrs = _conv_attrs((rows,), (rows,), (1,), (1,), ((0, 0),))
    attrs.update(
        {
            "n_chan": a,
            "n_filt": n_out,
            "data_format": "channels_last",
            "weight_data": np.ones((1, a, n_out)),
            "bias_data": None,
        }
    )
    prec = {
        "result": to_precision(kif, RoundMode.TRN, overflow),
        "accum": to_precision(accum),
        "weight": to_precision((0, 1, 0)),
    }
    return Holder(b.add("Conv1D", base, [src], attrs, prec, mult=(a, n_out)), kif, (rows, n_out))


def _row_max(b: LayerList, x: Holder, base: str) -> Holder:
    """The maximum of every row, spread back over the row: ``[R, n]``."""
    rows, n = x.shape
    cols = b.transpose(x, [1, 0], f"{base}_cols")
    attrs = {"n_in": n, "n_filt": rows, "data_format": "channels_last"}
    prec = {"result": to_precision(x.kif), "accum": to_precision(x.kif)}
    top = b.add("GlobalMaxPooling1D", f"{base}_max", [cols], attrs, prec)
    column = b.reshape(Holder(top, x.kif, (rows,)), (rows, 1), f"{base}_maxcol")
    return _pointwise(b, column, n, x.kif, x.kif, f"{base}_maxrow")


@lowering(OpKind.SOFTMAX, check=_softmax_check)
def lower_softmax(b: LayerList, op: Op) -> None:
    x, exp_table, inv_table = op.operands
    v = op.result
    kif = union_kif(x.type)
    src = b.holder(x)
    if src.kif != kif:
        src = b.quantizer(src, FixedType.uniform(x.shape, *kif), RoundMode.TRN, OverflowMode.WRAP, f"{v.name}_x")
    rows, n = int(np.prod(x.shape[:-1])), x.shape[-1]
    if src.shape != (rows, n):
        src = b.reshape(src, (rows, n), f"{v.name}_rows")
    d_kif = (0, kif[0] + kif[1], kif[2])
    top = _row_max(b, src, v.name)
    d = b.add("Merge", f"{v.name}_diff", [top, src], {"op": "subtract"}, {"result": to_precision(d_kif)})
    exp = table_values(exp_table)
    exp = exp[np.minimum(np.arange(1 << width(d_kif)), exp.size - 1)]  # the IR clamps d at the table end
    e = unary_lut(
        b, Holder(d, d_kif, src.shape), FixedType.uniform((1,), *d_kif), exp, union_kif(exp_table.type), f"{v.name}_exp"
    )
    inv_in = op.attrs["inv_in"]
    sum_kif = (e.kif[0], e.kif[1] + math.ceil(math.log2(max(n, 1))) + 1, e.kif[2])
    s = _pointwise(b, e, 1, inv_in, sum_kif, f"{v.name}_sum", overflow=OverflowMode.SAT)
    r = unary_lut(
        b, s, FixedType.uniform((1,), *inv_in), table_values(inv_table), union_kif(inv_table.type), f"{v.name}_inv"
    )
    spread = _pointwise(b, r, n, r.kif, r.kif, f"{v.name}_invrow")
    out_kif, prec = b.result_precision(v)
    if op.attrs["log"]:  # log_softmax: (x - max) - log(s), both exact in their precisions
        xm_kif = (1, kif[0] + kif[1], kif[2])
        xm = Holder(
            b.add("Merge", f"{v.name}_xm", [src, top], {"op": "subtract"}, {"result": to_precision(xm_kif)}),
            xm_kif,
            src.shape,
        )
        y = Holder(b.add("Merge", v.name, [xm, spread], {"op": "subtract"}, prec), out_kif, src.shape)
    else:
        y = Holder(b.add("Merge", v.name, [e, spread], {"op": "multiply"}, prec), out_kif, src.shape)
    if y.shape != v.shape:
        y = b.reshape(y, v.shape, f"{v.name}_out")
    b.finish(op, y.layer, y.kif)
