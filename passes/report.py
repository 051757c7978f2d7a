"""Per-op reports for humans: a terminal table and a matplotlib figure.

The table has one row per op: its result's shape, type summary, total bits, the fraction of
pruned (zero-width or zero-valued) elements and its EBOPs with the LUT/DSP estimate. The
figure shows, per layer (ops with weights or a cost), histograms of the weight and result
bitwidths, and the EBOPs of every layer. ``hgqir report`` prints and draws them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hgqir.fixed import summary
from hgqir.ir import Graph, Op, OpKind, Value
from hgqir.ops import Trait

from ._consts import is_const
from .annotate_bops import annotated
from .bops import DSP_BITS, DSP_EBOPS, bops

MAX_PANELS = 24
"""The figure shows at most this many layers (the most expensive ones)."""


@dataclass
class ReportRow:
    """One op of the report."""

    name: str
    kind: str
    shape: tuple[int, ...]
    types: str
    """Type summary such as ``k=1 i=0..7 f=2..6 zero=3/64``."""
    bits: int
    """Total bits over the elements."""
    zero: float
    """Fraction of elements that are pruned or (constants) zero."""
    ebops: float
    lut: float
    dsp: float
    recorded: float | None
    """EBOPs stored by ``annotate-bops`` (None when not annotated)."""


def zero_fraction(v: Value) -> float:
    """Fraction of elements that are always 0 by type (and, for constants, by value)."""
    if not v.type.size:
        return 0.0
    zero = v.type.zero_mask
    if is_const(v):
        zero = zero | (np.asarray(v.producer.attrs["data"]) == 0)  # type: ignore[union-attr]
    return float(np.mean(zero))


def report_rows(g: Graph, dsp_bits: int = DSP_BITS) -> list[ReportRow]:
    """One row per op that has a result."""
    costs = {r.name: r for r in bops(g, dsp_bits).rows}
    recorded = annotated(g)
    rows = []
    for op in g.ops:
        if not op.results:
            continue
        v = op.result
        c = costs.get(v.name)
        rows.append(
            ReportRow(
                v.name,
                op.kind.value,
                v.shape,
                summary(v.type),
                int(v.type.bits.sum()),
                zero_fraction(v),
                c.ebops if c else 0.0,
                c.lut if c else 0.0,
                c.dsp if c else 0.0,
                recorded.get(v.name) if recorded else None,
            )
        )
    return rows


def format_table(rows: list[ReportRow]) -> str:
    """The terminal table with a totals line and the LUT/DSP rule of thumb."""
    has_rec = any(r.recorded is not None for r in rows)
    name_w = max([len(r.name) + 1 for r in rows] + [3])
    type_w = max([len(r.types) for r in rows] + [5])
    head = f"{'op':<{name_w}} {'kind':<14} {'shape':<14} {'types':<{type_w}} {'bits':>9} {'zero':>6} {'EBOPs':>10} {'LUT~':>9} {'DSP~':>6}"
    lines = [head + ("  recorded" if has_rec else ""), "-" * (len(head) + (10 if has_rec else 0))]
    for r in rows:
        shape = "[" + ",".join(map(str, r.shape)) + "]"
        cost = f"{r.ebops:>10.0f} {r.lut:>9.0f} {r.dsp:>6.0f}" if r.ebops else f"{'':>10} {'':>9} {'':>6}"
        line = f"%{r.name:<{name_w - 1}} {r.kind:<14} {shape:<14} {r.types:<{type_w}} {r.bits:>9} {r.zero:>6.1%} {cost}"
        if has_rec:
            line += f"  {r.recorded:>8.0f}" if r.recorded is not None else ""
        lines.append(line.rstrip())
    ebops, lut, dsp = (sum(getattr(r, a) for r in rows) for a in ("ebops", "lut", "dsp"))
    lines.append(lines[1])
    lines.append(
        f"total EBOPs {ebops:.0f}   LUT~ {lut:.0f}   DSP~ {dsp:.0f}   LUT + {DSP_EBOPS}*DSP = {lut + DSP_EBOPS * dsp:.0f}"
    )
    return "\n".join(lines)


def _layers(g: Graph) -> list[Op]:
    costs = bops(g, hardware=False).by_name()
    ops = [
        op
        for op in g.ops
        if op.results
        and (
            costs.get(op.result.name)
            or op.rule.traits & (Trait.CONTRACTS | Trait.MULTIPLIES)
            and op.kind is not OpKind.MUL
        )
    ]
    if len(ops) > MAX_PANELS:
        top = sorted(ops, key=lambda op: -costs.get(op.result.name, 0.0))[:MAX_PANELS]
        ops = [op for op in ops if op in top]
    return ops


def _histogram(ax: object, op: Op) -> None:
    weights = [v for v in op.operands[1:2] if is_const(v)]
    series = [("weights", v) for v in weights] + [("result", op.result)]
    top = max(int(v.type.bits.max(initial=0)) for _, v in series)
    edges = np.arange(-0.5, top + 1.5)
    for label, v in series:
        ax.hist(v.type.bits.reshape(-1), bins=edges, histtype="step", linewidth=1.5, label=label)  # type: ignore[attr-defined]
    ax.set_title(f"%{op.result.name} ({op.kind.value})", fontsize=9)  # type: ignore[attr-defined]
    ax.set_xlabel("bits", fontsize=8)  # type: ignore[attr-defined]
    ax.legend(fontsize=7)  # type: ignore[attr-defined]


def plot(g: Graph, path: str | Path) -> Path:
    """Write the figure (bitwidth histogram per layer, EBOPs per layer) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = _layers(g)
    n = len(layers) + 1
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
    flat = list(axes.reshape(-1))
    for ax, op in zip(flat, layers, strict=False):
        _histogram(ax, op)
    ebops = bops(g, hardware=False)  # the plot shows EBOPs only: no netlist needed
    costs = ebops.by_name()
    ax = flat[len(layers)]
    names = [op.result.name for op in layers]
    ax.bar(range(len(names)), [costs.get(nm, 0.0) for nm in names])
    ax.set_xticks(range(len(names)), names, rotation=60, fontsize=7)
    ax.set_title(f"EBOPs per layer (total {ebops.total:.0f})", fontsize=9)
    for extra in flat[n:]:
        extra.axis("off")
    fig.suptitle(f"@{g.name}")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
