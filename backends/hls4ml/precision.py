"""From hgqir's per-element kif types to hls4ml's one-type-per-tensor precisions.

An hls4ml tensor has a single ``ap_fixed`` type. A per-element IR value is held in the
*union* of its element types (one type that represents every element exactly); the
per-element widths survive in a ``FixedPointQuantizer`` layer whose generated code casts each
element into its own ``ap_fixed``. Casting into the union with TRN/WRAP and then into each
element type with TRN/WRAP equals the direct TRN/WRAP cast: floors at a coarser grid compose,
and the union's wrap modulus is a multiple of every element's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hgqir.errors import UnsupportedOpError
from hgqir.fixed import FixedType, OverflowMode, RoundMode

Kif = tuple[int, int, int]
"""``(k, i, f)`` of one ``ap_fixed`` type (sign bit, integer bits without sign, fractional bits)."""

EMPTY_KIF: Kif = (0, 0, 1)
"""Holder of a tensor whose every element is pruned: ``ap_ufixed<1,0>`` (the values are all 0)."""

DOUBLE_BITS = 53
"""hls4ml writes constants as decimal text read back through ``double``: exact up to 53 bits."""


def union_kif(t: FixedType) -> Kif:
    """One type holding every live element of ``t``; :data:`EMPTY_KIF` when all are pruned."""
    k, i, f = t.union()
    return (k, i, f) if k + i + f > 0 else EMPTY_KIF


def width(kif: Kif) -> int:
    return kif[0] + kif[1] + kif[2]


def is_plain(t: FixedType) -> bool:
    """True when ``t`` is one ``ap_fixed`` type: uniform and not pruned."""
    return t.is_uniform and t.size > 0 and int(t.width.flat[0]) > 0


def to_precision(kif: Kif, round: RoundMode = RoundMode.TRN, overflow: OverflowMode = OverflowMode.WRAP) -> Any:
    """hls4ml ``FixedPrecisionType`` of ``kif`` (``ap_fixed<k+i+f, k+i, round, overflow>``)."""
    from hls4ml.model.types import FixedPrecisionType

    k, i, f = kif
    if k + i + f <= 0:
        raise ValueError(f"kif {kif} has no bits; use EMPTY_KIF for pruned tensors")
    return FixedPrecisionType(k + i + f, k + i, bool(k), round.value, overflow.value)


def same_precision(a: Any, b: Any) -> bool:
    """Equal hls4ml precisions (width, integer bits, sign and modes)."""
    return str(a) == str(b)


def mask_kbi(t: FixedType) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(k, B, I)`` arrays of shape ``(1, *shape)`` for hls4ml's FixedPointQuantizer.

    ``B`` is the width (0 for pruned elements, which the generated code sets to 0) and ``I``
    the integer bits including the sign.
    """
    live = t.width > 0
    k = np.where(live, t.k, 0)
    b = np.where(live, t.width, 0)
    i = np.where(live, t.k + t.i, 0)
    return tuple(np.asarray(a, dtype=np.int64).reshape(1, *t.shape) for a in (k, b, i))  # type: ignore[return-value]


def kif_holds(kif: Kif, t: FixedType) -> bool:
    """True if every value of ``t`` is representable in the single type ``kif``."""
    return FixedType.uniform(t.shape, *kif).contains(t)


def values_kif(values: np.ndarray) -> Kif:
    """Smallest single type holding every float in ``values`` exactly (they must be dyadic)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    nz = v[v != 0]
    if nz.size == 0:
        return EMPTY_KIF
    mant, exp = np.frexp(np.abs(nz))
    m = np.ldexp(mant, 53).astype(np.int64)  # exact: 53-bit integers
    trailing = np.array([(int(x) & -int(x)).bit_length() - 1 for x in m])
    f = int(np.max(53 - exp - trailing))  # value = odd * 2**-f_element
    t = FixedType.covering(np.array([v.min()]), np.array([v.max()]), np.array([f]))
    return union_kif(t)


def check_const_width(kif: Kif, what: str) -> None:
    """hls4ml prints constants through ``double``; wider constants cannot be written exactly."""
    if width(kif) > DOUBLE_BITS:
        raise UnsupportedOpError(
            f"{what} needs {width(kif)} bits; hls4ml writes constants as decimal text read back "
            f"through double, exact only up to {DOUBLE_BITS} bits"
        )
