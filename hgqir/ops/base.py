"""The rule table entry every op kind has: attributes, shapes, types, exact evaluation, EBOPs.

Adding an op kind means adding one :class:`OpRule` (usually in a module of this package) and
one :class:`~hgqir.ir.OpKind` member; printer, parser, verifier and interpreter use the table.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import VerifyError
from ..fixed import FixedType, OverflowMode, RoundMode, Shape
from ..numbers import Exact

if TYPE_CHECKING:
    from ..ir import Op, OpKind

EXACT_BOUND_BITS = 51
"""Interval bounds below ``2**EXACT_BOUND_BITS`` LSBs are exact in float64 (see Interval.to_type)."""
PAD_F = -(2**20)
"""``f`` given to padding zeros in interval arithmetic: finer than nothing, so never the max."""


@dataclass(frozen=True)
class Attr:
    """Schema of one attribute: its Python type, whether it is required, its default."""

    kind: str
    """One of ``int``, ``ints``, ``pads``, ``bool``, ``str``, ``round``, ``overflow``, ``array``, ``kif``."""
    default: Any = None
    required: bool = False

    def normalize(self, name: str, value: Any) -> Any:
        try:
            return _NORMALIZERS[self.kind](value)
        except (TypeError, ValueError) as e:
            raise VerifyError(f"attribute {name}: {e}") from None


def _ints(v: Any) -> tuple[int, ...]:
    if isinstance(v, (int, np.integer)):
        return (int(v),)
    return tuple(int(x) for x in v)


def _pads(v: Any) -> tuple[tuple[int, int], ...]:
    return tuple((int(a), int(b)) for a, b in v)


def _bool(v: Any) -> bool:
    if isinstance(v, str):
        if v.lower() in ("true", "false"):
            return v.lower() == "true"
        raise ValueError(f"expected true or false, got {v!r}")
    return bool(v)


def _array(v: Any) -> np.ndarray:
    a = np.asarray(v)
    if a.dtype.kind not in "iuO":
        raise ValueError(f"expected integer mantissas, got dtype {a.dtype}")
    a = a.astype(np.int64) if a.dtype.kind in "iu" else a
    a.flags.writeable = False
    return a


def _kif(v: Any) -> tuple[int, int, int]:
    k, i, f = (int(x) for x in v)
    if k not in (0, 1):
        raise ValueError(f"k must be 0 or 1, got {k}")
    return (k, i, f)


_NORMALIZERS: dict[str, Callable[[Any], Any]] = {
    "int": int,
    "ints": _ints,
    "pads": _pads,
    "bool": _bool,
    "str": str,
    "round": RoundMode.parse,
    "overflow": OverflowMode.parse,
    "array": _array,
    "kif": _kif,
}


def _no_bops(op: Op) -> float:
    return 0.0


@dataclass(frozen=True)
class OpRule:
    """Everything hgqir knows about one op kind."""

    kind: OpKind
    operands: tuple[int, int]
    """Minimum and maximum operand count (-1: unbounded)."""
    results: int
    attrs: dict[str, Attr]
    shapes: Callable[[Op], list[Shape]]
    """Result shapes from operand shapes and attributes; raises VerifyError when inconsistent."""
    infer: Callable[[Op], list[FixedType]]
    """Smallest exact result types for inputs of the operands' types (never overflows)."""
    eval: Callable[[Op, list[Exact]], list[Exact]]
    """Exact evaluation on batched mantissas; results are cast into the result types afterwards."""
    bops: Callable[[Op], float] = _no_bops
    """EBOPs of the op with its current types (see hgqir.passes.bops for the rules)."""
    check: Callable[[Op], None] | None = None
    """Extra verification (constants, attribute ranges)."""
    casts_itself: bool = False
    """``eval`` already returns values in the result types (no cast afterwards)."""
    doc: str = ""
    operand_names: tuple[str, ...] = field(default=())
    data_operands: int = -1
    """Operands before this index carry the batch axis at run time; later ones are unbatched
    constants (weights, tables). -1: every operand is data."""

    def normalize_attrs(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(attrs) - set(self.attrs))
        if unknown:
            valid = ", ".join(sorted(self.attrs)) or "none"
            raise VerifyError(f"{self.kind.value}: unknown attribute(s) {unknown}; valid: {valid}")
        out: dict[str, Any] = {}
        for name, spec in self.attrs.items():
            if name in attrs:
                out[name] = spec.normalize(name, attrs[name])
            elif spec.required:
                raise VerifyError(f"{self.kind.value}: attribute {name!r} is required")
            elif spec.default is not None:
                out[name] = spec.normalize(name, spec.default)
        return out


RULES: dict[Any, OpRule] = {}


def register(rule: OpRule) -> OpRule:
    RULES[rule.kind] = rule
    return rule


# ---------------------------------------------------------------- interval helpers
@dataclass
class Interval:
    """Per-element value range ``[lo, hi]`` (float64) and LSB exponent ``f`` (int64)."""

    lo: np.ndarray
    hi: np.ndarray
    f: np.ndarray

    @classmethod
    def of(cls, t: FixedType) -> Interval:
        f = np.where(t.zero_mask, PAD_F, t.f)
        return cls(np.asarray(t.lo, dtype=np.float64), np.asarray(t.hi, dtype=np.float64), f)

    @classmethod
    def of_const(cls, op: Op) -> Interval:
        """Exact interval of a constant: its own values, its trailing-zero-free LSBs."""
        from ..numbers import exact_from_mantissas

        t = op.result.type
        vals = exact_from_mantissas(op.attrs["data"], t).values()
        f = np.where((vals == 0) | t.zero_mask, PAD_F, t.f)
        return cls(vals, vals, f)

    def to_type(self) -> FixedType:
        """The smallest type holding the interval; one guard bit where float64 bounds may have rounded.

        Interval bounds are float64: exact while they stay below ``2**EXACT_BOUND_BITS`` LSBs
        (every rule here sums same-signed terms). Wider elements get one more integer bit, so
        that a bound rounded down can never let a value overflow its inferred type.
        """
        zero = (self.lo == 0) & (self.hi == 0)
        f = np.where(zero, 0, self.f)
        t = FixedType.covering(self.lo, self.hi, f)
        wide = (t.i + t.f >= EXACT_BOUND_BITS) & ~t.zero_mask
        if not wide.any():
            return t
        return FixedType(t.shape, t.k, t.i + wide, t.f)


def interval_of(v: Any) -> Interval:
    """Interval of a value: exact values for constants, the type's range otherwise."""
    from ..ir import OpKind

    if v.producer is not None and v.producer.kind is OpKind.CONST:
        return Interval.of_const(v.producer)
    return Interval.of(v.type)


def same_shape(op: Op) -> list[Shape]:
    return [op.operands[0].shape]


def expect(cond: bool, op: Op, message: str) -> None:
    if not cond:
        raise VerifyError(f"{op.kind.value}: {message}")


def broadcast_shapes(op: Op, shapes: Sequence[Shape]) -> Shape:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise VerifyError(f"{op.kind.value}: operand shapes {[list(s) for s in shapes]} do not broadcast") from None


def is_enum(value: Any) -> bool:
    return isinstance(value, enum.Enum)
