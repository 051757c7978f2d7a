"""Exact ap_fixed quantization.

Two entry points share one set of rounding and overflow rules:

* :func:`quantize` is the public reference quantizer on float arrays (numpy in, numpy out);
* :func:`quantize_exact` works on integer mantissas (``value = m * 2**-F``) and is what the
  interpreter uses; mantissas are float64 holding integers (fast path), int64, or Python ints
  in object arrays, chosen so that no step can round.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from .errors import HgqirError
from .fixed import OverflowMode, RoundMode

FLOAT_BITS = 52
"""float64 mantissas are used only while every magnitude stays below ``2**FLOAT_BITS``."""
INT_BITS = 62
"""int64 mantissas are used only while every magnitude stays below ``2**INT_BITS``."""

_limits = {"float": FLOAT_BITS, "int": INT_BITS}
"""Active limits; :func:`mantissa_paths` lowers them to force the wider exact paths."""


@contextlib.contextmanager
def mantissa_paths(float_bits: int = FLOAT_BITS, int_bits: int = INT_BITS) -> Iterator[None]:
    """Force slower exact arithmetic paths inside the block (results never change, only speed).

    ``mantissa_paths(float_bits=0)`` makes every mantissa int64 (or Python int when wider);
    ``mantissa_paths(float_bits=0, int_bits=0)`` makes every mantissa a Python int. Tests use
    it to check that the float64 fast paths agree bit for bit with the integer ones. The
    interpreter's fused float kernels are off while ``float_bits`` is below ``FLOAT_BITS``.
    Not thread-safe: the limits are process-wide.
    """
    if not (0 <= float_bits <= FLOAT_BITS and 0 <= int_bits <= INT_BITS):
        raise ValueError(f"limits must be within 0..{FLOAT_BITS} (float) and 0..{INT_BITS} (int)")
    saved = dict(_limits)
    _limits.update(float=float_bits, int=int_bits)
    try:
        yield
    finally:
        _limits.update(saved)


def float_path_enabled() -> bool:
    """False inside ``mantissa_paths(float_bits < FLOAT_BITS)``: fused float kernels stay off."""
    return _limits["float"] >= FLOAT_BITS


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
    """Round any finite float64 ``v`` to an integer-valued float64 exactly.

    ``r = rint(v)`` (ties to even) is exact, and so is ``d = v - r`` (``r`` is 0, or within a
    factor of two of ``v``: Sterbenz). Ties are exactly ``d = ±0.5`` and only those need a fix.
    A remainder ``v - floor(v)`` would not do: it rounds for negative ``v`` just above -1.
    """
    if mode is RoundMode.TRN:
        return np.floor(v)
    if mode is RoundMode.TRN_ZERO:
        return np.trunc(v)
    r = np.rint(v)
    if mode is RoundMode.RND_CONV:
        return r
    d = v - r
    tie_below = d == 0.5  # v = n + 1/2 and rint chose n
    tie_above = d == -0.5  # v = n - 1/2 and rint chose n
    if mode is RoundMode.RND:
        return r + tie_below
    if mode is RoundMode.RND_MIN_INF:
        return r - tie_above
    if mode is RoundMode.RND_INF:
        return r + (tie_below & (v > 0)) - (tie_above & (v < 0))
    if mode is RoundMode.RND_ZERO:
        return r + (tie_below & (v < 0)) - (tie_above & (v > 0))
    raise ValueError(f"unhandled rounding mode {mode}")


TINY = 2.0**-1074
"""Smallest float64: stands in for a nonzero value that ``ldexp`` flushed to zero."""
HUGE = 2.0**1000
"""Stands in for values past float64's range: a multiple of every modulus, beyond every clip."""


def scale_float(x: np.ndarray, e: Any) -> np.ndarray:
    """``x * 2**e`` in float64 with the sign and nonzero-ness kept where ``ldexp`` leaves the range.

    Rounding and overflow of the result are then decided correctly: a flushed tiny value
    becomes ``±TINY`` (floor -1 or 0, never a tie), an overflowing one ``±HUGE``.
    """
    with np.errstate(over="ignore", under="ignore"):
        v = np.ldexp(x, e)
    v = np.where(np.isfinite(v), v, np.sign(v) * HUGE)
    return np.where((v == 0) & (x != 0), np.copysign(TINY, x), v)


