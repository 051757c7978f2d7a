"""Import a plain float Keras model straight into an hgqir graph (no training shim is built).

Quantizers sit where a shim would put them: each model input, the input of every layer that
computes with values (dense, conv, batchnorm, merges, average pooling, tables), and each model
output not produced by a table. Weights, biases and folded batchnorm parameters are rounded to
``weight_f`` fractional bits (RND) with the tightest type of each value.

Activation types: without calibration data every quantizer has the one documented default
type ``default_type`` with SAT overflow. With ``calibration=x`` the graph is built and calibrated
op by op: each activation quantizer's input is evaluated exactly on the data (by the graph
built so far, with every earlier quantizer in place), rounded to the quantizer's ``f``, and the
per-element range of those values becomes the type by :data:`POLICY`, the one place that says
how a range becomes a type and with which overflow. Tables (tanh, sigmoid, softmax) are then
built over the calibrated types of their inputs.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from hgqir.fixed import FixedType, OverflowMode, RoundMode
from hgqir.ir import Graph, OpKind, Value
from hgqir.quantize import quantize

from ... import calibration
from ...calibration import GUARD_BITS
from ..graph import KGraph, KNode
from ..shim.merge import pool_counts
from ..shim.tables import TABLE_FUNCTIONS, lut_table, softmax_tables
from ..support import (
    DEPTHWISE,
    LEAKY,
    LEAKY_SLOPE,
    MERGE_OPS,
    SEPARABLE,
    TABLES,
    L,
    is_prelu,
    layer_activation,
    prelu_slope,
)
from .convert import PLAIN_CONVERTERS, Converter, Emitter, QuantSpec, merge_values, quantized_avgpool, window_attrs
from .shim_ir import conv_attrs, depthwise_kernel, dilated, dilation_of, to_numpy

DEFAULT_TYPE = (1, 5, 10)
"""k, i, f of every activation of a plain float model without calibration data (ap_fixed<16,6>, SAT)."""
DEFAULT_WEIGHT_F = 10
"""Fractional bits of weights, biases and batchnorm parameters (RND; integer bits from the values)."""
TABLE_F = 8
"""Fractional bits of tanh / sigmoid / softmax table entries."""


@dataclass(frozen=True)
class CalibrationPolicy:
    """How an activation's calibration range becomes its type on plain import."""

    margin_bits: int = 0
    """Integer bits above what the calibration range needs (0: exactly the range)."""
    overflow: OverflowMode = OverflowMode.WRAP
    """Overflow of calibrated quantizers."""

    def type(self, lo: np.ndarray, hi: np.ndarray, f: int) -> FixedType:
        """The type of values seen in ``[lo, hi]`` (already on the ``2**-f`` grid)."""
        t = FixedType.covering(lo, hi, np.full(np.shape(lo), f))
        if not self.margin_bits:
            return t
        live = ~t.zero_mask
        return FixedType(t.shape, t.k, np.where(live, t.i + self.margin_bits, t.i), t.f)


POLICY = CalibrationPolicy(margin_bits=GUARD_BITS)
"""One guard integer bit above the calibration range, WRAP: chosen by measurement, see
:mod:`hgqir.frontends.calibration`."""


class PlainImportWarning(UserWarning):
    """A plain float model was imported with default or calibrated types (see the message)."""


