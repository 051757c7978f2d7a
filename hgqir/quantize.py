"""Exact ap_fixed quantization.

Two entry points share one set of rounding and overflow rules:

* :func:`quantize` is the public reference quantizer on float arrays (numpy in, numpy out);
* :func:`quantize_exact` works on integer mantissas (``value = m * 2**-F``) and is what the
  interpreter uses; mantissas are float64 holding integers (fast path), int64, or Python ints
  in object arrays, chosen so that no step can round.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .fixed import OverflowMode, RoundMode

FLOAT_BITS = 52
"""float64 mantissas are used only while every magnitude stays below ``2**FLOAT_BITS``."""
INT_BITS = 62
"""int64 mantissas are used only while every magnitude stays below ``2**INT_BITS``."""


def _round_up(
    mode: RoundMode, floor: np.ndarray, cmp: np.ndarray, exact: np.ndarray, negative: np.ndarray
) -> np.ndarray:
    """Whether to add one LSB to ``floor``.

    ``cmp`` is the sign of (remainder - half an LSB); ``exact`` says the remainder is 0;
    ``negative`` says the unrounded value is negative.
    """
    if mode is RoundMode.TRN:
        return np.zeros(np.shape(floor), dtype=bool)
    if mode is RoundMode.TRN_ZERO:
        return negative & ~exact
    if mode is RoundMode.RND:
        return cmp >= 0
    if mode is RoundMode.RND_ZERO:
        return (cmp > 0) | ((cmp == 0) & negative)
    if mode is RoundMode.RND_MIN_INF:
        return cmp > 0
    if mode is RoundMode.RND_INF:
        return (cmp > 0) | ((cmp == 0) & ~negative)
    if mode is RoundMode.RND_CONV:
        odd = (floor % 2) != 0
        return (cmp > 0) | ((cmp == 0) & odd)
    raise ValueError(f"unhandled rounding mode {mode}")


def _round_float(v: np.ndarray, mode: RoundMode) -> np.ndarray:
    """Round float64 ``v`` to an integer-valued float64 exactly (no double rounding)."""
    fl = np.floor(v)
    frac = v - fl  # exact: both share the exponent range of v
    cmp = np.sign(2.0 * frac - 1.0)
    return fl + _round_up(mode, fl, cmp, frac == 0, v < 0)


def _pow2(e: Any, dtype: Any) -> Any:
    """``2**e`` elementwise in the mantissa dtype (float64, int64 or object)."""
    e = np.asarray(e, dtype=np.int64)
    if dtype == np.float64:
        return np.ldexp(1.0, e)
    if dtype == object:
        if e.ndim == 0:
            return 1 << int(e)
        return np.array([1 << int(v) for v in e.reshape(-1)], dtype=object).reshape(e.shape)
    return np.left_shift(np.int64(1), e)


def _round_shift_int(m: np.ndarray, s: np.ndarray, mode: RoundMode) -> np.ndarray:
    """``round(m / 2**s)`` exactly for integer mantissas (int64 or object), any ``s >= 0``."""
    unit = _pow2(s, m.dtype)
    fl = np.floor_divide(m, unit)
    rem = m - fl * unit
    twice = rem * 2 - unit
    cmp = np.sign(twice.astype(np.float64)) if m.dtype == object else np.sign(twice)
    up = _round_up(mode, fl, cmp, rem == 0, m < 0)
    return np.where(up, fl + 1, fl)


def _overflow(q: np.ndarray, k: np.ndarray, width: np.ndarray, mode: OverflowMode) -> np.ndarray:
    """Overflow handling of integer mantissas ``q`` (units of one LSB) into ``width`` bits."""
    safe = np.maximum(width, 1)
    one = 1.0 if q.dtype == np.float64 else 1
    modulus = _pow2(safe, q.dtype)
    hi = _pow2(safe - k, q.dtype) - one
    lo = np.where(k == 1, -_pow2(np.maximum(safe - 1, 0), q.dtype), 0 * one)
    if mode is OverflowMode.WRAP:
        r = q - modulus * np.floor_divide(q, modulus)
        return np.where((k == 1) & (r > hi), r - modulus, r)
    if mode is OverflowMode.SAT:
        return np.where(q < lo, lo, np.where(q > hi, hi, q))
    if mode is OverflowMode.SAT_SYM:
        sym_lo = np.where(k == 1, -hi, 0 * one)
        return np.where(q < sym_lo, sym_lo, np.where(q > hi, hi, q))
    if mode is OverflowMode.SAT_ZERO:
        return np.where((q < lo) | (q > hi), 0 * one, q)
    raise ValueError(f"unhandled overflow mode {mode}")


def quantize(
    x: Any,
    k: Any,
    i: Any,
    f: Any,
    round: RoundMode | str = "RND",
    overflow: OverflowMode | str = "WRAP",
) -> np.ndarray:
    """Quantize float ``x`` to ``ap_fixed`` types given per element (broadcast against ``x``).

    Exactly what a C++ cast ``ap_fixed<k+i+f, k+i, round, overflow>(x)`` does; elements whose
    width ``k+i+f`` is 0 or less become 0. The result is float64 and exact for widths up to 53.

    >>> quantize([0.3, -1.75, 9.0], k=1, i=2, f=2).tolist()
    [0.25, -1.75, 1.0]
    """
    rmode = RoundMode.parse(round)
    omode = OverflowMode.parse(overflow)
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("quantize: input holds NaN or infinity, which no fixed-point type can hold")
    shape = np.broadcast_shapes(x.shape, np.shape(k), np.shape(i), np.shape(f))
    x = np.broadcast_to(x, shape)
    k, i, f = (np.broadcast_to(np.asarray(a, dtype=np.int64), shape) for a in (k, i, f))
    if np.any((k != 0) & (k != 1)):
        raise ValueError("quantize: k must be 0 or 1")
    with np.errstate(over="ignore"):
        v = np.ldexp(x, f)
    q = _round_float(np.where(np.isfinite(v), v, np.sign(v) * 2.0**1000), rmode)
    q = _overflow(q, k, k + i + f, omode)
    out = np.ldexp(q, -f)
    return np.where(k + i + f <= 0, 0.0, out) + 0.0  # + 0.0 turns -0.0 into 0.0


def mantissa_dtype(bits: int) -> Any:
    """Cheapest exact mantissa dtype for magnitudes below ``2**bits``."""
    if bits <= FLOAT_BITS:
        return np.float64
    if bits <= INT_BITS:
        return np.int64
    return object


def convert(m: np.ndarray, dtype: Any) -> np.ndarray:
    """Convert integer-valued mantissas to ``dtype`` without losing a bit.

    The caller guarantees the magnitudes fit ``dtype`` (see :func:`mantissa_dtype`).
    """
    m = np.asarray(m)
    if m.dtype == dtype:
        return m
    if dtype == object:
        if m.dtype == np.float64:
            return np.array([int(v) for v in m.reshape(-1)], dtype=object).reshape(m.shape)
        return m.astype(object)
    if m.dtype == object:
        return np.array([int(v) for v in m.reshape(-1)], dtype=dtype).reshape(m.shape)
    return m.astype(dtype)


def magnitude_bits(m: np.ndarray) -> int:
    """Bits needed for the largest magnitude in integer-valued ``m`` (0 for all zeros)."""
    if m.size == 0:
        return 0
    if m.dtype == object:
        return max(int(abs(v)).bit_length() for v in m.reshape(-1))
    top = float(np.max(np.abs(m)))
    return int(np.frexp(top)[1]) if top else 0


def quantize_exact(
    m: np.ndarray,
    scale: int,
    k: np.ndarray,
    i: np.ndarray,
    f: np.ndarray,
    rmode: RoundMode,
    omode: OverflowMode,
) -> tuple[np.ndarray, int]:
    """Quantize the exact values ``m * 2**-scale`` to per-element ``(k, i, f)``.

    Returns ``(mantissas, new_scale)`` with ``new_scale = max(f)`` over live elements;
    pruned elements (width <= 0) are 0. ``m`` may carry a leading batch dimension.
    """
    width = k + i + f
    live = width > 0
    new_scale = int(f[live].max()) if live.any() else 0
    out_bits = int((k + i)[live].max()) + new_scale + 1 if live.any() else 0
    max_width = int(width.max()) if width.size else 0
    shift = scale - f  # > 0: drop bits with rounding; <= 0: exact left shift
    if m.dtype == np.float64 and max_width <= FLOAT_BITS:
        with np.errstate(over="ignore"):
            v = np.ldexp(m, -shift)
        # past 2**1000 every value is a multiple of any modulus used here: same wrap, same clip
        v = np.where(np.isfinite(v), v, np.sign(v) * 2.0**1000)
        q = _overflow(_round_float(v, rmode), k, width, omode)
    else:
        in_bits = magnitude_bits(m) + max(int(np.max(-shift, initial=0)), 0)
        work = mantissa_dtype(max(in_bits, max_width + 1) + 1) if in_bits <= INT_BITS else object
        work = np.int64 if work == np.float64 else work
        mi = convert(m, work)
        down = np.maximum(shift, 0)
        q = _round_shift_int(mi * _pow2(np.maximum(-shift, 0), work), down, rmode)
        q = _overflow(q, k, width, omode)
    q = np.where(live, q, 0)
    dtype = mantissa_dtype(out_bits)
    q = convert(q, dtype if q.dtype != np.float64 or dtype == np.float64 else dtype)
    up = new_scale - f
    if dtype == np.float64:
        q = np.ldexp(q, np.where(live, up, 0)) + 0.0
    else:
        q = q * _pow2(np.where(live, up, 0), dtype)
    return q, new_scale
