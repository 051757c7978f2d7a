"""Lowerings of pooling and table ops: comparator trees, window sums, ROMs."""

from __future__ import annotations

import numpy as np

from hgqir.fixed import OverflowMode, RoundMode
from hgqir.ir import Op, OpKind, Value
from hgqir.numbers import scale_of
from hgqir.ops.linear import const_exact

from .arith import floor_div, quant, truncate
from .lower import Lowering, _array, extend, lowers, refs_array, window_refs
from .netlist import ZERO, Ref

_WINDOWED = {OpKind.MAXPOOL1D: 1, OpKind.MAXPOOL2D: 2, OpKind.AVGPOOL1D: 1, OpKind.AVGPOOL2D: 2}


def _windows(lw: Lowering, op: Op, fill: object) -> np.ndarray:
    """Pool windows as ``[*out, n, C]`` object arrays of refs (``fill`` for padding)."""
    x = lw.of(op.operands[0])
    if op.kind in (OpKind.GLOBAL_MAXPOOL, OpKind.GLOBAL_AVGPOOL):
        return x.reshape(1, -1, x.shape[-1])
    w = window_refs(x, op.attrs["pool"], op.attrs["stride"], op.attrs["pad"], fill)
    nd = _WINDOWED[op.kind]
    return w.reshape(*w.shape[: w.ndim - nd - 1], -1, w.shape[-1])


@lowers(OpKind.MAXPOOL1D, OpKind.MAXPOOL2D, OpKind.GLOBAL_MAXPOOL)
def _maxpool(lw: Lowering, op: Op) -> None:
    win = _windows(lw, op, None)
    flat = win.reshape(-1, win.shape[-2], win.shape[-1])
    out = np.empty((flat.shape[0], flat.shape[2]), dtype=object)
    for p in range(flat.shape[0]):
        for c in range(flat.shape[2]):
            out[p, c] = extend(lw, "max", list(flat[p, :, c]))
    lw.define(op, out.reshape(op.result.shape))


@lowers(OpKind.AVGPOOL1D, OpKind.AVGPOOL2D, OpKind.GLOBAL_AVGPOOL)
def _avgpool(lw: Lowering, op: Op) -> None:
    from hgqir.ops.pool import _counts

    net = lw.net
    win = _windows(lw, op, ZERO)
    flat = win.reshape(-1, win.shape[-2], win.shape[-1])
    counts = _counts(op).reshape(-1)
    so = scale_of(op.result.type)
    out = np.empty((flat.shape[0], flat.shape[2]), dtype=object)
    for p in range(flat.shape[0]):
        for c in range(flat.shape[2]):
            total = truncate(net, net.total(list(flat[p, :, c])), -so)
            out[p, c] = floor_div(net, total, int(counts[p * flat.shape[2] + c]), at=-so)
    refs = out.reshape(op.result.shape)
    lw.refs[id(op.result)] = lw.cast(refs, op.result.type, RoundMode.TRN, OverflowMode.WRAP)


def table_of(v: Value) -> tuple[list[int], int]:
    """A table constant's entries as Python-int mantissas at one exponent."""
    ex = const_exact(v)
    return [int(x) for x in np.asarray(ex.m).reshape(-1)], -ex.scale


def lookup(lw: Lowering, x: Ref, f: int, base: int, table: list[int], e_out: int, clamp: bool = False) -> Ref:
    """``table[mantissa of x at 2**-f - base]`` (``clamp``: indices past the end read the last entry)."""
    net = lw.net

    def index(m: int, ex: int) -> int:
        sh = ex + f
        n = (m << sh if sh >= 0 else m >> -sh) - base
        return min(max(n, 0), len(table) - 1) if clamp else n

    if x.node == 0:
        return net.const(table[index(0, 0)], e_out)
    p = net.plain(x)
    ex = net.exp(p)
    return net.rom(p, lambda m: table[index(m, ex)], e_out)


@lowers(OpKind.LUT)
def _lut(lw: Lowering, op: Op) -> None:
    x = lw.of(op.operands[0])
    k, i, f = op.operands[0].type.union()
    base = -k * (1 << max(i + f, 0))
    table, e_out = table_of(op.operands[1])
    lw.define(op, _array(op.result.shape, lambda ix: lookup(lw, x[ix], f, base, table, e_out)))


@lowers(OpKind.SOFTMAX)
def _softmax(lw: Lowering, op: Op) -> None:
    net = lw.net
    x = lw.of(op.operands[0])
    fu = op.operands[0].type.union()[2]
    etable, ee = table_of(op.operands[1])
    itable, ie = table_of(op.operands[2])
    k, i, f = op.attrs["inv_in"]
    base = -k * (1 << max(i + f, 0))
    rows = x.reshape(-1, x.shape[-1]) if x.ndim else x.reshape(1, 1)
    out = np.empty(rows.shape, dtype=object)
    for n, row in enumerate(rows):
        top = extend(lw, "max", list(row))
        ds = [net.at_least(net.plain(net.add(top, r, sub=True)), 0) for r in row]  # max(x) - x >= 0
        es = [lookup(lw, d, fu, 0, etable, ee, clamp=True) for d in ds]
        s = quant(net, net.total(es), k, i, f, RoundMode.TRN, OverflowMode.SAT)
        r = lookup(lw, s, f, base, itable, ie)
        if op.attrs["log"]:  # log_softmax: (x - max) - log(s)
            out[n] = refs_array([net.add(net.add(v, top, sub=True), r, sub=True) for v in row])
        else:
            out[n] = refs_array([net.mul(e, r) for e in es])
    lw.define(op, out.reshape(op.result.shape))
