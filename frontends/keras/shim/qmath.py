"""Elementwise math of the Keras shim's quantizers: exact inference and fused training ops.

Inference (:func:`quantize_exact`) is exact in float64 and matches :func:`hgqir.quantize` bit
for bit: ``q = round(x * 2**f)`` with the rounding mode, overflow of ``q`` into ``k + i + f``
bits, ``xq = q * 2**-f``, and 0 where the width is ``<= 0``. Parameters are rounded with
``floor(v + 0.5)`` without any float cancellation trick, because graph optimizers may
reassociate ``v + (round(v) - v)`` and miss the integer by an ulp.

Training ops are single custom-gradient nodes with hand-written backward passes (few graph
nodes per step): straight-through for ``x``, ``d xq / d f = -ln2 * (xq - x)`` for ``f``, the
clip gradient for ``i`` of SAT modes.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from hgqir.fixed import OverflowMode, RoundMode

GRANULARITIES = ("element", "channel", "tensor")
SAT_MODES = (OverflowMode.SAT, OverflowMode.SAT_SYM, OverflowMode.SAT_ZERO)


# ---------------------------------------------------------------- exact elementwise math
def exp2(e: Any) -> Any:
    """``2**e`` for integer-valued ``e`` (exact)."""
    return ops.power(2.0, e)


_EXPONENT = {"float16": ("int16", 15, 10), "bfloat16": ("int16", 127, 7), "float32": ("int32", 127, 23)}
_EXPONENT["float64"] = ("int64", 1023, 52)


def exp2_bits(e: Any) -> Any:
    """``2**e`` for integer-valued ``e`` (exact), written into the exponent field, no ``pow``.

    ``pow`` costs about 8 ns per element on a CPU, which shows on kernel-sized parameters; this
    is a few cheap integer ops. ``e`` is clipped to the normal range of its dtype (float32:
    -126..127), far beyond any bit width; small tensors keep ``pow`` (fewer ops).
    """
    dtype = keras.backend.standardize_dtype(e.dtype)
    if dtype not in _EXPONENT or math.prod(e.shape) < 512:
        return exp2(e)
    itype, bias, shift = _EXPONENT[dtype]
    n = ops.cast(ops.clip(e, 1.0 - bias, float(bias)), itype) + bias
    return ops.view(ops.left_shift(n, shift), dtype)


def read(v: Any) -> Any:
    """A tensor with a variable's current value (Keras' convert_to_tensor returns the variable).

    Also reads a :class:`~hgqir.frontends.keras.fast.bank.BankSlice` (its ``value``).
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.convert_to_tensor(v.value)
    return ops.convert_to_tensor(getattr(v, "value", v))


def exact_round(v: Any) -> Any:
    """``floor(v + 0.5)``: the integer a bit-width parameter stands for (no gradient)."""
    return ops.floor(v + 0.5)


def ste_round(v: Any) -> Any:
    """``floor(v + 0.5)`` forward, identity gradient."""
    return v + ops.stop_gradient(ops.floor(v + 0.5) - v)


def train_round(v: Any) -> Any:
    """``floor(v + 0.5)`` with the gradient straight through, as one op (the training ops' ``f``)."""

    @ops.custom_gradient
    def fn(v: Any) -> Any:
        def grad(*args: Any, upstream: Any = None) -> Any:
            return args[0] if upstream is None else upstream

        return ops.floor(v + 0.5), grad

    return fn(v)


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
    """Sum ``t`` over ``axes`` into ``shape`` (no graph node when nothing is reduced)."""
    if axes:
        t = ops.sum(t, axis=axes)
    return t if tuple(t.shape) == tuple(shape) else ops.reshape(t, shape)


