"""Value-range analysis: the per-element interval every value can take under its declared types.

For each op the analysis computes the *exact* interval of its result (from its operands'
intervals, never from their types alone), then the interval *after* the cast into the
result's declared type (TRN, then WRAP: see ``docs/internals.md``). An interval is
``[lo, hi]`` plus ``f``: every value is a multiple of ``2**-f``. Constants give their own
values and value-based LSBs (trailing zero bits do not count).

Interval endpoints are float64. They are exact while an element needs at most
:data:`SAFE_BITS` bits; wider elements are marked ``unsure`` and passes keep their declared
types.

>>> from hgqir import Graph, FixedType, OpKind
>>> g = Graph()
>>> x = g.input("x", FixedType.uniform((2,), 1, 2, 1))
>>> y = g.add(OpKind.RELU, [x]).result
>>> _ = g.output(y)
>>> facts = analyze(g)
>>> facts[y].post.lo.tolist(), facts[y].post.hi.tolist()
([0.0, 0.0], [3.5, 3.5])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from hgqir.errors import HgqirError
from hgqir.fixed import FixedType, OverflowMode, RoundMode
from hgqir.ir import Graph, Op, OpKind, Value
from hgqir.ops.base import PAD_F, Interval
from hgqir.quantize import _round_float

from ._consts import mantissas, trailing_zeros

SAFE_BITS = 50
"""Elements needing more bits than this are not narrowed (float64 interval arithmetic)."""

Observed = Mapping[Value, tuple[np.ndarray, np.ndarray]]
"""Observed ``(lo, hi)`` per value (calibration data), used instead of static ranges when given."""


@dataclass
class Facts:
    """What the analysis knows about one value."""

    exact: Interval
    """Interval of the op's exact result, before the cast into the declared type."""
    post: Interval
    """Interval of the value as its users see it (after the cast)."""
    fits: np.ndarray
    """Per element: the cast never overflows (only truncation, if anything, happens)."""
    unsure: np.ndarray
    """Per element: too wide for exact float64 interval arithmetic; keep the declared type."""


def const_interval(v: Value) -> Interval:
    """Exact interval of a constant: its values; ``f`` without trailing zero bits (PAD_F for 0)."""
    m, f = mantissas(v)
    tz = trailing_zeros(m)
    vals = np.ldexp(m.astype(np.float64), -f)
    eff = np.where(m == 0, PAD_F, f - tz)
    return Interval(vals, vals.copy(), eff)


def type_interval(t: FixedType) -> Interval:
    """Every value of type ``t``."""
    return Interval.of(t)


def floor_at(x: np.ndarray, f: np.ndarray) -> np.ndarray:
    """``x`` truncated (floor) to a multiple of ``2**-f``; zeros stay zero whatever ``f``."""
    with np.errstate(over="ignore", invalid="ignore"):
        y = np.ldexp(np.floor(np.ldexp(x, f)), -f)
    return np.where(x == 0, 0.0, y) + 0.0


def round_at(x: np.ndarray, f: np.ndarray, mode: RoundMode) -> np.ndarray:
    """``x`` rounded with ``mode`` to a multiple of ``2**-f`` (monotone in ``x``)."""
    with np.errstate(over="ignore", invalid="ignore"):
        y = np.ldexp(_round_float(np.ldexp(x, f), mode), -f)
    return np.where(x == 0, 0.0, y) + 0.0


def _zero_dead(iv: Interval, t: FixedType) -> Interval:
    zero = t.zero_mask | ((iv.lo == 0) & (iv.hi == 0))
    return Interval(np.where(zero, 0.0, iv.lo), np.where(zero, 0.0, iv.hi), np.where(zero, PAD_F, iv.f))


def _unsure(e: Interval, t: FixedType) -> np.ndarray:
    f = np.minimum(e.f, t.f)
    top = np.maximum(np.abs(e.lo), np.abs(e.hi))
    with np.errstate(over="ignore"):
        return (top >= np.ldexp(1.0, SAFE_BITS - f)) & ~t.zero_mask


