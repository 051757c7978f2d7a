"""HGQ v1's own arithmetic for deployment, reproduced from the numbers in a raw ``.h5`` file.

Weights: HGQ v1 quantizes in float32 with ``floor(x * 2**f + 0.5) / 2**f`` (``floor(x * 2**f)``
for the ``floor`` strategy), ``f = round(fbw)`` per weight (``fbw``: the learned float
fractional bits, clipped to ``bw_clip``). The same float32 operations are done here, so the
quantized weights equal the ones ``to_proxy_model`` writes.

Activations: ``trace_minmax`` records each pre-activation quantizer's output range (rounding
only, no overflow) over the calibration data; ``get_bits_exact`` turns the range into
``keep_negative``, integer and fractional bits. :func:`bits_exact` computes the same formula
exactly (``frexp`` instead of HGQ's float32 ``log2``, which can misjudge a range within a
float32 ulp of a power of two, i.e. only for ranges of 23 or more significant bits).
"""

from __future__ import annotations

from typing import Any

import numpy as np

F32 = np.float32
STRATEGIES = {"standard_round": 0, "stochastic_round": 1, "fast_uniform_noise_injection": 2, "floor": 3}
"""HGQ v1's rounding strategy names; at inference every strategy but ``floor`` (3) is RND."""


def is_floor(strategy: Any) -> bool:
    """True when a quantizer config's ``rnd_strategy`` floors at inference."""
    if isinstance(strategy, str):
        return STRATEGIES.get(strategy, -1) == 3
    return int(strategy) == 3


def fractional_bits(fbw: np.ndarray, conf: dict[str, Any]) -> np.ndarray:
    """``round(fbw)`` after HGQ's clip to ``bw_clip`` (round half to even, as ``tf.round``)."""
    fbw = np.asarray(fbw, dtype=F32)
    clip = conf.get("bw_clip")
    if clip:
        fbw = np.clip(fbw, F32(clip[0]), F32(clip[1]))
    return np.round(fbw).astype(np.int64)


def quantize_f32(x: np.ndarray, f: np.ndarray, floor: bool) -> np.ndarray:
    """HGQ v1's ``q_round(x * 2**f) / 2**f`` in float32 (``f`` broadcasts against ``x``)."""
    x = np.asarray(x, dtype=F32)
    scale = np.ldexp(F32(1), np.asarray(f, dtype=np.int32)).astype(F32)
    s = x * scale
    r = np.floor(s) if floor else np.floor(s + F32(0.5))
    return (r / scale).astype(F32)


def round_exact(z: np.ndarray, f: np.ndarray, floor: bool) -> np.ndarray:
    """The activation quantizer's rounding (no overflow) of exact values ``z``, in float64."""
    s = np.ldexp(np.asarray(z, dtype=np.float64), np.asarray(f, dtype=np.int32))
    r = np.floor(s) if floor else np.floor(s + 0.5)
    return np.ldexp(r, -np.asarray(f, dtype=np.int32))


def _exponent(v: np.ndarray) -> np.ndarray:
    """``floor(log2(v)) + 1`` for ``v > 0`` (``-inf`` where ``v == 0``), exactly."""
    m, e = np.frexp(v)
    return np.where(v > 0, e.astype(np.float64), -np.inf)


def _ceil_log2(v: np.ndarray) -> np.ndarray:
    """``ceil(log2(v))`` for ``v >= 0`` (``-inf`` at 0), exactly."""
    m, e = np.frexp(v)
    return np.where(v > 0, np.where(m == 0.5, e - 1, e).astype(np.float64), -np.inf)


def bits_exact(lo: np.ndarray, hi: np.ndarray, f: np.ndarray, pos_only: bool) -> tuple[np.ndarray, ...]:
    """HGQ v1's ``get_bits_exact`` on a traced range: ``(k, i, f)`` with zero-width elements (0, 0, 0)."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    fl = np.asarray(f, dtype=np.float64)
    if pos_only:
        i = _exponent(np.maximum(hi, 0.0))
        k = np.zeros_like(hi)
    else:
        i = np.maximum(_ceil_log2(np.abs(lo)), _ceil_log2(np.abs(hi + np.ldexp(1.0, -f))))
        k = (lo < 0).astype(np.float64)
    i = np.clip(i, -fl - k, 32)
    k, i, fi = (np.asarray(a, dtype=np.int64) for a in np.broadcast_arrays(k, i, fl))
    mask = (k + i + fi) != 0
    return k * mask, i * mask, fi * mask


def act_bw_positive(lo: np.ndarray, hi: np.ndarray, f: np.ndarray, relu: bool) -> np.ndarray:
    """HGQ v1's approximate ``act_bw > 0`` (``get_bits`` on the traced range), which masks biases."""
    if relu:
        ref, kn = np.maximum(hi, 0.0), np.zeros_like(hi)
    else:
        ref, kn = np.maximum(np.abs(lo), np.abs(hi)), (lo < 0).astype(np.float64)
    bw = _exponent(ref) + f + kn
    return bw > 0
