"""Quantized layers of the Keras shim: dense, convolution, batchnorm, merges, average pooling.

Each layer quantizes its inputs with its own :class:`~hgqir.frontends.keras_quant.Quantizer`
(``iq``), its constants with :class:`~hgqir.frontends.keras_quant.WeightQuantizer`s and then
computes exactly what the matching IR op computes, so that in float64 inference the layer
output equals the interpreter's. ``ebops()`` is the IR's EBOPs rule for the op, written with
differentiable Keras ops (the regularizer).
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from .keras_quant import Quantizer, WeightQuantizer, ceil_log2, exp2

ACTIVATIONS = ("relu", "linear")
"""Activations a quantized layer may fuse (exact); others become separate table layers."""


def make_quantizer(cls: type, cfg: dict[str, Any] | None, name: str) -> Any:
    cfg = dict(cfg or {})
    cfg.setdefault("name", name)
    return cls(**cfg)


def _bits_full(q: Quantizer, dtype: Any) -> Any:
    """The quantizer's widths broadcast to its tensor shape (no batch)."""
    return ops.cast(ops.broadcast_to(q.bits(), q.shape), dtype)


def _act_name(activation: Any) -> str:
    return keras.activations.serialize(activation) if activation is not None else "linear"


# ---------------------------------------------------------------- dense
@keras.saving.register_keras_serializable(package="hgqir")
class QDense(keras.layers.Dense):
    """Dense with quantized input, kernel and bias; ``activation`` is relu or linear."""

    def __init__(self, units: int, activation: Any = None, use_bias: bool = True,
                 iq: dict | None = None, kq: dict | None = None, bq: dict | None = None, **kwargs: Any) -> None:
        super().__init__(units, activation=activation, use_bias=use_bias, **kwargs)
        if _act_name(self.activation) not in ACTIVATIONS:
            raise ValueError(f"QDense fuses only {ACTIVATIONS}; put tables in a QTable layer")
        self.iq = make_quantizer(Quantizer, iq, f"{self.name}_iq")
        self.kq = make_quantizer(WeightQuantizer, kq, f"{self.name}_kq")
        self.bq = make_quantizer(WeightQuantizer, bq, f"{self.name}_bq") if use_bias else None

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        self.iq.build(input_shape)
        self.kq.build(self.kernel.shape)
        if self.bq is not None:
            self.bq.build(self.bias.shape)

    def call(self, x: Any, training: Any = None) -> Any:
        wq = self.kq(self.kernel, training=training)
        y = ops.matmul(self.iq(x, training=training), wq)
        if self.bq is not None:
            y = y + self.bq(self.bias, training=training)
        if training:
            wb = self.kq.train_bits(ops.stop_gradient(wq))
            self.ebops_now = self._cost(ops.broadcast_to(self.iq.train_bits(), self.iq.shape), wb)
        return self.activation(y)

    def _cost(self, xb: Any, wb: Any) -> Any:
        """sum_j bits(x_j) * sum_o bits(w_jo) (x bits summed over leading axes; wb 0 for zero weights)."""
        xb = ops.sum(ops.reshape(xb, (-1, self.kernel.shape[0])), axis=0)
        return ops.sum(xb * ops.sum(wb, axis=1))

    def ebops(self, dtype: Any = None) -> Any:
        """Exact EBOPs of the current types (the IR rule)."""
        dtype = dtype or self.compute_dtype
        wq = self.kq.call(self.kernel)
        return self._cost(_bits_full(self.iq, dtype), ops.cast(self.kq.bits(wq), dtype))

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(iq=self.iq.get_config(), kq=self.kq.get_config(),
                   bq=self.bq.get_config() if self.bq is not None else None)
        return cfg


