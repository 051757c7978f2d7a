"""Where every tensor element lives in the generated C++: an array slot, a constant, or zero.

A value's elements are stored in one array per distinct element type (``v_h_g0``, ``v_h_g1``...),
so each element keeps its own width. Data movement (reshape, transpose, concat, broadcasting) only
rearranges these references: it costs no code. Constants stay bit-true integer mantissas and are
folded into the layers that read them; pruned elements (width <= 0) are the literal 0.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hgqir.fixed import FixedType
from hgqir.ir import Value

ZERO = -1
"""Array id of an element that is the constant 0 (pruned, or an exact zero)."""
CONST = -2
"""Array id of a constant element; its mantissa is in ``Refs.cm``."""


@dataclass(frozen=True)
class CType:
    """A fixed-point type as the numbers the templates spell out: width, integer bits (sign included), sign."""

    width: int
    integer: int
    signed: bool

    @classmethod
    def of(cls, k: int, i: int, f: int) -> CType:
        return cls(k + i + f, k + i, bool(k))

    @property
    def frac(self) -> int:
        return self.width - self.integer

    @property
    def mant_width(self) -> int:
        """Width of the signed integer that holds a mantissa (unsigned types need one more bit)."""
        return self.width if self.signed else self.width + 1


@dataclass(frozen=True)
class ArrayInfo:
    """One C++ array of equally typed elements."""

    name: str
    type: CType
    size: int
    kif: tuple[int, int, int]


@dataclass
class Refs:
    """Per-element references of a tensor (all fields have the tensor's shape)."""

    arr: np.ndarray
    """Array id (index into ``Storage.arrays``), or ZERO, or CONST."""
    pos: np.ndarray
    """Slot in the array."""
    k: np.ndarray
    i: np.ndarray
    f: np.ndarray
    """Type of the element where it is stored (a constant's own type)."""
    cm: np.ndarray
    """Mantissa of constant elements (object array of Python ints; 0 elsewhere)."""

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.arr.shape)

    def map(self, fn: Callable[[np.ndarray], np.ndarray]) -> Refs:
        """Apply a numpy rearrangement (reshape, transpose, broadcast, index) to every field."""
        return Refs(*(np.asarray(fn(getattr(self, n))) for n in ("arr", "pos", "k", "i", "f", "cm")))

    def flat(self) -> Refs:
        return self.map(lambda a: np.ascontiguousarray(a).reshape(-1))

    @classmethod
    def concat(cls, parts: list[Refs], axis: int) -> Refs:
        fields = ("arr", "pos", "k", "i", "f", "cm")
        return cls(*(np.concatenate([getattr(p, n) for p in parts], axis=axis) for n in fields))

    @classmethod
    def constant(cls, data: np.ndarray, t: FixedType) -> Refs:
        """References of a constant tensor with integer mantissas ``data`` of type ``t``."""
        live = ~t.zero_mask
        cm = np.empty(t.shape, dtype=object)
        cm[...] = np.where(live, np.asarray(data, dtype=object), 0)
        arr = np.where(live & (cm != 0), CONST, ZERO).astype(np.int64)
        zero = arr == ZERO
        k, i, f = (np.where(zero, 0, np.asarray(a)).astype(np.int64) for a in (t.k, t.i, t.f))
        return cls(arr, np.zeros(t.shape, dtype=np.int64), k, i, f, np.where(zero, 0, cm).astype(object))

    def live(self) -> np.ndarray:
        return self.arr != ZERO

    def top_bits(self, scale: int) -> int:
        """Signed bits of the largest mantissa magnitude at ``scale`` over the live elements."""
        bits = 1
        stored = self.arr >= 0
        if stored.any():
            bits = max(bits, int((self.i[stored] + scale).max()) + 1)
        consts = self.arr == CONST
        if consts.any():
            m = [abs(int(c)) << (scale - int(f)) for c, f in zip(self.cm[consts], self.f[consts], strict=True)]
            bits = max(bits, max(v.bit_length() for v in m) + 1)
        return bits

    def finest(self) -> int:
        """Largest ``f`` over the live elements (0 when none is live)."""
        live = self.live()
        return int(self.f[live].max()) if live.any() else 0


class Storage:
    """The arrays of a design and the references of every value computed so far."""

    def __init__(self) -> None:
        self.arrays: list[ArrayInfo] = []
        self.refs: dict[int, Refs] = {}
        self._names: set[str] = set()

    def unique(self, base: str) -> str:
        """A C identifier from ``base`` that no array or function uses yet."""
        name = re.sub(r"\W", "_", base)
        if not name or name[0].isdigit():
            name = "v" + name
        out, n = name, 1
        while out in self._names:
            out, n = f"{name}_{n}", n + 1
        self._names.add(out)
        return out

    def array(self, base: str, kif: tuple[int, int, int], size: int) -> int:
        name = self.unique(base)
        self.arrays.append(ArrayInfo(name, CType.of(*kif), size, kif))
        return len(self.arrays) - 1

    def materialize(self, t: FixedType, base: str) -> tuple[Refs, list[int]]:
        """Arrays (one per distinct element type) for a tensor of declared type ``t``.

        Returns the references and the array ids, in order of first appearance.
        """
        shape = t.shape
        k, i, f = (np.asarray(a).reshape(-1) for a in (t.k, t.i, t.f))
        live = ~np.asarray(t.zero_mask).reshape(-1)
        arr = np.full(k.shape, ZERO, dtype=np.int64)
        pos = np.zeros(k.shape, dtype=np.int64)
        keys = np.stack([k, i, f], axis=1)
        groups = _groups(keys, live)
        ids = []
        for n, (kif, members) in enumerate(groups):
            suffix = "" if len(groups) == 1 else f"_g{n}"
            aid = self.array(base + suffix, kif, len(members))
            arr[members] = aid
            pos[members] = np.arange(len(members))
            ids.append(aid)
        zero = arr == ZERO
        kz, iz, fz = (np.where(zero, 0, a) for a in (k, i, f))
        refs = Refs(arr, pos, kz, iz, fz, np.zeros(k.shape, dtype=object))
        return refs.map(lambda a: a.reshape(shape)), ids

    def of(self, v: Value) -> Refs:
        return self.refs[id(v)]

    def name(self, aid: int) -> str:
        return self.arrays[aid].name


def _groups(keys: np.ndarray, live: np.ndarray) -> list[tuple[tuple[int, int, int], np.ndarray]]:
    """Element indices per distinct live (k, i, f), in order of first appearance."""
    idx = np.nonzero(live)[0]
    if not idx.size:
        return []
    uniq, first, inverse = np.unique(keys[idx], axis=0, return_index=True, return_inverse=True)
    out: list[tuple[Any, np.ndarray]] = []
    for g in np.argsort(first):
        kif = tuple(int(v) for v in uniq[g])
        out.append((kif, idx[inverse.reshape(-1) == g]))
    return out
