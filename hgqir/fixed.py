"""Per-element fixed-point types in the kif convention.

An element of type ``(k, i, f)`` holds multiples of ``2**-f`` in ``[-k*2**i, 2**i - 2**-f]``.
Its width is ``b = k + i + f``; an element with ``b <= 0`` is the constant 0 (pruned).
In C++ it is ``ap_fixed<b, k+i>`` (``ap_ufixed<b, i>`` when ``k == 0``).

>>> t = FixedType.uniform((2, 3), k=1, i=3, f=4)
>>> t.width.max(), t.is_uniform
(np.int64(8), True)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import VerifyError

Shape = tuple[int, ...]


class RoundMode(enum.Enum):
    """ap_fixed quantization (rounding) modes, named as in C++ without the ``AP_`` prefix."""

    TRN = "TRN"
    """Floor (truncate towards -inf): ap_fixed's default."""
    TRN_ZERO = "TRN_ZERO"
    """Truncate towards zero."""
    RND = "RND"
    """Round to nearest, ties towards +inf."""
    RND_ZERO = "RND_ZERO"
    """Round to nearest, ties towards zero."""
    RND_MIN_INF = "RND_MIN_INF"
    """Round to nearest, ties towards -inf."""
    RND_INF = "RND_INF"
    """Round to nearest, ties away from zero."""
    RND_CONV = "RND_CONV"
    """Round to nearest, ties to even (convergent)."""

    @classmethod
    def parse(cls, value: RoundMode | str) -> RoundMode:
        if isinstance(value, RoundMode):
            return value
        name = str(value).upper().removeprefix("AP_")
        try:
            return cls[name]
        except KeyError:
            valid = ", ".join(m.name for m in cls)
            raise ValueError(f"unknown rounding mode {value!r}; valid: {valid}") from None


class OverflowMode(enum.Enum):
    """ap_fixed overflow modes, named as in C++ without the ``AP_`` prefix."""

    WRAP = "WRAP"
    """Two's complement wrap-around modulo ``2**(k+i)``: ap_fixed's default."""
    SAT = "SAT"
    """Clip to ``[-k*2**i, 2**i - 2**-f]``."""
    SAT_SYM = "SAT_SYM"
    """Clip to ``[-(2**i - 2**-f), 2**i - 2**-f]`` for signed types (as SAT when unsigned).

    As in ``ap_fixed``, the most negative value itself also becomes ``-(2**i - 2**-f)``, and a
    1-bit signed type (values ``-2**i`` and 0) has no symmetric range and saturates like SAT.
    """
    SAT_ZERO = "SAT_ZERO"
    """Overflowing values become 0."""

    @classmethod
    def parse(cls, value: OverflowMode | str) -> OverflowMode:
        if isinstance(value, OverflowMode):
            return value
        name = str(value).upper().removeprefix("AP_")
        try:
            return cls[name]
        except KeyError:
            valid = ", ".join(m.name for m in cls)
            raise ValueError(f"unknown overflow mode {value!r}; valid: {valid}") from None


def _as_int_array(name: str, value: Any, shape: Shape) -> np.ndarray:
    """A read-only int64 array of ``shape`` that no caller can change afterwards."""
    arr = np.asarray(value)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise VerifyError(f"FixedType.{name} must hold integers, got {arr.dtype} values")
    elif arr.dtype.kind not in "iub":
        raise VerifyError(f"FixedType.{name} must be an integer array, got dtype {arr.dtype}")
    if arr.ndim == 0 or arr.strides == (0,) * arr.ndim and arr.size:
        arr = np.asarray(int(arr.flat[0]) if arr.size else 0, dtype=np.int64)
    else:
        arr = np.array(arr, dtype=np.int64, copy=True)
    arr.flags.writeable = False
    try:
        return np.broadcast_to(arr, shape)
    except ValueError:
        raise VerifyError(
            f"FixedType.{name} of shape {arr.shape} does not broadcast to the tensor shape {shape}"
        ) from None


