"""Lowerings of the table ops, following ``hgqir/ops/table.py`` to the bit.

``lut``: the input's mantissa at its type's union LSB indexes the table. ``softmax``: per row,
``e = exp_table[min(max - x, n - 1)]``, the sum quantized TRN/SAT into ``inv_in`` indexes the
inverse table, ``y = e * r`` (log_softmax: ``y = -(max - x) - log_table[s]``). Tables are integer mantissas at their type's finest scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hgqir.ir import Op, OpKind, Value
from hgqir.numbers import exact_from_mantissas

from .lowering import Lowering, acc_bits, const_of, exact_type, lowers
from .refs import CType


@dataclass
class Table:
    values: list[int]
    width: int
    lo: int
    """Lowest mantissa of the index type (the table's entry 0)."""

    @property
    def size(self) -> int:
        return len(self.values)


@dataclass
class Lut:
    table: Table

    @property
    def weight(self) -> int:
        return self.table.size


@dataclass
class Softmax:
    rows: int
    length: int
    exp: Table
    inv: Table
    inv_type: CType
    sum_width: int
    sum_scale: int
    log: bool = False
    """log_softmax: ``acc = -(d << d_shift) - (log_table[q] << r_shift)``."""
    d_shift: int = 0
    r_shift: int = 0

    @property
    def weight(self) -> int:
        return self.exp.size + self.inv.size


def _table(v: Value, lo: int) -> tuple[Table, int]:
    """Integer entries of a table const at its finest scale, and that scale."""
    data, t = const_of(v)
    e = exact_from_mantissas(np.asarray(data), t)
    values = [int(m) for m in np.asarray(e.m).reshape(-1)]
    width = max((abs(m).bit_length() for m in values), default=0) + 1
    return Table(values, width, lo), int(e.scale)


def _union_lo(kif: tuple[int, int, int]) -> int:
    k, i, f = kif
    return -k * (1 << max(i + f, 0))


@lowers(OpKind.LUT)
def lower_lut(lw: Lowering, op: Op) -> None:
    x = op.operands[0]
    kif = x.type.union()
    g = lw.gather(lw.refs(x), "x0", kif[2])
    table, scale = _table(op.operands[1], _union_lo(kif))
    lw.layer(op, "lut", [g], "acc", table.width, scale, Lut(table))


@lowers(OpKind.SOFTMAX)
def lower_softmax(lw: Lowering, op: Op) -> None:
    x = op.operands[0]
    kif = x.type.union()
    g = lw.gather(lw.refs(x), "x0", kif[2])
    exp, e_scale = _table(op.operands[1], 0)
    inv_kif = op.attrs["inv_in"]
    inv, r_scale = _table(op.operands[2], _union_lo(inv_kif))
    length = x.shape[-1]
    body = Softmax(
        rows=int(np.prod(x.shape[:-1], dtype=np.int64)),
        length=length,
        exp=exp,
        inv=inv,
        inv_type=CType.of(*inv_kif),
        sum_width=exp.width + math.ceil(math.log2(max(length, 2))) + 1,
        sum_scale=e_scale,
    )
    if op.attrs["log"]:
        scale = max(kif[2], r_scale)
        body.log, body.d_shift, body.r_shift = True, scale - kif[2], scale - r_scale
        width = max(acc_bits(exact_type(op), scale), g.width + 1 + body.d_shift, inv.width + body.r_shift) + 1
        lw.layer(op, "softmax", [g], "acc", width, scale, body)
        return
    scale = e_scale + r_scale
    width = max(acc_bits(exact_type(op), scale), exp.width + inv.width)
    lw.layer(op, "softmax", [g], "acc", width, scale, body)
