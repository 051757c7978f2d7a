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

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from hgqir.fixed import FixedType, OverflowMode, RoundMode

GRANULARITIES = ("element", "channel", "tensor")
SAT_MODES = (OverflowMode.SAT, OverflowMode.SAT_SYM, OverflowMode.SAT_ZERO)


# ---------------------------------------------------------------- exact elementwise math
def exp2(e: Any) -> Any:
    """``2**e`` for integer-valued ``e`` (exact)."""
    return ops.power(2.0, e)


def read(v: Any) -> Any:
    """A tensor with a variable's current value (Keras' convert_to_tensor returns the variable)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.convert_to_tensor(v.value)
    return ops.convert_to_tensor(v)


def exact_round(v: Any) -> Any:
    """``floor(v + 0.5)``: the integer a bit-width parameter stands for (no gradient)."""
    return ops.floor(v + 0.5)


def ste_round(v: Any) -> Any:
    """``floor(v + 0.5)`` forward, identity gradient."""
    return v + ops.stop_gradient(ops.floor(v + 0.5) - v)


def round_param(v: Any) -> np.ndarray:
    """The integer a parameter stands for (same rule as :func:`ste_round`), as numpy int64."""
    return np.floor(np.asarray(v, dtype=np.float64) + 0.5).astype(np.int64)


def ceil_log2(v: Any) -> Any:
    """Exact ``ceil(log2(v))`` for ``v > 0`` (backend log2 is not exact on powers of two)."""
    c = ops.ceil(ops.log2(v))
    c = ops.where(exp2(c - 1.0) >= v, c - 1.0, c)
    return ops.where(exp2(c) < v, c + 1.0, c)


def round_lsb(v: Any, mode: RoundMode) -> Any:
    """Round ``v`` (in LSB units) to an integer exactly, as ap_fixed's rounding ``mode``."""
    fl = ops.floor(v)
    if mode is RoundMode.TRN:
        return fl
    frac = v - fl  # exact
    neg = v < 0
    if mode is RoundMode.TRN_ZERO:
        up = ops.logical_and(neg, frac != 0)
    elif mode is RoundMode.RND:
        up = frac >= 0.5
    elif mode is RoundMode.RND_MIN_INF:
        up = frac > 0.5
    elif mode is RoundMode.RND_ZERO:
        up = ops.logical_or(frac > 0.5, ops.logical_and(frac == 0.5, neg))
    elif mode is RoundMode.RND_INF:
        up = ops.logical_or(frac > 0.5, ops.logical_and(frac == 0.5, ops.logical_not(neg)))
    else:  # RND_CONV
        odd = ops.floor(fl * 0.5) * 2.0 != fl
        up = ops.logical_or(frac > 0.5, ops.logical_and(frac == 0.5, odd))
    return fl + ops.cast(up, v.dtype)


def overflow_lsb(q: Any, k: Any, width: Any, mode: OverflowMode) -> Any:
    """Overflow of integer ``q`` (LSB units) into ``width`` bits, sign bit ``k``."""
    safe = ops.maximum(width, 1.0)
    modulus = exp2(safe)
    hi = exp2(safe - k) - 1.0
    lo = ops.where(k > 0, -exp2(safe - 1.0), 0.0)
    if mode is OverflowMode.WRAP:
        r = q - modulus * ops.floor(q / modulus)
        return ops.where(ops.logical_and(k > 0, r > hi), r - modulus, r)
    if mode is OverflowMode.SAT_SYM:
        # as ap_fixed (and hgqir.quantize): a 1-bit signed type keeps -1 LSB, so it saturates like SAT
        lo = ops.where(ops.logical_and(k > 0, safe > 1), -hi, lo)
    if mode is OverflowMode.SAT_ZERO:
        return ops.where(ops.logical_or(q < lo, q > hi), 0.0, q)
    return ops.where(q > hi, hi, ops.where(q < lo, lo, q))


def quantize_exact(x: Any, k: Any, i: Any, f: Any, rmode: RoundMode, omode: OverflowMode | None) -> Any:
    """Inference quantization, bit-exact with :func:`hgqir.quantize` (``omode=None``: no overflow)."""
    width = k + i + f
    scale = exp2(f)
    q = round_lsb(x * scale, rmode)
    if omode is not None:
        q = overflow_lsb(q, k, width, omode)
    return ops.where(width > 0, q / scale, 0.0)


