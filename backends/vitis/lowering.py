"""From a graph to the data the templates render: ports, arrays and one function per layer.

Each computing op becomes a *layer*: gather the operands' integer mantissas, compute exactly on
integers (widths from the op rule's exact type inference), scatter into the result's typed
arrays. Pure data movement becomes no code at all (see :mod:`.refs`). Every op kind has one
lowering function in ``LOWERINGS``; a graph with any other op kind is refused as a whole.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hgqir.errors import UnsupportedOpError
from hgqir.fixed import FixedType, OverflowMode, RoundMode
from hgqir.ir import Graph, Op, OpKind, Value
from hgqir.ops import cast_needed, registrar

from .gather import Gather, Scatter, gather, scatter
from .options import VitisOptions
from .refs import CType, Refs, Storage

MAX_WIDTH = 1024
"""Widest integer the ap_types headers allow (AP_INT_MAX_W)."""
GUARD_BITS = 2
"""Extra accumulator bits: single terms may exceed the final range by one bit (see docs/vitis.md)."""


@dataclass
class Param:
    """An array argument of a layer function."""

    name: str
    type: CType
    size: int
    const: bool


@dataclass
class Layer:
    """One layer function: gathers, an op-specific body, a scatter."""

    fn: str
    kind: str
    """Selects the template macro of the body."""
    comment: str
    gathers: list[Gather]
    scatter: Scatter
    body: Any
    reuse: int = 1
    mults: int = 0
    """Multiplications per sample (the multiplier budget of a reuse factor derives from it)."""
    params: list[Param] = field(default_factory=list)

    @property
    def weight(self) -> int:
        """Rough size of the rendered function, to balance the compiled files."""
        tables = sum(len(s.src) for g in self.gathers for s in g.sources) + len(self.scatter.stores)
        return 200 + tables + getattr(self.body, "weight", 0)

    @property
    def mul_limit(self) -> int:
        return max(1, -(-self.mults // max(self.reuse, 1)))


@dataclass
class Port:
    """A graph input or output: its arrays and where each element sits in the flat tensor."""

    name: str
    value: Value
    arrays: list[Param]
    positions: list[list[int]]
    """Flat element index of each array slot."""
    contiguous: list[bool]
    round: str = "TRN"
    overflow: str = "WRAP"
    words: int = 1
    """64-bit words per element in the C simulation's output buffers (1 unless wider than 62 bits)."""

    @property
    def size(self) -> int:
        return self.value.type.size

    @property
    def slots(self) -> int:
        return self.size * self.words

    @property
    def shape(self) -> list[int]:
        return list(self.value.shape)

    @property
    def desc(self) -> str:
        return f"`{self.name}` {self.shape}"


Lowerer = Callable[["Lowering", Op], None]
LOWERINGS: dict[OpKind, Lowerer] = {}


lowers = registrar(LOWERINGS)


