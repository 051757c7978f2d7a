"""``bops``: EBOPs (effective bit operations) per op and in total, with a LUT/DSP estimate.

EBOPs of dense and conv ops: the sum, over every multiplication with a non-zero weight, of
``width(input element) * width(weight)`` (convolutions count every output position).
batchnorm: ``width(x) * width(scale)`` per element; elementwise mul: ``width(a) * width(b)``;
add/sub: ``max(width(a), width(b))`` per element; every other op: 0. Widths of pruned elements
are 0. Rule of thumb for FPGA cost: EBOPs ~ LUT + 55 * DSP.

Hardware estimate (``.lut``, ``.ff``, ``.carry``, ``.dsp`` of rows and report): the calibrated
cost model of :mod:`hgqir.passes.netlist.cost`, counted on the element netlist the Verilog
backend writes (shift-add constant multiplications, exact widths, registers for ``pipeline``).
Graphs the netlist cannot lower, or larger than ``NETLIST_LIMIT`` multiply-accumulate terms,
fall back to the EBOPs split (``model == "ebops"``).

The EBOPs split (``.ebops_lut``, ``.ebops_dsp``): a product whose two operands are both at
least ``dsp_bits`` wide is counted as one DSP block, every other product (and every adder) as
its EBOPs in LUTs. ``LUT + 55 * DSP`` is then directly comparable with the EBOPs total.

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
from .netlist.cost import LayerCost

DSP_BITS = 10
"""Default: products whose operands are both at least this wide use a DSP block."""
DSP_EBOPS = 55
"""EBOPs one DSP block stands for in the rule of thumb EBOPs ~ LUT + 55 * DSP."""


NETLIST_LIMIT = 300_000
"""Largest graph (non-zero weight x output position terms) the hardware estimate lowers."""


@dataclass
class BopsRow:
    name: str
    """Name of the op's (first) result."""
    kind: str
    ebops: float
    ebops_lut: float = 0.0
    """EBOPs of the products and adders left to logic (the rule-of-thumb split)."""
    ebops_dsp: float = 0.0
    """Products of two operands at least ``dsp_bits`` wide (the rule-of-thumb split)."""
    lut: float = 0.0
    """Estimated LUTs of the op's hardware (the cost model; the EBOPs split when it is unavailable)."""
    ff: float = 0.0
    """Estimated flip-flops (pipeline registers)."""
    carry: float = 0.0
    """Estimated carry cells."""
    dsp: float = 0.0
    """Estimated DSP blocks."""