def quantize_train(x: Any, k: Any, i: Any, f: Any, rmode: RoundMode, omode: OverflowMode | None) -> Any:
    """Training quantization with plain autodiff: ``i`` and ``f`` are already integer-valued.

    Used where speed does not matter (table outputs); the quantizer layers use the fused
    :func:`train_quantize` below.
    """
    scale = exp2(f)
    if omode in SAT_MODES:
        hi = exp2(i) - 1.0 / scale
        lo = -k * (hi if omode is OverflowMode.SAT_SYM else exp2(i))
        x = ops.where(x > hi, hi, ops.where(x < lo, lo, x))
    xs = x * scale
    q = round_lsb(ops.stop_gradient(xs), rmode)
    xq = (xs + ops.stop_gradient(q - xs)) / scale
    return ops.where(k + i + f > 0, xq, 0.0)


def _round_fast(v: Any, mode: RoundMode) -> Any:
    """Training rounding: ``floor(v + 0.5)`` for RND (one op less), exact rules otherwise."""
    return ops.floor(v + 0.5) if mode is RoundMode.RND else round_lsb(v, mode)


def _reduce_to(t: Any, axes: tuple[int, ...], shape: tuple[int, ...]) -> Any:
    return ops.reshape(ops.sum(t, axis=axes), shape)


def train_quantize(x: Any, k: Any, i_var: Any, f_var: Any, rmode: RoundMode, omode: OverflowMode | None,
                   axes: tuple[int, ...]) -> Any:
    """Training forward and HGQ gradients in one fused op (few graph nodes, hand-written backward).

    ``i_var`` and ``f_var`` are the raw parameters (rounded inside, gradients straight through);
    ``axes`` reduce a gradient of ``x``'s shape to the parameter shape. ``omode=None`` rounds
    only (WRAP while training); SAT modes clip first with gradients to ``i`` and ``f``.
    """
    pshape = tuple(f_var.shape)
    ln2 = math.log(2.0)

    @ops.custom_gradient
    def fn(x: Any, k: Any, i_var: Any, f_var: Any) -> Any:
        f = ops.floor(f_var + 0.5)
        i = ops.floor(i_var + 0.5)
        scale = exp2(f)
        live = k + i + f > 0
        xc = x
        if omode in SAT_MODES:
            top = exp2(i)
            hi = top - 1.0 / scale
            lo = -k * (hi if omode is OverflowMode.SAT_SYM else top)
            xc = ops.minimum(ops.maximum(x, lo), hi)
        xq = _round_fast(xc * scale, rmode) / scale
        out = ops.where(live, xq, 0.0)

        def grad(*args: Any, upstream: Any = None) -> Any:
            g = ops.where(live, args[0] if upstream is None else upstream, 0.0)
            dk = ops.zeros_like(k)
            if omode not in SAT_MODES:
                df = _reduce_to(g * (xc - xq), axes, pshape) * ln2
                return g, dk, ops.zeros_like(i_var), df
            over, under = x > hi, x < lo
            g_over, g_under = ops.where(over, g, 0.0), ops.where(under, g, 0.0)
            dx = g - g_over - g_under
            df = _reduce_to(g * (xc - xq) + g_over / scale, axes, pshape) * ln2
            di = _reduce_to(g_over * top - g_under * (k * top), axes, pshape) * ln2
            return dx, dk, di, df

        return out, grad

    return fn(x, k, i_var, f_var)


def train_round_weights(w: Any, f_var: Any, rmode: RoundMode, axes: tuple[int, ...]) -> Any:
    """Fused training rounding of a constant (no overflow): ``dw`` straight through, HGQ ``df``."""
    pshape = tuple(f_var.shape)
    ln2 = math.log(2.0)

    @ops.custom_gradient
    def fn(w: Any, f_var: Any) -> Any:
        scale = exp2(ops.floor(f_var + 0.5))
        wq = _round_fast(w * scale, rmode) / scale

        def grad(*args: Any, upstream: Any = None) -> Any:
            g = args[0] if upstream is None else upstream
            return g, _reduce_to(g * (w - wq), axes, pshape) * ln2

        return wq, grad

    return fn(w, f_var)


