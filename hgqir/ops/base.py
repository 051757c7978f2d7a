"""The rule table entry every op kind has: everything the compiler knows about that kind.

Adding an op kind touches one place here plus one lowering per backend:

1. one :class:`~hgqir.ir.OpKind` member (its text name);
2. one :class:`OpRule` registered with :func:`register`, usually in a module of this package,
   giving: operand / result counts, attribute schema (``attrs``), ``shapes``, ``infer`` (the
   smallest exact result types), ``transfer`` (the exact result *interval* from operand
   intervals, used by bitwidth inference), ``eval`` (bit-exact evaluation on mantissas),
   ``bops`` (its EBOPs rule), ``traits`` (what passes may assume: :class:`Trait`), ``cast``
   (who puts results into their declared types: :class:`Cast`), ``kernel`` (the interpreter's
   fast kernel, if any), ``check`` (extra verification), ``doc``;
3. one lowering in each backend (``backends/vitis``, ``backends/hls4ml``), or that backend's
   unsupported-op error names it.

Printer, parser, verifier, interpreter, passes and backends all read this table; a test
(``tests/core/test_rules.py``) checks that every kind has a complete rule.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

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


class Trait(enum.Flag):
    """What passes and backends may assume about an op kind (queried instead of kind sets)."""

    NONE = 0
    CONTRACTS = enum.auto()
    """A weighted sum over the last input axis (dense, conv): operands x, weights, bias."""
    CHANNELWISE = enum.auto()
    """One data operand; output channel c depends only on input channel c (last axis)."""
    MERGES = enum.auto()
    """Several data operands combined elementwise or side by side (add, sub, mul, concat)."""
    MOVES_DATA = enum.auto()
    """Only moves elements (reshape, transpose, concat): values and types travel unchanged."""
    READS_TABLE = enum.auto()
    """Operand 0 indexes a table built for its exact type (lut, softmax): its type must not change."""
    MULTIPLIES = enum.auto()
    """Elementwise products of two quantized operands (mul, batchnorm)."""
    BOUNDARY = enum.auto()
    """Graph input, constant or output: no computation."""


class Cast(enum.Enum):
    """Who puts an op's results into their declared types."""

    AFTER_EVAL = "after-eval"
    """``eval`` returns exact values; the interpreter casts them (TRN, WRAP) into the declared
    type where that type does not contain the inferred one (:func:`cast_needed`)."""
    BY_EVAL = "by-eval"
    """``eval`` already returns values in the result types (quant, input, const, average pooling)."""


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
    transfer: Callable[[Op, list[Interval]], Interval] | None = None
    """Exact result interval from operand intervals (ranges narrower than a type's stay narrow).
    None only for kinds whose interval is their type or value (input, const, quant, output)."""
    traits: Trait = Trait.NONE
    cast: Cast = Cast.AFTER_EVAL
    kernel: str = "generic"
    """Interpreter kernel (:class:`hgqir.interp.Runner`): ``generic`` (``eval``), ``input``,
    ``none`` (nothing to compute), ``dense``, ``unary`` (float64 kernels where proven exact)."""
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


def cast_needed(op: Op) -> list[bool]:
    """Whether each result must be cast (TRN, WRAP) into its declared type after ``eval``."""
    rule = op.rule
    if rule.cast is Cast.BY_EVAL:
        return [False] * len(op.results)
    exact = rule.infer(op)
    return [not v.type.contains(t) for v, t in zip(op.results, exact, strict=True)]


_F = TypeVar("_F")


def registrar(table: dict[Any, _F]) -> Callable[..., Callable[[_F], _F]]:
    """The ``@lowers(kind, ...)`` decorator of a backend's lowering table (one function per kind)."""

    def lowers(*kinds: OpKind) -> Callable[[_F], _F]:
        def register(fn: _F) -> _F:
            for kind in kinds:
                table[kind] = fn
            return fn

        return register

    return lowers


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


BIG_F = 1 << 30
"""LSB exponent of results that have no finite exact LSB (a division by a non power of two)."""


def dead(f: np.ndarray) -> np.ndarray:
    """Elements whose LSB exponent marks them as padding / always zero."""
    return f <= PAD_F // 2


def bcast(shape: tuple[int, ...], *arrays: np.ndarray) -> list[np.ndarray]:
    return [np.broadcast_to(a, shape) for a in arrays]


def derived_infer(transfer: Callable[[Op, list[Interval]], Interval]) -> Callable[[Op], list[FixedType]]:
    """``infer`` of a kind whose exact type is its transfer over the operands' own intervals."""

    def infer(op: Op) -> list[FixedType]:
        return [transfer(op, [interval_of(v) for v in op.operands]).to_type()]

    return infer


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
