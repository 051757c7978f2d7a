"""``bops``: EBOPs (effective bit operations) per op and in total, with a LUT/DSP estimate.

EBOPs of dense and conv ops: the sum, over every multiplication with a non-zero weight, of
``width(input element) * width(weight)`` (convolutions count every output position).
batchnorm: ``width(x) * width(scale)`` per element; elementwise mul: ``width(a) * width(b)``;
add/sub: ``max(width(a), width(b))`` per element; every other op: 0. Widths of pruned elements
are 0. Rule of thumb for FPGA cost: EBOPs ~ LUT + 55 * DSP.

The LUT/DSP estimate splits the products: a product whose two operands are both at least
``dsp_bits`` wide is counted as one DSP block, every other product (and every adder) as its
EBOPs in LUTs. ``LUT + 55 * DSP`` is then directly comparable with the EBOPs total.

>>> import hgqir
>>> g = hgqir.loads('''hgqir 1 @m
... %x = input {round = TRN, overflow = WRAP} : [2] <1,3,0>
... %w = const {data = $d0} : [2, 1] <1,3,0>
... %y = dense %x, %w : [1] <1,8,0>
... output %y {name = "out"}
...
... $d0 = data [2, 1] {
...   3 0
... }
... ''')
>>> bops(g).total
16.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from hgqir.ir import Graph, Op, OpKind
from hgqir.ops import Trait
from hgqir.ops.linear import contraction_bits, nonzero_bits

from .base import Pass, register

DSP_BITS = 10
"""Default: products whose operands are both at least this wide use a DSP block."""
DSP_EBOPS = 55
"""EBOPs one DSP block stands for in the rule of thumb EBOPs ~ LUT + 55 * DSP."""


@dataclass
class BopsRow:
    name: str
    """Name of the op's (first) result."""
    kind: str
    ebops: float
    lut: float = 0.0
    """Estimated LUTs: EBOPs of the products and adders left to logic."""
    dsp: float = 0.0
    """Estimated DSP blocks: one per product of two operands at least ``dsp_bits`` wide."""


@dataclass
class BopsReport:
    """Result of the ``bops`` analysis: one row per op with a cost, and the totals."""

    rows: list[BopsRow] = field(default_factory=list)
    dsp_bits: int = DSP_BITS
    """The DSP threshold the estimate used."""

    @property
    def total(self) -> float:
        return float(sum(r.ebops for r in self.rows))

    @property
    def lut(self) -> float:
        return float(sum(r.lut for r in self.rows))

    @property
    def dsp(self) -> float:
        return float(sum(r.dsp for r in self.rows))

    def by_name(self) -> dict[str, float]:
        return {r.name: r.ebops for r in self.rows}

    def table(self) -> str:
        width = max([len(r.name) for r in self.rows] + [5])
        lines = [f"{'op':<{width}}  {'kind':<14} {'EBOPs':>12} {'LUT~':>12} {'DSP~':>8}"]
        lines += [f"{r.name:<{width}}  {r.kind:<14} {r.ebops:>12.0f} {r.lut:>12.0f} {r.dsp:>8.0f}" for r in self.rows]
        lines.append(f"{'total':<{width}}  {'':<14} {self.total:>12.0f} {self.lut:>12.0f} {self.dsp:>8.0f}")
        lines.append(
            f"LUT + {DSP_EBOPS}*DSP = {self.lut + DSP_EBOPS * self.dsp:.0f} (rule of thumb: ~ EBOPs; "
            f"DSP when both operands >= {self.dsp_bits} bits)"
        )
        return "\n".join(lines)


def dsp_split(op: Op, dsp_bits: int = DSP_BITS) -> tuple[float, float]:
    """``(EBOPs of the products on DSPs, number of DSPs)`` of one op."""
    if Trait.CONTRACTS in op.rule.traits:
        xb, wb = contraction_bits(op)
        floor = max(dsp_bits, 1)  # pruned operands never need a multiplier
        xs, ws = xb >= floor, wb >= floor
        count = xs.sum(axis=0) @ ws.sum(axis=1)
        ebops = (xb * xs).sum(axis=0) @ (wb * ws).sum(axis=1)
        return float(ebops), float(count)
    if Trait.MULTIPLIES in op.rule.traits:
        shape = op.result.shape
        a = np.broadcast_to(op.operands[0].type.bits, shape)
        b = np.broadcast_to(op.operands[1].type.bits, shape)
        if op.kind is OpKind.BATCHNORM:
            b = np.broadcast_to(nonzero_bits(op.operands[1]), shape)
        on = (a >= max(dsp_bits, 1)) & (b >= max(dsp_bits, 1))
        return float(np.sum(a * b * on)), float(on.sum())
    return 0.0, 0.0


def bops(g: Graph, dsp_bits: int = DSP_BITS) -> BopsReport:
    """EBOPs of every op of ``g`` with its current types, and the LUT/DSP estimate."""
    report = BopsReport(dsp_bits=dsp_bits)
    for op in g.ops:
        cost = op.rule.bops(op)
        if cost:
            name = op.results[0].name if op.results else op.kind.value
            on_dsp, dsps = dsp_split(op, dsp_bits)
            report.rows.append(BopsRow(name, op.kind.value, float(cost), float(cost) - on_dsp, dsps))
    return report


@register
@dataclass(frozen=True)
class Bops(Pass):
    """Analysis: compute EBOPs (returned by the pass manager under the name 'bops')."""

    name: ClassVar[str] = "bops"
    dsp_bits: int = DSP_BITS
    """Products with both operands at least this wide count as DSP blocks in the estimate."""

    def apply(self, g: Graph) -> BopsReport:
        return bops(g, self.dsp_bits)
