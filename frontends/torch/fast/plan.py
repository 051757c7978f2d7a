"""The typed plans the C++ kernels read, defined once, here.

A fused chain (``hgqir::chain``) gets its layers as one int64 vector and the EBOPs kernel
(``hgqir::ebops``) its sparse index as another: one argument each keeps a kernel call cheap.
What each entry means is defined only in this module: :class:`ChainLayer` (with the enums
:class:`LayerKind` and :class:`TrainRound`) and the field tables :data:`RECORD_FIELDS` and
:data:`EBOPS_HEADER`. :func:`header_context` turns them into the constants of the generated C++
header ``hgq_plan.h`` (template ``native/hgq_plan.h.j2``), which the kernel source includes; the
compiled kernels also return :func:`layout_hash` of the layout they were built with, and
:mod:`.native` refuses kernels that disagree.

>>> layer = ChainLayer(LayerKind.LINEAR, relu=True, w_off=0, b_off=12, a_off=15, groups=3)
>>> plan = pack_plan([layer])
>>> int(plan[0]), int(plan[1]) == RECORD, int(plan[2 + field_offset("kind")]) == LayerKind.LINEAR
(1, True, True)
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from hgqir.fixed import RoundMode


class LayerKind(enum.IntEnum):
    """What a chain layer computes before its optional ReLU and output quantizer."""

    QUANTIZER = 0
    """Nothing: an activation quantizer alone."""
    LINEAR = 1
    """``x @ w.T + b`` on a 2-D input."""
    CONV = 2
    """A convolution with one or two spatial axes (one group, no dilation)."""


class TrainRound(enum.IntEnum):
    """Rounding of integer-scaled values in the training kernels (loops are built per mode)."""

    NEAREST = 0
    """Ties to even, as ``torch.round`` (every round-to-nearest mode trains this way)."""
    FLOOR = 1
    """``TRN``."""
    TOWARD_ZERO = 2
    """``TRN_ZERO``."""

    @classmethod
    def of(cls, mode: RoundMode) -> TrainRound:
        """The training rounding of an ap_fixed rounding mode."""
        return {RoundMode.TRN: cls.FLOOR, RoundMode.TRN_ZERO: cls.TOWARD_ZERO}.get(mode, cls.NEAREST)


RECORD_FIELDS: tuple[tuple[str, int], ...] = (
    ("kind", 1),
    ("relu", 1),
    ("w_off", 1),
    ("b_off", 1),
    ("wmode", 1),
    ("bmode", 1),
    ("a_off", 1),
    ("r_off", 1),
    ("groups", 1),
    ("amode", 1),
    ("i_off", 1),
    ("i_roff", 1),
    ("i_groups", 1),
    ("imode", 1),
    ("nd", 1),
    ("stride", 2),
    ("pad", 2),
    ("gidx_at", 1),
    ("gidx_len", 1),
    ("in_gidx_at", 1),
    ("in_gidx_len", 1),
)
"""Entries of one layer record of a chain plan, in order, with their widths."""

RECORD = sum(width for _, width in RECORD_FIELDS)
"""Entries per layer record."""

CHAIN_HEADER = ("layers", "record")
"""The two entries before the records: the number of layers and :data:`RECORD`."""

EBOPS_HEADER = ("rows", "m_crow", "m_col", "n_crow", "n_col", "pairs", "blocks")
"""Leading entries of the EBOPs index: the row count of ``A`` (and ``B``), the lengths of the
CSR arrays of ``M = [A; B]`` and ``N = [B^T A^T]``, of the max pairs, and the number of weight
blocks. Then the blocks' sizes and :class:`TrainRound` modes, then the arrays themselves."""


def field_offset(name: str) -> int:
    """Where field ``name`` starts in a layer record."""
    at = 0
    for field, width in RECORD_FIELDS:
        if field == name:
            return at
        at += width
    raise KeyError(name)


