"""``prune-zero-bits``: remove what can only ever be zero, and the channels nobody needs.

1. Elements that are always 0 get the pruned type ``(0, 0, 0)``: constants of value 0 or
   width <= 0, and computed elements whose exact range is ``[0, 0]``.
2. Channels (last axis) go from every value of their channel group
   (:mod:`hgqir.passes.channels`) when each reader of the group ignores them (all-zero weight
   rows) or reads a constant that moves exactly into its bias
   (:mod:`hgqir.passes.channel_plan`); the producing dense/conv ops lose the matching weight
   columns and bias entries, per-channel constants shrink alongside.
3. Steps 1-2 repeat until nothing changes (a removed column can empty a row upstream), then
   ops left without users go.

Graph inputs and outputs keep their shapes unless ``keep-io=false``: then unread input
features and always-zero outputs go too, and ``g.meta["io_kept"]`` records, per input and
output name, which of the original indices remain (``[]`` for an input nothing reads any more).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from hgqir.fixed import FixedType
from hgqir.ir import Graph, OpKind, Value
from hgqir.ops import Trait

from ._consts import atomic, is_const
from .base import Pass, register
from .channel_plan import ChannelPlan, plan_group
from .channels import channel_groups
from .dce import DeadCodeElimination
from .intervals import Facts, analyze
from .reslice import apply_plan


@dataclass
class PruneReport:
    """What ``prune-zero-bits`` removed."""

    elements: int = 0
    """Elements newly given the pruned type."""
    channels: int = 0
    """Channels removed from channel groups."""
    folds: int = 0
    """Layers whose bias absorbed constant input channels."""
    ops: int = 0
    """Ops erased because nothing used them any more."""

    def __str__(self) -> str:
        return (
            f"pruned {self.elements} element(s), removed {self.channels} channel(s), "
            f"folded constants into {self.folds} bias(es), erased {self.ops} op(s)"
        )


def _type_fixed(v: Value) -> bool:
    """Types that carry meaning beyond their values: inputs, tables and what tables index."""
    op = v.producer
    if op is None or op.kind is OpKind.INPUT:
        return True
    return any(Trait.READS_TABLE in u.rule.traits for u in v.users)


def _zero_elements(v: Value, facts: Facts) -> np.ndarray:
    t = v.type
    if is_const(v):
        data = np.asarray(v.producer.attrs["data"])  # type: ignore[union-attr]
        return ~t.zero_mask & (data == 0)
    return ~t.zero_mask & (facts.post.lo == 0) & (facts.post.hi == 0)


def prune_elements(g: Graph, facts: dict[Value, Facts]) -> int:
    """Give every always-zero element the pruned type; returns how many changed."""
    changes = []
    for v in g.values():
        if _type_fixed(v):
            continue
        zero = _zero_elements(v, facts[v])
        if zero.any():
            changes.append((v, zero))
    for v, zero in changes:
        t = v.type
        v.type = FixedType(t.shape, *(np.where(zero, 0, a) for a in (t.k, t.i, t.f))).canonical()
    return int(sum(z.sum() for _, z in changes))


def _record_io(g: Graph, plan: ChannelPlan) -> None:
    """Compose the kept indices of shrinking inputs and outputs into ``g.meta['io_kept']``."""
    ports = [(v, v.name) for v in g.inputs] + [(op.operands[0], op.attrs["name"]) for op in g.ops_of(OpKind.OUTPUT)]
    kept = g.meta.setdefault("io_kept", {})
    for v, name in ports:
        if v in plan.keep:
            before = kept.get(name, list(range(v.shape[-1])))
            kept[name] = [before[int(n)] for n in plan.keep[v]]


def prune(g: Graph, keep_io: bool = True, max_sweeps: int = 20) -> PruneReport:
    """Run the pruning to a fixed point (see the module docstring); all or nothing."""
    report = PruneReport()
    with atomic(g, "prune-zero-bits"):
        for _ in range(max_sweeps):
            if not _sweep(g, keep_io, report):
                break
        if not keep_io:
            for v in g.inputs:
                if not v.users:  # dce drops it: record that none of its features remain
                    g.meta.setdefault("io_kept", {})[v.name] = []
        report.ops = DeadCodeElimination(keep_io=keep_io).apply(g)
    return report


def _sweep(g: Graph, keep_io: bool, report: PruneReport) -> bool:
    """One round: prune always-zero elements, then remove channels; False when nothing went."""
    facts = analyze(g)
    report.elements += prune_elements(g, facts)
    plan = ChannelPlan()
    for grp in channel_groups(g, keep_io):
        plan_group(grp, facts, plan)
    if not plan:
        return False
    if not keep_io:
        _record_io(g, plan)
    apply_plan(g, plan)
    report.channels += plan.removed
    report.folds += len(plan.folds)
    return True


@register
@dataclass(frozen=True)
class PruneZeroBits(Pass):
    """Structural pruning of zero-width and constant elements and channels (module docstring)."""

    name: ClassVar[str] = "prune-zero-bits"
    keep_io: bool = True
    """Keep the shapes of graph inputs and outputs."""
    max_sweeps: int = 20
    """Stop after this many prune-and-shrink rounds even if more could go."""

    def apply(self, g: Graph) -> PruneReport:
        return prune(g, keep_io=self.keep_io, max_sweeps=self.max_sweeps)
