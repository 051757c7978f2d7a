"""The element netlist: a graph lowered to exact-width integer primitives (a hardware view).

Every tensor element becomes integer wires with exact bounds; constant matrices become shared
shift-add adder graphs (:mod:`.cmvm`); quantizers become bit slices, rounding increments and
comparators (:mod:`.arith`). The netlist runs on integers (:func:`.netlist.run`), is what the
Verilog backend renders, and is what the hardware cost model (:mod:`.cost`) counts.

>>> lw = lower(g)                       # doctest: +SKIP
>>> lw.net.kind.count("add")            # doctest: +SKIP
"""

from __future__ import annotations

from . import lower_table  # noqa: F401  (registers the pooling and table lowerings)
from .lower import LOWERINGS, Lowering, Port, check_supported
from .netlist import Netlist, Ref
from .pipeline import AUTO_BUDGET, pipeline


def lower(g: object) -> Lowering:
    """The element netlist of graph ``g`` (raises UnsupportedOpError naming every op it cannot lower)."""
    return Lowering(g).run()  # type: ignore[arg-type]


__all__ = ["AUTO_BUDGET", "LOWERINGS", "Lowering", "Netlist", "Port", "Ref", "check_supported", "lower", "pipeline"]
