"""Lowerings of max and average pooling (windowed 1d/2d and global), channels-last.

Max pooling never lets padding win; pruned elements are zeros that take part. Average pooling
sums the window exactly, then ``floor(sum * 2**Fo / count)`` at the result's finest scale ``Fo``,
which the scatter truncates (TRN, WRAP) into each element's type: the interpreter's recipe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hgqir.ir import Op, OpKind

from .lowering import Lowering, lowers


@dataclass
class Pool:
    avg: bool
    h: int
    w: int
    c: int
    oh: int
    ow: int
    ph: int
    pw: int
    sy: int = 1
    sx: int = 1
    pt: int = 0
    pl: int = 0
    count_pad: bool = True
    mult: int = 1
    """Average pooling: ``floor(sum * mult / (count * div))``."""
    div: int = 1
    weight: int = 0


_WINDOWED_1D = (OpKind.MAXPOOL1D, OpKind.AVGPOOL1D)
_AVG = (OpKind.AVGPOOL1D, OpKind.AVGPOOL2D, OpKind.GLOBAL_AVGPOOL)


def _geometry(op: Op) -> Pool:
    x = op.operands[0].shape
    avg = op.kind in _AVG
    if op.kind in (OpKind.GLOBAL_MAXPOOL, OpKind.GLOBAL_AVGPOOL):
        positions = math.prod(x[:-1])
        return Pool(avg, 1, positions, x[-1], 1, 1, 1, positions)
    out = op.result.shape
    pool, stride, pads = op.attrs["pool"], op.attrs["stride"], op.attrs["pad"]
    count_pad = bool(op.attrs.get("count_pad", True))
    if op.kind in _WINDOWED_1D:
        return Pool(avg, 1, x[0], x[1], 1, out[0], 1, pool[0], 1, stride[0], 0, pads[0][0], count_pad)
    return Pool(
        avg, x[0], x[1], x[2], out[0], out[1], pool[0], pool[1], stride[0], stride[1], pads[0][0], pads[1][0], count_pad
    )


@lowers(OpKind.MAXPOOL1D, OpKind.MAXPOOL2D, OpKind.GLOBAL_MAXPOOL)
def lower_maxpool(lw: Lowering, op: Op) -> None:
    body = _geometry(op)
    g = lw.gather(lw.refs(op.operands[0]), "x0")
    lw.layer(op, "pool", [g], "acc", g.width, g.scale, body)


@lowers(OpKind.AVGPOOL1D, OpKind.AVGPOOL2D, OpKind.GLOBAL_AVGPOOL)
def lower_avgpool(lw: Lowering, op: Op) -> None:
    body = _geometry(op)
    g = lw.gather(lw.refs(op.operands[0]), "x0")
    t = op.result.type
    live = ~t.zero_mask
    out_scale = int(t.f[live].max()) if live.any() else 0
    up = max(out_scale - g.scale, 0)
    body.mult, body.div = 1 << up, 1 << max(g.scale - out_scale, 0)
    width = g.width + math.ceil(math.log2(body.ph * body.pw)) + up + 2
    lw.layer(op, "pool", [g], "acc", width, out_scale, body)