class PlainEmitter(Emitter):
    """An :class:`Emitter` that places and types the quantizers of a float model itself."""

    def __init__(self, kg: KGraph, k: int, i: int, f: int, weight_f: int, data: list[np.ndarray] | None) -> None:
        super().__init__(kg, PLAIN_FLOAT_CONVERTERS, lambda layer, pos, shape: None)
        self.k, self.i, self.f, self.weight_f = k, i, f, weight_f
        self.data = data

    def input_spec(self, key: int, name: str) -> QuantSpec:
        """A model input's type: from the calibration data, or the default type."""
        arr = self.data[self.kg.inputs.index(key)] if self.data is not None else None
        return QuantSpec(self._act_type(None, arr, self.shape(key)), RoundMode.RND, self._overflow())

    def output_value(self, key: int, producer: KNode | None) -> Value:
        """A model output not produced by a quantizer or a table leaves through a quantizer."""
        v = self.values[key]
        if v.producer is not None and v.producer.kind in (OpKind.LUT, OpKind.SOFTMAX, OpKind.QUANT, OpKind.INPUT):
            return v
        return self.act(v, f"{producer.name if producer else 'out'}_out_q")

    # ------------------------------------------------------------ quantizers
    def _overflow(self) -> OverflowMode:
        return POLICY.overflow if self.data is not None else OverflowMode.SAT

    def _act_type(self, v: Value | None, arr: np.ndarray | None, shape: tuple[int, ...]) -> FixedType:
        if self.data is None:
            return FixedType.uniform(shape, self.k, self.i, self.f)
        x = arr if v is None else self._evaluate(v)
        q = quantize(np.asarray(x, dtype=np.float64), 1, _wide(self.f), self.f, round="RND")
        t = POLICY.type(q.min(axis=0), q.max(axis=0), self.f)
        if v is None or not POLICY.margin_bits or not calibration.SIGN_GUARD:
            return t
        # the guard covers the sign too: a value that can be negative (its exact type is signed)
        # keeps a sign bit though the calibration data stayed >= 0 (see hgqir.frontends.calibration)
        k = np.where(~t.zero_mask, np.maximum(t.k, np.broadcast_to(v.type.k, t.shape)), t.k)
        return FixedType(t.shape, k, t.i, t.f)

    def _evaluate(self, v: Value) -> np.ndarray:
        """``v`` on the calibration data, computed exactly by the graph built so far."""
        out = self.g.output(v, name="__calibration__")
        try:
            return np.asarray(self.g.run(*self.data))  # type: ignore[misc]
        finally:
            self.g.erase(out)

    def act(self, x: Value, name: str) -> Value:
        """An activation quantizer on ``x`` (its type from the data, or the default type)."""
        t = self._act_type(x, None, x.shape)
        return self.quant(x, QuantSpec(t, RoundMode.RND, self._overflow()), name)

    def weight(self, values: Any, name: str) -> Value:
        """A constant rounded to ``weight_f`` fractional bits, each value with its tightest type."""
        q = quantize(to_numpy(values), 1, _wide(self.weight_f), self.weight_f, round="RND")
        t = FixedType.covering(q, q, np.full(q.shape, self.weight_f)).canonical()
        return self.const(q, t, name)

    def table(self, func: str, x: Value, name: str) -> Value:
        """tanh / sigmoid / softmax as tables over the calibrated (or default) type of ``x``."""
        xq = self.act(x, f"{name}_iq")
        if func in ("softmax", "log_softmax"):
            n = int(xq.shape[-1]) if xq.shape else 1
            log = func == "log_softmax"
            t = softmax_tables(xq.type.union(), n, (0, 1, TABLE_F), TABLE_F, (0, 1, TABLE_F), log=log)
            exp = self.const(t["exp"], FixedType.uniform(t["exp"].shape, *t["exp_kif"]), f"{name}_exp")
            inv = self.const(t["inv"], FixedType.uniform(t["inv"].shape, *t["inv_kif"]), f"{name}_inv")
            return self.add(OpKind.SOFTMAX, [xq, exp, inv], name, inv_in=t["inv_in"], log=log)
        k, i, _ = TABLE_FUNCTIONS[func][2]
        data, tt = lut_table(func, xq.type.union(), (k, i, TABLE_F), RoundMode.RND, OverflowMode.SAT)
        table = self.g.const_mantissa(data, tt, name=f"{name}_table")
        return self.add(OpKind.LUT, [xq, table], name, func=func)

    def prelu(self, x: Value, alpha: Any, name: str) -> Value:
        """The prelu op on a quantized ``x``; the slopes rounded like weights."""
        xq = self.act(x, f"{name}_iq")
        return self.add(OpKind.PRELU, [xq, self.weight(alpha, f"{name}_alpha")], name)

    def activation(self, layer: Any, y: Value) -> Value:
        """The activation fused into a dense / conv layer, after its result ``y``."""
        act = layer_activation(layer)
        if act == "relu":
            return self.add(OpKind.RELU, [y], f"{layer.name}_relu")
        if act == LEAKY:
            return self.prelu(y, np.array([LEAKY_SLOPE]), f"{layer.name}_{act}")
        if act in TABLES:
            return self.table(act, y, f"{layer.name}_{act}")
        return y


def _wide(f: int) -> int:
    """Integer bits that never overflow in rounding (a float64-exact width of 52 bits)."""
    return 51 - f