def train_quantize(
    x: Any,
    k: Any,
    i_var: Any,
    f: Any,
    rmode: RoundMode,
    omode: OverflowMode | None,
    axes: tuple[int, ...],
    track: bool = False,
    bits: bool = False,
) -> Any:
    """Training forward and HGQ gradients in one fused op (few graph nodes, hand-written backward).

    ``i_var`` is the raw parameter (rounded inside, gradient straight through), ``f`` the rounded
    fractional bits (:func:`train_round`; their gradient is the raw parameter's);
    ``axes`` reduce a gradient of ``x``'s shape to the parameter shape. ``omode=None`` rounds
    only (WRAP while training); SAT modes clip first with gradients to ``i`` and ``f``.

    ``track=True`` also returns, per parameter element, the integer bits ``need`` with
    ``2**need >= max|x| + 2**-f`` (no gradient), computed from the scaled ``x * 2**f`` already
    at hand as ``ceil(log2(max|x * 2**f| + 1)) - f`` (log2 may be an ulp off; calibration sets
    the final value).

    ``bits=True`` also returns (last) the widths ``max(k + i + f, 0)`` this call quantized with,
    per parameter element, for the EBOPs regularizer, with gradient 1 to ``f`` (and to ``i`` of
    SAT modes) where positive. With ``track``, these are the integer bits from before the update
    this call's ``need`` brings (the regularizer and the quantization see the same widths).
    """
    pshape = tuple(f.shape)
    ln2 = math.log(2.0)
    inv_ln2 = 1.0 / ln2

    @ops.custom_gradient
    def fn(x: Any, k: Any, i_var: Any, f: Any) -> Any:
        i = ops.floor(i_var + 0.5)
        scale = exp2_bits(f)
        width = k + i + f
        live = ops.cast(width > 0, x.dtype)
        step = live / scale  # parameter-sized: pruned elements become 0 in the last multiply
        xc = x
        if omode in SAT_MODES:
            top = exp2(i)
            hi = top - 1.0 / scale
            lo = -k * (hi if omode is OverflowMode.SAT_SYM else top)
            xc = ops.minimum(ops.maximum(x, lo), hi)
        xs = xc * scale
        out = _round_fast(xs, rmode) * step

        def grad(*args: Any, upstream: Any = None) -> Any:
            # one upstream gradient per output: (d out[, d need][, d widths]); need has none
            gs = args if upstream is None else (tuple(upstream) if track or bits else (upstream,))
            g = gs[0] * live
            gw = gs[-1] * live if bits else None
            dk = ops.zeros_like(k)
            if omode not in SAT_MODES:
                df = _reduce_to(g * (xc - out), axes, pshape) * ln2
                return g, dk, ops.zeros_like(i_var), df if gw is None else df + gw
            over, under = ops.cast(x > hi, x.dtype), ops.cast(x < lo, x.dtype)
            g_over, g_under = g * over, g * under
            dx = g - g_over - g_under
            df = _reduce_to(g * (xc - out) + g_over / scale, axes, pshape) * ln2
            di = _reduce_to(g_over * top - g_under * (k * top), axes, pshape) * ln2
            if gw is not None:
                df, di = df + gw, di + gw
            return dx, dk, di, df

        outs = (out,)
        if track:
            amax = ops.max(ops.abs(xs), axis=axes) if axes else ops.abs(xs)
            if tuple(amax.shape) != pshape:
                amax = ops.reshape(amax, pshape)
            outs += (ops.ceil(ops.log(amax + 1.0) * inv_ln2) - f,)
        if bits:
            outs += (width * live,)
        return (outs if len(outs) > 1 else out), grad

    return fn(x, k, i_var, f)


def train_round_weights(w: Any, f: Any, rmode: RoundMode, axes: tuple[int, ...], bits: bool = False) -> Any:
    """Fused training rounding of a constant (no overflow): ``dw`` straight through, HGQ ``df``.

    ``bits=True`` also returns the width of each rounded value's tightest type (the regularizer's
    weight widths, from the integer ``q`` already at hand: ``neg + ceil(log2(|q| + 1 - neg))``,
    0 where ``q == 0``; log2 need not be exact) with gradient 1 to ``f`` where ``q != 0``.
    """
    pshape = tuple(f.shape)
    ln2 = math.log(2.0)
    inv_ln2 = 1.0 / ln2

    @ops.custom_gradient
    def fn(w: Any, f: Any) -> Any:
        scale = exp2_bits(f)
        q = _round_fast(w * scale, rmode)
        wq = q / scale  # exact: scale is a power of two

        def grad_w(g: Any) -> Any:
            return g, _reduce_to(g * (w - wq), axes, pshape) * ln2

        if not bits:

            def grad(*args: Any, upstream: Any = None) -> Any:
                return grad_w(args[0] if upstream is None else upstream)

            return wq, grad

        # |q + 1/2| + 1/2 is q + 1 for q >= 0 and -q for q < 0
        neg = ops.cast(q < 0, q.dtype)
        width = neg + ops.ceil(ops.log(ops.abs(q + 0.5) + 0.5) * inv_ln2)

        def grad2(*args: Any, upstream: Any = None) -> Any:
            g, gb = args if upstream is None else upstream
            dw, df = grad_w(g)
            return dw, df + _reduce_to(gb * ops.cast(q != 0, q.dtype), axes, pshape)

        return (wq, width), grad2

    return fn(w, f)


