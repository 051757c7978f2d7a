"""The element netlist: a graph lowered to exact-width integer primitives (a hardware view).

Every tensor element becomes integer wires with exact bounds; constant matrices become shared
shift-add adder graphs (:mod:`.cmvm`); quantizers become bit slices, rounding increments and
comparators (:mod:`.arith`). The netlist runs on integers (:func:`.netlist.run`), is what the
Verilog backend renders, and is what the hardware cost model (:mod:`.cost`) counts.

>>> lw = lower(g)                       # doctest: +SKIP
>>> lw.net.kind.count("add")            # doctest: +SKIP
"""

from __future__ import annotations

from hgqir.errors import HgqirError

from . import lower_table  # noqa: F401  (registers the pooling and table lowerings)
from .lower import LOWERINGS, Lowering, Port, check_supported
from .narrow import narrow
from .netlist import Netlist, Ref
from .pipeline import AUTO_BUDGET, pipeline


def lower(g: object) -> Lowering:
    """The element netlist of graph ``g`` (raises UnsupportedOpError naming every op it cannot lower)."""
    return Lowering(g).run()  # type: ignore[arg-type]


def hardware(g: object, pipeline_option: object = None) -> tuple[Lowering, int]:
    """The netlist as the Verilog backend writes it: lowered, pipelined (None, ``"auto"`` or adder
    levels per stage; the output ports' refs become the registered ones), narrowed to the bits
    the outputs demand. Returns it and the latency in cycles."""
    p = pipeline_option
    if not (p is None or p == "auto" or (isinstance(p, (int, float)) and not isinstance(p, bool) and p >= 1)):
        raise HgqirError(f"pipeline must be None, 'auto' or a number of adder levels >= 1, got {p!r}")
    lw = lower(g)
    latency = 0
    if pipeline_option is not None:
        budget = AUTO_BUDGET if pipeline_option == "auto" else float(pipeline_option)  # type: ignore[arg-type]
        outs, latency = pipeline(lw.net, [p.refs for p in lw.outputs], budget)
        for p, refs in zip(lw.outputs, outs, strict=True):
            p.refs = refs
    demands = []
    for p in lw.outputs:
        _, _, f = p.kif
        for r, w, fj in zip(p.refs, p.widths, f, strict=True):
            if w > 0 and r.node:
                demands.append((r, w - (lw.net.exp(r) + int(fj))))
    narrow(lw.net, demands)
    return lw, latency


__all__ = [
    "AUTO_BUDGET",
    "LOWERINGS",
    "Lowering",
    "Netlist",
    "Port",
    "Ref",
    "check_supported",
    "hardware",
    "lower",
    "narrow",
    "pipeline",
]
