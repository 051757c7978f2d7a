"""Independent reference arithmetic for the core tests: exact rationals, no hgqir code.

``ref_quantize`` follows DESIGN section 2 (and ap_fixed, see test_quantize_gxx.py) with
``fractions.Fraction`` and Python ints, one element at a time: slow, obviously exact.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

HALF = Fraction(1, 2)


def round_int(v: Fraction, mode: str) -> int:
    """``v`` rounded to an integer with an ap_fixed rounding mode."""
    fl = math.floor(v)
    rem = v - fl
    if mode == "TRN":
        return fl
    if mode == "TRN_ZERO":
        return fl if (v >= 0 or rem == 0) else fl + 1
    if rem != HALF:
        return fl + 1 if rem > HALF else fl
    ties = {
        "RND": fl + 1,
        "RND_MIN_INF": fl,
        "RND_ZERO": fl + 1 if v < 0 else fl,
        "RND_INF": fl + 1 if v > 0 else fl,
        "RND_CONV": fl + (fl % 2),
    }
    return ties[mode]


def overflow_int(q: int, k: int, i: int, f: int, mode: str) -> int:
    """Integer mantissa ``q`` brought into ``k + i + f`` bits with an ap_fixed overflow mode."""
    width = k + i + f
    lo, hi = -k * 2 ** (i + f), 2 ** (i + f) - 1
    if mode == "WRAP":
        return (q - lo) % 2**width + lo
    if mode == "SAT_SYM" and k == 1 and width > 1:
        lo = -hi
    if mode in ("SAT", "SAT_SYM"):
        return min(max(q, lo), hi)
    if mode == "SAT_ZERO":
        return q if lo <= q <= hi else 0
    raise ValueError(mode)


def ref_quantize_one(x: Any, k: int, i: int, f: int, round: str = "RND", overflow: str = "WRAP") -> Fraction:
    """Exact quantized value of one number (float, int or Fraction)."""
    if k + i + f <= 0:
        return Fraction(0)
    q = round_int(Fraction(x) * Fraction(2) ** f, round)
    return Fraction(overflow_int(q, k, i, f, overflow)) / Fraction(2) ** f


def ref_quantize(x: Any, k: Any, i: Any, f: Any, round: str = "RND", overflow: str = "WRAP") -> np.ndarray:
    """Elementwise :func:`ref_quantize_one` with numpy broadcasting; returns float64 (exact up to 53 bits)."""
    x, k, i, f = np.broadcast_arrays(np.asarray(x, dtype=object), k, i, f)
    out = [
        float(ref_quantize_one(a, int(b), int(c), int(d), round, overflow))
        for a, b, c, d in zip(x.flat, k.flat, i.flat, f.flat, strict=True)
    ]
    return np.array(out, dtype=np.float64).reshape(x.shape)


def trn_wrap(v: np.ndarray, k: Any, i: Any, f: Any) -> np.ndarray:
    """The interpreter's implicit cast of exact results into a declared type: TRN then WRAP."""
    return ref_quantize(v, k, i, f, "TRN", "WRAP")


def fits(values: np.ndarray, k: Any, i: Any, f: Any) -> np.ndarray:
    """Whether each float value is exactly representable in its element's (k, i, f)."""
    v, k, i, f = np.broadcast_arrays(np.asarray(values, dtype=object), k, i, f)
    ok = []
    for a, kk, ii, ff in zip(v.flat, k.flat, i.flat, f.flat, strict=True):
        a = Fraction(a)
        if kk + ii + ff <= 0:
            ok.append(a == 0)
            continue
        m = a * Fraction(2) ** int(ff)
        ok.append(m.denominator == 1 and -int(kk) * 2 ** int(ii + ff) <= m <= 2 ** int(ii + ff) - 1)
    return np.array(ok, dtype=bool).reshape(v.shape)


def floor_log2(p: Fraction) -> int:
    """``floor(log2(p))`` of a positive rational, exactly."""
    n = p.numerator.bit_length() - p.denominator.bit_length()
    while Fraction(2) ** n > p:
        n -= 1
    while Fraction(2) ** (n + 1) <= p:
        n += 1
    return n


def minimal_kif(lo: Fraction, hi: Fraction, f: int) -> tuple[int, int, int]:
    """Smallest ``(k, i, f)`` with LSB ``2**-f`` holding the grid values ``lo`` and ``hi``."""
    lo, hi = Fraction(lo), Fraction(hi)
    if lo >= 0 and hi <= 0:
        return (0, 0, 0)
    needs = []
    if hi > 0:
        needs.append(floor_log2(hi) + 1)  # 2**i > hi
    if lo < 0:
        n = floor_log2(-lo)
        needs.append(n if Fraction(2) ** n == -lo else n + 1)  # 2**i >= -lo
    return (int(lo < 0), max(needs), f)


def lsb_exponent(values: np.ndarray) -> int:
    """Largest ``f`` such that some value needs ``2**-f`` (0 when every value is an integer)."""
    f = 0
    for a in np.asarray(values, dtype=np.float64).flat:
        fr = Fraction(float(a))
        while (fr * 2**f).denominator != 1:
            f += 1
    return f