def _sum_to(t: Any, shape: tuple[int, ...]) -> Any:
    """Sum a broadcast gradient ``t`` back to ``shape`` (numpy broadcasting rules)."""
    lead = len(t.shape) - len(shape)
    axes = tuple(range(lead)) + tuple(lead + n for n, d in enumerate(shape) if d == 1 and t.shape[lead + n] != 1)
    if axes:
        t = ops.sum(t, axis=axes)
    return t if tuple(t.shape) == tuple(shape) else ops.reshape(t, shape)


def train_dense_ebops(xb: Any, wb: Any, xshape: tuple[int, ...]) -> Any:
    """EBOPs of a dense layer, ``sum_j bits(x_j) * sum_o wb_jo``, as one op with a closed-form gradient.

    ``xb``: the input quantizer's widths (parameter shape, any granularity; broadcast to the
    unbatched input shape ``xshape``, leading axes summed), as :func:`train_quantize` returns
    them; ``wb`` the kernel's value widths. Gradients: ``d/dxb = sum_o wb`` (summed back to the
    parameter shape), ``d/dwb = bits(x)``, times the upstream scalar.
    """
    pshape = tuple(xb.shape)
    fan_in = int(wb.shape[0])

    @ops.custom_gradient
    def fn(xb: Any, wb: Any) -> Any:
        xs = xb if pshape == tuple(xshape) else ops.broadcast_to(xb, xshape)
        if len(xshape) > 1:
            xs = ops.sum(ops.reshape(xs, (-1, fan_in)), axis=0)
        rw = ops.sum(wb, axis=1)
        e = ops.sum(xs * rw)

        def grad(*args: Any, upstream: Any = None) -> Any:
            g = args[0] if upstream is None else upstream
            dwb = ops.broadcast_to(ops.expand_dims(g * xs, 1), tuple(wb.shape))
            dx = g * rw
            if tuple(xshape) != (fan_in,):
                dx = ops.broadcast_to(dx, xshape)
            if tuple(dx.shape) != pshape:
                dx = _sum_to(dx, pshape)
            return dx, dwb

        return e, grad

    return fn(xb, wb)


def train_bits(k: Any, i_var: Any, f: Any) -> Any:
    """``max(k + round(i) + f, 0)`` (``f`` rounded) with gradient 1 to ``i`` and ``f`` where positive."""

    @ops.custom_gradient
    def fn(i_var: Any, f: Any) -> Any:
        width = k + ops.floor(i_var + 0.5) + f
        live = ops.cast(width > 0, width.dtype)

        def grad(*args: Any, upstream: Any = None) -> Any:
            g = (args[0] if upstream is None else upstream) * live
            return g, g

        return width * live, grad

    return fn(i_var, f)


def train_weight_bits(wq: Any, f: Any, axes: tuple[int, ...]) -> Any:
    """Tightest width of each quantized value (0 where 0), gradient 1 to ``f`` (rounded); log2 need not be exact."""
    pshape = tuple(f.shape)

    @ops.custom_gradient
    def fn(f: Any) -> Any:
        a = ops.abs(wq)
        neg = ops.cast(wq < 0, wq.dtype)
        nonzero = ops.cast(a > 0, wq.dtype)
        top = a + (1.0 - neg) * exp2(-f)  # 2**-f where the value is 0: finite, then masked
        width = (neg + ops.ceil(ops.log2(top)) + f) * nonzero

        def grad(*args: Any, upstream: Any = None) -> Any:
            g = args[0] if upstream is None else upstream
            return _reduce_to(g * nonzero, axes, pshape)

        return width, grad

    return fn(f)


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
