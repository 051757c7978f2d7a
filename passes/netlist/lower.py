"""From a graph to the element netlist: one lowering per op kind, one layer per computing op.

Each IR value becomes an object array of :class:`~.netlist.Ref` of its shape. Data movement
(reshape, transpose, concat) rearranges refs and builds nothing; results of ops the interpreter
casts (TRN, WRAP) are quantized into their declared types, which costs logic only where an
element's exact bounds do not fit.
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
from hgqir.ops.depthwise import expand as expand_depthwise
from hgqir.ops.linear import const_exact, windows

from . import cmvm
from .arith import quant
from .netlist import ZERO, Netlist, Ref

Lowerer = Callable[["Lowering", Op], None]
LOWERINGS: dict[OpKind, Lowerer] = {}


lowers = registrar(LOWERINGS)


@dataclass
class Port:
    """A graph input or output: its value and one ref per element (row-major)."""

    name: str
    value: Value
    refs: list[Ref]
    round: str = "TRN"
    overflow: str = "WRAP"

    @property
    def kif(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = self.value.type
        return tuple(np.broadcast_to(a, t.shape).reshape(-1) for a in (t.k, t.i, t.f))  # type: ignore[return-value]

    @property
    def widths(self) -> list[int]:
        k, i, f = self.kif
        return [max(int(w), 0) for w in k + i + f]


@dataclass
class Lowering:
    g: Graph
    net: Netlist = field(default_factory=Netlist)
    refs: dict[int, np.ndarray] = field(default_factory=dict)
    inputs: list[Port] = field(default_factory=list)
    outputs: list[Port] = field(default_factory=list)
    programs: dict[int, cmvm.Program] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.g = expand_depthwise(self.g)  # the convolutions with block-diagonal kernels

    def run(self) -> Lowering:
        check_supported(self.g)
        for op in self.g.ops:
            if op.results and op.kind not in (OpKind.INPUT, OpKind.CONST):
                self.net.begin(_layer_name(op), op.kind.value, _comment(op))
            LOWERINGS[op.kind](self, op)
        return self

    def of(self, v: Value) -> np.ndarray:
        if id(v) not in self.refs:  # constants become literal refs when first read as data
            data = const_exact(v)
            m = np.broadcast_to(np.asarray(data.m), v.shape)
            self.refs[id(v)] = _array(v.shape, lambda ix: self.net.const(int(m[ix]), -data.scale))
        return self.refs[id(v)]

    def define(self, op: Op, refs: np.ndarray) -> None:
        """Set the op's result, cast (TRN, WRAP) into its declared type if the rule says so."""
        v = op.result
        if any(cast_needed(op)):
            refs = self.cast(refs, v.type, RoundMode.TRN, OverflowMode.WRAP)
        self.refs[id(v)] = refs

    def cast(self, refs: np.ndarray, t: FixedType, rmode: RoundMode, omode: OverflowMode) -> np.ndarray:
        k, i, f = (np.broadcast_to(a, t.shape) for a in (t.k, t.i, t.f))
        net = self.net
        return _array(t.shape, lambda ix: quant(net, refs[ix], int(k[ix]), int(i[ix]), int(f[ix]), rmode, omode))


def refs_array(refs: list[Ref]) -> np.ndarray:
    """A 1-D object array of refs (numpy would unpack the tuples)."""
    out = np.empty(len(refs), dtype=object)
    for n, r in enumerate(refs):
        out[n] = r
    return out


def window_refs(x: np.ndarray, kernel: Any, stride: Any, pad: Any, fill: Any) -> np.ndarray:
    """Sliding windows of a ref array (as ``hgqir.ops.linear.windows``), ``fill`` for padding."""
    index = windows(np.arange(x.size).reshape(x.shape), kernel, stride, pad, -1, False)
    flat = list(x.reshape(-1)) + [fill]
    out = np.empty(index.shape, dtype=object)
    for ix, n in np.ndenumerate(index):
        out[ix] = flat[n]
    return out


def _array(shape: tuple[int, ...], fn: Callable[[tuple[int, ...]], Ref]) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    for ix in np.ndindex(*shape):
        out[ix] = fn(ix)
    return out


