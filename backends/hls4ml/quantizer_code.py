"""Per-element quantizer code grouped by type (hls4ml's ``FixedPointQuantizer``, faster to compile).

hls4ml writes a per-element quantizer as one cast statement per element; on a conv-sized tensor
(thousands of elements) g++ spends tens of seconds on that function alone. The same casts, grouped
into one loop per distinct type over a constant index list, compile an order of magnitude faster
and mean the same in HLS (the loops are fully unrolled). After hls4ml's flows have run,
:func:`group_quantizers` replaces each quantizer's generated source with this form.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import numpy as np

TEMPLATE = Path(__file__).parent / "templates" / "quantizer.h.j2"


def _ap_type(k: int, b: int, i: int, rnd: str, sat: str) -> str:
    return f"ap_{'' if k else 'u'}fixed<{b},{i},AP_{rnd},AP_{sat}>"


def grouped_source(name: str, shape: tuple[int, ...], kbi: tuple[Any, Any, Any], rnd: str, sat: str) -> str:
    """The C++ function ``name(inp, out)``: each element cast to its own ``(k, B, I)`` type
    (``B = 0``: set to 0), elements of one type in one loop."""
    k, b, i = (np.broadcast_to(np.asarray(a)[0], shape).reshape(-1) for a in kbi)
    groups: dict[tuple[int, int, int], list[int]] = {}
    for n, key in enumerate(zip(k.tolist(), b.tolist(), i.tolist(), strict=True)):
        groups.setdefault(key if key[1] else (0, 0, 0), []).append(n)
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    template = env.from_string(TEMPLATE.read_text())
    items = [
        {"type": _ap_type(kk, bb, ii, rnd, sat) if bb else "", "indices": idx}
        for (kk, bb, ii), idx in sorted(groups.items())
    ]
    return template.render(name=name, groups=items)


def group_quantizers(model: Any) -> int:
    """Replace the generated source of every FixedPointQuantizer of ``model``; returns how many."""
    from hls4ml.model.optimizer.passes.hgq_proxy_model import FixedPointQuantizer
    from hls4ml.model.types import Source

    count = 0
    for layer in model.get_layers():
        if isinstance(layer, FixedPointQuantizer) and layer.get_attr("mask_fn_codegen") is not None:
            shape = tuple(layer.get_input_variable().shape)
            src = grouped_source(layer.name, shape, layer.mask_kbi, layer.RND, layer.SAT)
            layer.set_attr("mask_fn_codegen", Source(src))
            count += 1
    return count