def _pow2(e: Any, dtype: Any) -> Any:
    """``2**e`` elementwise in the mantissa dtype (float64, int64 or object)."""
    e = np.asarray(e, dtype=np.int64)
    if dtype == np.float64:
        return np.ldexp(1.0, e)
    if np.dtype(dtype).kind == "O":
        if e.ndim == 0:
            return 1 << int(e)
        return np.array([1 << int(v) for v in e.reshape(-1)], dtype=object).reshape(e.shape)
    return np.left_shift(np.int64(1), e)


def _sign(a: np.ndarray) -> np.ndarray:
    """Sign of integer values of any dtype (object arrays included) as int8, without floats."""
    return (a > 0).astype(np.int8) - (a < 0).astype(np.int8)


def _round_shift_int(m: np.ndarray, s: np.ndarray, mode: RoundMode) -> np.ndarray:
    """``round(m / 2**s)`` exactly for integer mantissas (int64 or object), any ``s >= 0``.

    With int64, ``m * 4`` and ``2**(s+1)`` must fit (the caller caps ``s``, see :func:`_quantize_int`).
    """
    unit = _pow2(s, m.dtype)
    fl = np.floor_divide(m, unit)
    if mode is RoundMode.TRN:
        return fl
    rem = m - fl * unit
    up = _round_up(mode, fl, _sign(rem * 2 - unit), rem == 0, m < 0)
    return np.where(up, fl + 1, fl)


def _overflow(q: np.ndarray, k: np.ndarray, width: np.ndarray, mode: OverflowMode) -> np.ndarray:
    """Overflow handling of integer mantissas ``q`` (units of one LSB) into ``width`` bits."""
    safe = np.maximum(width, 1)
    one = 1.0 if q.dtype == np.float64 else 1
    modulus = _pow2(safe, q.dtype)
    hi = _pow2(safe - k, q.dtype) - one
    lo = np.where(k == 1, -_pow2(np.maximum(safe - 1, 0), q.dtype), 0 * one)
    if mode is OverflowMode.SAT_SYM:
        # ap_fixed sets the LSB of the most negative value: -(2**(w-1) - 1) LSBs, except that a
        # 1-bit signed type has no room and keeps -1 (so it saturates like SAT)
        lo = np.where((k == 1) & (safe > 1), -hi, lo)
    if mode is OverflowMode.WRAP:
        r = q - modulus * np.floor_divide(q, modulus)
        return np.where((k == 1) & (r > hi), r - modulus, r)
    if mode in (OverflowMode.SAT, OverflowMode.SAT_SYM):
        return np.where(q < lo, lo, np.where(q > hi, hi, q))
    if mode is OverflowMode.SAT_ZERO:
        return np.where((q < lo) | (q > hi), 0 * one, q)
    raise ValueError(f"unhandled overflow mode {mode}")