# ---------------------------------------------------------------- converters
def _depthwise(em: PlainEmitter, layer: Any, x: Value, kernel: Any, bias: Any, name: str) -> Value:
    """A depthwise convolution of the quantized ``x`` (kernel ``[*k, C, M]`` rounded like weights)."""
    q = quantize(to_numpy(kernel), 1, _wide(em.weight_f), em.weight_f, round="RND")
    t = FixedType.covering(q, q, np.full(q.shape, em.weight_f)).canonical()
    operands = [x, depthwise_kernel(em, q, t, f"{name}_w")]
    if bias is not None:
        operands.append(em.weight(bias, f"{name}_b"))
    one_d = isinstance(layer, (L.DepthwiseConv1D, L.SeparableConv1D))
    kind = OpKind.DEPTHWISE_CONV1D if one_d else OpKind.DEPTHWISE_CONV2D
    return em.add(kind, operands, name, **conv_attrs(layer, x.shape))


def _affine(em: PlainEmitter, node: KNode, xs: list[Value]) -> list[Value]:
    layer = node.layer
    x = em.act(xs[0], f"{layer.name}_iq")
    if isinstance(layer, DEPTHWISE):
        bias = layer.bias if layer.use_bias else None
        return [em.activation(layer, _depthwise(em, layer, x, layer.kernel, bias, layer.name))]
    if isinstance(layer, SEPARABLE):  # depthwise, its output quantized, then the pointwise convolution
        h = _depthwise(em, layer, x, layer.depthwise_kernel, None, f"{layer.name}_dw")
        operands = [em.act(h, f"{layer.name}_pw_iq"), em.weight(layer.pointwise_kernel, f"{layer.name}_w")]
        if layer.use_bias:
            operands.append(em.weight(layer.bias, f"{layer.name}_b"))
        kind = OpKind.CONV1D if isinstance(layer, L.SeparableConv1D) else OpKind.CONV2D
        y = em.add(kind, operands, layer.name, stride=(1,) * (len(x.shape) - 1), pad=[(0, 0)] * (len(x.shape) - 1))
        return [em.activation(layer, y)]
    if isinstance(layer, L.Dense):
        w = em.weight(layer.kernel, f"{layer.name}_w")
    else:
        q = quantize(to_numpy(layer.kernel), 1, _wide(em.weight_f), em.weight_f, round="RND")
        t = FixedType.covering(q, q, np.full(q.shape, em.weight_f)).canonical()
        w = em.const(*dilated(q, t, dilation_of(layer)), f"{layer.name}_w")
    operands = [x, w]
    if layer.use_bias:
        operands.append(em.weight(layer.bias, f"{layer.name}_b"))
    if isinstance(layer, L.Dense):
        y = em.add(OpKind.DENSE, operands, layer.name)
    else:
        kind = OpKind.CONV1D if isinstance(layer, L.Conv1D) else OpKind.CONV2D
        y = em.add(kind, operands, layer.name, **conv_attrs(layer, x.shape))
    return [em.activation(layer, y)]


def _batchnorm(em: PlainEmitter, node: KNode, xs: list[Value]) -> list[Value]:
    layer = node.layer
    x = em.act(xs[0], f"{layer.name}_iq")
    var, mean = to_numpy(layer.moving_variance), to_numpy(layer.moving_mean)
    gamma = to_numpy(layer.gamma) if layer.gamma is not None else 1.0
    scale = gamma / np.sqrt(var + float(layer.epsilon))
    offset = -mean * scale + (to_numpy(layer.beta) if layer.beta is not None else 0.0)
    s, o = em.weight(scale, f"{layer.name}_scale"), em.weight(offset, f"{layer.name}_offset")
    return [em.add(OpKind.BATCHNORM, [x, s, o], layer.name)]


def _merge(em: PlainEmitter, node: KNode, xs: list[Value]) -> list[Value]:
    layer = node.layer
    qs = [em.act(x, f"{layer.name}_iq{n}") for n, x in enumerate(xs)]
    return [merge_values(em, MERGE_OPS[type(layer)], qs, layer.name)]


