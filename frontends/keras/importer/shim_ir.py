"""IR converters for the shim's own layers (see :mod:`hgqir.frontends.keras.importer.convert`).

Each converter reads the learned parameters and emits the ops the layer computes in
inference: ``quant`` for its input quantizer, ``const`` for quantized constants (tightest
per-element types of their values), then dense / conv / batchnorm / add / lut / softmax.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from keras import ops

from hgqir.fixed import FixedType
from hgqir.ir import OpKind, Value

from ..graph import KNode, Shape
from ..shim.layers import QBatchNorm, QConv1D, QConv2D, QDense, QDepthwiseConv1D, QDepthwiseConv2D, QPReLU, conv_pads
from ..shim.merge import QAvgPool, QMerge, QOutput
from ..shim.quant import Quantizer, WeightQuantizer
from ..shim.tables import QSoftmax, QTable
from ..support import AFFINE, AVGPOOLS, MERGES, L, layer_activation, movers_reason
from .convert import (
    PLAIN_CONVERTERS,
    Converter,
    Emitter,
    QuantSpec,
    merge_values,
    plain_avgpool_reason,
    quantized_avgpool,
)

SHIM_LAYERS = (
    Quantizer,
    QOutput,
    QDense,
    QConv1D,
    QConv2D,
    QDepthwiseConv1D,
    QDepthwiseConv2D,
    QBatchNorm,
    QMerge,
    QAvgPool,
    QTable,
    QSoftmax,
    QPReLU,
)


def spec_of(q: Quantizer, shape: Shape) -> QuantSpec:
    return QuantSpec(q.fixed_type(shape), q.round_mode, q.overflow_mode)


def shim_input_quantizer(layer: Any, pos: int, shape: Shape) -> QuantSpec | None:
    if isinstance(layer, Quantizer):
        return spec_of(layer, shape)
    if isinstance(layer, QMerge):
        return spec_of(layer.iqs[pos], shape)
    if isinstance(layer, SHIM_LAYERS):
        return spec_of(layer.iq, shape)
    return None


def weight_const(em: Emitter, q: WeightQuantizer, w: Any, name: str) -> Value:
    values, t = q.quantized_numpy(w)
    return em.const(values, t, name)


def _quantizer(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    return [em.quant(xs[0], spec_of(node.layer, xs[0].shape), node.name)]


def _iq(em: Emitter, layer: Any, x: Value) -> Value:
    return em.quant(x, spec_of(layer.iq, x.shape), f"{layer.name}_iq")


def _affine(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    layer = node.layer
    x = _iq(em, layer, xs[0])
    if isinstance(layer, QDense):
        w = weight_const(em, layer.kq, layer.kernel, f"{layer.name}_w")
    else:
        values, t = dilated(*layer.kq.quantized_numpy(layer.kernel), dilation_of(layer))
        w = em.const(values, t, f"{layer.name}_w")
    operands = [x, w]
    if layer.bq is not None:
        operands.append(weight_const(em, layer.bq, layer.bias, f"{layer.name}_b"))
    if isinstance(layer, QDense):
        y = em.add(OpKind.DENSE, operands, layer.name)
    else:
        y = em.add(
            OpKind.CONV1D if isinstance(layer, QConv1D) else OpKind.CONV2D,
            operands,
            layer.name,
            **conv_attrs(layer, x.shape),
        )
    if layer_activation(layer) == "relu":
        y = em.add(OpKind.RELU, [y], f"{layer.name}_relu")
    return [y]


def depthwise_kernel(em: Emitter, values: np.ndarray, t: FixedType, name: str) -> Value:
    """A Keras depthwise kernel ``[*k, C, M]`` as the IR's ``[*k, C*M]`` (output ``c*M + m``)."""
    shape = (*values.shape[:-2], values.shape[-2] * values.shape[-1])
    k, i, f = (np.broadcast_to(a, values.shape).reshape(shape) for a in (t.k, t.i, t.f))
    return em.const(values.reshape(shape), FixedType(shape, k, i, f), name)