class QuantizeError(HgqirError, ValueError):
    """Bad arguments to the quantizer (NaN or infinite data, ``k`` not 0 or 1)."""


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
    width ``k+i+f`` is 0 or less become 0. The result is float64: exact whenever the quantized
    value has at most 53 significant bits (always for widths up to 53; wider results are
    computed exactly with integers and rounded to the nearest float64 only at the end).

    >>> quantize([0.3, -1.75, 9.0], k=1, i=2, f=2).tolist()
    [0.25, -1.75, 1.0]
    """
    rmode = RoundMode.parse(round)
    omode = OverflowMode.parse(overflow)
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise QuantizeError("quantize: input holds NaN or infinity, which no fixed-point type can hold")
    shape = np.broadcast_shapes(x.shape, np.shape(k), np.shape(i), np.shape(f))
    x = np.broadcast_to(x, shape)
    k, i, f = (np.broadcast_to(np.asarray(a, dtype=np.int64), shape) for a in (k, i, f))
    if np.any((k != 0) & (k != 1)):
        raise QuantizeError("quantize: k must be 0 or 1")
    q = quantize_mantissas(x, 0, k, i, f, rmode, omode)
    if q.dtype != np.float64:
        q = q.astype(np.float64)  # Python int -> float rounds to nearest: only past 53 bits
    return np.ldexp(q, -f) + 0.0  # + 0.0 turns -0.0 into 0.0


def quantize_mantissas(
    m: np.ndarray,
    scale: int,
    k: np.ndarray,
    i: np.ndarray,
    f: np.ndarray,
    rmode: RoundMode,
    omode: OverflowMode,
) -> np.ndarray:
    """Mantissas (units of each element's own ``2**-f``) of ``m * 2**-scale`` quantized to ``(k, i, f)``.

    ``m`` is float64 (any finite values), int64 or object (Python ints); ``k``, ``i``, ``f``
    broadcast against it (``m`` may carry leading batch axes). Pruned elements give 0. The
    float64 path runs when every width is at most 52 bits; otherwise integers, never rounding.
    """
    shape = np.broadcast_shapes(np.shape(m), np.shape(k), np.shape(i), np.shape(f))
    if shape == ():  # numpy turns 0-d object arithmetic into Python scalars: work on one element
        k1, i1, f1 = (np.reshape(a, 1) for a in (k, i, f))
        one = quantize_mantissas(np.reshape(m, 1), scale, k1, i1, f1, rmode, omode)
        return one.reshape(())
    width = k + i + f
    max_width = int(width.max()) if width.size else 0
    shift = scale - f  # > 0: drop bits with rounding; <= 0: exact left shift
    if m.dtype == np.float64 and max_width <= _limits["float"]:
        q = _overflow(_round_float(scale_float(m, -shift), rmode), k, width, omode)
    else:
        if m.dtype == np.float64:
            m, shift = _float_as_int(m, shift)
        q = _quantize_int(m, shift, k, width, rmode, omode)
    if np.all(width > 0):
        return q
    return np.where(width > 0, q, 0 * q)


def _float_as_int(x: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Finite floats as exact int64 significands ``x = s * 2**e``: returns ``(s, shift - e)``."""
    frac, exp = np.frexp(x)
    return np.ldexp(frac, 53).astype(np.int64), shift + 53 - exp.astype(np.int64)


def _quantize_int(
    m: np.ndarray,
    shift: np.ndarray,
    k: np.ndarray,
    width: np.ndarray,
    rmode: RoundMode,
    omode: OverflowMode,
) -> np.ndarray:
    """Integer path: round ``m / 2**shift`` and handle overflow in int64, or Python ints if needed."""
    in_bits = magnitude_bits(m)
    left = max(int(np.max(-shift, initial=0)), 0)
    max_width = int(np.max(width, initial=0))
    # a right shift past the top bit only decides sign and "below half": cap it so 2**s fits
    down = np.minimum(np.maximum(shift, 0), in_bits + 1)
    need = max(in_bits + left, max_width) + 2
    work = np.int64 if need <= _limits["int"] else object
    mi = convert(m, work)
    if left:
        mi = mi * _pow2(np.maximum(-shift, 0), work)
    q = _round_shift_int(mi, down, rmode)
    return _overflow(q, k, width, omode)


def mantissa_dtype(bits: int) -> Any:
    """Cheapest exact mantissa dtype for magnitudes below ``2**bits``."""
    if bits <= _limits["float"]:
        return np.float64
    if bits <= _limits["int"]:
        return np.int64
    return object


def convert(m: np.ndarray, dtype: Any) -> np.ndarray:
    """Convert integer-valued mantissas to ``dtype`` without losing a bit.

    The caller guarantees the magnitudes fit ``dtype`` (see :func:`mantissa_dtype`).
    """
    m = np.asarray(m)
    if m.dtype == dtype:
        return m
    if np.dtype(dtype).kind == "O":
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
    if not live.any():
        return np.zeros(np.broadcast_shapes(m.shape, width.shape), dtype=np.float64), 0
    new_scale = int(f[live].max())
    out_bits = int((k + i)[live].max()) + new_scale + 1
    q = quantize_mantissas(m, scale, k, i, f, rmode, omode)
    dtype = mantissa_dtype(out_bits)
    q = convert(q, dtype)
    up = np.where(live, new_scale - f, 0)
    if not up.any():
        return q, new_scale
    if dtype == np.float64:
        return np.ldexp(q, up), new_scale
    return q * _pow2(up, dtype), new_scale