@dataclass(frozen=True, eq=False)
class FixedType:
    """Per-element fixed-point type of a tensor: read-only integer arrays ``k``, ``i``, ``f``.

    The arrays always have the tensor's ``shape``; a uniform type holds scalar-broadcast views
    (no memory per element).
    """

    shape: Shape
    """Shape of the tensor the type describes (no batch dimension)."""
    k: np.ndarray = field(repr=False)
    """Sign bit per element: 0 (unsigned) or 1 (signed)."""
    i: np.ndarray = field(repr=False)
    """Integer bits per element, sign excluded; may be negative."""
    f: np.ndarray = field(repr=False)
    """Fractional bits per element; may be negative."""

    def __init__(self, shape: Shape | list[int], k: Any, i: Any, f: Any) -> None:
        shape = tuple(int(s) for s in shape)
        if any(s < 0 for s in shape):
            raise VerifyError(f"FixedType shape {shape} has a negative dimension")
        object.__setattr__(self, "shape", shape)
        for name, value in (("k", k), ("i", i), ("f", f)):
            object.__setattr__(self, name, _as_int_array(name, value, shape))
        self.__post_init__()

    def __post_init__(self) -> None:
        if self.k.size and not np.all((self.k == 0) | (self.k == 1)):
            bad = np.unique(self.k[(self.k != 0) & (self.k != 1)])
            raise VerifyError(f"FixedType.k must be 0 or 1, got {bad.tolist()[:5]}")

    # ----------------------------------------------------------------- constructors
    @classmethod
    def uniform(cls, shape: Shape | list[int], k: int, i: int, f: int) -> FixedType:
        """The same ``(k, i, f)`` for every element of ``shape``."""
        return cls(shape, np.int64(k), np.int64(i), np.int64(f))

    @classmethod
    def zero(cls, shape: Shape | list[int]) -> FixedType:
        """Every element pruned (width 0)."""
        return cls.uniform(shape, 0, 0, 0)

    @classmethod
    def from_ap(cls, shape: Shape, width: int, integer: int, signed: bool = True) -> FixedType:
        """From C++ ``ap_fixed<width, integer>`` (``signed=False``: ``ap_ufixed``)."""
        k = int(signed)
        return cls.uniform(shape, k, integer - k, width - integer)

    @classmethod
    def covering(cls, lo: np.ndarray, hi: np.ndarray, f: Any) -> FixedType:
        """Smallest per-element type with ``f`` fractional bits holding every value in [lo, hi].

        ``lo`` and ``hi`` need not lie on the ``2**-f`` grid: the type then holds every value of
        the interval truncated (floored) onto the grid, as ``avgpool`` produces. Computed with
        ``frexp``, exact for any float64 bounds.

        >>> t = FixedType.covering(np.array([-1.0, 0.0]), np.array([0.75, 4.0]), 2)
        >>> t.k.tolist(), t.i.tolist(), t.f.tolist()
        ([1, 0], [0, 3], [2, 2])
        """
        shape = np.broadcast_shapes(np.shape(lo), np.shape(hi), np.shape(f))
        f = np.broadcast_to(np.asarray(f, dtype=np.int64), shape)
        lo_v = np.broadcast_to(np.asarray(lo, dtype=np.float64), shape)
        hi_v = np.broadcast_to(np.asarray(hi, dtype=np.float64), shape)
        if not (np.all(np.isfinite(lo_v)) and np.all(np.isfinite(hi_v))):
            raise VerifyError(
                "range too large for a fixed-point type: a bound exceeds float64 (about 2**1024); "
                "narrow the operand types before this op"
            )
        with np.errstate(over="ignore", invalid="ignore"):
            lo = np.floor(np.ldexp(lo_v, f))
            hi = np.floor(np.ldexp(hi_v, f))
        # lo and hi are now grid values in LSB units: need 2**(i+f) > hi and 2**(i+f) >= -lo.
        # Where v * 2**f overflows, v is already on the grid (its ulp exceeds 2**-f), so the
        # exponent of v plus f is the exponent in LSB units.
        e_hi, e_lo, m_lo = _lsb_exponents(lo, hi, lo_v, hi_v, f)
        need_hi = np.where(hi > 0, e_hi, np.iinfo(np.int32).min)
        need_lo = np.where(lo < 0, np.where(m_lo == 0.5, e_lo - 1, e_lo), np.iinfo(np.int32).min)
        zero = (hi <= 0) & (lo >= 0)
        i = np.maximum(need_hi, need_lo).astype(np.int64) - f
        k = (lo < 0).astype(np.int64)
        return cls(shape, np.where(zero, 0, k), np.where(zero, 0, i), np.where(zero, 0, f))

    # ----------------------------------------------------------------- properties
    @property
    def width(self) -> np.ndarray:
        """Total bits ``k + i + f`` per element (values <= 0 mean pruned)."""
        return self.k + self.i + self.f

    @property
    def bits(self) -> np.ndarray:
        """Width clipped at 0: the number of bits an element really costs."""
        return np.maximum(self.width, 0)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def is_uniform(self) -> bool:
        return all(_is_constant(a) for a in (self.k, self.i, self.f))

    @property
    def zero_mask(self) -> np.ndarray:
        """True where the element is pruned (width <= 0)."""
        return self.width <= 0

    @property
    def lo(self) -> np.ndarray:
        """Smallest representable value per element (0 for pruned elements)."""
        v = -self.k * np.ldexp(1.0, self.i)
        return np.where(self.zero_mask, 0.0, v)

    @property
    def hi(self) -> np.ndarray:
        """Largest representable value per element (0 for pruned elements)."""
        v = np.ldexp(1.0, self.i) - np.ldexp(1.0, -self.f)
        return np.where(self.zero_mask, 0.0, v)

    def scalar(self) -> tuple[int, int, int]:
        """``(k, i, f)`` of a uniform type; raises if the type is not uniform."""
        if not self.is_uniform:
            raise ValueError("type is not uniform")
        if self.size == 0:
            return (0, 0, 0)
        return (int(self.k.flat[0]), int(self.i.flat[0]), int(self.f.flat[0]))

    def union(self) -> tuple[int, int, int]:
        """One ``(k, i, f)`` holding every non-pruned element's values (C++ common type)."""
        live = ~self.zero_mask
        if not live.any():
            return (0, 0, 0)
        return (int(self.k[live].max()), int(self.i[live].max()), int(self.f[live].max()))

    def canonical(self) -> FixedType:
        """Same values; pruned elements normalised to ``(0, 0, 0)``, uniform arrays collapsed."""
        z = self.zero_mask
        k, i, f = (np.where(z, 0, a) for a in (self.k, self.i, self.f))
        t = FixedType(self.shape, k, i, f)
        if t.is_uniform and t.size:
            return FixedType.uniform(self.shape, *t.scalar())
        return t

    def reshape(self, shape: Shape) -> FixedType:
        if self.is_uniform:
            return FixedType.uniform(shape, *self.scalar())
        return FixedType(shape, self.k.reshape(shape), self.i.reshape(shape), self.f.reshape(shape))

    def map(self, fn: Any) -> FixedType:
        """Apply an array function (transpose, index, ...) to k, i and f alike."""
        k, i, f = (np.asarray(fn(np.asarray(a))) for a in (self.k, self.i, self.f))
        return FixedType(k.shape, k, i, f)

    def __getitem__(self, index: Any) -> FixedType:
        return self.map(lambda a: a[index])

    def contains(self, other: FixedType) -> bool:
        """True if every value of ``other`` is representable in ``self`` (same shape)."""
        if other.shape != self.shape:
            return False
        live = ~other.zero_mask
        ok = (self.f >= other.f) & (self.lo <= other.lo) & (self.hi >= other.hi) & ~self.zero_mask
        return bool(np.all(ok | ~live))

    # ----------------------------------------------------------------- value semantics
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FixedType):
            return NotImplemented
        return self.shape == other.shape and all(np.array_equal(getattr(self, n), getattr(other, n)) for n in "kif")

    def __hash__(self) -> int:
        if self.is_uniform:
            return hash((self.shape, self.scalar()))
        return hash((self.shape, self.union()))

    def __repr__(self) -> str:
        if self.is_uniform:
            k, i, f = self.scalar()
            return f"FixedType({list(self.shape)}, k={k}, i={i}, f={f})"
        return f"FixedType({list(self.shape)}, {summary(self)})"