class Lowering:
    """Walks the graph once and collects ports, arrays and layers."""

    def __init__(self, g: Graph, options: VitisOptions) -> None:
        self.g = g
        self.options = options
        self.storage = Storage()
        for suffix in ("", "_load", "_call", "_save", "_batch", "_ports"):
            self.storage.unique(options.top + suffix)  # names of the top function and the C-sim glue
        self.layers: list[Layer] = []
        self.inputs: list[Port] = []
        self.outputs: list[Port] = []

    def run(self) -> Lowering:
        check_supported(self.g)
        for op in self.g.ops:
            LOWERINGS[op.kind](self, op)
        return self

    # ------------------------------------------------------------- helpers for lowerings
    def refs(self, v: Value) -> Refs:
        return self.storage.of(v)

    def define(self, v: Value, refs: Refs) -> None:
        self.storage.refs[id(v)] = refs

    def result(self, op: Op) -> tuple[Value, Refs, list[int]]:
        """The op's result with fresh arrays for its declared type."""
        v = op.result
        refs, ids = self.storage.materialize(v.type, f"v_{v.name}")
        self.define(v, refs)
        return v, refs, ids

    def gather(self, refs: Refs, var: str, scale: int | None = None) -> Gather:
        return gather(self.storage, refs, var, refs.finest() if scale is None else scale)

    def layer(
        self,
        op: Op,
        kind: str,
        gathers: list[Gather],
        acc: str,
        width: int,
        scale: int,
        body: Any = None,
        modes: tuple[RoundMode, OverflowMode] | None = None,
        mults: int = 0,
        reuse: int = 1,
        target: tuple[str, Refs, list[int]] | None = None,
    ) -> None:
        """Scatter ``acc`` into the op's result (fresh arrays, or ``target``) and record the layer."""
        name, refs, ids = target if target is not None else (op.result.name, *self.result(op)[1:])
        if not ids:  # every element pruned: the result is the literal 0, no code
            return
        check_width(op, max([width] + [g.width for g in gathers]))
        sc = scatter(self.storage, refs, acc, width, scale, *(modes or (None, None)))
        fn = self.storage.unique(f"{self.options.top}_{name}")
        what = op.kind.value if op.results else f"output {name}"
        comment = f"%{name} = {what}({', '.join('%' + o.name for o in op.operands)})"
        layer = Layer(fn, kind, comment, gathers, sc, body, reuse=reuse, mults=mults)
        layer.params = self._params(gathers, ids)
        self.layers.append(layer)

    def _params(self, gathers: list[Gather], written: list[int]) -> list[Param]:
        by_name = {a.name: a for a in self.storage.arrays}
        read = list(dict.fromkeys(name for g in gathers for name in g.arrays))
        params = [Param(n, by_name[n].type, by_name[n].size, True) for n in read]
        for aid in written:
            a = self.storage.arrays[aid]
            params.append(Param(a.name, a.type, a.size, False))
        return params

    def port(self, name: str, v: Value, refs: Refs, ids: list[int], **kw: Any) -> Port:
        flat = refs.flat()
        arrays, positions, contiguous = [], [], []
        for aid in ids:
            a = self.storage.arrays[aid]
            members = np.nonzero(flat.arr == aid)[0]
            members = members[np.argsort(flat.pos[members], kind="stable")]
            arrays.append(Param(a.name, a.type, a.size, False))
            contiguous.append(bool(np.array_equal(members, np.arange(flat.arr.size))))
            positions.append([] if contiguous[-1] else members.tolist())
        return Port(name, v, arrays, positions, contiguous, **kw)


def acc_bits(t: FixedType, scale: int) -> int:
    """Signed bits holding every value of ``t`` at ``scale``, plus the guard bits."""
    live = ~t.zero_mask
    if not live.any():
        return 1 + GUARD_BITS
    return int(t.i[live].max()) + scale + 1 + GUARD_BITS


def exact_type(op: Op) -> FixedType:
    return op.rule.infer(op)[0]


def const_of(v: Value) -> tuple[np.ndarray, FixedType]:
    """Integer mantissas and type of a const operand."""
    if v.producer is None or v.producer.kind is not OpKind.CONST:
        raise UnsupportedOpError(f"operand %{v.name} must be a constant for the vitis backend")
    return np.asarray(v.producer.attrs["data"]), v.type


def check_width(op: Op, width: int) -> None:
    if width > MAX_WIDTH:
        raise UnsupportedOpError(
            f"vitis backend: {op!r} needs a {width}-bit integer; ap_int allows {MAX_WIDTH} bits",
            [f"%{op.results[0].name if op.results else op.operands[0].name} ({op.kind.value})"],
        )


def check_supported(g: Graph) -> None:
    """Refuse the whole graph, naming every op the backend cannot emit, before writing anything."""
    bad = [
        f"%{op.results[0].name if op.results else op.attrs.get('name', '?')} ({op.kind.value})"
        for op in g.ops
        if op.kind not in LOWERINGS
    ]
    wide = [
        f"%{v.name} ({v.producer.kind.value}): {int(v.type.width.max())} bits"
        for v in g.values()
        if v.type.size and int(v.type.width.max()) > MAX_WIDTH and v.producer
    ]
    if bad or wide:
        raise UnsupportedOpError("the vitis backend cannot emit these ops exactly:", bad + wide)


def alias_or_copy(lw: Lowering, op: Op, refs: Refs) -> None:
    """Data movement: reuse the operand's elements, or copy with a cast when the type demands it."""
    if not any(cast_needed(op)):
        lw.define(op.result, refs)
        return
    g = lw.gather(refs, "x0")
    lw.layer(op, "copy", [g], g.var, g.width, g.scale)
