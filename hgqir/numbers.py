"""Exact runtime tensors for the interpreter.

An :class:`Exact` holds integer mantissas ``m`` and one tensor-wide ``scale``: the values are
``m * 2**-scale``. Mantissas are float64 (only while every magnitude is below 2**52, where
float64 arithmetic on integers cannot round), int64 (below 2**62) or Python ints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import VerifyError
from .fixed import FixedType
from .quantize import _pow2, convert, mantissa_dtype


@dataclass
class Exact:
    """Exact tensor ``m * 2**-scale``; ``m`` has a leading batch dimension in the interpreter."""

    m: np.ndarray
    scale: int

    def values(self) -> np.ndarray:
        """float64 values (exact when every mantissa has at most 53 bits)."""
        m = self.m if self.m.dtype == np.float64 else self.m.astype(np.float64)
        return np.ldexp(m, -self.scale) + 0.0

    def rescaled(self, scale: int, dtype: Any) -> np.ndarray:
        """Mantissas at a finer ``scale >= self.scale`` in ``dtype`` (caller proves they fit)."""
        if scale < self.scale:
            raise ValueError("rescaled() only refines the scale")
        m = convert(self.m, dtype)
        if scale == self.scale:
            return m
        if dtype == np.float64:
            return np.ldexp(m, scale - self.scale)
        return m * _pow2(scale - self.scale, dtype)

    def with_dtype(self, dtype: Any) -> Exact:
        return Exact(convert(self.m, dtype), self.scale)


def scale_of(t: FixedType) -> int:
    """Tensor-wide scale for values of type ``t``: the largest live ``f`` (0 when all pruned)."""
    live = ~t.zero_mask
    return int(t.f[live].max()) if live.any() else 0


def bound_bits(t: FixedType, scale: int | None = None) -> int:
    """Bits of the largest mantissa magnitude a value of type ``t`` can have at ``scale``."""
    scale = scale_of(t) if scale is None else scale
    live = ~t.zero_mask
    if not live.any():
        return 0
    return int(t.i[live].max()) + scale + 1


def dtype_for(t: FixedType, scale: int | None = None) -> Any:
    return mantissa_dtype(bound_bits(t, scale))


def mantissa_range(t: FixedType) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-element mantissa bounds ``(lo, hi)`` of ``t`` (both 0 for pruned elements).

    int64 arrays, or object arrays of Python ints when an element is wider than 62 bits.
    """
    live = ~t.zero_mask
    e = np.where(live, t.i + t.f, 0)  # >= 0 for every live element
    top = _pow2(e, np.int64 if int(e.max(initial=0)) < 62 else object)
    return np.where(live, -t.k * top, 0), np.where(live, top - 1, 0)


def first_outside(m: np.ndarray, t: FixedType) -> tuple[int, ...] | None:
    """Index of the first integer mantissa outside its element's range in ``t``, or None."""
    lo, hi = mantissa_range(t)
    bad = (m < lo) | (m > hi)
    if not np.any(bad):
        return None
    return tuple(int(a[0]) for a in np.nonzero(bad))


def mantissas_of(values: np.ndarray, t: FixedType, what: str = "value") -> np.ndarray:
    """Per-element integer mantissas (value * 2**f) of float ``values`` that must fit ``t`` exactly."""
    values = np.broadcast_to(np.asarray(values, dtype=np.float64), t.shape)
    if not np.all(np.isfinite(values)):
        raise VerifyError(f"{what}: holds NaN or infinity")
    m = np.ldexp(values, t.f)
    bad = (m != np.floor(m)) | ~np.isfinite(m)
    idx = tuple(int(a[0]) for a in np.nonzero(bad)) if np.any(bad) else None
    if idx is None:
        width = int(t.width.max()) if t.size else 0
        m = m.astype(np.int64) if width <= 62 else convert(m, object)
        idx = first_outside(m, t)
    if idx is not None:
        k, i, f = (int(a[idx]) for a in (t.k, t.i, t.f))
        raise VerifyError(
            f"{what}: element {list(idx)} = {values[idx]!r} is not representable in "
            f"k={k} i={i} f={f}; quantize it first (hgqir.quantize)"
        )
    return m


def exact_from_mantissas(data: np.ndarray, t: FixedType) -> Exact:
    """An unbatched :class:`Exact` from per-element mantissas (const op data)."""
    scale = scale_of(t)
    dtype = dtype_for(t, scale)
    live = ~t.zero_mask
    m = convert(np.where(live, data, 0) if data.dtype != object else _where_obj(live, data), dtype)
    up = np.where(live, scale - t.f, 0)
    if dtype == np.float64:
        m = np.ldexp(m, up)
    else:
        m = m * _pow2(up, dtype)
    return Exact(m, scale)


def _where_obj(mask: np.ndarray, data: np.ndarray) -> np.ndarray:
    out = data.copy()
    out[~mask] = 0
    return out