def _depthwise(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    layer = node.layer
    x = _iq(em, layer, xs[0])
    values, t = layer.kq.quantized_numpy(layer.kernel)
    operands = [x, depthwise_kernel(em, values, t, f"{layer.name}_w")]
    if layer.bq is not None:
        operands.append(weight_const(em, layer.bq, layer.bias, f"{layer.name}_b"))
    kind = OpKind.DEPTHWISE_CONV1D if isinstance(layer, QDepthwiseConv1D) else OpKind.DEPTHWISE_CONV2D
    y = em.add(kind, operands, layer.name, **conv_attrs(layer, x.shape))
    if layer_activation(layer) == "relu":
        y = em.add(OpKind.RELU, [y], f"{layer.name}_relu")
    return [y]


def dilation_of(layer: Any) -> tuple[int, ...]:
    rates = getattr(layer, "dilation_rate", 1)
    n = len(layer.kernel_size)
    return tuple(int(d) for d in rates) if isinstance(rates, (tuple, list)) else (int(rates),) * n


def dilated(values: np.ndarray, t: FixedType, rates: tuple[int, ...]) -> tuple[np.ndarray, FixedType]:
    """A kernel ``[*k, ...]`` dilated by ``rates``: zeros of width 0 between the taps (exact: a
    dilated convolution is the convolution with this kernel; zero weights cost nothing)."""
    if all(d == 1 for d in rates):
        return values, t
    nd = len(rates)
    shape = tuple((k - 1) * d + 1 for k, d in zip(values.shape[:nd], rates, strict=True)) + values.shape[nd:]
    index = tuple(slice(None, None, d) for d in rates)
    out = []
    for a in (values, *(np.broadcast_to(v, values.shape) for v in (t.k, t.i, t.f))):
        full = np.zeros(shape, dtype=np.asarray(a).dtype)
        full[index] = a
        out.append(full)
    return out[0], FixedType(shape, out[1], out[2], out[3])


def conv_attrs(layer: Any, in_shape: Shape) -> dict[str, Any]:
    rates = dilation_of(layer)
    kernel = tuple((int(k) - 1) * d + 1 for k, d in zip(layer.kernel_size, rates, strict=True))
    stride = tuple(int(s) for s in layer.strides)
    pads = [conv_pads(n, k, s, layer.padding) for n, k, s in zip(in_shape[:-1], kernel, stride, strict=True)]
    return {"stride": stride, "pad": pads}


def _batchnorm(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    layer = node.layer
    x = _iq(em, layer, xs[0])
    scale, offset = layer.affine(layer.moving_mean, layer.moving_variance)
    s = weight_const(em, layer.sq, scale, f"{layer.name}_scale")
    o = weight_const(em, layer.oq, offset, f"{layer.name}_offset")
    return [em.add(OpKind.BATCHNORM, [x, s, o], layer.name)]


def _merge(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    layer = node.layer
    qs = [
        em.quant(x, spec_of(q, x.shape), f"{layer.name}_iq{n}")
        for n, (q, x) in enumerate(zip(layer.iqs, xs, strict=True))
    ]
    return [merge_values(em, layer.op, qs, layer.name)]


def _avgpool(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    layer = node.layer
    x = _iq(em, layer, xs[0])
    attrs = None
    if not layer.is_global:
        pads = [
            conv_pads(n, p, s, layer.padding)
            for n, p, s in zip(x.shape[:-1], layer.pool_size, layer.strides, strict=True)
        ]
        attrs = {"pool": layer.pool_size, "stride": layer.strides, "pad": pads}
    return [quantized_avgpool(em, x, layer.name, em.shape(node.outputs[0]), layer.extra, attrs)]


def _table(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    layer = node.layer
    x = _iq(em, layer, xs[0])
    data, t, _ = layer.table_numpy()
    table = em.g.const_mantissa(data, t, name=f"{layer.name}_table")
    return [em.add(OpKind.LUT, [x, table], layer.name, func=layer.func)]


def _softmax(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    layer = node.layer
    x = _iq(em, layer, xs[0])
    t = layer.tables()
    exp = em.const(t["exp"], FixedType.uniform(t["exp"].shape, *t["exp_kif"]), f"{layer.name}_exp")
    inv = em.const(t["inv"], FixedType.uniform(t["inv"].shape, *t["inv_kif"]), f"{layer.name}_inv")
    return [em.add(OpKind.SOFTMAX, [x, exp, inv], layer.name, inv_in=t["inv_in"], log=layer.log)]


def _prelu(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    layer = node.layer
    x = _iq(em, layer, xs[0])
    alpha = weight_const(em, layer.aq, layer.alpha, f"{layer.name}_alpha")
    return [em.add(OpKind.PRELU, [x, alpha], layer.name)]


SHIM_CONVERTERS: dict[type, Converter] = {
    **PLAIN_CONVERTERS,
    Quantizer: _quantizer,
    QDense: _affine,
    QConv1D: _affine,
    QConv2D: _affine,
    QBatchNorm: _batchnorm,
    QMerge: _merge,
    QAvgPool: _avgpool,
    QOutput: lambda em, node, xs: [_iq(em, node.layer, xs[0])],
    QTable: _table,
    QSoftmax: _softmax,
    QPReLU: _prelu,
    QDepthwiseConv1D: _depthwise,
    QDepthwiseConv2D: _depthwise,
}


def quantized_reason(node: KNode) -> str | None:
    """Why a layer of a quantized (shim) model cannot be imported exactly (None: it can)."""
    layer = node.layer
    cls = type(layer)
    if cls in SHIM_LAYERS:
        return None
    if cls in MERGES:
        return None
    if cls in AVGPOOLS:
        return movers_reason(layer) or plain_avgpool_reason(layer)
    if cls is L.Activation:
        act = layer_activation(layer)
        return (
            None
            if act in ("relu", "linear")
            else (f"float activation {act!r} in a quantized model is not exact; apply it through a table layer")
        )
    if cls in (*AFFINE, L.BatchNormalization):
        return "float weights in a quantized model; quantize the layer (hgqir.quantize_keras or HGQ2 layers)"
    return movers_reason(layer)


def to_numpy(x: Any) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(x), dtype=np.float64)
