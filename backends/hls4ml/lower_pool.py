"""Lowering of max and average pools, windowed and global.

Max pools: ``accum_t`` is the input's own type, so the max is exact. hls4ml pads with the
value that has only the top bit set: the most negative value of a signed type, but the
largest of an unsigned one, so padded pools of unsigned inputs first move them into a
signed type.

Average pools: hls4ml sums into ``accum_t``, then divides in place by the count
(``ap_fixed`` division, which truncates towards zero at ``accum_t``'s LSB) and casts into
``result_t`` (TRN). The IR wants the floor of the exact quotient at the result's LSB. With
``f_acc >= max(f_x, f_res) + ceil(log2(n)) + 1`` both agree: a quotient ``s/n`` that is not
on the result grid stays at least ``2**-f_max / n`` away from it, farther than the
accumulator's truncation error, so truncating towards zero never crosses a result grid
point. The accumulator's integer bits hold the whole sum.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hgqir.ir import Op, OpKind

from .builder import Holder, LayerList
from .lower_linear import _conv_attrs
from .precision import Kif, to_precision, union_kif
from .registry import const_data_operands, lowering

_WINDOWED = {
    OpKind.MAXPOOL1D: "MaxPooling1D",
    OpKind.MAXPOOL2D: "MaxPooling2D",
    OpKind.AVGPOOL1D: "AveragePooling1D",
    OpKind.AVGPOOL2D: "AveragePooling2D",
}
_AVG = (OpKind.AVGPOOL1D, OpKind.AVGPOOL2D, OpKind.GLOBAL_AVGPOOL)


def avg_accum_kif(src: Kif, result: Kif, count: int) -> Kif:
    """Accumulator of an average over ``count`` values of type ``src`` (see module docstring)."""
    extra = math.ceil(math.log2(max(count, 1)))
    return (1, src[0] + src[1] + extra, max(src[2], result[2]) + extra + 1)


def _accum(op: Op, src: Holder, count: int) -> Any:
    if op.kind in _AVG:
        return to_precision(avg_accum_kif(src.kif, union_kif(op.result.type), count))
    return to_precision(src.kif)


def _padded(op: Op) -> bool:
    return any(p != (0, 0) for p in op.attrs.get("pad", ()))


@lowering(*_WINDOWED, check=const_data_operands)
def lower_pool(b: LayerList, op: Op) -> None:
    x, v = op.operands[0], op.result
    src = b.holder(x)
    if op.kind not in _AVG and _padded(op) and src.kif[0] == 0:
        src = b.signed_copy(src)
    pool = tuple(op.attrs["pool"])
    attrs = _conv_attrs(tuple(x.shape[:-1]), tuple(v.shape[:-1]), pool, op.attrs["stride"], op.attrs["pad"])
    attrs = {key.replace("filt_", "pool_"): val for key, val in attrs.items()}
    if len(pool) == 1:  # hls4ml names the 1-d pool's sizes n_in / n_out
        attrs["n_in"], attrs["n_out"] = attrs.pop("in_width"), attrs.pop("out_width")
    attrs.update(
        {
            "n_filt": x.shape[-1],
            "data_format": "channels_last",
            "count_pad": bool(op.attrs.get("count_pad", False)),
        }
    )
    kif, prec = b.result_precision(v)
    prec["accum"] = _accum(op, src, math.prod(pool))
    name = b.add(_WINDOWED[op.kind], v.name, [src], attrs, prec)
    b.finish(op, name, kif, always_cast=op.kind in _AVG)


@lowering(OpKind.GLOBAL_MAXPOOL, OpKind.GLOBAL_AVGPOOL, check=const_data_operands)
def lower_global_pool(b: LayerList, op: Op) -> None:
    x, v = op.operands[0], op.result
    src = b.holder(x)
    shape = tuple(x.shape)
    if len(shape) > 3:  # fold the spatial axes into one; io_parallel reshapes move nothing
        shape = (int(np.prod(shape[:-1])), shape[-1])
        src = b.reshape(src, shape, f"{v.name}_rows")
    kind = "Max" if op.kind is OpKind.GLOBAL_MAXPOOL else "Average"
    if len(shape) == 2:
        class_name = f"Global{kind}Pooling1D"
        attrs: dict[str, Any] = {"n_in": shape[0], "n_filt": shape[1]}
    else:
        class_name = f"Global{kind}Pooling2D"
        attrs = {"in_height": shape[0], "in_width": shape[1], "n_filt": shape[2]}
    attrs["data_format"] = "channels_last"
    kif, prec = b.result_precision(v)
    prec["accum"] = _accum(op, src, int(np.prod(shape[:-1])))
    name = b.add(class_name, v.name, [src], attrs, prec)
    b.finish(op, name, kif, always_cast=op.kind in _AVG)