def _layer_name(op: Op) -> str:
    return op.result.name


def _comment(op: Op) -> str:
    return f"%{op.result.name} = {op.kind.value}({', '.join('%' + o.name for o in op.operands)})"


def check_supported(g: Graph) -> None:
    """One error naming every op the backend cannot build, before anything is written."""
    bad = [
        f"%{op.results[0].name if op.results else '?'} ({op.kind.value})" for op in g.ops if op.kind not in LOWERINGS
    ]
    if bad:
        raise UnsupportedOpError("the verilog backend cannot emit these ops:", bad)


# ---------------------------------------------------------------------- boundary
@lowers(OpKind.INPUT)
def _input(lw: Lowering, op: Op) -> None:
    v = op.result
    t = v.type
    k, i, f = (np.broadcast_to(a, t.shape) for a in (t.k, t.i, t.f))
    port = len(lw.inputs)
    flat = {ix: n for n, ix in enumerate(np.ndindex(*t.shape))}

    def element(ix: tuple[int, ...]) -> Ref:
        kk, ii, ff = int(k[ix]), int(i[ix]), int(f[ix])
        if kk + ii + ff <= 0:
            return ZERO
        return lw.net.input(-kk << (ii + ff), (1 << (ii + ff)) - 1, -ff, (port, flat[ix]))

    refs = _array(t.shape, element)
    lw.refs[id(v)] = refs
    lw.inputs.append(Port(v.name, v, list(refs.reshape(-1)), op.attrs["round"].value, op.attrs["overflow"].value))


@lowers(OpKind.CONST)
def _const(lw: Lowering, op: Op) -> None:
    pass  # read lazily (weights never become wires; data operands become literals)


@lowers(OpKind.OUTPUT)
def _output(lw: Lowering, op: Op) -> None:
    v = op.operands[0]
    refs = [lw.net.plain(r) for r in lw.of(v).reshape(-1)]
    lw.outputs.append(Port(op.attrs["name"], v, refs))


@lowers(OpKind.QUANT)
def _quant(lw: Lowering, op: Op) -> None:
    lw.refs[id(op.result)] = lw.cast(lw.of(op.operands[0]), op.result.type, op.attrs["round"], op.attrs["overflow"])


# ---------------------------------------------------------------------- linear
def _weights(v: Value) -> tuple[np.ndarray, np.ndarray]:
    """Integer mantissas and exponents of a constant (zeros where pruned)."""
    t = v.type
    data = np.asarray(v.producer.attrs["data"]) if v.producer is not None else np.zeros(v.shape)
    m = np.array([int(x) for x in data.reshape(-1)], dtype=object).reshape(v.shape)
    m = np.where(np.broadcast_to(t.zero_mask, v.shape), 0, m)
    return m, -np.broadcast_to(t.f, v.shape).astype(np.int64)


def _bias(lw: Lowering, op: Op) -> list[Ref] | None:
    if len(op.operands) < 3:
        return None
    return list(lw.of(op.operands[2]).reshape(-1))


@lowers(OpKind.DENSE, OpKind.CONV1D, OpKind.CONV2D)
def _contract(lw: Lowering, op: Op) -> None:
    w, e = _weights(op.operands[1])
    cout = w.shape[-1]
    prog = cmvm.solve(w.reshape(-1, cout), e.reshape(-1, cout))
    lw.programs[id(op)] = prog
    x = lw.of(op.operands[0])
    if op.kind is OpKind.DENSE:
        rows = x.reshape(-1, x.shape[-1])
    else:
        win = window_refs(x, w.shape[:-2], op.attrs["stride"], op.attrs["pad"], ZERO)
        rows = win.reshape(-1, int(np.prod(w.shape[:-1])))
    bias = _bias(lw, op)
    out = np.empty((len(rows), cout), dtype=object)
    for n, row in enumerate(rows):
        out[n] = refs_array(cmvm.instantiate(lw.net, prog, list(row), bias))
    lw.define(op, out.reshape(op.result.shape))


