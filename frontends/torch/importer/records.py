"""What the IR converter reads: one :class:`Rec` per op, in topological order, and the types.

Both importers produce these: the shim importer from a trained shim's body
(:mod:`..shim.build` records while it builds), the plain importer from a traced float module
(:mod:`.plain`). :mod:`.convert` turns them into an hgqir graph without looking at either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...calibration import NONNEG_TABLES

Types = dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, "np.ndarray | None"]]
"""Per quantizer (spec index): integer ``k``, ``i``, ``f`` arrays of its tensor's shape (PyTorch
layout, no batch axis) and, for weights, biases and constants, the quantized float64 values."""


@dataclass
class Rec:
    """One op for the IR.

    ``kind`` is one of ``input``, ``quant``, ``linear``, ``conv``, ``batchnorm``, ``relu``,
    ``lut``, ``softmax``, ``maxpool``, ``avgpool``, ``global_avgpool``, ``global_maxpool``,
    ``reshape``, ``permute``, ``cat``, ``identity``, ``add``, ``sub``, ``mul``. Quantizing kinds
    (``input``, ``quant``, ``lut``, ``softmax``) carry ``spec``, ``round`` and ``overflow`` in
    ``attrs``; tables their precision (``out_f``; ``exp_f``, ``inv_f``, ``sum_f``) and
    ``table_bits``."""

    kind: str
    inputs: list[Any]
    """Names of the records of tensor operands, or ``int`` spec indices of quantized constants."""
    attrs: dict[str, Any]
    shape: tuple[int, ...]
    """Unbatched result shape, PyTorch layout."""


def may_be_negative(records: dict[str, Rec], is_act: Callable[[int], bool]) -> set[int]:
    """Activation specs (not model inputs) whose quantized value is not non-negative by
    construction (relu, a non-negative table, and moves or max pools of those are): with a
    calibration guard they keep a sign bit (see :mod:`hgqir.frontends.calibration`)."""
    nonneg: dict[str, bool] = {}

    def of(name: Any) -> bool:
        if not isinstance(name, str) or name not in records:
            return False
        if name not in nonneg:
            rec = records[name]
            kind = rec.kind
            if kind == "relu" or (kind == "lut" and rec.attrs.get("func") in NONNEG_TABLES):
                nonneg[name] = True
            elif kind == "softmax":
                nonneg[name] = not rec.attrs.get("log", False)
            elif kind in ("quant", "maxpool", "global_maxpool", "avgpool", "global_avgpool", "reshape", "permute"):
                nonneg[name] = of(rec.inputs[0])
            elif kind in ("identity", "cat", "maximum"):
                nonneg[name] = all(of(a) for a in rec.inputs) if kind != "maximum" else any(of(a) for a in rec.inputs)
            else:
                nonneg[name] = False
        return nonneg[name]

    out: set[int] = set()
    for rec in records.values():
        spec = rec.attrs.get("spec")
        if spec is None or rec.kind == "input" or not is_act(spec):
            continue
        source = rec.inputs[0] if rec.kind in ("quant", "lut", "softmax", "avgpool", "global_avgpool") else None
        if not of(source):
            out.add(spec)
    return out