@dataclass
class BopsReport:
    """Result of the ``bops`` analysis: one row per op with a cost, and the totals."""

    rows: list[BopsRow] = field(default_factory=list)
    dsp_bits: int = DSP_BITS
    """The DSP threshold the estimate used."""
    model: str = "ebops"
    """Where ``lut`` / ``ff`` / ``dsp`` come from: ``netlist`` (the cost model) or ``ebops`` (the split)."""

    @property
    def total(self) -> float:
        return float(sum(r.ebops for r in self.rows))

    @property
    def lut(self) -> float:
        return float(sum(r.lut for r in self.rows))

    @property
    def ff(self) -> float:
        return float(sum(r.ff for r in self.rows))

    @property
    def carry(self) -> float:
        return float(sum(r.carry for r in self.rows))

    @property
    def dsp(self) -> float:
        return float(sum(r.dsp for r in self.rows))

    @property
    def ebops_lut(self) -> float:
        return float(sum(r.ebops_lut for r in self.rows))

    @property
    def ebops_dsp(self) -> float:
        return float(sum(r.ebops_dsp for r in self.rows))

    def by_name(self) -> dict[str, float]:
        return {r.name: r.ebops for r in self.rows}

    def table(self) -> str:
        width = max([len(r.name) for r in self.rows] + [5])
        head = f"{'op':<{width}}  {'kind':<14} {'EBOPs':>12} {'LUT~':>10} {'FF~':>8} {'DSP~':>6}"
        lines = [head]
        lines += [
            f"{r.name:<{width}}  {r.kind:<14} {r.ebops:>12.0f} {r.lut:>10.0f} {r.ff:>8.0f} {r.dsp:>6.0f}"
            for r in self.rows
        ]
        lines.append(
            f"{'total':<{width}}  {'':<14} {self.total:>12.0f} {self.lut:>10.0f} {self.ff:>8.0f} {self.dsp:>6.0f}"
        )
        source = "cost model on the element netlist" if self.model == "netlist" else "EBOPs split"
        lines.append(
            f"LUT~/FF~/DSP~: {source}. Rule of thumb: LUT + {DSP_EBOPS}*DSP = "
            f"{self.ebops_lut + DSP_EBOPS * self.ebops_dsp:.0f} ~ EBOPs (DSP when both operands >= {self.dsp_bits} bits)"
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


def bops(g: Graph, dsp_bits: int = DSP_BITS, hardware: bool = True, pipeline: object = None) -> BopsReport:
    """EBOPs of every op of ``g`` with its current types, and the LUT / FF / DSP estimate.

    ``hardware``: estimate with the cost model on the element netlist (registers for
    ``pipeline``: None, ``"auto"`` or adder levels per stage, as the Verilog backend's option).
    """
    hw = _hardware(g, pipeline) if hardware else None
    report = BopsReport(dsp_bits=dsp_bits, model="netlist" if hw is not None else "ebops")
    for op in g.ops:
        cost = op.rule.bops(op)
        name = op.results[0].name if op.results else op.kind.value
        layer = hw.get(name) if hw is not None and op.results else None
        if not cost and layer is None:
            continue
        on_dsp, dsps = dsp_split(op, dsp_bits)
        row = BopsRow(name, op.kind.value, float(cost), float(cost) - on_dsp, dsps)
        if hw is None:
            row.lut, row.dsp = row.ebops_lut, row.ebops_dsp
        elif layer is not None:
            row.lut, row.ff, row.carry, row.dsp = layer.lut, layer.ff, layer.carry, layer.dsp
        report.rows.append(row)
    glue = hw.get("(top)") if hw is not None else None
    if glue is not None:
        report.rows.append(BopsRow("(top)", "registers", 0.0, lut=glue.lut, ff=glue.ff, carry=glue.carry))
    return report


def _hardware(g: Graph, pipeline: object) -> dict[str, LayerCost] | None:
    """Per-layer cost of the element netlist, or None when it cannot (or should not) be built."""
    from hgqir.errors import UnsupportedOpError

    from .netlist import hardware
    from .netlist.cost import estimate

    size = 0
    for op in g.ops:
        if Trait.CONTRACTS in op.rule.traits:
            w = nonzero_bits(op.operands[1])
            size += int(np.count_nonzero(w)) * int(np.prod(op.result.shape[:-1], dtype=np.int64))
    if size > NETLIST_LIMIT:
        return None
    try:
        lw, _ = hardware(g, pipeline)
    except UnsupportedOpError:  # an op the netlist cannot lower: the EBOPs split instead
        return None
    roots = [p.refs for p in lw.outputs]
    return {c.name: c for c in estimate(lw.net, [r for refs in roots for r in refs])}


@register
@dataclass(frozen=True)
class Bops(Pass):
    """Analysis: compute EBOPs (returned by the pass manager under the name 'bops')."""

    name: ClassVar[str] = "bops"
    dsp_bits: int = DSP_BITS
    """Products with both operands at least this wide count as DSP blocks in the EBOPs split."""
    hardware: bool = True
    """Estimate LUT / FF / DSP with the cost model on the element netlist (else the EBOPs split)."""

    def apply(self, g: Graph) -> BopsReport:
        return bops(g, self.dsp_bits, self.hardware)
