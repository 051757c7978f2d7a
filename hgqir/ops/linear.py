"""Multiply-accumulate ops: dense, conv1d, conv2d and batchnorm (per-channel affine).

Layout is channels-last: dense contracts the last axis, conv inputs are ``[L, C]`` or
``[H, W, C]`` with kernels ``[kw, Cin, Cout]`` / ``[kh, kw, Cin, Cout]``. Weights, biases and
batchnorm parameters must be ``const`` values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..fixed import FixedType, Shape
from ..ir import Op, OpKind, Value
from ..numbers import Exact
from ..quantize import mantissa_dtype
from .base import PAD_F, Attr, Interval, OpRule, Trait, bcast, dead, derived_infer, expect, interval_of, register


# ---------------------------------------------------------------- shared machinery
def const_exact(v: Value) -> Exact:
    from ..numbers import exact_from_mantissas

    return exact_from_mantissas(v.producer.attrs["data"], v.type)  # type: ignore[union-attr]


def _is_const(v: Value) -> bool:
    return v.producer is not None and v.producer.kind is OpKind.CONST


def _check_consts(op: Op) -> None:
    for n, v in enumerate(op.operands[1:], start=1):
        expect(_is_const(v), op, f"operand {n} (%{v.name}) must be a const value")


def contract_bound_bits(xmax: np.ndarray, wabs: np.ndarray, babs: np.ndarray | None) -> int:
    """Bits of the largest partial sum of ``x @ w + b`` given magnitude bounds (in LSB units)."""
    acc = xmax @ wabs
    if babs is not None:
        acc = acc + babs
    top = float(np.max(acc, initial=0.0))
    # float64 bound arithmetic is within a relative 1e-12 here; one guard bit covers it
    return int(np.frexp(top)[1]) + 1 if top else 0


def exact_contract(x: Exact, x_max: np.ndarray, w: Exact, b: Exact | None) -> Exact:
    """Exact ``x @ w (+ b)`` over the last axis of batched ``x``.

    ``x_max`` bounds ``|x|`` per contracted element in LSB units of ``x.scale``. The float64
    BLAS path is taken only when every partial sum provably stays below 2**52.
    """
    scale = x.scale + w.scale
    if b is not None:
        scale = max(scale, b.scale)
    wabs = np.abs(w.values()) * np.ldexp(1.0, w.scale)
    babs = None if b is None else np.abs(b.values()) * np.ldexp(1.0, scale)
    extra = scale - x.scale - w.scale
    bits = contract_bound_bits(x_max * np.ldexp(1.0, extra), wabs, babs)
    dtype = mantissa_dtype(bits)
    xm = x.rescaled(x.scale, dtype)
    wm = w.rescaled(w.scale + extra, dtype)
    out = xm @ wm
    if b is not None:
        out = out + b.rescaled(scale, dtype)
    return Exact(out, scale)


def contract_interval(xi: Interval, wv: np.ndarray, wf: np.ndarray, bi: Interval | None) -> Interval:
    """Exact interval of ``x @ w + b`` with per-element LSBs (``wf`` is PAD_F for zero weights)."""
    wp, wn = np.maximum(wv, 0.0), np.minimum(wv, 0.0)
    lo = xi.lo @ wp + xi.hi @ wn
    hi = xi.hi @ wp + xi.lo @ wn
    f = _maxplus(xi.f, wf)
    if bi is not None:
        lo, hi, f = lo + bi.lo, hi + bi.hi, np.maximum(f, bi.f)
    return Interval(lo, hi, np.where(f < PAD_F // 2, PAD_F, f))


def _maxplus(fx: np.ndarray, fw: np.ndarray) -> np.ndarray:
    """``out[..., o] = max_j fx[..., j] + fw[j, o]`` computed once per distinct row of ``fx``."""
    lead = fx.shape[:-1]
    rows = fx.reshape(-1, fx.shape[-1])
    uniq, inverse = np.unique(rows, axis=0, return_inverse=True)
    out = np.empty((len(uniq), fw.shape[-1]), dtype=np.int64)
    for n, row in enumerate(uniq):
        out[n] = np.max(row[:, None] + fw, axis=0, initial=2 * PAD_F)
    return out[inverse.reshape(-1)].reshape(*lead, fw.shape[-1])


def weight_interval(v: Value) -> tuple[np.ndarray, np.ndarray]:
    wi = interval_of(v)
    return wi.lo, wi.f


def x_max_units(t: FixedType, scale: int) -> np.ndarray:
    """Per-element ``|x|`` bound over the last axis, in LSB units of ``scale`` (max over leading axes)."""
    top = np.where(t.zero_mask, 0.0, np.ldexp(1.0, t.i + scale))
    return top.reshape(-1, t.shape[-1]).max(axis=0) if t.shape else top


# ---------------------------------------------------------------- dense
def _dense_shapes(op: Op) -> list[Shape]:
    x, w = op.operands[0].shape, op.operands[1].shape
    expect(len(x) >= 1 and len(w) == 2, op, f"needs x [..., n] and w [n, m], got {list(x)} and {list(w)}")
    expect(x[-1] == w[0], op, f"x has {x[-1]} features but w has {w[0]} rows")
    if len(op.operands) == 3:
        expect(op.operands[2].shape == (w[1],), op, f"bias shape {list(op.operands[2].shape)} != [{w[1]}]")
    return [(*x[:-1], w[1])]


def _dense_infer(op: Op) -> list[FixedType]:
    wv, wf = weight_interval(op.operands[1])
    bi = interval_of(op.operands[2]) if len(op.operands) == 3 else None
    return [contract_interval(interval_of(op.operands[0]), wv, wf, bi).to_type()]


def _dense_eval(op: Op, args: list[Exact]) -> list[Exact]:
    x, w = args[0], args[1]
    b = args[2] if len(args) == 3 else None
    return [exact_contract(x, x_max_units(op.operands[0].type, x.scale), w, b)]


def nonzero_bits(v: Value) -> np.ndarray:
    """Widths of a constant's elements, 0 where the value is 0 (a zero weight costs nothing)."""
    return np.where(const_exact(v).m != 0, v.type.bits, 0)


