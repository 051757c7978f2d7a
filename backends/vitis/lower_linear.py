"""Lowerings of the multiply-accumulate ops: dense, conv1d/conv2d and batchnorm.

Weights become integer tables of the non-zero terms only (a zero weight is never multiplied).
Each term's integer ``M = w * 2**(F - Fx - fw)`` already carries the alignment of the product
to the accumulator's scale ``2**-F``, so the inner loop is ``acc[o] += x[j] * M``: exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hgqir.ir import Op, OpKind

from .lowering import Lowering, acc_bits, const_of, exact_type, lowers
from .refs import ZERO, Refs


@dataclass
class Terms:
    """Non-zero weights: output channel, input index parts and aligned integer weight."""

    out: list[int] = field(default_factory=list)
    idx: list[list[int]] = field(default_factory=list)
    """Input index parts per term (dense: [j]; conv: [dy, dx, c])."""
    val: list[int] = field(default_factory=list)
    width: int = 1
    bias: list[int] | None = None
    bias_width: int = 1

    @property
    def weight(self) -> int:
        return len(self.val) * 4

    def column(self, n: int) -> list[int]:
        """Index part ``n`` of every term (a table of the template)."""
        return [ix[n] for ix in self.idx]


@dataclass
class Dense(Terms):
    rows: int = 1
    n_in: int = 0
    n_out: int = 0


@dataclass
class Conv(Terms):
    h: int = 1
    w: int = 1
    c: int = 1
    oh: int = 1
    ow: int = 1
    co: int = 1
    sy: int = 1
    sx: int = 1
    pt: int = 0
    pl: int = 0


@dataclass
class Affine:
    """Body of batchnorm: ``acc[e] = x[e] * scale[c] + offset[c]``."""

    channels: int
    scale: list[int]
    offset: list[int]
    scale_width: int
    offset_width: int


def _bits(values: list[int]) -> int:
    return max((abs(v).bit_length() for v in values), default=0) + 1


def _aligned(m: np.ndarray, shift: np.ndarray) -> list[int]:
    """``m * 2**shift`` elementwise as Python ints (shift >= 0)."""
    return [int(a) << int(s) for a, s in zip(m.reshape(-1), shift.reshape(-1), strict=True)]


def _bias(op: Op, scale: int) -> tuple[list[int] | None, int]:
    if len(op.operands) < 3:
        return None, 1
    data, t = const_of(op.operands[2])
    live = ~t.zero_mask & (data != 0)
    vals = _aligned(np.where(live, data, 0), np.where(live, scale - t.f, 0))
    if not any(vals):
        return None, 1  # an all-zero bias adds nothing
    return vals, _bits(vals)


def _scale(op: Op, fx: int, wf: np.ndarray, live: np.ndarray) -> int:
    """Accumulator scale: fine enough for every product and the bias (and the exact result)."""
    t = exact_type(op)
    scale = int(t.f[~t.zero_mask].max()) if (~t.zero_mask).any() else 0
    if live.any():
        scale = max(scale, fx + int(wf[live].max()))
    if len(op.operands) == 3:
        bt = op.operands[2].type
        blive = ~bt.zero_mask
        if blive.any():
            scale = max(scale, int(bt.f[blive].max()))
    return scale


def _terms(body: Terms, w: np.ndarray, wf: np.ndarray, live: np.ndarray, fx: int, scale: int) -> None:
    """Fill the term tables from the non-zero weights (``live``), output channel last."""
    coords = np.argwhere(live)
    order = np.lexsort((*coords[:, :-1].T[::-1], coords[:, -1])) if len(coords) else np.arange(0)
    coords = coords[order]
    m = w[tuple(coords.T)] if len(coords) else np.zeros(0, dtype=np.int64)
    body.out = coords[:, -1].tolist()
    body.idx = coords[:, :-1].tolist()
    body.val = _aligned(np.asarray(m), scale - fx - wf[tuple(coords.T)] if len(coords) else np.zeros(0))
    body.width = _bits(body.val)


@lowers(OpKind.DENSE)
def lower_dense(lw: Lowering, op: Op) -> None:
    x = lw.refs(op.operands[0])
    n_in = x.shape[-1]
    rows = int(np.prod(x.shape[:-1], dtype=np.int64))
    w, wt = const_of(op.operands[1])
    fx = x.finest()
    column_live = (x.arr.reshape(rows, n_in) != ZERO).any(axis=0)
    live = ~wt.zero_mask & (w != 0) & column_live[:, None]
    wf = np.asarray(wt.f)
    scale = _scale(op, fx, wf, live)
    body = Dense(rows=rows, n_in=n_in, n_out=w.shape[1])
    _terms(body, w, wf, live, fx, scale)
    body.bias, body.bias_width = _bias(op, scale)
    g = lw.gather(x, "x0", fx)
    width = acc_bits(exact_type(op), scale)
    reuse = lw.options.reuse_for(op.result.name)
    lw.layer(op, "dense", [g], "acc", width, scale, body, mults=rows * len(body.val), reuse=reuse)


def _as_2d(op: Op, x: Refs) -> tuple[Refs, np.ndarray, tuple[int, int], tuple[int, int]]:
    """Input refs [H, W, C], kernel [kh, kw, C, O], strides and leading pads (conv1d: H = 1)."""
    w, _ = const_of(op.operands[1])
    stride, pads = tuple(op.attrs["stride"]), tuple(op.attrs["pad"])
    if op.kind is OpKind.CONV1D:
        return x.map(lambda a: a[None]), w[None], (1, stride[0]), (0, pads[0][0])
    return x, w, (stride[0], stride[1]), (pads[0][0], pads[1][0])


@lowers(OpKind.CONV1D, OpKind.CONV2D)
def lower_conv(lw: Lowering, op: Op) -> None:
    x = lw.refs(op.operands[0])
    x2, w, (sy, sx), (pt, pl) = _as_2d(op, x)
    wt = op.operands[1].type
    wf = np.asarray(wt.f).reshape(w.shape)
    wlive = ~np.asarray(wt.zero_mask).reshape(w.shape)
    fx = x.finest()
    channel_live = (x2.arr != ZERO).reshape(-1, w.shape[2]).any(axis=0)
    live = wlive & (w != 0) & channel_live[None, None, :, None]
    scale = _scale(op, fx, wf, live)
    out = op.result.shape
    oh, ow = (1, out[0]) if op.kind is OpKind.CONV1D else (out[0], out[1])
    h, wd, c = x2.shape
    body = Conv(h=h, w=wd, c=c, oh=oh, ow=ow, co=w.shape[3], sy=sy, sx=sx, pt=pt, pl=pl)
    _terms(body, w, wf, live, fx, scale)
    body.bias, body.bias_width = _bias(op, scale)
    g = lw.gather(x, "x0", fx)
    width = acc_bits(exact_type(op), scale)
    reuse = lw.options.reuse_for(op.result.name)
    lw.layer(op, "conv", [g], "acc", width, scale, body, mults=oh * ow * len(body.val), reuse=reuse)


@lowers(OpKind.BATCHNORM)
def lower_batchnorm(lw: Lowering, op: Op) -> None:
    x = lw.refs(op.operands[0])
    (s, st), (o, ot) = const_of(op.operands[1]), const_of(op.operands[2])
    fx = x.finest()
    slive, olive = ~st.zero_mask & (s != 0), ~ot.zero_mask & (o != 0)
    t = exact_type(op)
    scale = int(t.f[~t.zero_mask].max()) if (~t.zero_mask).any() else 0
    if slive.any():
        scale = max(scale, fx + int(np.asarray(st.f)[slive].max()))
    if olive.any():
        scale = max(scale, int(np.asarray(ot.f)[olive].max()))
    sv = _aligned(np.where(slive, s, 0), np.where(slive, scale - fx - st.f, 0))
    ov = _aligned(np.where(olive, o, 0), np.where(olive, scale - ot.f, 0))
    g = lw.gather(x, "x0", fx)
    body = Affine(len(sv), sv, ov, _bits(sv), _bits(ov))
    width = acc_bits(t, scale)
    lw.layer(op, "affine", [g], "acc", width, scale, body, mults=x.arr.size)
