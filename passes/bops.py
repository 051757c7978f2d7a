"""``bops``: EBOPs (effective bit operations) per op and in total.

EBOPs of dense and conv ops: the sum, over every multiplication with a non-zero weight, of
``width(input element) * width(weight)`` (convolutions count every output position).
batchnorm: ``width(x) * width(scale)`` per element; elementwise mul: ``width(a) * width(b)``;
add/sub: ``max(width(a), width(b))`` per element; every other op: 0. Widths of pruned elements
are 0. Rule of thumb for FPGA cost: EBOPs ~ LUT + 55 * DSP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from hgqir.ir import Graph

from .base import Pass, register


@dataclass
class BopsRow:
    name: str
    """Name of the op's (first) result."""
    kind: str
    ebops: float


@dataclass
class BopsReport:
    """Result of the ``bops`` analysis: one row per op with a cost, and the total."""

    rows: list[BopsRow] = field(default_factory=list)

    @property
    def total(self) -> float:
        return float(sum(r.ebops for r in self.rows))

    def by_name(self) -> dict[str, float]:
        return {r.name: r.ebops for r in self.rows}

    def table(self) -> str:
        width = max([len(r.name) for r in self.rows] + [4])
        lines = [f"{'op':<{width}}  {'kind':<14} {'EBOPs':>12}"]
        lines += [f"{r.name:<{width}}  {r.kind:<14} {r.ebops:>12.0f}" for r in self.rows]
        lines.append(f"{'total':<{width}}  {'':<14} {self.total:>12.0f}")
        return "\n".join(lines)


def bops(g: Graph) -> BopsReport:
    """EBOPs of every op of ``g`` with its current types."""
    report = BopsReport()
    for op in g.ops:
        cost = op.rule.bops(op)
        if cost:
            name = op.results[0].name if op.results else op.kind.value
            report.rows.append(BopsRow(name, op.kind.value, float(cost)))
    return report


@register
@dataclass(frozen=True)
class Bops(Pass):
    """Analysis: compute EBOPs (returned by the pass manager under the name 'bops')."""

    name: ClassVar[str] = "bops"

    def apply(self, g: Graph) -> BopsReport:
        return bops(g)
