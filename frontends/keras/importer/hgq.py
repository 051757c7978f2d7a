"""Importing HGQ2 models (``hgq.layers``) so that HGQ2 users adopt hgqir without retraining.

Every HGQ2 fixed-point quantizer becomes a ``quant`` op with its per-element ``k, i, f`` and its
rounding / overflow modes (stochastic rounding is plain rounding at inference). Constants are
read through HGQ2's own quantizers (``layer.qkernel`` ...) and get the tightest per-element
types of their values. Tables (``QUnaryFunctionLUT``, ``QSoftmax``) evaluate HGQ2's function on
every input value and quantize with the output quantizer.

HGQ2 rounds with ``floor(x * 2**f + 0.5)`` in floating point; that differs from exact RND
only for inputs within one float ulp of a rounding tie, which hgqir does not reproduce.
"""

from __future__ import annotations

from typing import Any

import hgq.layers as H
import numpy as np
from hgq.quantizer.internal import FixedPointQuantizerBase
from keras import ops

from hgqir.errors import HgqirError
from hgqir.fixed import FixedType, OverflowMode, RoundMode
from hgqir.ir import OpKind, Value
from hgqir.quantize import quantize

from ..graph import KNode, Shape
from ..support import conv_reason, layer_activation, pool_reason
from .convert import (
    Converter,
    Emitter,
    QuantSpec,
    _plain_avgpool,
    merge_chain,
    plain_avgpool_reason,
    window_attrs,
)
from .shim_ir import conv_attrs

MERGE_KINDS = {H.QAdd: OpKind.ADD, H.QSubtract: OpKind.SUB, H.QMultiply: OpKind.MUL}
MAXPOOLS = {
    H.QMaxPooling1D: OpKind.MAXPOOL1D,
    H.QMaxPooling2D: OpKind.MAXPOOL2D,
    H.QGlobalMaxPooling1D: OpKind.GLOBAL_MAXPOOL,
    H.QGlobalMaxPooling2D: OpKind.GLOBAL_MAXPOOL,
}
AVGPOOLS = (H.QAveragePooling1D, H.QAveragePooling2D, H.QGlobalAveragePooling1D, H.QGlobalAveragePooling2D)
AFFINE = (H.QDense, H.QBatchNormDense, H.QConv1D, H.QConv2D)


def is_hgq_layer(layer: Any) -> bool:
    return type(layer).__module__.startswith("hgq.")


# ---------------------------------------------------------------- quantizers
def quantizer_reason(q: Any) -> str | None:
    if q.scaler is not None or q.affine is not None:
        return "quantizers with scaler or affine are not supported"
    inner = q.quantizer
    if not isinstance(inner, FixedPointQuantizerBase):
        return f"{type(inner).__name__} is not a fixed-point quantizer"
    if inner.overflow_mode not in ("WRAP", "SAT", "SAT_SYM"):
        return f"overflow mode {inner.overflow_mode} is not supported"
    return None


def _param(t: Any, shape: Shape) -> np.ndarray:
    a = np.asarray(ops.convert_to_numpy(t), dtype=np.float64)
    if a.ndim == len(shape) + 1:
        a = a.reshape(a.shape[1:])
    return np.broadcast_to(a, shape)


def quant_spec(q: Any, shape: Shape) -> QuantSpec:
    """The type and modes of an HGQ2 ``Quantizer`` applied to a tensor of unbatched ``shape``."""
    inner = q.quantizer
    k, i, f = (np.round(_param(t, shape)).astype(np.int64) for t in inner.kif)
    rmode = RoundMode.parse(inner.round_mode.removeprefix("S_"))
    return QuantSpec(FixedType(shape, k, i, f), rmode, OverflowMode.parse(inner.overflow_mode))


def const_of(em: Emitter, values: Any, q: Any, name: str) -> Value:
    """A constant from values HGQ2 already quantized, typed as tightly as its values allow."""
    v = np.asarray(ops.convert_to_numpy(values), dtype=np.float64)
    f = np.round(_param(q.quantizer.kif[2], v.shape)).astype(np.int64)
    return em.const(v, FixedType.covering(v, v, f).canonical(), name)


def hgq_input_quantizer(layer: Any, pos: int, shape: Shape) -> QuantSpec | None:
    if type(layer) is H.Quantizer:
        return quant_spec(layer, shape)
    if not is_hgq_layer(layer) or not getattr(layer, "enable_iq", False):
        return None
    iq = layer.iq[pos] if type(layer) in MERGE_KINDS else layer.iq
    return quant_spec(iq, shape)


