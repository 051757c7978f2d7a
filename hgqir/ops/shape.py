"""Data movement without arithmetic: concat, reshape (and flatten), transpose, slice.

Axes in attributes count the unbatched tensor's axes from 0.
"""

from __future__ import annotations

import numpy as np

from ..fixed import FixedType, Shape
from ..ir import Op, OpKind
from ..numbers import Exact, bound_bits
from ..quantize import mantissa_dtype
from .base import Attr, Interval, OpRule, Trait, bcast, expect, register


def _concat_shapes(op: Op) -> list[Shape]:
    axis = op.attrs["axis"]
    shapes = [v.shape for v in op.operands]
    rank = len(shapes[0])
    expect(0 <= axis < rank, op, f"axis {axis} out of range for rank {rank}")
    for s in shapes:
        same = len(s) == rank and all(a == b for n, (a, b) in enumerate(zip(s, shapes[0], strict=True)) if n != axis)
        expect(same, op, f"operand shapes {[list(x) for x in shapes]} differ off axis {axis}")
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    return [tuple(out)]


def _concat_infer(op: Op) -> list[FixedType]:
    axis = op.attrs["axis"]
    parts = [v.type for v in op.operands]
    k, i, f = (np.concatenate([np.asarray(getattr(t, n)) for t in parts], axis=axis) for n in "kif")
    return [FixedType(k.shape, k, i, f)]


def _concat_eval(op: Op, args: list[Exact]) -> list[Exact]:
    scale = max(a.scale for a in args)
    dtype = mantissa_dtype(max(bound_bits(v.type, scale) for v in op.operands))
    ms = [a.rescaled(scale, dtype) for a in args]
    return [Exact(np.concatenate(ms, axis=op.attrs["axis"] + 1), scale)]


def _reshape_shapes(op: Op) -> list[Shape]:
    shape = op.attrs["shape"]
    src = op.operands[0].shape
    expect(all(s >= 0 for s in shape), op, f"target shape {list(shape)} has a negative size")
    expect(
        int(np.prod(shape, dtype=np.int64)) == int(np.prod(src, dtype=np.int64)),
        op,
        f"cannot reshape {list(src)} ({int(np.prod(src))} elements) to {list(shape)}",
    )
    return [tuple(shape)]


def _reshape_eval(op: Op, args: list[Exact]) -> list[Exact]:
    x = args[0]
    return [Exact(x.m.reshape(x.m.shape[0], *op.attrs["shape"]), x.scale)]


def _transpose_shapes(op: Op) -> list[Shape]:
    perm = op.attrs["perm"]
    src = op.operands[0].shape
    expect(sorted(perm) == list(range(len(src))), op, f"perm {list(perm)} is not a permutation of {len(src)} axes")
    return [tuple(src[p] for p in perm)]


def _transpose_eval(op: Op, args: list[Exact]) -> list[Exact]:
    x = args[0]
    return [Exact(x.m.transpose(0, *(p + 1 for p in op.attrs["perm"])), x.scale)]


def _concat_transfer(op: Op, ins: list[Interval]) -> Interval:
    axis = op.attrs["axis"]
    lo, hi, f = (np.concatenate([np.asarray(getattr(i, n)) for i in ins], axis=axis) for n in ("lo", "hi", "f"))
    return Interval(lo, hi, f)


def _reshape_transfer(op: Op, ins: list[Interval]) -> Interval:
    x = ins[0]
    return Interval(*(np.reshape(a, op.attrs["shape"]) for a in bcast(op.operands[0].shape, x.lo, x.hi, x.f)))


def _transpose_transfer(op: Op, ins: list[Interval]) -> Interval:
    x = ins[0]
    return Interval(*(np.transpose(a, op.attrs["perm"]) for a in bcast(op.operands[0].shape, x.lo, x.hi, x.f)))


def _slices(op: Op) -> tuple[slice, ...]:
    return tuple(slice(b, e) for b, e in zip(op.attrs["begin"], op.attrs["end"], strict=True))


def _slice_shapes(op: Op) -> list[Shape]:
    src = op.operands[0].shape
    begin, end = op.attrs["begin"], op.attrs["end"]
    expect(len(begin) == len(src) == len(end), op, f"begin and end need {len(src)} entries")
    for n, (b, e, s) in enumerate(zip(begin, end, src, strict=True)):
        expect(0 <= b < e <= s, op, f"axis {n}: [{b}, {e}) is not a non-empty part of [0, {s})")
    return [tuple(e - b for b, e in zip(begin, end, strict=True))]


def _slice_transfer(op: Op, ins: list[Interval]) -> Interval:
    x = ins[0]
    return Interval(*(a[_slices(op)] for a in bcast(op.operands[0].shape, x.lo, x.hi, x.f)))


register(
    OpRule(
        OpKind.SLICE,
        (1, 1),
        1,
        {"begin": Attr("ints", required=True), "end": Attr("ints", required=True)},
        shapes=_slice_shapes,
        infer=lambda op: [op.operands[0].type.map(lambda a: a[_slices(op)])],
        eval=lambda op, args: [Exact(args[0].m[(slice(None),) + _slices(op)], args[0].scale)],
        transfer=_slice_transfer,
        traits=Trait.MOVES_DATA,
        doc="The part `[begin, end)` of every axis (cropping, tensor slicing with step 1).",
    )
)
register(
    OpRule(
        OpKind.CONCAT,
        (1, -1),
        1,
        {"axis": Attr("int", required=True)},
        shapes=_concat_shapes,
        infer=_concat_infer,
        eval=_concat_eval,
        transfer=_concat_transfer,
        traits=Trait.MERGES | Trait.MOVES_DATA,
        doc="Concatenate along `axis` (unbatched axes).",
    )
)
register(
    OpRule(
        OpKind.RESHAPE,
        (1, 1),
        1,
        {"shape": Attr("ints", required=True)},
        shapes=_reshape_shapes,
        infer=lambda op: [op.operands[0].type.reshape(op.attrs["shape"])],
        eval=_reshape_eval,
        transfer=_reshape_transfer,
        traits=Trait.MOVES_DATA,
        doc="Row-major reshape to `shape` (flatten is reshape to one axis).",
    )
)
register(
    OpRule(
        OpKind.TRANSPOSE,
        (1, 1),
        1,
        {"perm": Attr("ints", required=True)},
        shapes=_transpose_shapes,
        infer=lambda op: [op.operands[0].type.map(lambda a: a.transpose(op.attrs["perm"]))],
        eval=_transpose_eval,
        transfer=_transpose_transfer,
        traits=Trait.MOVES_DATA,
        doc="Permute the unbatched axes by `perm`.",
    )
)