def _avgpool(em: PlainEmitter, node: KNode, xs: list[Value]) -> list[Value]:
    """The exact window sum over the count, truncated to the input's union type plus
    ``ceil(log2(count))`` fractional bits (as the shim's average pool)."""
    layer = node.layer
    x = em.act(xs[0], f"{layer.name}_iq")
    is_global = isinstance(layer, (L.GlobalAveragePooling1D, L.GlobalAveragePooling2D))
    in_shape = x.shape
    if is_global:
        count = int(np.prod(in_shape[:-1]))
    else:
        counts = pool_counts(in_shape[:-1], tuple(layer.pool_size), tuple(layer.strides), layer.padding)
        count = int(np.max(counts))
    extra = int(math.ceil(math.log2(max(count, 1))))
    attrs = None if is_global else window_attrs(layer, in_shape)
    return [quantized_avgpool(em, x, layer.name, em.shape(node.outputs[0]), extra, attrs)]


def _prelu(em: PlainEmitter, node: KNode, xs: list[Value]) -> list[Value]:
    layer = node.layer
    slope = prelu_slope(layer)
    alpha = to_numpy(layer.alpha) if slope is None else np.array([slope])
    return [em.prelu(xs[0], alpha, node.name)]


def _activation(em: PlainEmitter, node: KNode, xs: list[Value]) -> list[Value]:
    if is_prelu(node.layer):
        return _prelu(em, node, xs)
    act = layer_activation(node.layer)
    if act in TABLES:
        return [em.table(act, xs[0], node.name)]
    return PLAIN_CONVERTERS[type(node.layer)](em, node, xs)


PLAIN_FLOAT_CONVERTERS: dict[type, Converter] = {
    **PLAIN_CONVERTERS,
    L.Dense: _affine,  # type: ignore[dict-item]
    L.Conv1D: _affine,  # type: ignore[dict-item]
    L.Conv2D: _affine,  # type: ignore[dict-item]
    L.DepthwiseConv1D: _affine,  # type: ignore[dict-item]
    L.DepthwiseConv2D: _affine,  # type: ignore[dict-item]
    L.SeparableConv1D: _affine,  # type: ignore[dict-item]
    L.SeparableConv2D: _affine,  # type: ignore[dict-item]
    L.BatchNormalization: _batchnorm,  # type: ignore[dict-item]
    L.Add: _merge,  # type: ignore[dict-item]
    L.Subtract: _merge,  # type: ignore[dict-item]
    L.Multiply: _merge,  # type: ignore[dict-item]
    L.Maximum: _merge,  # type: ignore[dict-item]
    L.Minimum: _merge,  # type: ignore[dict-item]
    L.Average: _merge,  # type: ignore[dict-item]
    L.AveragePooling1D: _avgpool,  # type: ignore[dict-item]
    L.AveragePooling2D: _avgpool,  # type: ignore[dict-item]
    L.GlobalAveragePooling1D: _avgpool,  # type: ignore[dict-item]
    L.GlobalAveragePooling2D: _avgpool,  # type: ignore[dict-item]
    L.Activation: _activation,  # type: ignore[dict-item]
    L.ELU: _activation,  # type: ignore[dict-item]
    L.ReLU: _activation,  # type: ignore[dict-item]
    L.LeakyReLU: _prelu,  # type: ignore[dict-item]
    L.PReLU: _prelu,  # type: ignore[dict-item]
    L.Softmax: _activation,  # type: ignore[dict-item]
}
"""Float layer class -> converter (movers and identities as for quantized models)."""


def import_plain(kg: KGraph, options: dict[str, Any], data: Any) -> Graph:
    """The graph of the float model walked into ``kg`` (see the module docstring)."""
    k, i, f = (int(v) for v in options.get("default_type") or DEFAULT_TYPE)
    wf = int(options.get("weight_f", DEFAULT_WEIGHT_F))
    arrays = None
    if data is not None:
        items = data if isinstance(data, (list, tuple)) else [data]
        arrays = [np.asarray(a, dtype=np.float64) for a in items]
    how = (
        f"integer bits from the range of {len(arrays[0])} calibration samples plus {POLICY.margin_bits} "
        f"guard bit(s) ({POLICY.overflow.name})"
        if arrays is not None
        else f"i={i} (SAT)"
    )
    warnings.warn(
        f"model {kg.name!r} is a float model without fixed-point types: hgqir imports it with every "
        f"activation quantized to f={f}, {how}, RND, and weights rounded to {wf} fractional bits; "
        "its results differ from the float model's. Pass default_type=(k, i, f) / weight_f=..., or train "
        "a shim with hgqir.quantize_keras.",
        PlainImportWarning,
        stacklevel=4,
    )
    g = PlainEmitter(kg, k, i, f, wf, arrays).run()
    g.verify()
    return g