def _in(em: Emitter, layer: Any, x: Value, pos: int = 0) -> Value:
    if not layer.enable_iq:
        return x
    iq = layer.iq[pos] if type(layer) in MERGE_KINDS else layer.iq
    return em.quant(x, quant_spec(iq, x.shape), f"{layer.name}_iq{pos if pos else ''}")


def _out(em: Emitter, layer: Any, y: Value) -> Value:
    if not getattr(layer, "enable_oq", False):
        return y
    return em.quant(y, quant_spec(layer.oq, y.shape), f"{layer.name}_oq")


# ---------------------------------------------------------------- converters
def _quantizer(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    return [em.quant(xs[0], quant_spec(node.layer, xs[0].shape), node.name)]


def _affine(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    layer = node.layer
    x = _in(em, layer, xs[0])
    operands = [x, const_of(em, layer.qkernel, layer.kq, f"{layer.name}_w")]
    if layer.bq is not None:
        operands.append(const_of(em, layer.qbias, layer.bq, f"{layer.name}_b"))
    if isinstance(layer, H.QDense):
        y = em.add(OpKind.DENSE, operands, layer.name)
    else:
        kind = OpKind.CONV1D if isinstance(layer, H.QConv1D) else OpKind.CONV2D
        y = em.add(kind, operands, layer.name, **conv_attrs(layer, x.shape))
    if layer_activation(layer) == "relu":
        y = em.add(OpKind.RELU, [y], f"{layer.name}_relu")
    return [_out(em, layer, y)]


def _batchnorm(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    layer = node.layer
    x = _in(em, layer, xs[0])
    scale, offset = layer.qscaler_and_qoffset
    s = const_of(em, scale, layer.kq, f"{layer.name}_scale")
    o = const_of(em, offset, layer.bq, f"{layer.name}_offset")
    return [_out(em, layer, em.add(OpKind.BATCHNORM, [x, s, o], layer.name))]


def _merge(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    layer = node.layer
    qs = [_in(em, layer, x, n) for n, x in enumerate(xs)]
    return [_out(em, layer, merge_chain(em, MERGE_KINDS[type(layer)], qs, layer.name))]


def _pool(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    layer = node.layer
    x = _in(em, layer, xs[0])
    kind = MAXPOOLS.get(type(layer))
    if kind is None:
        y = _plain_avgpool(em, node, [x])[0]
    elif kind is OpKind.GLOBAL_MAXPOOL:
        y = em.add(kind, [x], layer.name)
    else:
        y = em.add(kind, [x], layer.name, **window_attrs(layer, x.shape))
    return [_out(em, layer, y)]


def _function_table(layer: Any, fn: Any, in_kif: tuple[int, int, int], oq: Any) -> tuple[np.ndarray, FixedType, bool]:
    """Table of ``oq(fn(x))`` over ``in_kif``; ``True`` when a per-element ``quant`` must follow.

    A per-tensor output quantizer goes into the table itself. A per-element one cannot, so the
    table keeps fn truncated one bit below the finest LSB (TRN then RND/TRN equals RND/TRN
    directly) and a ``quant`` op applies the output types.
    """
    k, i, f = in_kif
    lo = -k * (1 << max(i + f, 0))
    xs = np.ldexp(np.arange(lo, lo + (1 << max(k + i + f, 0)), dtype=np.float64), -f)
    ys = np.asarray(ops.convert_to_numpy(fn(ops.convert_to_tensor(xs, layer.compute_dtype))), dtype=np.float64)
    spec = quant_spec(oq, (1,))
    if _uniform_quantizer(oq):
        kq, iq, fq = spec.type.scalar()
        vals = quantize(ys, kq, iq, fq, spec.round, spec.overflow)
        return vals, FixedType.uniform(xs.shape, kq, iq, fq), False
    fine = int(np.max(np.asarray(ops.convert_to_numpy(oq.quantizer.kif[2])))) + 1
    vals = quantize(ys, 1, 64, fine, "TRN", "WRAP")
    t = FixedType.covering(np.full(xs.shape, vals.min()), np.full(xs.shape, vals.max()), fine)
    return vals, FixedType.uniform(xs.shape, *t.union()), True


def _uniform_quantizer(q: Any) -> bool:
    return all(np.size(ops.convert_to_numpy(t)) == 1 for t in q.quantizer.kif)


def _lut(em: Emitter, layer: Any, x: Value, fn: Any, oq: Any, name: str) -> Value:
    vals, t, needs_quant = _function_table(layer, fn, x.type.union(), oq)
    table = em.const(vals, t, f"{name}_table")
    y = em.add(OpKind.LUT, [x, table], name, func=getattr(fn, "__name__", "fn"))
    return em.quant(y, quant_spec(oq, y.shape), f"{name}_oq") if needs_quant else y


def _unary_lut(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    layer = node.layer
    return [_lut(em, layer, _in(em, layer, xs[0]), layer.activation, layer.oq, layer.name)]


def _softmax(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    """HGQ2's stable softmax as IR ops: max, subtract, exp table, sum, inverse table, multiply."""
    layer = node.layer
    x = _in(em, layer, xs[0])
    n = x.shape[0]
    col = em.add(OpKind.RESHAPE, [x], f"{layer.name}_col", shape=(n, 1))
    top = em.add(OpKind.GLOBAL_MAXPOOL, [col], f"{layer.name}_max")
    d = em.add(OpKind.SUB, [top, x], f"{layer.name}_d")
    et = layer.exp_table
    e = _lut(
        em,
        et,
        em.quant(d, quant_spec(et.iq, d.shape), f"{layer.name}_exp_iq"),
        et.activation,
        et.oq,
        f"{layer.name}_exp",
    )
    ones = em.const(np.ones((n, 1)), FixedType.uniform((n, 1), 0, 1, 0), f"{layer.name}_ones")
    s = em.add(OpKind.DENSE, [e, ones], f"{layer.name}_sum")
    it = layer.inv_table
    r = _lut(
        em,
        it,
        em.quant(s, quant_spec(it.iq, s.shape), f"{layer.name}_inv_iq"),
        it.activation,
        it.oq,
        f"{layer.name}_inv",
    )
    return [em.add(OpKind.MUL, [e, r], layer.name)]


HGQ_CONVERTERS: dict[type, Converter] = {
    H.Quantizer: _quantizer,
    **{cls: _affine for cls in AFFINE},
    H.QBatchNormalization: _batchnorm,
    **{cls: _merge for cls in MERGE_KINDS},
    **{cls: _pool for cls in (*MAXPOOLS, *AVGPOOLS)},
    H.QUnaryFunctionLUT: _unary_lut,
    H.QSoftmax: _softmax,
}


# ---------------------------------------------------------------- support and calibration
def _quantizers_of(layer: Any) -> list[Any]:
    found = [layer] if type(layer) is H.Quantizer else []
    for attr in ("_iq", "_oq", "_kq", "_bq"):
        q = getattr(layer, attr, None)
        if q is not None:
            found.extend(list(q) if type(q).__name__ == "MultipleQuantizers" else [q])
    return found


def _layer_reason(layer: Any) -> str | None:
    cls = type(layer)
    if cls in AFFINE:
        if layer_activation(layer) not in ("relu", "linear"):
            return f"activation {layer_activation(layer)!r} is applied in float; use a QUnaryFunctionLUT"
        if cls in (H.QDense, H.QBatchNormDense):
            return None
        if any(d != 1 for d in getattr(layer, "dilation_rate", (1,))):
            return "dilated HGQ2 convolutions are not supported"
        return conv_reason(layer)
    if cls is H.QBatchNormalization:
        return None if layer.axis in (-1, len(layer.input.shape) - 1) else "only the last axis is supported"
    if cls in (*MAXPOOLS, *AVGPOOLS):
        return pool_reason(layer) or (plain_avgpool_reason(layer) if cls in AVGPOOLS else None)
    if cls is H.QUnaryFunctionLUT:
        return None if layer.enable_iq and layer.enable_oq else "needs both input and output quantizers"
    if cls is H.QSoftmax:
        return _softmax_reason(layer)
    if cls in MERGE_KINDS or cls is H.Quantizer:
        return None
    return "this HGQ2 layer is not supported"


def _softmax_reason(layer: Any) -> str | None:
    shape = tuple(layer.input.shape[1:])
    if len(shape) != 1 or tuple(layer.axes) not in ((1,), (-1,)):
        return "only a softmax over a 1-D input is supported"
    if not layer.stable or layer.enable_oq:
        return "only the stable softmax without output quantizer is supported"
    return None


def hgq_reason(node: KNode) -> str | None:
    layer = node.layer
    for q in _quantizers_of(layer):
        reason = quantizer_reason(q)
        if reason:
            return reason
    return _layer_reason(layer)


def calibrate(model: Any, data: Any, batch_size: int) -> None:
    """HGQ2's own calibration: ``trace_minmax`` sets the integer bits of its WRAP quantizers."""
    from hgq.utils import trace_minmax

    try:
        trace_minmax(model, data, batch_size=batch_size, verbose=0)
    except Exception as e:  # HGQ2's own failure: say whose and why it may happen
        raise HgqirError(
            f"HGQ2's trace_minmax failed on model {model.name!r}: {type(e).__name__}: {str(e).splitlines()[0]}. "
            "(HGQ2 models saved in float64 reload with float32 quantizers; calibrate before saving, "
            "or save in float32.)"
        ) from e