def train_bits(k: Any, i_var: Any, f_var: Any) -> Any:
    """``max(k + round(i) + round(f), 0)`` with gradient 1 to ``i`` and ``f`` where positive."""
    width = k + ops.floor(i_var + 0.5) + ops.floor(f_var + 0.5)
    return ops.relu(i_var + f_var + ops.stop_gradient(width - i_var - f_var))


def train_weight_bits(wq: Any, f_var: Any) -> Any:
    """Tightest width of each quantized value (0 where 0), gradient 1 to ``f``; log2 need not be exact."""
    f = ops.floor(f_var + 0.5)
    a = ops.abs(wq)
    neg = ops.cast(wq < 0, wq.dtype)
    top = a + (1.0 - neg) * exp2(-f)
    fixed = neg + ops.ceil(ops.log2(top)) + f - f_var
    return ops.where(a > 0, f_var + ops.stop_gradient(fixed), 0.0)


# ---------------------------------------------------------------- parameter shapes
def param_shape(shape: tuple[int, ...], granularity: str) -> tuple[int, ...]:
    """Shape of the bit-width parameters for a tensor of unbatched ``shape``."""
    if granularity == "element":
        return tuple(shape)
    if granularity == "channel":
        return (1,) * (len(shape) - 1) + tuple(shape[-1:])
    if granularity == "tensor":
        return ()
    raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")


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