def cast_interval(e: Interval, t: FixedType) -> tuple[Interval, np.ndarray, np.ndarray]:
    """Interval after the implicit TRN/WRAP cast of exact results ``e`` into ``t``.

    Returns ``(post, fits, unsure)``; where the cast may wrap, ``post`` is the whole range
    of ``t`` (at the finer of the two LSBs).
    """
    e = Interval(*(np.broadcast_to(a, t.shape) for a in (e.lo, e.hi, e.f)))
    f = np.minimum(t.f, e.f)
    lo, hi = floor_at(e.lo, f), floor_at(e.hi, f)
    unsure = _unsure(e, t)
    fits = (lo >= t.lo) & (hi <= t.hi) & ~t.zero_mask & ~unsure
    whole = FixedType(t.shape, t.k, t.i, np.where(unsure | (f <= PAD_F // 2), t.f, f))
    post = Interval(np.where(fits, lo, whole.lo), np.where(fits, hi, whole.hi), np.where(unsure, t.f, f))
    return _zero_dead(post, t), fits, unsure


def lowest(t: FixedType, omode: OverflowMode) -> np.ndarray:
    """Lowest value a quant into ``t`` can give: SAT_SYM drops ``-2**i`` (but 1-bit types keep it)."""
    if omode is OverflowMode.SAT_SYM:
        return np.where((t.k == 1) & (t.width > 1), -t.hi, t.lo)
    return t.lo


def quant_interval(e: Interval, t: FixedType, rmode: RoundMode, omode: OverflowMode) -> Interval:
    """Interval of ``quant(x)`` for ``x`` in ``e`` with the given modes."""
    e = Interval(*(np.broadcast_to(a, t.shape) for a in (e.lo, e.hi, e.f)))
    lo, hi = round_at(e.lo, t.f, rmode), round_at(e.hi, t.f, rmode)
    top, bottom = t.hi, lowest(t, omode)
    fits = (lo >= bottom) & (hi <= top) & ~_unsure(e, t)
    if omode in (OverflowMode.SAT, OverflowMode.SAT_SYM):
        lo_q, hi_q = np.clip(lo, bottom, top), np.clip(hi, bottom, top)
    else:
        lo_q, hi_q = np.where(fits, lo, t.lo), np.where(fits, hi, t.hi)
    f = np.where(fits, np.minimum(t.f, e.f), t.f)
    return _zero_dead(Interval(lo_q, hi_q, f), t)


def _op_facts(op: Op, ins: list[Interval]) -> Facts:
    v = op.result
    t = v.type
    if op.kind is OpKind.CONST:
        iv = const_interval(v)
        return Facts(iv, iv, ~t.zero_mask, np.zeros(t.shape, bool))
    if op.kind is OpKind.INPUT:
        iv = type_interval(t)
        return Facts(iv, iv, ~t.zero_mask, np.zeros(t.shape, bool))
    if op.kind is OpKind.QUANT:
        post = quant_interval(ins[0], t, op.attrs["round"], op.attrs["overflow"])
        return Facts(ins[0], post, np.ones(t.shape, bool), _unsure(ins[0], t))
    transfer = op.rule.transfer
    assert transfer is not None, f"{op.kind.value} has no interval transfer rule"
    exact = transfer(op, ins)
    post, fits, unsure = cast_interval(exact, t)
    return Facts(exact, post, fits, unsure)


def _observe(facts: Facts, lo: np.ndarray, hi: np.ndarray) -> None:
    p = facts.post
    keep = ~facts.unsure
    facts.post = Interval(np.where(keep, np.maximum(p.lo, lo), p.lo), np.where(keep, np.minimum(p.hi, hi), p.hi), p.f)


def analyze(g: Graph, observed: Observed | None = None) -> dict[Value, Facts]:
    """Facts of every value of ``g`` (ops in order); ``observed`` narrows computed values."""
    facts: dict[Value, Facts] = {}
    for op in g.ops:
        if op.kind is OpKind.OUTPUT:
            continue
        missing = [v.name for v in op.operands if v not in facts]
        if missing:
            raise HgqirError(f"range analysis: {op!r} uses %{missing[0]} before its definition; call g.toposort()")
        try:
            found = _op_facts(op, [facts[v].post for v in op.operands])
        except HgqirError:
            raise
        except Exception as e:  # name the op: a failure deep in numpy says nothing
            raise HgqirError(f"range analysis of {op!r} failed: {type(e).__name__}: {e}") from e
        if observed is not None and op.result in observed and op.kind not in (OpKind.INPUT, OpKind.CONST):
            _observe(found, *observed[op.result])
        facts[op.result] = found
    return facts
