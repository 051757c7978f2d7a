"""Which channels of each group can go, and what folds into the next layer's bias.

A channel can go when every sink either ignores it (its weight rows are all zero) or reads a
constant from it that can move into the sink's bias exactly: a dense always; a convolution
only without padding (border windows would see fewer copies), unless the constant is 0.
Graph outputs (``keep-io=false``) let a channel go only when it is always 0. A group keeps at
least one channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hgqir.ir import Op, OpKind, Value

from ._consts import mantissas
from .channels import Group
from .intervals import Facts


@dataclass
class Fold:
    """Constant channels of a sink's input: they move into its bias."""

    channels: np.ndarray
    """Indices (in the sink's input channels) of the constants."""
    mantissas: np.ndarray
    """Integer mantissa of each constant (object array of Python ints)."""
    f: np.ndarray
    """Fractional bits of each constant."""


@dataclass
class ChannelPlan:
    """Everything a sweep of ``prune-zero-bits`` changes, decided before any change."""

    keep: dict[Value, np.ndarray] = field(default_factory=dict)
    """Kept channel indices of every shrinking value."""
    rows: dict[Op, np.ndarray] = field(default_factory=dict)
    """Kept input channels of each sink (dense/conv weight rows)."""
    cols: dict[Op, np.ndarray] = field(default_factory=dict)
    """Kept output channels of each source (dense/conv weight columns and bias)."""
    params: dict[tuple[Op, int], np.ndarray] = field(default_factory=dict)
    """Kept entries (last axis) of per-channel constants."""
    folds: dict[Op, Fold] = field(default_factory=dict)
    """Constants to fold into each sink's bias."""
    removed: int = 0
    """Channels removed in total."""

    def __bool__(self) -> bool:
        return self.removed > 0


def _rows_zero(sink: Op) -> np.ndarray:
    """Per input channel of a dense/conv: all its weights are 0."""
    m, _ = mantissas(sink.operands[1])
    cin, cout = sink.operands[1].shape[-2:]
    return np.all(m.reshape(-1, cin, cout) == 0, axis=(0, 2))


def _constants(x: Value, facts: dict[Value, Facts]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per channel of ``x``: always the same value everywhere? That value, and its LSB exponent."""
    p = facts[x].post
    c = x.shape[-1]
    lo, hi = (np.broadcast_to(a, x.shape).reshape(-1, c) for a in (p.lo, p.hi))
    f = np.broadcast_to(p.f, x.shape).reshape(-1, c).max(axis=0)
    const = np.all(lo == hi, axis=0) & np.all(lo == lo[:1], axis=0)
    value = lo[0] if lo.shape[0] else np.zeros(c)
    return const, value, np.where(value == 0, 0, f)


def _sink_ok(sink: Op, facts: dict[Value, Facts]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Removable channels of a sink's input; constants (mask, value, f) to fold."""
    dead = _rows_zero(sink)
    const, value, f = _constants(sink.operands[0], facts)
    if sink.kind is not OpKind.DENSE and any(a or b for a, b in sink.attrs["pad"]):
        const &= value == 0
    return dead | const, const & ~dead & (value != 0), value, f


def _output_ok(out: Op, facts: dict[Value, Facts]) -> np.ndarray:
    const, value, _ = _constants(out.operands[0], facts)
    return const & (value == 0)


def _union_changes(v: Value, keep: np.ndarray) -> bool:
    return v.type.map(lambda a: np.take(a, keep, axis=-1)).union() != v.type.union()


def plan_group(grp: Group, facts: dict[Value, Facts], plan: ChannelPlan) -> None:
    """Add the group's removable channels (if any) to ``plan``."""
    if grp.frozen or not (grp.sinks or grp.outputs):
        return
    ok = np.ones(grp.size, dtype=bool)
    folds = {}
    for s in grp.sinks:
        removable, fold, value, f = _sink_ok(s, facts)
        ok &= removable
        folds[s] = (fold, value, f)
    for o in grp.outputs:
        ok &= _output_ok(o, facts)
    if ok.all():
        ok[0] = False  # a group keeps one channel: shapes never reach 0
    if not ok.any():
        return
    keep = np.flatnonzero(~ok)
    if any(_union_changes(lut.operands[0], keep) for lut in grp.luts):
        return  # a lut table is indexed over the union type of its input: it must not change
    for v in grp.values:
        plan.keep[v] = keep
    for s, (fold, value, f) in folds.items():
        plan.rows[s] = keep
        chans = np.flatnonzero(ok & fold)
        if chans.size:
            m = [int(np.ldexp(value[c], int(f[c]))) for c in chans]
            plan.folds[s] = Fold(chans, np.array(m, dtype=object), f[chans].astype(np.int64))
    for src in grp.sources:
        plan.cols[src] = keep
    for p in grp.params:
        plan.params[p] = keep
    plan.removed += int(ok.sum())
