"""``fold-batchnorm``: merge a batchnorm into the dense/conv that feeds it, when exact.

``bn(dense(x, w, b), s, o)`` becomes ``dense(x, w*s, b*s + o)`` typed like the batchnorm's
result. Products and sums of fixed-point constants are exact (the new constants get the
minimal types of their values), so the fold is exact whenever the dense's own result is
never cast, i.e. its declared type holds the exact result (the range analysis of
:mod:`hgqir.passes.intervals` decides), and nothing else reads that result. Otherwise the
batchnorm stays as it is: the per-channel affine op of the IR.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from hgqir.fixed import FixedType
from hgqir.ir import Graph, Op, OpKind, Value
from hgqir.ops import Trait

from ._consts import at, atomic, bit_length, mantissas, minimal_const
from .base import Pass, register
from .intervals import Facts, analyze


@dataclass
class FoldReport:
    """Folded batchnorms and the reasons others stayed."""

    folded: list[str] = field(default_factory=list)
    """``"%bn -> %dense"`` per fold."""
    kept: dict[str, str] = field(default_factory=dict)
    """Why each remaining batchnorm could not fold, by its result name."""


def _exactly_kept(facts: Facts, t: FixedType) -> bool:
    """The cast into ``t`` never changes an exact result."""
    e = facts.exact
    zero = (e.lo == 0) & (e.hi == 0)
    fine = np.broadcast_to(e.f, t.shape) <= t.f
    return bool(np.all(zero | (facts.fits & fine & ~facts.unsure)))


def why_not(bn: Op, facts: dict[Value, Facts]) -> str:
    """Why ``bn`` cannot fold ("" when it can)."""
    x = bn.operands[0]
    src = x.producer
    if src is None or Trait.CONTRACTS not in src.rule.traits:
        return f"its input %{x.name} is not made by a dense or conv"
    if len(x.users) != 1:
        return f"%{x.name} has other users"
    if not _exactly_kept(facts[x], x.type):
        return f"%{x.name} is cast into its declared type (it may wrap or truncate): folding would skip that cast"
    return ""


def _product(ma: np.ndarray, mb: np.ndarray) -> np.ndarray:
    """Exact elementwise product of integer mantissas (int64 while it fits)."""
    bits = int(bit_length(np.abs(ma).astype(object) if ma.dtype == object else np.abs(ma)).max(initial=0))
    bits += int(bit_length(np.abs(mb).astype(object) if mb.dtype == object else np.abs(mb)).max(initial=0))
    if bits < 62 and ma.dtype != object and mb.dtype != object:
        return ma.astype(np.int64) * mb.astype(np.int64)
    return ma.astype(object) * mb.astype(object)


def _shift(m: np.ndarray, s: np.ndarray) -> np.ndarray:
    flat = [int(v) << int(n) for v, n in zip(m.reshape(-1), np.broadcast_to(s, m.shape).reshape(-1), strict=True)]
    return np.array(flat, dtype=object).reshape(m.shape)


def folded_constants(lin: Op, bn: Op) -> tuple[tuple[np.ndarray, FixedType], tuple[np.ndarray, FixedType]]:
    """``(w * s, b * s + o)`` as (mantissas, minimal type) pairs."""
    mw, fw = mantissas(lin.operands[1])
    ms, fs = mantissas(bn.operands[1])
    mo, fo = mantissas(bn.operands[2])
    w = minimal_const(_product(mw, ms), fw + fs)
    if len(lin.operands) == 3:
        mb, fb = mantissas(lin.operands[2])
    else:
        mb, fb = np.zeros_like(mo), np.zeros_like(fo)
    bs, fbs = _product(mb, ms), fb + fs
    f = np.maximum(np.where(mb != 0, fbs, fo), np.where(mo != 0, fo, fbs))
    total = np.where(mb != 0, _shift(bs, np.where(mb != 0, f - fbs, 0)), 0)
    total = total + np.where(mo != 0, _shift(mo, np.where(mo != 0, f - fo, 0)), 0)
    return w, minimal_const(np.asarray(total, dtype=object), f)


def fold(g: Graph, bn: Op) -> Op:
    """Replace ``bn`` and its dense/conv by one dense/conv (caller checked :func:`why_not`)."""
    lin = bn.operands[0].producer
    assert lin is not None
    (wd, wt), (bd, bt) = folded_constants(lin, bn)
    w_old, b_old = lin.operands[1], lin.operands[2] if len(lin.operands) == 3 else None
    w = g.const_mantissa(wd, wt, name=w_old.name, before=lin)
    b = g.const_mantissa(bd, bt, name=b_old.name if b_old else f"{lin.result.name}_b", before=lin)
    new = g.add(lin.kind, [lin.operands[0], w, b], dict(lin.attrs), [bn.result.type], name=lin.result.name, before=bn)
    g.replace_uses(bn.result, new.result)
    olds = [v.producer for v in (*bn.operands[1:], *lin.operands[1:])]
    g.erase(bn)
    g.erase(lin)
    for c in olds:
        if c is not None and c.graph is g and not c.result.users:
            g.erase(c)
    for v, name in ((new.result, lin.result.name), (w, w_old.name), (b, b_old.name if b_old else b.name)):
        if v.name != name:
            g.rename(v, name)
    return new


def fold_batchnorms(g: Graph) -> FoldReport:
    """Fold every batchnorm that can fold exactly; report the others (all or nothing)."""
    with atomic(g, "fold-batchnorm"):
        return _fold_all(g)


def _fold_all(g: Graph) -> FoldReport:
    report = FoldReport()
    facts = analyze(g)
    todo = []
    for bn in g.ops_of(OpKind.BATCHNORM):
        reason = why_not(bn, facts)
        if reason:
            report.kept[bn.result.name] = reason
        else:
            todo.append(bn)
    for bn in todo:  # decided on the unchanged graph; each fold touches only its own pair
        name = bn.result.name
        with at("fold-batchnorm", bn):
            into = fold(g, bn)
        report.folded.append(f"%{name} -> %{into.result.name}")
    return report


@register
@dataclass(frozen=True)
class FoldBatchnorm(Pass):
    """Fold batchnorms into the preceding dense/conv where that is exact."""

    name: ClassVar[str] = "fold-batchnorm"

    def apply(self, g: Graph) -> FoldReport:
        return fold_batchnorms(g)
