"""Data for the two ends of every layer function: gather mantissas in, scatter results out.

*Gather* reads an operand's elements (from any arrays, constants or zeros) into one flat integer
array at a common scale ``2**-F``: ``xm[d] = mantissa(src) * 2**(F - f_src)``, exact.
*Scatter* writes a flat integer result at scale ``2**-F`` into the result's typed arrays through
ap_fixed conversions (TRN/WRAP, or a quantizer's own modes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hgqir.fixed import OverflowMode, RoundMode

from .refs import CONST, ZERO, ArrayInfo, CType, Refs, Storage


@dataclass
class Source:
    """Elements of one array copied into a gather."""

    array: str
    mult: int
    """``2**(F - f)``: aligns the array's mantissas to the gather's scale."""
    count: int
    contiguous: bool
    """The whole array lands in order at ``base``: a plain loop, no index tables."""
    base: int
    src: list[int]
    dst: list[int]
    table: str
    """Prefix of the index tables' names."""


@dataclass
class Gather:
    var: str
    width: int
    size: int
    scale: int
    sources: list[Source]
    const_dst: list[int]
    const_val: list[int]
    zero_fill: bool
    arrays: list[str] = field(default_factory=list)
    """Arrays read (function parameters)."""


@dataclass
class Store:
    array: str
    type: CType
    count: int
    contiguous: bool
    positions: list[int]
    table: str


@dataclass
class Scatter:
    acc: str
    width: int
    scale: int
    stores: list[Store]
    round: str = ""
    overflow: str = ""
    """Quantizer modes by name (``RND``, ``SAT``...); empty: ap_fixed's defaults (TRN, WRAP)."""

    @property
    def arrays(self) -> list[str]:
        return [s.array for s in self.stores]


def gather(storage: Storage, refs: Refs, var: str, scale: int) -> Gather:
    """Gather flat ``refs`` into ``var`` at ``scale`` (which must be at least every live ``f``)."""
    flat = refs.flat()
    live = flat.arr != ZERO
    if live.any() and int(flat.f[live].max()) > scale:
        raise ValueError(f"gather {var}: scale {scale} is coarser than an element ({int(flat.f[live].max())})")
    sources = []
    for n, aid in enumerate(_ids_in_order(flat.arr)):
        members = np.nonzero(flat.arr == aid)[0]
        info = storage.arrays[aid]
        src = flat.pos[members]
        sources.append(_source(info, src, members, scale, f"{var}_s{n}"))
    consts = np.nonzero(flat.arr == CONST)[0]
    vals = [int(flat.cm[d]) << (scale - int(flat.f[d])) for d in consts]
    return Gather(
        var=var,
        width=flat.top_bits(scale),
        size=int(flat.arr.size),
        scale=scale,
        sources=sources,
        const_dst=[int(d) for d in consts],
        const_val=vals,
        zero_fill=bool((flat.arr == ZERO).any()),
        arrays=[s.array for s in sources],
    )


def _ids_in_order(arr: np.ndarray) -> list[int]:
    ids = arr[arr >= 0]
    if not ids.size:
        return []
    _, first = np.unique(ids, return_index=True)
    return [int(ids[i]) for i in sorted(first)]


def _source(info: ArrayInfo, src: np.ndarray, dst: np.ndarray, scale: int, table: str) -> Source:
    count = int(src.size)
    order = np.arange(count)
    contiguous = count == info.size and np.array_equal(src, order) and np.array_equal(dst - dst[0], order)
    return Source(
        array=info.name,
        mult=1 << (scale - info.kif[2]),
        count=count,
        contiguous=bool(contiguous),
        base=int(dst[0]),
        src=src.tolist(),
        dst=dst.tolist(),
        table=table,
    )


def scatter(
    storage: Storage,
    refs: Refs,
    acc: str,
    width: int,
    scale: int,
    round: RoundMode | None = None,
    overflow: OverflowMode | None = None,
) -> Scatter:
    """Store flat ``acc`` (``width`` bits at ``scale``) into the arrays of materialized ``refs``."""
    flat = refs.flat()
    stores = []
    for n, aid in enumerate(_ids_in_order(flat.arr)):
        members = np.nonzero(flat.arr == aid)[0]
        members = members[np.argsort(flat.pos[members], kind="stable")]
        info = storage.arrays[aid]
        contiguous = np.array_equal(members, np.arange(flat.arr.size))
        stores.append(Store(info.name, info.type, int(members.size), bool(contiguous), members.tolist(), f"{acc}_t{n}"))
    # TRN with WRAP is ap_fixed's default cast: the plain bit store (no conversion code) does it
    modes = round is not None and (round, overflow) != (RoundMode.TRN, OverflowMode.WRAP)
    return Scatter(
        acc=acc,
        width=width,
        scale=scale,
        stores=stores,
        round=round.name if modes and round else "",
        overflow=overflow.name if modes and overflow else "",
    )