@dataclass(frozen=True)
class ChainLayer:
    """One layer of a fused chain.

    Offsets index the bank's flat ``f`` (``w_off``, ``b_off``, ``a_off``, ``i_off``; negative:
    absent) and flat ranges (``r_off``, ``i_roff``); ``a_*`` is the quantizer after the layer,
    ``i_*`` the one on its input; ``gidx`` / ``in_gidx`` give the group of each element of one
    sample (None: one group per element)."""

    kind: LayerKind
    relu: bool = False
    w_off: int = -1
    b_off: int = -1
    wmode: TrainRound = TrainRound.NEAREST
    bmode: TrainRound = TrainRound.NEAREST
    a_off: int = -1
    r_off: int = 0
    groups: int = 0
    amode: TrainRound = TrainRound.NEAREST
    i_off: int = -1
    i_roff: int = 0
    i_groups: int = 0
    imode: TrainRound = TrainRound.NEAREST
    stride: tuple[int, ...] = ()
    pad: tuple[int, ...] = ()
    gidx: torch.Tensor | None = None
    in_gidx: torch.Tensor | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", LayerKind(self.kind))
        for name in ("wmode", "bmode", "amode", "imode"):
            object.__setattr__(self, name, TrainRound(getattr(self, name)))
        nd = len(self.stride)
        if len(self.pad) != nd or nd > 2 or (nd > 0) != (self.kind is LayerKind.CONV):
            raise ValueError(f"a convolution layer has 1 or 2 spatial axes with one stride and pad each: {self}")

    def entries(self, where: tuple[int, int, int, int]) -> dict[str, tuple[int, ...]]:
        """This layer's record by field; ``where``: positions and lengths of its group indices."""
        nd = len(self.stride)
        values: dict[str, Any] = {f: getattr(self, f) for f, _ in RECORD_FIELDS if hasattr(self, f)}
        values.update(nd=nd, stride=(*self.stride, *(0,) * (2 - nd)), pad=(*self.pad, *(0,) * (2 - nd)))
        values.update(zip(("gidx_at", "gidx_len", "in_gidx_at", "in_gidx_len"), where, strict=True))
        return {f: tuple(int(v) for v in values[f]) if w > 1 else (int(values[f]),) for f, w in RECORD_FIELDS}


def pack_plan(layers: Sequence[ChainLayer]) -> torch.Tensor:
    """The int64 plan of ``hgqir::chain``: the header, one record per layer, then group indices."""
    head: list[int] = [len(layers), RECORD]
    tail: list[int] = []
    at = len(head) + RECORD * len(layers)
    for layer in layers:
        where: list[int] = []
        for g in (layer.gidx, layer.in_gidx):
            values = [] if g is None else [int(v) for v in g.reshape(-1).tolist()]
            where += [at + len(tail), len(values)]
            tail += values
        record = layer.entries((where[0], where[1], where[2], where[3]))
        head += [v for f, _ in RECORD_FIELDS for v in record[f]]
    return torch.tensor(head + tail, dtype=torch.int64)


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def header_context() -> dict[str, Any]:
    """What the header template needs: every constant of the plans, named for C++."""
    return {
        "record": RECORD,
        "fields": [(_camel(name), field_offset(name)) for name, _ in RECORD_FIELDS],
        "chain_header": [(_camel(name), at) for at, name in enumerate(CHAIN_HEADER)],
        "ebops_header": [(_camel(name), at) for at, name in enumerate(EBOPS_HEADER)],
        "ebops_header_size": len(EBOPS_HEADER),
        "kinds": [(_camel(k.name.lower()), int(k)) for k in LayerKind],
        "rounds": [(_camel(r.name.lower()), int(r)) for r in TrainRound],
        "layout_hash": layout_hash(),
    }


def layout_hash() -> int:
    """A 48-bit digest of every plan constant (the kernels report the one they were built with)."""
    text = repr((RECORD_FIELDS, CHAIN_HEADER, EBOPS_HEADER, [(k.name, int(k)) for k in (*LayerKind, *TrainRound)]))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:6], "big")
