"""``fuse-quant``: merge ``quant(quant(x))`` into one quant when that is exact.

With ``q1`` the inner quant (type ``T1``, modes ``r1``/``o1``) and ``q2`` the outer one, the
rules, tried in order, are:

``skip-inner``
    ``q1`` never changes ``x`` (``x``'s range and LSB fit ``T1``): ``q2`` reads ``x``.
``skip-outer``
    ``q2`` never changes ``q1``'s results: ``q2``'s users read ``q1``.
``wrap-wrap`` / ``sat-sat``
    Both overflow modes are WRAP (or both SAT), ``T2`` is no finer (``f2 <= f1``) and no
    wider (WRAP: ``k2+i2 <= k1+i1``; SAT: ``T2``'s range inside ``T1``'s), and one rounding
    step does both roundings: when ``f2 == f1`` it is ``r1``; when ``q1`` never rounds (``x``
    already on ``T1``'s grid) it is ``r2``; when ``r1`` is TRN and ``r2`` is TRN or RND it is
    ``r2`` (``floor`` onto a finer grid before ``floor(v + half)`` changes nothing).
    WRAP rules also need ``r2`` to commute with wrapping (sign-independent modes only).

The outer quant keeps its result type and name: only its operand and rounding change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from hgqir.fixed import OverflowMode, RoundMode
from hgqir.ir import Graph, Op, OpKind, Value
from hgqir.ops import Trait
from hgqir.ops.base import PAD_F, Interval

from ._consts import at, atomic
from .base import Pass, register
from .intervals import Facts, analyze, lowest

_SHIFT_SAFE = (RoundMode.TRN, RoundMode.RND, RoundMode.RND_MIN_INF, RoundMode.RND_CONV)
"""Rounding modes with round(v + n * M) == round(v) + n * M for M an even number of LSBs."""


@dataclass
class FuseReport:
    """Which rule merged each outer quant (by result name)."""

    fused: dict[str, str] = field(default_factory=dict)


def within(iv: Interval, q: Op) -> bool:
    """Every value of ``iv`` passes quant ``q`` unchanged (SAT_SYM also clips the lowest value)."""
    t = q.result.type
    zero = (iv.lo == 0) & (iv.hi == 0)
    bottom = lowest(t, q.attrs["overflow"])
    ok = ~t.zero_mask & (iv.lo >= bottom) & (iv.hi <= t.hi) & (np.broadcast_to(iv.f, t.shape) <= t.f)
    return bool(np.all(zero | ok))


def merged_rounding(q1: Op, q2: Op, x_iv: Interval) -> RoundMode | None:
    """One rounding mode doing both quants' roundings, or None."""
    t1, t2 = q1.result.type, q2.result.type
    live = ~t2.zero_mask
    if not np.all((t2.f <= t1.f) | ~live):
        return None
    r1, r2 = q1.attrs["round"], q2.attrs["round"]
    if np.all((t2.f == t1.f) | ~live):
        return r1
    x_live = np.broadcast_to(x_iv.f > PAD_F // 2, t1.shape)
    if np.all((np.broadcast_to(x_iv.f, t1.shape) <= t1.f) | ~x_live):
        return r2
    if r1 is RoundMode.TRN and r2 in (RoundMode.TRN, RoundMode.RND):
        return r2
    return None


def _overflow_ok(q1: Op, q2: Op, rnd: RoundMode) -> bool:
    t1, t2 = q1.result.type, q2.result.type
    o1, o2 = q1.attrs["overflow"], q2.attrs["overflow"]
    live = ~t2.zero_mask
    if o1 is OverflowMode.WRAP and o2 is OverflowMode.WRAP:
        return rnd in _SHIFT_SAFE and bool(np.all((t2.k + t2.i <= t1.k + t1.i) | ~live))
    if o1 is OverflowMode.SAT and o2 is OverflowMode.SAT:
        return bool(np.all(((t2.lo >= t1.lo) & (t2.hi <= t1.hi) & ~t1.zero_mask) | ~live))
    return False


def _type_read(v: Value) -> bool:
    """A lut/softmax indexes its tables by ``v``'s type: that type must stay."""
    return any(Trait.READS_TABLE in u.rule.traits and u.operands[0] is v for u in v.users)


def try_fuse(g: Graph, q2: Op, facts: dict[Value, Facts]) -> str:
    """Apply the first rule that fits ``q2`` over its producing quant; returns the rule name."""
    q1 = q2.operands[0].producer
    if q1 is None or q1.kind is not OpKind.QUANT:
        return ""
    x = q1.operands[0]
    if within(facts[x].post, q1):
        g.set_operand(q2, 0, x)
        return "skip-inner"
    if within(facts[q1.result].post, q2) and not _type_read(q2.result):
        g.replace_uses(q2.result, q1.result)
        g.erase(q2)
        return "skip-outer"
    rnd = merged_rounding(q1, q2, facts[x].post)
    if rnd is None or not _overflow_ok(q1, q2, rnd):
        return ""
    g.set_operand(q2, 0, x)
    q2.attrs["round"] = rnd
    return "wrap-wrap" if q2.attrs["overflow"] is OverflowMode.WRAP else "sat-sat"


def _drop_unused(g: Graph, op: Op) -> None:
    if op.graph is g and not any(v.users for v in op.results):
        g.erase(op)


def fuse_quants(g: Graph, max_rounds: int = 10) -> FuseReport:
    """Fuse quant pairs until none is left.

    A fusion never changes a value, so the range facts stay valid within a round; a new
    round catches chains of three or more quants. All or nothing.
    """
    with atomic(g, "fuse-quant"):
        return _fuse_rounds(g, max_rounds)


def _fuse_rounds(g: Graph, max_rounds: int) -> FuseReport:
    report = FuseReport()
    for _ in range(max_rounds):
        facts = analyze(g)
        changed = False
        for q2 in list(g.ops_of(OpKind.QUANT)):
            if q2.graph is not g:
                continue
            q1 = q2.operands[0].producer
            name = q2.result.name
            with at("fuse-quant", q2):
                rule = try_fuse(g, q2, facts)
            if rule:
                report.fused[name] = rule
                changed = True
                _drop_unused(g, q1)  # type: ignore[arg-type]
        if not changed:
            break
    return report


@register
@dataclass(frozen=True)
class FuseQuant(Pass):
    """Merge consecutive quants where one quant gives the same results."""

    name: ClassVar[str] = "fuse-quant"

    def apply(self, g: Graph) -> FuseReport:
        return fuse_quants(g)
