"""Lowerings of the graph boundary, constants, data movement and elementwise ops."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hgqir.ir import Op, OpKind

from .lowering import Lowering, acc_bits, alias_or_copy, exact_type, lowers
from .refs import Refs


@dataclass
class Binary:
    """Body of add, sub and mul: ``acc[e] = a[e] op b[e]``; prelu: ``a[e] < 0 ? a[e] * b[e] : a[e] << shift``."""

    op: str
    """``add``, ``sub``, ``mul`` or ``prelu`` (the template picks the operator)."""
    shift: int = 0


@lowers(OpKind.INPUT)
def lower_input(lw: Lowering, op: Op) -> None:
    v = op.result
    refs, ids = lw.storage.materialize(v.type, f"in_{v.name}")
    lw.define(v, refs)
    modes = {"round": op.attrs["round"].name, "overflow": op.attrs["overflow"].name}
    port = lw.port(v.name, v, refs, ids, **modes)
    for a in port.arrays:
        a.const = True  # the top function only reads its inputs
    lw.inputs.append(port)


@lowers(OpKind.CONST)
def lower_const(lw: Lowering, op: Op) -> None:
    lw.define(op.result, Refs.constant(op.attrs["data"], op.result.type))


@lowers(OpKind.OUTPUT)
def lower_output(lw: Lowering, op: Op) -> None:
    v = op.operands[0]
    name = lw.storage.unique(f"out_{op.attrs.get('name', 'out')}")
    refs, ids = lw.storage.materialize(v.type, name)
    src = lw.refs(v)
    g = lw.gather(src, "x0")
    lw.layer(op, "copy", [g], g.var, g.width, g.scale, target=(name, refs, ids))
    port = lw.port(name, v, refs, ids, words=output_words(lw, ids))
    lw.outputs.append(port)


def output_words(lw: Lowering, ids: list[int]) -> int:
    widest = max((lw.storage.arrays[a].type.mant_width for a in ids), default=1)
    return 1 if widest <= 62 else -(-widest // 64)


@lowers(OpKind.RESHAPE)
def lower_reshape(lw: Lowering, op: Op) -> None:
    shape = tuple(op.attrs["shape"])
    alias_or_copy(lw, op, lw.refs(op.operands[0]).map(lambda a: a.reshape(shape)))


@lowers(OpKind.TRANSPOSE)
def lower_transpose(lw: Lowering, op: Op) -> None:
    perm = tuple(op.attrs["perm"])
    alias_or_copy(lw, op, lw.refs(op.operands[0]).map(lambda a: a.transpose(perm)))


@lowers(OpKind.SLICE)
def lower_slice(lw: Lowering, op: Op) -> None:
    index = tuple(slice(b, e) for b, e in zip(op.attrs["begin"], op.attrs["end"], strict=True))
    alias_or_copy(lw, op, lw.refs(op.operands[0]).map(lambda a: a[index]))


@lowers(OpKind.CONCAT)
def lower_concat(lw: Lowering, op: Op) -> None:
    parts = [lw.refs(v) for v in op.operands]
    alias_or_copy(lw, op, Refs.concat(parts, op.attrs["axis"]))


@lowers(OpKind.QUANT)
def lower_quant(lw: Lowering, op: Op) -> None:
    g = lw.gather(lw.refs(op.operands[0]), "x0")
    modes = (op.attrs["round"], op.attrs["overflow"])
    lw.layer(op, "copy", [g], g.var, g.width, g.scale, modes=modes)


@lowers(OpKind.RELU)
def lower_relu(lw: Lowering, op: Op) -> None:
    g = lw.gather(lw.refs(op.operands[0]), "x0")
    lw.layer(op, "relu", [g], g.var, g.width, g.scale)


def broadcast(refs: Refs, shape: tuple[int, ...]) -> Refs:
    return refs.map(lambda a: np.broadcast_to(a, shape))


@lowers(OpKind.PRELU)
def lower_prelu(lw: Lowering, op: Op) -> None:
    shape = op.result.shape
    x, alpha = (broadcast(lw.refs(v), shape) for v in op.operands)
    sa = max(alpha.finest(), 0)  # alpha at an LSB of at most 1: the positive branch shifts by sa
    gx, ga = lw.gather(x, "x0"), lw.gather(alpha, "x1", sa)
    scale = gx.scale + sa
    width = max(acc_bits(exact_type(op), scale), gx.width + ga.width, gx.width + sa + 1)
    lw.layer(op, "binary", [gx, ga], "acc", width, scale, Binary("prelu", sa), mults=int(np.prod(shape)))


@lowers(OpKind.MAXIMUM, OpKind.MINIMUM)
def lower_extreme(lw: Lowering, op: Op) -> None:
    shape = op.result.shape
    a, b = (broadcast(lw.refs(v), shape) for v in op.operands)
    scale = max(a.finest(), b.finest())
    ga, gb = lw.gather(a, "x0", scale), lw.gather(b, "x1", scale)
    width = max(acc_bits(exact_type(op), scale), ga.width, gb.width) + 1
    lw.layer(op, "binary", [ga, gb], "acc", width, scale, Binary("max" if op.kind is OpKind.MAXIMUM else "min"))


@lowers(OpKind.ADD, OpKind.SUB, OpKind.MUL)
def lower_binary(lw: Lowering, op: Op) -> None:
    shape = op.result.shape
    a, b = (broadcast(lw.refs(v), shape) for v in op.operands)
    if op.kind is OpKind.MUL:
        ga, gb = lw.gather(a, "x0"), lw.gather(b, "x1")
        scale = ga.scale + gb.scale
        width = max(acc_bits(exact_type(op), scale), ga.width + gb.width)
        lw.layer(op, "binary", [ga, gb], "acc", width, scale, Binary("mul"), mults=int(np.prod(shape)))
        return
    scale = max(a.finest(), b.finest())
    ga, gb = lw.gather(a, "x0", scale), lw.gather(b, "x1", scale)
    width = max(acc_bits(exact_type(op), scale), ga.width + 1, gb.width + 1)
    lw.layer(op, "binary", [ga, gb], "acc", width, scale, Binary(op.kind.value))
