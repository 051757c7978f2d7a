"""Quantized layers of the Keras shim: dense, convolution, batchnorm, merges, average pooling.

Each layer quantizes its inputs with its own :class:`~hgqir.frontends.keras.shim.quant.Quantizer`
(``iq``), its constants with :class:`~hgqir.frontends.keras.shim.quant.WeightQuantizer`s and then
computes exactly what the matching IR op computes, so that in float64 inference the layer
output equals the interpreter's. ``ebops()`` is the IR's EBOPs rule for the op, written with
differentiable Keras ops (the regularizer).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from . import accel
from .qmath import train_dense_ebops
from .quant import Quantizer, WeightQuantizer

ACTIVATIONS = ("relu", "linear")
"""Activations a quantized layer may fuse (exact); others become separate table layers."""


def make_quantizer(cls: type, cfg: dict[str, Any] | None, name: str) -> Any:
    cfg = dict(cfg or {})
    cfg.setdefault("name", name)
    return cls(**cfg)


def make_bank(name: str, quantizers: list[Any]) -> accel.Bank:
    """The bank of ``quantizers`` (attached in the owner's ``build``): see :mod:`.accel`."""
    return accel.make_bank(name, quantizers)


def layer_quantizers(layer: Any) -> list[Any]:
    """Input, kernel and (if any) bias quantizer of a dense or conv layer, in bank order."""
    return [layer.iq, layer.kq] + ([layer.bq] if layer.bq is not None else [])


def _bits_full(q: Quantizer, dtype: Any) -> Any:
    """The quantizer's widths broadcast to its tensor shape (no batch)."""
    return ops.cast(_full(q.bits(), q.shape), dtype)


def _full(t: Any, shape: tuple[int, ...]) -> Any:
    return t if tuple(t.shape) == tuple(shape) else ops.broadcast_to(t, shape)


def _act_name(activation: Any) -> str:
    return keras.activations.serialize(activation) if activation is not None else "linear"


# ---------------------------------------------------------------- dense
@keras.saving.register_keras_serializable(package="hgqir")
class QDense(keras.layers.Dense):
    """Dense with quantized input, kernel and bias; ``activation`` is relu or linear."""

    def __init__(
        self,
        units: int,
        activation: Any = None,
        use_bias: bool = True,
        iq: dict | None = None,
        kq: dict | None = None,
        bq: dict | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(units, activation=activation, use_bias=use_bias, **kwargs)
        if _act_name(self.activation) not in ACTIVATIONS:
            raise ValueError(f"QDense fuses only {ACTIVATIONS}; put tables in a QTable layer")
        self.iq = make_quantizer(Quantizer, iq, f"{self.name}_iq")
        self.kq = make_quantizer(WeightQuantizer, kq, f"{self.name}_kq")
        self.bq = make_quantizer(WeightQuantizer, bq, f"{self.name}_bq") if use_bias else None
        self.fbank = make_bank(self.name, layer_quantizers(self))

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        self.iq.build(input_shape)
        self.kq.build(self.kernel.shape)
        if self.bq is not None:
            self.bq.build(self.bias.shape)
        self.fbank.attach(layer_quantizers(self))

    def call(self, x: Any, training: Any = None) -> Any:
        fi, fk, *fb = self.fbank.split(training)
        if training:  # the input widths come from iq's op (the integer bits it quantized with)
            wq, wb = self.kq.train_with_bits(self.kernel, f=fk)
            xq, xb = self.iq(x, training=True, f=fi, bits=True)
            self.ebops_now = train_dense_ebops(xb, wb, self.iq.shape)
        else:
            wq = self.kq(self.kernel, training=training)
            xq = self.iq(x, training=training)
        y = ops.matmul(xq, wq)
        if self.bq is not None:
            y = ops.add(y, self.bq(self.bias, training=training, f=fb[0]))  # BiasAdd on TensorFlow
        return self.activation(y)

    def _cost(self, xb: Any, wb: Any) -> Any:
        """sum_j bits(x_j) * sum_o bits(w_jo) (x bits summed over leading axes; wb 0 for zero weights)."""
        if len(xb.shape) > 1:
            xb = ops.sum(ops.reshape(xb, (-1, self.kernel.shape[0])), axis=0)
        return ops.sum(xb * ops.sum(wb, axis=1))

    def ebops(self, dtype: Any = None) -> Any:
        """Exact EBOPs of the current types (the IR rule)."""
        dtype = dtype or self.compute_dtype
        wq = self.kq.call(self.kernel)
        return self._cost(_bits_full(self.iq, dtype), ops.cast(self.kq.bits(wq), dtype))

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(
            iq=self.iq.get_config(), kq=self.kq.get_config(), bq=self.bq.get_config() if self.bq is not None else None
        )
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
    """Shared quantized convolution (channels-last, any dilation, no groups)."""

    def __init__(
        self,
        filters: int,
        kernel_size: Any,
        iq: dict | None = None,
        kq: dict | None = None,
        bq: dict | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(filters, kernel_size, **kwargs)
        self._init_quantizers(iq, kq, bq)

    def _init_quantizers(self, iq: dict | None, kq: dict | None, bq: dict | None) -> None:
        if _act_name(self.activation) not in ACTIVATIONS:  # type: ignore[attr-defined]
            raise ValueError(f"quantized convolutions fuse only {ACTIVATIONS}")
        name = self.name  # type: ignore[attr-defined]
        self.iq = make_quantizer(Quantizer, iq, f"{name}_iq")
        self.kq = make_quantizer(WeightQuantizer, kq, f"{name}_kq")
        self.bq = make_quantizer(WeightQuantizer, bq, f"{name}_bq") if self.use_bias else None  # type: ignore[attr-defined]
        self.fbank = make_bank(name, layer_quantizers(self))

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)  # type: ignore[misc]
        self.iq.build(input_shape)
        self.kq.build(self.kernel.shape)  # type: ignore[attr-defined]
        if self.bq is not None:
            self.bq.build(self.bias.shape)  # type: ignore[attr-defined]
        self.fbank.attach(layer_quantizers(self))

    def _conv(self, x: Any, kernel: Any) -> Any:
        padding = self.padding  # type: ignore[attr-defined]
        rates = tuple(self.dilation_rate)  # type: ignore[attr-defined]
        if padding == "causal":
            left = (self.kernel_size[0] - 1) * rates[0]  # type: ignore[attr-defined]
            x = ops.pad(x, [[0, 0], [left, 0], [0, 0]])
            padding = "valid"
        return ops.conv(x, kernel, strides=list(self.strides), padding=padding, dilation_rate=rates)  # type: ignore[attr-defined]

    def call(self, x: Any, training: Any = None) -> Any:
        fi, fk, *fb = self.fbank.split(training)
        if training:
            wq, wb = self.kq.train_with_bits(self.kernel, f=fk)  # type: ignore[attr-defined]
        else:
            wq = self.kq(self.kernel, training=training)  # type: ignore[attr-defined]
        y = self._conv(self.iq(x, training=training, f=fi), wq)
        if self.bq is not None:
            y = ops.add(y, self.bq(self.bias, training=training, f=fb[0]))  # BiasAdd on TF  # type: ignore[attr-defined]
        if training:
            xb = _full(self.iq.train_bits(f=fi), self.iq.shape)[None]
            self.ebops_now = ops.sum(self._conv(xb, wb))
        return self.activation(y)  # type: ignore[attr-defined]

    def ebops(self, dtype: Any = None) -> Any:
        """Sum over output positions of patch bits times non-zero weight bits (the IR rule)."""
        dtype = dtype or self.compute_dtype  # type: ignore[attr-defined]
        xb = _bits_full(self.iq, dtype)[None]
        wq = self.kq.call(self.kernel)  # type: ignore[attr-defined]
        return ops.sum(self._conv(xb, ops.cast(self.kq.bits(wq), dtype)))

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()  # type: ignore[misc]
        cfg.update(
            iq=self.iq.get_config(), kq=self.kq.get_config(), bq=self.bq.get_config() if self.bq is not None else None
        )
        return cfg


@keras.saving.register_keras_serializable(package="hgqir")
class QConv1D(_QConvMixin, keras.layers.Conv1D):
    """Conv1D with quantized input, kernel and bias."""


@keras.saving.register_keras_serializable(package="hgqir")
class QConv2D(_QConvMixin, keras.layers.Conv2D):
    """Conv2D with quantized input, kernel and bias."""


class _QDepthwiseMixin(_QConvMixin):
    """Quantized depthwise convolution (kernel ``[*k, C, M]``): the IR depthwise op."""

    def __init__(
        self,
        kernel_size: Any,
        iq: dict | None = None,
        kq: dict | None = None,
        bq: dict | None = None,
        **kwargs: Any,
    ) -> None:
        super(_QConvMixin, self).__init__(kernel_size, **kwargs)  # the Keras layer's own __init__
        self._init_quantizers(iq, kq, bq)

    def _conv(self, x: Any, kernel: Any) -> Any:
        return ops.depthwise_conv(x, kernel, strides=tuple(self.strides), padding=self.padding)  # type: ignore[attr-defined]


@keras.saving.register_keras_serializable(package="hgqir")
class QDepthwiseConv1D(_QDepthwiseMixin, keras.layers.DepthwiseConv1D):
    """DepthwiseConv1D with quantized input, kernel and bias."""


@keras.saving.register_keras_serializable(package="hgqir")
class QDepthwiseConv2D(_QDepthwiseMixin, keras.layers.DepthwiseConv2D):
    """DepthwiseConv2D with quantized input, kernel and bias."""


# ---------------------------------------------------------------- batchnorm
@keras.saving.register_keras_serializable(package="hgqir")
class QBatchNorm(keras.layers.BatchNormalization):
    """BatchNormalization as ``xq * scale_q + offset_q`` (the IR batchnorm op), last axis only."""

    def __init__(self, iq: dict | None = None, sq: dict | None = None, oq: dict | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.iq = make_quantizer(Quantizer, iq, f"{self.name}_iq")
        self.sq = make_quantizer(WeightQuantizer, sq, f"{self.name}_sq")
        self.oq = make_quantizer(WeightQuantizer, oq, f"{self.name}_oq")
        self.fbank = make_bank(self.name, [self.iq, self.sq, self.oq])

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        self.iq.build(input_shape)
        self.sq.build((input_shape[-1],))
        self.oq.build((input_shape[-1],))
        self.fbank.attach([self.iq, self.sq, self.oq])

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
        fi, fs, fo = self.fbank.split(training)
        xq = self.iq(x, training=training, f=fi)
        if training and self.trainable:
            mean, var = ops.moments(xq, axes=tuple(range(len(x.shape) - 1)))
            m = self.momentum
            self.moving_mean.assign(self.moving_mean * m + ops.stop_gradient(mean) * (1.0 - m))
            self.moving_variance.assign(self.moving_variance * m + ops.stop_gradient(var) * (1.0 - m))
        else:
            mean, var = self.moving_mean, self.moving_variance
        scale, offset = self.affine(ops.cast(mean, x.dtype), ops.cast(var, x.dtype))
        if training:
            sq, sb = self.sq.train_with_bits(scale, f=fs)
            xb = _full(self.iq.train_bits(f=fi), self.iq.shape)
            self.ebops_now = ops.sum(xb * sb)
        else:
            sq = self.sq(scale, training=training)
        return xq * sq + self.oq(offset, training=training, f=fo)

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


# ---------------------------------------------------------------- prelu (LeakyReLU, PReLU)
@keras.saving.register_keras_serializable(package="hgqir")
class QPReLU(keras.layers.Layer):
    """``xq`` where ``xq >= 0``, ``alpha_q * xq`` below: the IR prelu op.

    ``alpha`` has ``alpha_shape`` (broadcast to the input without its batch axis): ``(1,)`` for
    LeakyReLU's one slope (``trainable_alpha=False``), the PReLU weight's shape otherwise. Its
    quantizer ``aq`` learns its bits like a weight's.
    """

    def __init__(
        self,
        alpha_shape: Any = (1,),
        alpha_init: float = 0.3,
        trainable_alpha: bool = True,
        iq: dict | None = None,
        aq: dict | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.alpha_shape = tuple(int(d) for d in alpha_shape)
        self.alpha_init = float(alpha_init)
        self.trainable_alpha = bool(trainable_alpha)
        self.iq = make_quantizer(Quantizer, iq, f"{self.name}_iq")
        self.aq = make_quantizer(WeightQuantizer, aq, f"{self.name}_aq")
        self.fbank = make_bank(self.name, [self.iq, self.aq])

    def build(self, input_shape: Any) -> None:
        self.iq.build(input_shape)
        self.alpha = self.add_weight(
            name="alpha",
            shape=self.alpha_shape,
            initializer=keras.initializers.Constant(self.alpha_init),
            trainable=self.trainable_alpha,
        )
        self.aq.build(self.alpha_shape)
        self.fbank.attach([self.iq, self.aq])

    def _cost(self, xb: Any, ab: Any) -> Any:
        """``sum bits(x) * bits(alpha)`` over the input's elements (the IR's prelu EBOPs)."""
        return ops.sum(xb * ops.broadcast_to(ab, xb.shape))

    def call(self, x: Any, training: Any = None) -> Any:
        fi, fa = self.fbank.split(training)
        xq = self.iq(x, training=training, f=fi)
        if training:
            aq, ab = self.aq.train_with_bits(self.alpha, f=fa)
            self.ebops_now = self._cost(_full(self.iq.train_bits(f=fi), self.iq.shape), ab)
        else:
            aq = self.aq(self.alpha, training=training)
        return ops.where(xq >= 0, xq, xq * aq)

    def ebops(self, dtype: Any = None) -> Any:
        dtype = dtype or self.compute_dtype
        ab = ops.cast(self.aq.bits(ops.stop_gradient(self.aq.call(self.alpha))), dtype)
        return self._cost(_bits_full(self.iq, dtype), ab)

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(
            alpha_shape=self.alpha_shape,
            alpha_init=self.alpha_init,
            trainable_alpha=self.trainable_alpha,
            iq=self.iq.get_config(),
            aq=self.aq.get_config(),
        )
        return cfg
