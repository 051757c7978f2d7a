"""Learnable fixed-point quantizers of the Keras shim (the HGQ method).

A quantizer holds per-element (or per-channel, per-tensor) real-valued parameters ``f``
(fractional bits), ``i`` (integer bits) and ``k`` (sign bit, not trained). The integer values
used are ``round(f)`` and ``round(i)`` (ties up), with straight-through gradients.

Forward, in units of one LSB: ``q = round(x * 2**f)`` with the rounding mode, then overflow
into ``k + i + f`` bits (WRAP / SAT / SAT_SYM / SAT_ZERO), ``xq = q * 2**-f``; an element whose
width ``k + i + f <= 0`` is exactly 0. In inference mode every step is exact in float64 and
reproduces :func:`hgqir.quantize` bit for bit.

Gradients (training mode): straight-through for ``x``; for ``f`` the surrogate
``d xq / d f = -ln2 * (xq - x)``, which falls out of differentiating ``(x*2**f + c) * 2**-f``
with ``c = round(x*2**f) - x*2**f`` held constant; for ``i`` of SAT quantizers the gradient of
the clip bounds. WRAP quantizers do not wrap while training: their ``i`` follows the running
maximum of ``|x|`` (decaying by ``i_decay`` per step) and is fixed by calibration.

Weights use :class:`WeightQuantizer`: only ``f`` is learned, a constant never overflows and its
type is the tightest one holding its value (``k`` = value < 0, ``i`` from the magnitude).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from hgqir.fixed import FixedType, OverflowMode, RoundMode

from .qmath import (
    ceil_log2,
    exact_round,
    exp2,
    param_shape,
    quantize_exact,
    read,
    round_param,
    ste_round,
    train_bits,
    train_quantize,
    train_round,
    train_round_weights,
    train_weight_bits,
)


@keras.saving.register_keras_serializable(package="hgqir")
class ClipConstraint(keras.constraints.Constraint):
    """Keeps a bit-width parameter inside ``[lo, hi]``."""

    def __init__(self, lo: float, hi: float) -> None:
        self.lo, self.hi = float(lo), float(hi)

    def __call__(self, w: Any) -> Any:
        return ops.clip(w, self.lo, self.hi)

    def get_config(self) -> dict[str, Any]:
        return {"lo": self.lo, "hi": self.hi}


class _Trace:
    """Per-parameter-element min / max of the rounded values seen during calibration."""

    def __init__(self) -> None:
        self.lo: np.ndarray | None = None
        self.hi: np.ndarray | None = None

    def update(self, lo: np.ndarray, hi: np.ndarray) -> None:
        self.lo = lo if self.lo is None else np.minimum(self.lo, lo)
        self.hi = hi if self.hi is None else np.maximum(self.hi, hi)


def load_variables(layer: keras.layers.Layer, store: Any) -> None:
    """``load_own_variables`` that also reads files saved before ``f`` moved into a ParamBank.

    Such files hold ``f`` first, then the variables the quantizer still owns, in order.
    """
    own = layer._trainable_variables + layer._non_trainable_variables
    if getattr(layer, "banked", False) and len(store.keys()) == len(own) + 1:
        layer.f.assign(store["0"])
        for n, v in enumerate(own):
            v.assign(store[str(n + 1)])
        return
    keras.layers.Layer.load_own_variables(layer, store)


# ---------------------------------------------------------------- activation quantizer
@keras.saving.register_keras_serializable(package="hgqir")
class Quantizer(keras.layers.Layer):
    """Learnable quantizer of an activation tensor (also the model's input quantizer).

    ``signed=None`` lets calibration choose the sign bit per element (WRAP quantizers); with a
    calibration margin, an element of a value that can be negative (``k0 = 1``) keeps its sign
    bit though the data stayed ``>= 0``, unless ``sign_guard=False`` (model inputs: the data's
    sign; see :mod:`hgqir.frontends.calibration`).
    """

    def __init__(
        self,
        granularity: str = "element",
        round: str = "RND",
        overflow: str = "WRAP",
        signed: bool | None = None,
        k0: float = 1.0,
        i0: float = 2.0,
        f0: float = 6.0,
        i_decay: float = 0.01,
        f_range: tuple[float, float] = (-16.0, 24.0),
        sign_guard: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        param_shape((1,), granularity)  # validates
        self.sign_guard = bool(sign_guard)
        self.granularity = granularity
        self.round_mode = RoundMode.parse(round)
        self.overflow_mode = OverflowMode.parse(overflow)
        self.signed = signed
        self.k0 = float(k0 if signed is None else int(signed))
        self.i0, self.f0, self.i_decay = float(i0), float(f0), float(i_decay)
        self.f_range = (float(f_range[0]), float(f_range[1]))
        self._trace: _Trace | None = None
        self.banked = False  # set by a layer that keeps ``f`` in its ParamBank

    def load_own_variables(self, store: Any) -> None:
        load_variables(self, store)

    @property
    def wraps(self) -> bool:
        return self.overflow_mode is OverflowMode.WRAP

    def build(self, input_shape: Any) -> None:
        self.shape = tuple(int(d) for d in input_shape[1:])
        pshape = param_shape(self.shape, self.granularity)
        self.f_shape = pshape
        const = keras.initializers.Constant
        if not self.banked:
            self.f = self.add_weight(
                name="f", shape=pshape, initializer=const(self.f0), constraint=ClipConstraint(*self.f_range)
            )
        self.i = self.add_weight(
            name="i",
            shape=pshape,
            initializer=const(self.i0),
            trainable=not self.wraps,
            constraint=ClipConstraint(-32.0, 32.0),
        )
        self.k = self.add_weight(name="k", shape=pshape, initializer=const(self.k0), trainable=False)

    def kif(self, train: bool = False, f: Any = None) -> tuple[Any, Any, Any]:
        """``(k, i, f)`` tensors with the integer values used (``f``: the ``f`` tensor, raw or rounded, if at hand).

        ``train=True``: straight-through gradients (``v + sg(round(v) - v)``, which graph
        optimizers may evaluate an ulp off); otherwise exact integers without gradients.
        """
        rnd = ste_round if train else exact_round
        return read(self.k), rnd(read(self.i)), rnd(read(self.f) if f is None else f)

    def call(self, x: Any, training: Any = None, f: Any = None, bits: bool = False) -> Any:
        """Quantize ``x``; ``f``: this quantizer's rounded fractional bits as unpacked by its layer's bank (training).

        ``bits=True`` (training only) returns ``(xq, widths)``: the widths of :meth:`train_bits`
        this call quantized with, from the same fused op (the regularizer's input bits).
        """
        if self._trace is not None:
            return self._record(x, self.kif()[2])
        if training:
            axes = self._reduce_axes(len(x.shape))
            kv, iv = read(self.k), read(self.i)
            fv = self.train_f(f)
            if not self.wraps:
                return train_quantize(x, kv, iv, fv, self.round_mode, self.overflow_mode, axes, bits=bits)
            # WRAP: round only; the same op yields the integer bits this batch needs
            out, need, *widths = train_quantize(x, kv, iv, fv, self.round_mode, None, axes, track=True, bits=bits)
            self.i.assign(ops.maximum(iv - self.i_decay, need))
            return (out, widths[0]) if bits else out
        k, i, f = self.kif()
        return quantize_exact(x, k, i, f, self.round_mode, self.overflow_mode)

    def train_f(self, f: Any = None) -> Any:
        """The rounded ``f`` of a training call: ``f`` as the layer's bank unpacked it, or from ``self.f``."""
        return train_round(read(self.f)) if f is None else f

    def _reduce_axes(self, rank: int) -> tuple[int, ...]:
        if self.granularity == "element":
            return (0,)
        if self.granularity == "channel":
            return tuple(range(rank - 1))
        return tuple(range(rank))

    def bits(self) -> Any:
        """Exact width per parameter element, ``max(k + i + f, 0)`` (reports; no gradient)."""
        k, i, f = self.kif()
        return ops.relu(k + i + f)

    def train_bits(self, f: Any = None) -> Any:
        """:meth:`bits` with fewer graph nodes (the training regularizer)."""
        return train_bits(read(self.k), read(self.i), self.train_f(f))

    # ---------------------------------------------------------- numpy side
    def kif_numpy(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        k = round_param(ops.convert_to_numpy(self.k))
        return k, round_param(ops.convert_to_numpy(self.i)), round_param(np.asarray(self.f))

    def fixed_type(self, shape: tuple[int, ...] | None = None) -> FixedType:
        """The IR type this quantizer produces for a tensor of unbatched ``shape``."""
        shape = self.shape if shape is None else shape
        k, i, f = self.kif_numpy()
        return FixedType(shape, np.broadcast_to(k, shape), np.broadcast_to(i, shape), np.broadcast_to(f, shape))

    # ---------------------------------------------------------- calibration
    def start_trace(self) -> None:
        self._trace = _Trace()

    def _record(self, x: Any, f: Any) -> Any:
        xr = quantize_exact(x, 1.0, 64.0, f, self.round_mode, None)
        arr = ops.convert_to_numpy(xr).astype(np.float64)
        axes = self._reduce_axes(arr.ndim)
        pshape = tuple(self.f_shape)
        assert self._trace is not None
        self._trace.update(arr.min(axis=axes).reshape(pshape), arr.max(axis=axes).reshape(pshape))
        return xr

    def finish_trace(self, margin_bits: int = 0) -> None:
        """Set ``k`` (when ``signed`` is None) and ``i`` of a WRAP quantizer from the traced range,
        widened by ``2**margin_bits`` (integer bits above what the traced values need)."""
        trace, self._trace = self._trace, None
        if trace is None or trace.lo is None or not self.wraps:
            return
        if self.signed is None:
            k = (trace.lo < 0).astype(np.float64)
            if margin_bits and self.sign_guard and self.k0 > 0:
                k = np.where((trace.lo != 0) | (trace.hi != 0), 1.0, k)
        else:
            k = np.full(trace.lo.shape, self.k0)
        f = round_param(np.asarray(self.f))
        lo, hi = trace.lo * 2.0**margin_bits, trace.hi * 2.0**margin_bits
        t = FixedType.covering(np.where(k > 0, np.minimum(lo, -(2.0**-f)), 0.0), hi, f)
        # an element that stayed 0 is pruned: covering gives it width 0 with f = 0, so its
        # integer bits must cancel this quantizer's own f (k is 0 there)
        i = np.where(t.width <= 0, -f, t.i)
        self.k.assign(k.astype(self.k.dtype))
        self.i.assign(np.asarray(i, dtype=np.float64).astype(self.i.dtype))

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(sign_guard=self.sign_guard)
        cfg.update(
            granularity=self.granularity,
            round=self.round_mode.value,
            overflow=self.overflow_mode.value,
            signed=self.signed,
            k0=self.k0,
            i0=self.i0,
            f0=self.f0,
            i_decay=self.i_decay,
            f_range=self.f_range,
        )
        return cfg


# ---------------------------------------------------------------- weight quantizer
@keras.saving.register_keras_serializable(package="hgqir")
class WeightQuantizer(keras.layers.Layer):
    """Learnable rounding of a constant (kernel, bias, batchnorm scale / offset): only ``f`` trains."""

    def __init__(
        self,
        granularity: str = "element",
        round: str = "RND",
        f0: float = 6.0,
        f_range: tuple[float, float] = (-16.0, 24.0),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        param_shape((1,), granularity)
        self.granularity = granularity
        self.round_mode = RoundMode.parse(round)
        self.f0 = float(f0)
        self.f_range = (float(f_range[0]), float(f_range[1]))
        self.banked = False  # set by a layer that keeps ``f`` in its ParamBank

    def build(self, input_shape: Any) -> None:
        self.shape = tuple(int(d) for d in input_shape)
        self.f_shape = param_shape(self.shape, self.granularity)
        if not self.banked:
            self.f = self.add_weight(
                name="f",
                shape=self.f_shape,
                initializer=keras.initializers.Constant(self.f0),
                constraint=ClipConstraint(*self.f_range),
            )

    def load_own_variables(self, store: Any) -> None:
        load_variables(self, store)

    def call(self, w: Any, training: Any = None, f: Any = None) -> Any:
        """Round ``w``; ``f``: the rounded fractional bits as unpacked by the layer's bank (training)."""
        if training:
            return train_round_weights(w, self.train_f(f), self.round_mode, self._axes())
        return quantize_exact(w, 1.0, 64.0, exact_round(read(self.f)), self.round_mode, None)

    def train_bits(self, wq: Any, f: Any = None) -> Any:
        """:meth:`bits` with fewer graph nodes (the training regularizer)."""
        return train_weight_bits(wq, self.train_f(f), self._axes())

    def train_with_bits(self, w: Any, f: Any = None) -> tuple[Any, Any]:
        """Training rounding of ``w`` and the widths of the rounded values, in one fused op.

        The widths are those of :meth:`train_bits` (the regularizer's), computed from the
        rounded integers; their gradient reaches ``f`` where the value is non-zero.
        """
        w = read(w) if isinstance(w, keras.Variable) else w
        return train_round_weights(w, self.train_f(f), self.round_mode, self._axes(), bits=True)

    def train_f(self, f: Any = None) -> Any:
        """The rounded ``f`` of a training call: ``f`` as the layer's bank unpacked it, or from ``self.f``."""
        return train_round(read(self.f)) if f is None else f

    def _axes(self) -> tuple[int, ...]:
        """Axes of the constant that share one parameter (reduced in parameter gradients)."""
        pshape = tuple(self.f_shape)
        return tuple(n for n, a in enumerate(self.shape) if not pshape or pshape[n] != a)

    def bits(self, wq: Any) -> Any:
        """Exact width of the tightest type of each quantized value (0 where it is 0), for reports."""
        f = exact_round(read(self.f)) + ops.zeros_like(wq)
        a = ops.stop_gradient(ops.abs(wq))
        neg = ops.stop_gradient(wq) < 0
        top = ops.where(neg, a, a + exp2(-ops.stop_gradient(f)))
        i = ceil_log2(ops.where(a > 0, top, 1.0))
        width = ops.cast(neg, wq.dtype) + i + f
        return ops.where(a > 0, width, 0.0)

    def quantized_numpy(self, w: Any) -> tuple[np.ndarray, FixedType]:
        """Quantized values (inference) and their tightest per-element types."""
        wq = np.asarray(ops.convert_to_numpy(self.call(ops.convert_to_tensor(w))), dtype=np.float64)
        f = np.broadcast_to(round_param(np.asarray(self.f)), wq.shape)
        return wq, FixedType.covering(wq, wq, f).canonical()

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(granularity=self.granularity, round=self.round_mode.value, f0=self.f0, f_range=self.f_range)
        return cfg
