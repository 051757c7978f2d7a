"""``annotate-bops``: record each op's EBOPs in the graph, where ``hgqir report`` finds them.

The numbers go into ``g.meta["ebops"]`` (kept by the text form, so they travel with the
``.hgq`` file): ``{"total": ..., "lut": ..., "dsp": ..., "ops": {value name: EBOPs}}``.
They describe the graph when the pass ran; a later pass that changes types makes them
stale (``hgqir report`` shows both the recorded and the current figures).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from hgqir.ir import Graph

from .base import Pass, register
from .bops import DSP_BITS, BopsReport, bops

META_KEY = "ebops"
"""Key of the annotation in ``Graph.meta``."""


def annotation(report: BopsReport) -> dict[str, Any]:
    """The JSON-friendly record of a report."""
    return {
        "total": report.total,
        "lut": report.lut,
        "dsp": report.dsp,
        "dsp_bits": report.dsp_bits,
        "ops": {r.name: r.ebops for r in report.rows},
    }


def annotated(g: Graph) -> dict[str, float]:
    """Recorded EBOPs per value name ({} when the graph was never annotated)."""
    record = g.meta.get(META_KEY)
    return dict(record.get("ops", {})) if isinstance(record, dict) else {}


@register
@dataclass(frozen=True)
class AnnotateBops(Pass):
    """Store per-op EBOPs and the totals in ``g.meta["ebops"]``; returns the report too."""

    name: ClassVar[str] = "annotate-bops"
    dsp_bits: int = DSP_BITS
    """Products with both operands at least this wide count as DSP blocks in the estimate."""

    def apply(self, g: Graph) -> BopsReport:
        report = bops(g, self.dsp_bits)
        g.meta[META_KEY] = annotation(report)
        return report
