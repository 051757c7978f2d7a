"""Cropping and zero padding as hls4ml's ``Cropping1D/2D`` and ``ZeroPadding1D/2D`` layers.

The IR crops with ``slice`` and pads by concatenating zero-width constants (the literal 0,
``hgqir.frontends.movers``). hls4ml has no constant tensors, so a concatenation whose other
operands are all zero-width constants around one tensor, on a spatial axis of a channels-last
rank-2 or rank-3 tensor, becomes a padding layer; any other concatenation with constants is
refused as before. Both layers keep their input's precision: nothing is computed.
"""

from __future__ import annotations

from hgqir.ir import Op, OpKind, Value

from .builder import LayerList
from .lower_basic import _concat_check, lower_concat
from .registry import is_const, lowering

_SIDES = {2: ("left", "right"), 3: ("top", "bottom")}


def _spatial_attrs(x: Value, out: tuple[int, ...], prefix: str, before: list[int], after: list[int]) -> dict:
    """hls4ml attributes of a 1D / 2D cropping or padding layer (channels last)."""
    rank = len(x.shape)
    attrs: dict = {"n_chan": x.shape[-1], "data_format": "channels_last"}
    if rank == 2:
        attrs.update(in_width=x.shape[0], out_width=out[0])
        attrs.update({f"{prefix}_left": before[0], f"{prefix}_right": after[0]})
    else:
        attrs.update(in_height=x.shape[0], in_width=x.shape[1], out_height=out[0], out_width=out[1])
        attrs.update({f"{prefix}_top": before[0], f"{prefix}_bottom": after[0]})
        attrs.update({f"{prefix}_left": before[1], f"{prefix}_right": after[1]})
    return attrs


def _slice_check(op: Op) -> str | None:
    x = op.operands[0]
    rank = len(x.shape)
    if is_const(x):
        return "the input is a constant; fold it before emitting"
    if rank not in (2, 3):
        return f"rank {rank}: hls4ml crops channels-last tensors of rank 2 or 3"
    if op.attrs["begin"][-1] != 0 or op.attrs["end"][-1] != x.shape[-1]:
        return "a slice of the channel axis: hls4ml crops spatial axes only"
    return None


@lowering(OpKind.SLICE, check=_slice_check)
def lower_slice(b: LayerList, op: Op) -> None:
    x, v = op.operands[0], op.result
    src = b.holder(x)
    begin = list(op.attrs["begin"][:-1])
    after = [s - e for s, e in zip(x.shape[:-1], op.attrs["end"][:-1], strict=True)]
    cls = "Cropping1D" if len(x.shape) == 2 else "Cropping2D"
    name = b.add(cls, v.name, [src], _spatial_attrs(x, v.shape, "crop", begin, after), {})
    b.finish(op, name, src.kif)


def _padding(op: Op) -> tuple[Value, int, int] | None:
    """``(x, before, after)`` when ``op`` concatenates zero-width constants around one tensor."""
    tensors = [n for n, v in enumerate(op.operands) if not is_const(v)]
    if len(tensors) != 1 or len(op.result.shape) not in (2, 3) or op.attrs["axis"] == len(op.result.shape) - 1:
        return None
    if not all(v.type.zero_mask.all() for v in op.operands if is_const(v)):
        return None
    at, axis = tensors[0], op.attrs["axis"]
    before = sum(v.shape[axis] for v in op.operands[:at])
    after = sum(v.shape[axis] for v in op.operands[at + 1 :])
    return op.operands[at], before, after


def _concat_or_pad_check(op: Op) -> str | None:
    if _padding(op) is not None:
        return None
    return _concat_check(op)


@lowering(OpKind.CONCAT, check=_concat_or_pad_check)
def lower_concat_or_pad(b: LayerList, op: Op) -> None:
    found = _padding(op)
    if found is None:
        lower_concat(b, op)
        return
    x, before, after = found
    axis, v = op.attrs["axis"], op.result
    src = b.holder(x)
    pads_before = [before if a == axis else 0 for a in range(len(x.shape) - 1)]
    pads_after = [after if a == axis else 0 for a in range(len(x.shape) - 1)]
    cls = "ZeroPadding1D" if len(x.shape) == 2 else "ZeroPadding2D"
    name = b.add(cls, v.name, [src], _spatial_attrs(x, v.shape, "pad", pads_before, pads_after), {})
    b.finish(op, name, src.kif)