# ---------------------------------------------------------------- activation quantizer
@keras.saving.register_keras_serializable(package="hgqir")
class Quantizer(keras.layers.Layer):
    """Learnable quantizer of an activation tensor (also the model's input quantizer).

    ``signed=None`` lets calibration choose the sign bit per element (WRAP quantizers).
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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        param_shape((1,), granularity)  # validates
        self.granularity = granularity
        self.round_mode = RoundMode.parse(round)
        self.overflow_mode = OverflowMode.parse(overflow)
        self.signed = signed
        self.k0 = float(k0 if signed is None else int(signed))
        self.i0, self.f0, self.i_decay = float(i0), float(f0), float(i_decay)
        self.f_range = (float(f_range[0]), float(f_range[1]))
        self._trace: _Trace | None = None

    @property
    def wraps(self) -> bool:
        return self.overflow_mode is OverflowMode.WRAP

    def build(self, input_shape: Any) -> None:
        self.shape = tuple(int(d) for d in input_shape[1:])
        pshape = param_shape(self.shape, self.granularity)
        const = keras.initializers.Constant
        self.f = self.add_weight(name="f", shape=pshape, initializer=const(self.f0),
                                 constraint=ClipConstraint(*self.f_range))
        self.i = self.add_weight(name="i", shape=pshape, initializer=const(self.i0),
                                 trainable=not self.wraps, constraint=ClipConstraint(-32.0, 32.0))
        self.k = self.add_weight(name="k", shape=pshape, initializer=const(self.k0), trainable=False)

    def kif(self, train: bool = False) -> tuple[Any, Any, Any]:
        """``(k, i, f)`` tensors with the integer values used.

        ``train=True``: straight-through gradients (``v + sg(round(v) - v)``, which graph
        optimizers may evaluate an ulp off); otherwise exact integers without gradients.
        """
        rnd = ste_round if train else exact_round
        return read(self.k), rnd(read(self.i)), rnd(read(self.f))

    def call(self, x: Any, training: Any = None) -> Any:
        k, i, f = self.kif()
        if self._trace is not None:
            return self._record(x, f)
        if training:
            axes = self._reduce_axes(len(x.shape))
            kv, iv, fv = (read(v) for v in (self.k, self.i, self.f))
            if self.wraps:
                self._track(x, fv)
            return train_quantize(x, kv, iv, fv, self.round_mode, None if self.wraps else self.overflow_mode, axes)
        return quantize_exact(x, k, i, f, self.round_mode, self.overflow_mode)

    def _reduce_axes(self, rank: int) -> tuple[int, ...]:
        if self.granularity == "element":
            return (0,)
        if self.granularity == "channel":
            return tuple(range(rank - 1))
        return tuple(range(rank))

    def _track(self, x: Any, f: Any) -> None:
        """Running integer bits of a WRAP quantizer (approximate log2 is fine: calibration decides)."""
        amax = ops.max(ops.abs(ops.stop_gradient(x)), axis=self._reduce_axes(len(x.shape)))
        need = ops.ceil(ops.log2(ops.reshape(amax, self.f.shape) + exp2(-ops.floor(f + 0.5))))
        self.i.assign(ops.maximum(self.i - self.i_decay, need))

    def bits(self) -> Any:
        """Exact width per parameter element, ``max(k + i + f, 0)`` (reports; no gradient)."""
        k, i, f = self.kif()
        return ops.relu(k + i + f)

    def train_bits(self) -> Any:
        """:meth:`bits` with fewer graph nodes (the training regularizer)."""
        return train_bits(read(self.k), read(self.i), read(self.f))

    # ---------------------------------------------------------- numpy side
    def kif_numpy(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        k = round_param(ops.convert_to_numpy(self.k))
        return k, round_param(ops.convert_to_numpy(self.i)), round_param(ops.convert_to_numpy(self.f))

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
        pshape = tuple(self.f.shape)
        assert self._trace is not None
        self._trace.update(arr.min(axis=axes).reshape(pshape), arr.max(axis=axes).reshape(pshape))
        return xr

    def finish_trace(self) -> None:
        """Set ``k`` (when ``signed`` is None) and ``i`` of a WRAP quantizer from the traced range."""
        trace, self._trace = self._trace, None
        if trace is None or trace.lo is None or not self.wraps:
            return
        k = (trace.lo < 0).astype(np.float64) if self.signed is None else np.full(trace.lo.shape, self.k0)
        f = round_param(ops.convert_to_numpy(self.f))
        t = FixedType.covering(np.where(k > 0, np.minimum(trace.lo, -2.0 ** -f), 0.0), trace.hi, f)
        self.k.assign(k.astype(self.k.dtype))
        self.i.assign(np.asarray(t.i, dtype=np.float64).astype(self.i.dtype))

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(
            granularity=self.granularity, round=self.round_mode.value, overflow=self.overflow_mode.value,
            signed=self.signed, k0=self.k0, i0=self.i0, f0=self.f0, i_decay=self.i_decay, f_range=self.f_range,
        )
        return cfg


# ---------------------------------------------------------------- weight quantizer
@keras.saving.register_keras_serializable(package="hgqir")
class WeightQuantizer(keras.layers.Layer):
    """Learnable rounding of a constant (kernel, bias, batchnorm scale / offset): only ``f`` trains."""

    def __init__(self, granularity: str = "element", round: str = "RND", f0: float = 6.0,
                 f_range: tuple[float, float] = (-16.0, 24.0), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        param_shape((1,), granularity)
        self.granularity = granularity
        self.round_mode = RoundMode.parse(round)
        self.f0 = float(f0)
        self.f_range = (float(f_range[0]), float(f_range[1]))

    def build(self, input_shape: Any) -> None:
        self.shape = tuple(int(d) for d in input_shape)
        self.f = self.add_weight(name="f", shape=param_shape(self.shape, self.granularity),
                                 initializer=keras.initializers.Constant(self.f0),
                                 constraint=ClipConstraint(*self.f_range))

    def call(self, w: Any, training: Any = None) -> Any:
        if training:
            pshape = tuple(self.f.shape)
            axes = tuple(n for n, a in enumerate(self.shape) if not pshape or pshape[n] != a)
            return train_round_weights(w, read(self.f), self.round_mode, axes)
        return quantize_exact(w, 1.0, 64.0, exact_round(read(self.f)), self.round_mode, None)

    def train_bits(self, wq: Any) -> Any:
        """:meth:`bits` with fewer graph nodes (the training regularizer)."""
        return train_weight_bits(wq, read(self.f))

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
        f = np.broadcast_to(round_param(ops.convert_to_numpy(self.f)), wq.shape)
        return wq, FixedType.covering(wq, wq, f).canonical()

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(granularity=self.granularity, round=self.round_mode.value, f0=self.f0, f_range=self.f_range)
        return cfg
