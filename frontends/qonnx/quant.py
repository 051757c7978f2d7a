"""QONNX ``Quant`` parameters as hgqir fixed-point types and ap_fixed modes.

A QONNX ``Quant(x, scale, zeropt, bitwidth)`` computes
``clip(round(x / scale + zeropt), qmin, qmax) - zeropt) * scale``. With a power-of-two
``scale = 2**-f`` and ``zeropt = 0`` this is exactly an ap_fixed cast to ``(k, i, f)`` with
``k = signed`` and ``i = bitwidth - k - f``: clipping before rounding equals rounding before
clipping because the bounds are integers. ``narrow`` signed ranges are ``SAT_SYM``, the others
``SAT``. The rounding modes map onto :class:`~hgqir.RoundMode`; ``CEIL`` has no ap_fixed mode
and becomes ``TRN`` after adding ``2**-f - 2**-fx`` (one output LSB less one input LSB), which
is exact because the input ``x`` is itself fixed point with ``fx`` fractional bits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hgqir.fixed import FixedType, OverflowMode, RoundMode
from hgqir.quantize import quantize

ROUNDING: dict[str, RoundMode | None] = {
    "ROUND": RoundMode.RND_CONV,
    "HALF_EVEN": RoundMode.RND_CONV,
    "FLOOR": RoundMode.TRN,
    "DOWN": RoundMode.TRN_ZERO,
    "HALF_UP": RoundMode.RND_INF,
    "HALF_DOWN": RoundMode.RND_ZERO,
    "CEIL": None,  # TRN after an offset, see the module docstring
}
"""QONNX rounding mode -> ap_fixed mode (``UP``, away from zero, has no exact mapping yet)."""

FIXED_POINT_HINT = (
    "hgqir maps only power-of-two scales exactly: quantize with Brevitas' fixed-point quantizers "
    "(brevitas.quant.fixed_point: Int8WeightPerTensorFixedPoint, Int8WeightPerChannelFixedPoint, "
    "Int8ActPerTensorFixedPoint, Uint8ActPerTensorFixedPoint) and export again"
)


class QuantMappingError(ValueError):
    """A Quant node whose parameters have no exact fixed-point meaning (message says why)."""


@dataclass(frozen=True)
class QuantSpec:
    """One Quant node as an ap_fixed cast: a type per element plus modes."""

    type: FixedType
    round: RoundMode
    overflow: OverflowMode
    ceil: bool = False
    """QONNX ``CEIL``: ``round`` is TRN and an offset is added first (see the module docstring)."""


def power_of_two_exponent(scale: np.ndarray, what: str) -> np.ndarray:
    """``f`` with ``scale == 2**-f`` per element, or :class:`QuantMappingError`."""
    s = np.asarray(scale, dtype=np.float64)
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise QuantMappingError(f"{what} must be positive and finite")
    mant, exp = np.frexp(s)
    if np.any(mant != 0.5):
        bad = s[mant != 0.5].reshape(-1)[:3].tolist()
        raise QuantMappingError(f"{what} {bad} is not a power of two; {FIXED_POINT_HINT}")
    return (1 - exp).astype(np.int64)


def _broadcast_param(p: np.ndarray, shape: tuple[int, ...], batched: bool, what: str) -> np.ndarray:
    """A scale / bitwidth tensor as an array of the unbatched ``shape`` (a leading batch axis of 1 dropped)."""
    p = np.asarray(p, dtype=np.float64)
    full = (1, *shape) if batched else shape
    try:
        return np.broadcast_to(p, full).reshape(shape) if batched else np.broadcast_to(p, shape)
    except ValueError:
        raise QuantMappingError(f"{what} of shape {list(p.shape)} does not broadcast to {list(full)}") from None


def quant_spec(
    shape: tuple[int, ...],
    scale: np.ndarray,
    zeropt: np.ndarray,
    bitwidth: np.ndarray,
    signed: bool,
    narrow: bool,
    rounding: str,
    batched: bool,
) -> QuantSpec:
    """The exact ap_fixed meaning of a Quant node on a tensor of unbatched ``shape``."""
    if np.any(np.asarray(zeropt) != 0):
        raise QuantMappingError("zero point is not 0: only symmetric (zero point 0) quantizers map to fixed point")
    mode = rounding.upper()
    if mode not in ROUNDING:
        raise QuantMappingError(
            f"rounding_mode {rounding!r} has no exact ap_fixed mapping (supported: {list(ROUNDING)})"
        )
    f = power_of_two_exponent(_broadcast_param(scale, shape, batched, "scale"), "scale")
    b = _broadcast_param(bitwidth, shape, batched, "bitwidth")
    if np.any(b != np.round(b)) or np.any(b < 1):
        raise QuantMappingError(f"bitwidth {np.unique(b)[:3].tolist()} must hold integers >= 1")
    if signed and np.any(b == 1):
        raise QuantMappingError("1-bit signed Quant is bipolar (+-scale), not fixed point: use BipolarQuant")
    if narrow and not signed:
        raise QuantMappingError("narrow unsigned range [0, 2**b - 2] has no ap_fixed overflow mode")
    k = int(signed)
    t = FixedType(shape, np.int64(k), b.astype(np.int64) - k - f, f)
    overflow = OverflowMode.SAT_SYM if narrow else OverflowMode.SAT
    rnd = ROUNDING[mode]
    return QuantSpec(t.canonical(), rnd or RoundMode.TRN, overflow, ceil=rnd is None)


def quantize_values(values: np.ndarray, spec: QuantSpec) -> np.ndarray:
    """Quantized float64 values of a constant (exact: the reference quantizer of the core)."""
    t = spec.type
    v = np.asarray(values, dtype=np.float64)
    if spec.ceil:  # the grid's ceiling (exact in float64), then saturated like the other modes
        v = np.ldexp(np.ceil(np.ldexp(v, t.f)), -t.f)
    return quantize(v, t.k, t.i, t.f, spec.round, spec.overflow)


def ceil_offset(x: FixedType, out: FixedType) -> np.ndarray | None:
    """Per-element ``2**-f - 2**-fx`` where ``x`` is finer than ``out`` (else 0); None if all 0."""
    finer = (x.f > out.f) & ~x.zero_mask & ~out.zero_mask
    if not finer.any():
        return None
    return np.where(finer, np.ldexp(1.0, -out.f) - np.ldexp(1.0, -np.where(finer, x.f, out.f)), 0.0)


def exact_type(values: np.ndarray) -> FixedType:
    """The smallest per-element type holding float ``values`` exactly (unquantized constants)."""
    v = np.asarray(values, dtype=np.float64)
    mant, exp = np.frexp(v)
    m = np.abs(np.ldexp(mant, 53).astype(np.int64))  # the 53-bit integer significand
    low = m & -m  # its lowest set bit: trailing zeros need no fractional bit
    tz = np.log2(np.where(low == 0, 1, low)).astype(np.int64)
    frac = np.where(v == 0, 0, 53 - exp - tz)
    return FixedType.covering(v, v, frac).canonical()