# ---------------------------------------------------------------- convolution
def conv_pads(in_size: int, kernel: int, stride: int, padding: str) -> tuple[int, int]:
    """Explicit (before, after) padding of Keras/TF 'valid', 'same' and 'causal'."""
    if padding == "valid":
        return (0, 0)
    if padding == "causal":
        return (kernel - 1, 0)
    out = -(-in_size // stride)
    total = max((out - 1) * stride + kernel - in_size, 0)
    return (total // 2, total - total // 2)


class _QConvMixin:
    """Shared quantized convolution (channels-last, no dilation, no groups)."""

    def _init_quantizers(self, iq: dict | None, kq: dict | None, bq: dict | None) -> None:
        if _act_name(self.activation) not in ACTIVATIONS:  # type: ignore[attr-defined]
            raise ValueError(f"quantized convolutions fuse only {ACTIVATIONS}")
        name = self.name  # type: ignore[attr-defined]
        self.iq = make_quantizer(Quantizer, iq, f"{name}_iq")
        self.kq = make_quantizer(WeightQuantizer, kq, f"{name}_kq")
        self.bq = make_quantizer(WeightQuantizer, bq, f"{name}_bq") if self.use_bias else None  # type: ignore[attr-defined]

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)  # type: ignore[misc]
        self.iq.build(input_shape)
        self.kq.build(self.kernel.shape)  # type: ignore[attr-defined]
        if self.bq is not None:
            self.bq.build(self.bias.shape)  # type: ignore[attr-defined]

    def _conv(self, x: Any, kernel: Any) -> Any:
        padding = self.padding  # type: ignore[attr-defined]
        if padding == "causal":
            left = self.kernel_size[0] - 1  # type: ignore[attr-defined]
            x = ops.pad(x, [[0, 0], [left, 0], [0, 0]])
            padding = "valid"
        return ops.conv(x, kernel, strides=list(self.strides), padding=padding)  # type: ignore[attr-defined]

    def call(self, x: Any, training: Any = None) -> Any:
        wq = self.kq(self.kernel, training=training)  # type: ignore[attr-defined]
        y = self._conv(self.iq(x, training=training), wq)
        if self.bq is not None:
            y = y + self.bq(self.bias, training=training)  # type: ignore[attr-defined]
        if training:
            xb = ops.broadcast_to(self.iq.train_bits(), self.iq.shape)[None]
            self.ebops_now = ops.sum(self._conv(xb, self.kq.train_bits(ops.stop_gradient(wq))))
        return self.activation(y)  # type: ignore[attr-defined]

    def ebops(self, dtype: Any = None) -> Any:
        """Sum over output positions of patch bits times non-zero weight bits (the IR rule)."""
        dtype = dtype or self.compute_dtype  # type: ignore[attr-defined]
        xb = _bits_full(self.iq, dtype)[None]
        wq = self.kq.call(self.kernel)  # type: ignore[attr-defined]
        return ops.sum(self._conv(xb, ops.cast(self.kq.bits(wq), dtype)))

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()  # type: ignore[misc]
        cfg.update(iq=self.iq.get_config(), kq=self.kq.get_config(),
                   bq=self.bq.get_config() if self.bq is not None else None)
        return cfg


@keras.saving.register_keras_serializable(package="hgqir")
class QConv1D(_QConvMixin, keras.layers.Conv1D):
    """Conv1D with quantized input, kernel and bias."""

    def __init__(self, filters: int, kernel_size: Any, iq: dict | None = None, kq: dict | None = None,
                 bq: dict | None = None, **kwargs: Any) -> None:
        super().__init__(filters, kernel_size, **kwargs)
        self._init_quantizers(iq, kq, bq)


@keras.saving.register_keras_serializable(package="hgqir")
class QConv2D(_QConvMixin, keras.layers.Conv2D):
    """Conv2D with quantized input, kernel and bias."""

    def __init__(self, filters: int, kernel_size: Any, iq: dict | None = None, kq: dict | None = None,
                 bq: dict | None = None, **kwargs: Any) -> None:
        super().__init__(filters, kernel_size, **kwargs)
        self._init_quantizers(iq, kq, bq)


# ---------------------------------------------------------------- batchnorm
@keras.saving.register_keras_serializable(package="hgqir")
class QBatchNorm(keras.layers.BatchNormalization):
    """BatchNormalization as ``xq * scale_q + offset_q`` (the IR batchnorm op), last axis only."""

    def __init__(self, iq: dict | None = None, sq: dict | None = None, oq: dict | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.iq = make_quantizer(Quantizer, iq, f"{self.name}_iq")
        self.sq = make_quantizer(WeightQuantizer, sq, f"{self.name}_sq")
        self.oq = make_quantizer(WeightQuantizer, oq, f"{self.name}_oq")

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        self.iq.build(input_shape)
        self.sq.build((input_shape[-1],))
        self.oq.build((input_shape[-1],))

    def affine(self, mean: Any, var: Any) -> tuple[Any, Any]:
        """Float per-channel scale and offset from statistics."""
        # sqrt and division round correctly on every backend path (rsqrt may not)
        gamma = self.gamma if self.gamma is not None else 1.0
        scale = gamma / ops.sqrt(var + self.epsilon)
        offset = -mean * scale
        if self.beta is not None:
            offset = offset + self.beta
        return scale, offset

    def call(self, x: Any, training: Any = None, mask: Any = None) -> Any:
        xq = self.iq(x, training=training)
        if training and self.trainable:
            mean, var = ops.moments(xq, axes=tuple(range(len(x.shape) - 1)))
            m = self.momentum
            self.moving_mean.assign(self.moving_mean * m + ops.stop_gradient(mean) * (1.0 - m))
            self.moving_variance.assign(self.moving_variance * m + ops.stop_gradient(var) * (1.0 - m))
        else:
            mean, var = self.moving_mean, self.moving_variance
        scale, offset = self.affine(ops.cast(mean, x.dtype), ops.cast(var, x.dtype))
        sq = self.sq(scale, training=training)
        if training:
            xb = ops.broadcast_to(self.iq.train_bits(), self.iq.shape)
            self.ebops_now = ops.sum(xb * self.sq.train_bits(ops.stop_gradient(sq)))
        return xq * sq + self.oq(offset, training=training)

    def quantized_affine(self) -> tuple[Any, Any]:
        """Inference scale and offset, quantized."""
        scale, offset = self.affine(self.moving_mean, self.moving_variance)
        return self.sq.call(scale), self.oq.call(offset)

    def ebops(self, dtype: Any = None) -> Any:
        dtype = dtype or self.compute_dtype
        scale, _ = self.affine(self.moving_mean, self.moving_variance)
        sb = ops.cast(self.sq.bits(ops.stop_gradient(self.sq.call(scale))), dtype)
        return ops.sum(_bits_full(self.iq, dtype) * sb)

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(iq=self.iq.get_config(), sq=self.sq.get_config(), oq=self.oq.get_config())
        return cfg


# ---------------------------------------------------------------- merges
def _interval(k: Any, i: Any, f: Any) -> tuple[Any, Any, Any, Any]:
    """Range, LSB exponent and width of a type given as k, i, f tensors (pruned: all 0)."""
    width = k + i + f
    live = width > 0
    lo = ops.where(live, -k * exp2(i), 0.0)
    hi = ops.where(live, exp2(i) - exp2(-f), 0.0)
    return lo, hi, ops.where(live, f, -1e6), ops.relu(width)


def _covering(lo: Any, hi: Any, f: Any) -> tuple[Any, Any, Any]:
    """k, i, f of the smallest type holding [lo, hi] with LSB 2**-f (as FixedType.covering)."""
    zero = ops.logical_and(lo == 0, hi == 0)
    f = ops.where(zero, 0.0, f)
    k = ops.cast(lo < 0, lo.dtype)
    top = ops.maximum(hi + exp2(-f), ops.where(k > 0, -lo, 0.0))
    i = ceil_log2(ops.where(zero, 1.0, top))
    return ops.where(zero, 0.0, k), ops.where(zero, 0.0, i), f


@keras.saving.register_keras_serializable(package="hgqir")
class QMerge(keras.layers.Layer):
    """Add, subtract or multiply of quantized inputs (left to right for more than two)."""

    OPS = ("add", "sub", "mul")

    def __init__(self, op: str, n_inputs: int = 2, iqs: list[dict] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if op not in self.OPS:
            raise ValueError(f"QMerge op must be one of {self.OPS}, got {op!r}")
        self.op, self.n_inputs = op, int(n_inputs)
        cfgs = iqs or [None] * self.n_inputs
        self.iqs = [make_quantizer(Quantizer, c, f"{self.name}_iq{n}") for n, c in enumerate(cfgs)]

    def build(self, input_shape: Any) -> None:
        for q, s in zip(self.iqs, input_shape):
            q.build(s)

    def _combine(self, a: Any, b: Any) -> Any:
        return a + b if self.op == "add" else a - b if self.op == "sub" else a * b

    def call(self, xs: Any, training: Any = None) -> Any:
        qs = [q(x, training=training) for q, x in zip(self.iqs, xs)]
        y = qs[0]
        for v in qs[1:]:
            y = self._combine(y, v)
        if training:
            self.ebops_now = self.ebops(train=True)
        return y

    def compute_output_shape(self, input_shape: Any) -> Any:
        dims = [tuple(s[1:]) for s in input_shape]
        return (input_shape[0][0], *np.broadcast_shapes(*dims))

    def ebops(self, dtype: Any = None, train: bool = False) -> Any:
        """IR rules per binary step: add/sub max(bits), mul bits*bits; chained steps use exact types."""
        dtype = dtype or self.compute_dtype
        kifs = [tuple(ops.cast(ops.broadcast_to(t, q.shape), dtype) for t in q.kif(train)) for q in self.iqs]
        total = ops.zeros((), dtype)
        acc = _interval(*kifs[0])
        for n, kif in enumerate(kifs[1:]):
            nxt = _interval(*kif)
            cost = acc[3] * nxt[3] if self.op == "mul" else ops.maximum(acc[3], nxt[3])
            total = total + ops.sum(cost)
            if n + 2 < len(kifs):
                acc = _interval(*[ops.stop_gradient(t) for t in _covering(*self._step(acc, nxt))])
        return total

    def _step(self, a: tuple, b: tuple) -> tuple[Any, Any, Any]:
        if self.op == "add":
            return a[0] + b[0], a[1] + b[1], ops.maximum(a[2], b[2])
        if self.op == "sub":
            return a[0] - b[1], a[1] - b[0], ops.maximum(a[2], b[2])
        cands = [a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1]]
        lo = ops.minimum(ops.minimum(cands[0], cands[1]), ops.minimum(cands[2], cands[3]))
        hi = ops.maximum(ops.maximum(cands[0], cands[1]), ops.maximum(cands[2], cands[3]))
        return lo, hi, a[2] + b[2]

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(op=self.op, n_inputs=self.n_inputs, iqs=[q.get_config() for q in self.iqs])
        return cfg


# ---------------------------------------------------------------- average pooling
def pool_counts(shape: tuple[int, ...], pool: tuple[int, ...], strides: tuple[int, ...], padding: str) -> np.ndarray:
    """Number of real (unpadded) inputs in each window, shape ``[*out_spatial]``."""
    counts = []
    for size, p, s in zip(shape, pool, strides):
        before, after = conv_pads(size, p, s, padding)
        n_out = (size + before + after - p) // s + 1
        starts = np.arange(n_out) * s - before
        counts.append(np.minimum(starts + p, size) - np.maximum(starts, 0))
    grid = counts[0]
    for c in counts[1:]:
        grid = np.multiply.outer(grid, c)
    return np.asarray(grid, dtype=np.int64)


@keras.saving.register_keras_serializable(package="hgqir")
class QAvgPool(keras.layers.Layer):
    """Average pooling (windowed or global) of a quantized input, truncated like the IR op.

    The result has the input's union type with ``ceil(log2(n))`` more fractional bits, ``n``
    the largest window count; with power-of-two windows nothing is lost.
    """

    def __init__(self, rank: int, pool_size: Any = None, strides: Any = None, padding: str = "valid",
                 is_global: bool = False, iq: dict | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rank, self.is_global, self.padding = int(rank), bool(is_global), padding
        self.pool_size = tuple(pool_size) if pool_size is not None else None
        self.strides = tuple(strides) if strides is not None else self.pool_size
        self.iq = make_quantizer(Quantizer, iq, f"{self.name}_iq")

    def build(self, input_shape: Any) -> None:
        self.iq.build(input_shape)
        spatial = tuple(int(d) for d in input_shape[1:-1])
        if self.is_global:
            self.counts = np.array(math.prod(spatial), dtype=np.int64)
        else:
            self.counts = pool_counts(spatial, self.pool_size, self.strides, self.padding)
        self.extra = int(math.ceil(math.log2(max(int(self.counts.max()), 1))))

    def _pool(self, x: Any) -> Any:
        if self.is_global:
            return ops.mean(x, axis=tuple(range(1, self.rank + 1)))
        return ops.average_pool(x, self.pool_size, self.strides, self.padding)

    def union_f(self) -> Any:
        """Largest fractional bits over the input quantizer's live elements (0 if none is live)."""
        k, i, f = (ops.stop_gradient(ops.broadcast_to(t, self.iq.shape)) for t in self.iq.kif())
        live = k + i + f > 0
        return ops.where(ops.any(live), ops.max(ops.where(live, f, -1e6)), 0.0)

    def call(self, x: Any, training: Any = None) -> Any:
        xq = self.iq(x, training=training)
        avg = self._pool(xq)
        if training:
            return avg
        fu = self.union_f()
        counts = ops.cast(ops.convert_to_tensor(self.counts[..., None]), avg.dtype)
        num = ops.round(avg * counts * exp2(fu)) * float(2**self.extra)
        q = ops.floor(num / counts)
        # exact floor division even if a graph optimizer turns / into * reciprocal
        q = ops.where((q + 1.0) * counts <= num, q + 1.0, ops.where(q * counts > num, q - 1.0, q))
        return q * exp2(-(fu + self.extra))

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(rank=self.rank, pool_size=self.pool_size, strides=self.strides, padding=self.padding,
                   is_global=self.is_global, iq=self.iq.get_config())
        return cfg