def _lsb_exponents(
    lo: np.ndarray, hi: np.ndarray, lo_v: np.ndarray, hi_v: np.ndarray, f: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """frexp exponents of ``hi`` and ``-lo`` in LSB units (and -lo's mantissa), overflow-safe."""
    big_hi, big_lo = ~np.isfinite(hi), ~np.isfinite(lo)
    _, e_hi = np.frexp(np.where(big_hi, hi_v, hi))
    m_lo, e_lo = np.frexp(np.where(big_lo, -lo_v, -lo))
    return np.where(big_hi, e_hi + f, e_hi), np.where(big_lo, e_lo + f, e_lo), m_lo


def _is_constant(a: np.ndarray) -> bool:
    if a.size <= 1 or a.strides == (0,) * a.ndim:
        return True
    flat = a.reshape(-1)
    return bool(np.all(flat == flat[0]))


def _span(a: np.ndarray) -> str:
    lo, hi = int(a.min()), int(a.max())
    return str(lo) if lo == hi else f"{lo}..{hi}"


def summary(t: FixedType) -> str:
    """Human summary such as ``k=1 i=0..7 f=2..6 zero=3/64`` (used by the elided text form)."""
    if t.size == 0:
        return "empty"
    z = t.zero_mask
    live = ~z
    if not live.any():
        return f"zero={t.size}/{t.size}"
    parts = [f"{n}={_span(getattr(t, n)[live])}" for n in "kif"]
    if z.any():
        parts.append(f"zero={int(z.sum())}/{t.size}")
    return " ".join(parts)


def ap_type_name(k: int, i: int, f: int) -> str:
    """C++ spelling of one element type; ``'0'`` stands for a pruned element."""
    b = k + i + f
    if b <= 0:
        return "0"
    return f"ap_fixed<{b},{k + i}>" if k else f"ap_ufixed<{b},{i}>"