def contraction_bits(op: Op) -> tuple[np.ndarray, np.ndarray]:
    """Input widths ``[positions, n]`` and non-zero weight widths ``[n, m]`` of a dense/conv.

    Convolutions unfold the input into one row per output position (padding counts 0 bits).
    """
    xb = op.operands[0].type.bits
    if op.kind is not OpKind.DENSE:
        xb = unfold(xb, op, 0, False)
    xb = xb.reshape(-1, xb.shape[-1])
    return xb, nonzero_bits(op.operands[1]).reshape(xb.shape[1], -1)


def _dense_transfer(op: Op, ins: list[Interval]) -> Interval:
    bias = ins[2] if len(ins) == 3 else None
    return contract_interval(ins[0], ins[1].lo, ins[1].f, bias)


def _conv_transfer(op: Op, ins: list[Interval]) -> Interval:
    x, w = ins[0], ins[1]
    patches = Interval(unfold(x.lo, op, 0.0, False), unfold(x.hi, op, 0.0, False), unfold(x.f, op, PAD_F, False))
    cout = op.operands[1].shape[-1]
    bias = ins[2] if len(ins) == 3 else None
    return contract_interval(patches, w.lo.reshape(-1, cout), w.f.reshape(-1, cout), bias)


def _contraction_bops(op: Op) -> float:
    xb, wb = contraction_bits(op)
    return float(xb.sum(axis=0) @ wb.sum(axis=1))


register(
    OpRule(
        OpKind.DENSE,
        (2, 3),
        1,
        {},
        shapes=_dense_shapes,
        infer=_dense_infer,
        eval=_dense_eval,
        bops=_contraction_bops,
        transfer=_dense_transfer,
        traits=Trait.CONTRACTS,
        kernel="dense",
        check=_check_consts,
        operand_names=("x", "w", "b"),
        data_operands=1,
        doc="y[..., o] = sum_j x[..., j] * w[j, o] + b[o]; w and b are constants.",
    )
)