@lowers(OpKind.BATCHNORM)
def _batchnorm(lw: Lowering, op: Op) -> None:
    x = lw.of(op.operands[0])
    s, se = _weights(op.operands[1])
    offset = lw.of(op.operands[2])
    net = lw.net

    def element(ix: tuple[int, ...]) -> Ref:
        c = ix[-1] if ix else 0
        return net.add(net.times(x[ix], int(s[c]), int(se[c])), offset[c])

    lw.define(op, _array(op.result.shape, element))


# ---------------------------------------------------------------------- elementwise
def _broadcast(lw: Lowering, op: Op) -> tuple[np.ndarray, np.ndarray]:
    shape = op.result.shape
    a, b = (np.broadcast_to(lw.of(v), shape) for v in op.operands)
    return a, b


@lowers(OpKind.ADD, OpKind.SUB)
def _addsub(lw: Lowering, op: Op) -> None:
    a, b = _broadcast(lw, op)
    sub = op.kind is OpKind.SUB
    lw.define(op, _array(op.result.shape, lambda ix: lw.net.add(a[ix], b[ix], sub)))


@lowers(OpKind.MUL)
def _mul(lw: Lowering, op: Op) -> None:
    a, b = _broadcast(lw, op)
    lw.define(op, _array(op.result.shape, lambda ix: lw.net.mul(a[ix], b[ix])))


@lowers(OpKind.MAXIMUM, OpKind.MINIMUM)
def _extreme(lw: Lowering, op: Op) -> None:
    a, b = _broadcast(lw, op)
    kind = "max" if op.kind is OpKind.MAXIMUM else "min"
    lw.define(op, _array(op.result.shape, lambda ix: lw.net.extreme(kind, a[ix], b[ix])))


@lowers(OpKind.PRELU)
def _prelu(lw: Lowering, op: Op) -> None:
    x, alpha = _broadcast(lw, op)
    net = lw.net

    def element(ix: tuple[int, ...]) -> Ref:
        v, a = x[ix], alpha[ix]
        m, e = net.value_of_const(a) if a.node != 0 else (0, 0)
        if m == 0:
            return net.relu(v)
        if m < 0:  # x < 0: alpha * x = |alpha| * relu(-x)
            return net.add(net.relu(v), net.times(net.relu(net.shifted(v, 0, neg=True)), -m, e))
        scaled = net.times(v, m, e)
        return net.extreme("max" if m <= 1 << max(-e, 0) and e <= 0 else "min", v, scaled)

    lw.define(op, _array(op.result.shape, element))


@lowers(OpKind.RELU)
def _relu(lw: Lowering, op: Op) -> None:
    x = lw.of(op.operands[0])
    lw.define(op, _array(op.result.shape, lambda ix: lw.net.relu(x[ix])))


# ---------------------------------------------------------------------- data movement
@lowers(OpKind.RESHAPE)
def _reshape(lw: Lowering, op: Op) -> None:
    lw.define(op, lw.of(op.operands[0]).reshape(op.result.shape))


@lowers(OpKind.SLICE)
def _slice(lw: Lowering, op: Op) -> None:
    index = tuple(slice(b, e) for b, e in zip(op.attrs["begin"], op.attrs["end"], strict=True))
    lw.define(op, lw.of(op.operands[0])[index])


@lowers(OpKind.TRANSPOSE)
def _transpose(lw: Lowering, op: Op) -> None:
    lw.define(op, lw.of(op.operands[0]).transpose(op.attrs["perm"]))


@lowers(OpKind.CONCAT)
def _concat(lw: Lowering, op: Op) -> None:
    lw.define(op, np.concatenate([lw.of(v) for v in op.operands], axis=op.attrs["axis"]))


def extend(lw: Lowering, kind: str, refs: list[Any]) -> Ref:
    """Max / min over refs (``None`` entries are padding and never win) as a comparator tree."""
    live = [r for r in refs if r is not None]
    while len(live) > 1:
        live = [lw.net.extreme(kind, live[n], live[n + 1]) for n in range(0, len(live) - 1, 2)] + (
            [live[-1]] if len(live) % 2 else []
        )
    return live[0] if live else ZERO
