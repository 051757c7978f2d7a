"""What the IR converter reads: one :class:`Rec` per op, in topological order, and the types.

Both importers produce these: the shim importer from a trained shim's body
(:mod:`..shim.build` records while it builds), the plain importer from a traced float module
(:mod:`.plain`). :mod:`.convert` turns them into an hgqir graph without looking at either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

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