# ---------------------------------------------------------------- convolution
def _conv_out_shape(op: Op, spatial: Shape, kernel: Shape) -> Shape:
    stride, pads = op.attrs["stride"], op.attrs["pad"]
    nd = len(spatial)
    expect(len(stride) == nd and len(pads) == nd, op, f"stride and pad need {nd} entries")
    out = []
    for n, (s, k, st, (p0, p1)) in enumerate(zip(spatial, kernel, stride, pads, strict=True)):
        full = s + p0 + p1 - k
        expect(st >= 1 and p0 >= 0 and p1 >= 0, op, "stride must be >= 1 and padding >= 0")
        expect(full >= 0, op, f"kernel {k} larger than padded input {s + p0 + p1} on axis {n}")
        out.append(full // st + 1)
    return tuple(out)


def _conv_shapes(op: Op) -> list[Shape]:
    x, w = op.operands[0].shape, op.operands[1].shape
    nd = 1 if op.kind is OpKind.CONV1D else 2
    expect(len(x) == nd + 1 and len(w) == nd + 2, op, f"needs x rank {nd + 1} and w rank {nd + 2}")
    expect(x[-1] == w[-2], op, f"x has {x[-1]} channels but w expects {w[-2]}")
    if len(op.operands) == 3:
        expect(op.operands[2].shape == (w[-1],), op, f"bias shape must be [{w[-1]}]")
    return [(*_conv_out_shape(op, x[:-1], w[:-2]), w[-1])]


def unfold(a: np.ndarray, op: Op, fill: Any, batched: bool) -> np.ndarray:
    """Conv patches ``[..., *out_spatial, prod(kernel) * C]`` of channels-last ``a``."""
    win = windows(a, op.operands[1].shape[:-2], op.attrs["stride"], op.attrs["pad"], fill, batched)
    return win.reshape(*win.shape[: win.ndim - len(op.attrs["stride"]) - 1], -1)


def windows(a: np.ndarray, kernel: Shape, stride: Shape, pad: Any, fill: Any, batched: bool) -> np.ndarray:
    """Sliding windows ``[..., *out_spatial, *kernel, C]`` of channels-last ``a`` padded with ``fill``."""
    nd = len(kernel)
    lead = 1 if batched else 0
    pads = [(0, 0)] * lead + [tuple(p) for p in pad] + [(0, 0)]
    a = np.pad(a, pads, constant_values=fill) if any(p != (0, 0) for p in pads) else a
    axes = tuple(range(lead, lead + nd))
    win = np.lib.stride_tricks.sliding_window_view(a, kernel, axis=axes)
    index = (slice(None),) * lead + tuple(slice(None, None, s) for s in stride)
    win = win[index]
    # win: [lead, *out, C, *kernel] -> [lead, *out, *kernel, C]
    c_axis = lead + nd
    order = list(range(c_axis)) + list(range(c_axis + 1, c_axis + 1 + nd)) + [c_axis]
    return win.transpose(order)


def _conv_infer(op: Op) -> list[FixedType]:
    xi = interval_of(op.operands[0])
    pi = Interval(unfold(xi.lo, op, 0.0, False), unfold(xi.hi, op, 0.0, False), unfold(xi.f, op, PAD_F, False))
    wv, wf = weight_interval(op.operands[1])
    cout = op.operands[1].shape[-1]
    bi = interval_of(op.operands[2]) if len(op.operands) == 3 else None
    return [contract_interval(pi, wv.reshape(-1, cout), wf.reshape(-1, cout), bi).to_type()]


def conv_contract(view: Any, t: FixedType, x: Exact, wflat: Exact, b: Exact | None) -> Exact:
    """Exact convolution of batched ``x`` (type ``t``) with the kernel matrix ``wflat``
    ``[prod(kernel) * C, Cout]``; ``view`` gives the kernel shape and attrs to :func:`unfold`."""
    xmax = np.where(t.zero_mask, 0.0, np.ldexp(1.0, t.i + x.scale))
    pmax = unfold(xmax, view, 0.0, False)
    pmax = pmax.reshape(-1, pmax.shape[-1]).max(axis=0)
    patches = Exact(unfold(x.m, view, 0, True), x.scale)
    return exact_contract(patches, pmax, wflat, b)


def _conv_eval(op: Op, args: list[Exact]) -> list[Exact]:
    x, w = args[0], args[1]
    b = args[2] if len(args) == 3 else None
    wflat = Exact(w.m.reshape(-1, w.m.shape[-1]), w.scale)
    return [conv_contract(op, op.operands[0].type, x, wflat, b)]


_CONV_ATTRS = {"stride": Attr("ints", required=True), "pad": Attr("pads", required=True)}
for _kind, _doc in ((OpKind.CONV1D, "[L, C]"), (OpKind.CONV2D, "[H, W, C]")):
    register(
        OpRule(
            _kind,
            (2, 3),
            1,
            _CONV_ATTRS,
            shapes=_conv_shapes,
            infer=_conv_infer,
            eval=_conv_eval,
            bops=_contraction_bops,
            transfer=_conv_transfer,
            traits=Trait.CONTRACTS,
            check=_check_consts,
            operand_names=("x", "w", "b"),
            data_operands=1,
            doc=f"Channels-last convolution of x {_doc} with explicit zero padding `pad` "
            "((before, after) per spatial axis) and `stride`; w and b are constants.",
        )
    )


# ---------------------------------------------------------------- batchnorm (affine)
def _bn_shapes(op: Op) -> list[Shape]:
    x = op.operands[0].shape
    c = x[-1] if x else 1
    for v in op.operands[1:]:
        expect(v.shape == (c,), op, f"scale and offset must have shape [{c}], got {list(v.shape)}")
    return [x]


def _bn_transfer(op: Op, ins: list[Interval]) -> Interval:
    x, s, o = ins
    cands = [x.lo * s.lo, x.lo * s.hi, x.hi * s.lo, x.hi * s.hi]
    fprod = np.where(dead(x.f) | dead(s.f), PAD_F, x.f + s.f)
    lo = np.minimum.reduce(cands) + o.lo
    hi = np.maximum.reduce(cands) + o.hi
    return Interval(*bcast(op.operands[0].shape, lo, hi, np.maximum(fprod, o.f)))


def _bn_eval(op: Op, args: list[Exact]) -> list[Exact]:
    x, s, o = args
    scale = max(x.scale + s.scale, o.scale)
    xt = op.operands[0].type
    xmax = np.where(xt.zero_mask, 0.0, np.ldexp(1.0, xt.i + x.scale))
    top = xmax * np.abs(s.values()) * np.ldexp(1.0, scale - x.scale) + np.abs(o.values()) * np.ldexp(1.0, scale)
    dtype = mantissa_dtype(int(np.frexp(float(np.max(top, initial=0.0)))[1]) + 1)
    out = x.rescaled(x.scale, dtype) * s.rescaled(scale - x.scale, dtype) + o.rescaled(scale, dtype)
    return [Exact(out, scale)]


def _bn_bops(op: Op) -> float:
    return float(np.sum(op.operands[0].type.bits * nonzero_bits(op.operands[1])))


register(
    OpRule(
        OpKind.BATCHNORM,
        (3, 3),
        1,
        {},
        shapes=_bn_shapes,
        infer=derived_infer(_bn_transfer),
        eval=_bn_eval,
        bops=_bn_bops,
        transfer=_bn_transfer,
        traits=Trait.CHANNELWISE | Trait.MULTIPLIES,
        check=_check_consts,
        operand_names=("x", "scale", "offset"),
        data_operands=1,
        doc="Per-channel affine y = x * scale[c] + offset[c] over the last axis (folded batchnorm).",
    )
)
