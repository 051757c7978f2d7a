"""How each IR op kind is written as ONNX nodes (:data:`LOWER`); used by :mod:`.export`.

A lowering returns the name of the ONNX tensor holding the op's exact result (the exporter
adds the cast into a narrower declared type). IR layout is channels-last; conv and pooling
transpose to ONNX's channels-first order and back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from hgqir.ir import Op, OpKind

if TYPE_CHECKING:
    from .export import Exporter


def _to_first(nd: int) -> list[int]:
    return [0, nd + 1, *range(1, nd + 1)]


def _to_last(nd: int) -> list[int]:
    return [0, *range(2, nd + 2), 1]


def _dense(ex: Exporter, op: Op) -> str:
    x, w = op.operands[:2]
    out = op.result.name
    ins = [ex.name(x), ex.const(w, None)]
    if len(x.shape) == 1:  # Gemm: [N, in] x [in, out] + bias, as Brevitas writes linear layers
        if len(op.operands) == 3:
            ins.append(ex.const(op.operands[2], None))
        return ex.node("Gemm", ins, out)
    y = ex.node("MatMul", ins, f"{out}_mm" if len(op.operands) == 3 else out)
    return ex.node("Add", [y, ex.const(op.operands[2], None)], out) if len(op.operands) == 3 else y


def _channels_first(ex: Exporter, op: Op, nd: int, build: Callable[[str], str]) -> str:
    out = op.result.name
    x = ex.node("Transpose", [ex.name(op.operands[0])], f"{out}_cf", perm=_to_first(nd))
    return ex.node("Transpose", [build(x)], out, perm=_to_last(nd))


def _pads(op: Op) -> list[int]:
    pad = op.attrs["pad"]
    return [int(p[0]) for p in pad] + [int(p[1]) for p in pad]


def _conv(ex: Exporter, op: Op) -> str:
    nd = 1 if op.kind is OpKind.CONV1D else 2
    wperm = (nd + 1, nd, *range(nd))  # [*k, Cin, Cout] -> [Cout, Cin, *k]
    ins = [ex.const(op.operands[1], wperm)] + ([ex.const(op.operands[2], None)] if len(op.operands) == 3 else [])
    kernel = list(op.operands[1].shape[:nd])
    stride = list(op.attrs["stride"])
    name = f"{op.result.name}_conv"
    return _channels_first(
        ex, op, nd, lambda x: ex.node("Conv", [x, *ins], name, kernel_shape=kernel, strides=stride, pads=_pads(op))
    )


def _maxpool(ex: Exporter, op: Op) -> str:
    nd = 1 if op.kind is OpKind.MAXPOOL1D else 2
    kernel, stride = list(op.attrs["pool"]), list(op.attrs["stride"])
    name = f"{op.result.name}_pool"
    return _channels_first(
        ex, op, nd, lambda x: ex.node("MaxPool", [x], name, kernel_shape=kernel, strides=stride, pads=_pads(op))
    )


def _binary(onnx_type: str) -> Callable[[Exporter, Op], str]:
    def lower(ex: Exporter, op: Op) -> str:
        return ex.node(onnx_type, [ex.name(v) for v in op.operands], op.result.name)

    return lower


def _relu(ex: Exporter, op: Op) -> str:
    return ex.node("Relu", [ex.name(op.operands[0])], op.result.name)


def _reshape(ex: Exporter, op: Op) -> str:
    shape = ex.init(f"{op.result.name}_shape", np.array([-1, *op.attrs["shape"]]), np.int64)
    return ex.node("Reshape", [ex.name(op.operands[0]), shape], op.result.name)


def _transpose(ex: Exporter, op: Op) -> str:
    perm = [0, *(int(p) + 1 for p in op.attrs["perm"])]
    return ex.node("Transpose", [ex.name(op.operands[0])], op.result.name, perm=perm)


def _concat(ex: Exporter, op: Op) -> str:
    return ex.node("Concat", [ex.name(v) for v in op.operands], op.result.name, axis=int(op.attrs["axis"]) + 1)


def _batchnorm(ex: Exporter, op: Op) -> str:
    x, s, o = op.operands
    y = ex.node("Mul", [ex.name(x), ex.const(s, None)], f"{op.result.name}_mul")
    return ex.node("Add", [y, ex.const(o, None)], op.result.name)


def _quant(ex: Exporter, op: Op) -> str:
    x, v = op.operands[0], op.result
    return ex.cast(ex.name(x), v.type, op.attrs["round"], op.attrs["overflow"], x.type, v.name)


LOWER: dict[OpKind, Any] = {
    OpKind.QUANT: _quant,
    OpKind.DENSE: _dense,
    OpKind.CONV1D: _conv,
    OpKind.CONV2D: _conv,
    OpKind.MAXPOOL1D: _maxpool,
    OpKind.MAXPOOL2D: _maxpool,
    OpKind.ADD: _binary("Add"),
    OpKind.SUB: _binary("Sub"),
    OpKind.MUL: _binary("Mul"),
    OpKind.RELU: _relu,
    OpKind.RESHAPE: _reshape,
    OpKind.TRANSPOSE: _transpose,
    OpKind.CONCAT: _concat,
    OpKind.BATCHNORM: _batchnorm,
}
"""IR op kind -> lowering; kinds missing here are listed in the exporter's error."""
