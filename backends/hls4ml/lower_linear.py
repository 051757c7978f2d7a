"""Lowering of dense, convolutions and batchnorm.

hls4ml multiplies into ``accum_t``, adds the bias and the products in ``accum_t`` and casts
the sum into ``result_t``. The accumulator is the union of the op's exact inferred type: its
``f`` covers every product and the bias, and since ``accum_t`` wraps, partial sums may leave
its range as long as the final sum (which the exact type bounds) does not. So the layer
produces the exact sum, then the IR's cast.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hgqir.ir import Op, OpKind, Value
from hgqir.ops.linear import const_exact

from .builder import LayerList
from .lower_basic import affine
from .precision import DOUBLE_BITS, check_const_width, to_precision, union_kif, width
from .registry import is_const, lowering


def _weights_check(op: Op) -> str | None:
    x = op.operands[0]
    if is_const(x):
        return f"input %{x.name} is a constant; hls4ml has no constant tensors"
    for v in op.operands[1:]:
        if width(union_kif(v.type)) > DOUBLE_BITS:
            return f"constant %{v.name} is wider than {DOUBLE_BITS} bits; hls4ml writes constants through double"
    return None


def _dense_check(op: Op) -> str | None:
    rank = len(op.operands[0].shape)
    if rank > 3:
        return f"input of rank {rank}: hls4ml applies dense layers to tensors of rank 1 to 3"
    return _weights_check(op)


def _mac_precisions(op: Op) -> tuple[tuple[int, int, int], dict[str, Any]]:
    """Result kif plus the result, accumulator, weight and bias precisions of a MAC op."""
    kif = union_kif(op.result.type)
    prec = {
        "result": to_precision(kif),
        "accum": to_precision(union_kif(op.rule.infer(op)[0])),
        "weight": to_precision(_const_kif(op.operands[1], "weights")),
    }
    if len(op.operands) == 3:
        prec["bias"] = to_precision(_const_kif(op.operands[2], "bias"))
    return kif, prec


def _const_kif(v: Value, what: str) -> tuple[int, int, int]:
    kif = union_kif(v.type)
    check_const_width(kif, f"{what} %{v.name}")
    return kif


def _values(v: Value) -> np.ndarray:
    return np.asarray(const_exact(v).values(), dtype=np.float64)


def _bias(op: Op) -> np.ndarray | None:
    return _values(op.operands[2]) if len(op.operands) == 3 else None


@lowering(OpKind.DENSE, check=_dense_check)
def lower_dense(b: LayerList, op: Op) -> None:
    x, w = op.operands[0], op.operands[1]
    if len(x.shape) > 1:
        _lower_pointwise(b, op)
        return
    kif, prec = _mac_precisions(op)
    attrs = {
        "n_in": w.shape[0],
        "n_out": w.shape[1],
        "weight_data": _values(w),
        "bias_data": _bias(op),
    }
    name = b.add("Dense", op.result.name, [b.holder(x)], attrs, prec)
    b.finish(op, name, kif)


def _lower_pointwise(b: LayerList, op: Op) -> None:
    """Dense over the last axis of ``[L, C]`` / ``[H, W, C]``: a 1-wide convolution."""
    x, w = op.operands[0], op.operands[1]
    spatial = x.shape[:-1]
    kernel = _values(w).reshape(*(1,) * len(spatial), *w.shape)
    attrs = _conv_attrs(
        spatial, tuple(op.result.shape[:-1]), (1,) * len(spatial), (1,) * len(spatial), ((0, 0),) * len(spatial)
    )
    _add_conv(b, op, attrs, kernel)


def _conv_attrs(
    spatial: tuple[int, ...],
    out: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    pad: tuple[tuple[int, int], ...],
) -> dict[str, Any]:
    """hls4ml's spatial attributes of a channels-last convolution or pool."""
    if len(spatial) == 1:
        return {
            "in_width": spatial[0],
            "out_width": out[0],
            "filt_width": kernel[0],
            "stride_width": stride[0],
            "pad_left": pad[0][0],
            "pad_right": pad[0][1],
        }
    return {
        "in_height": spatial[0],
        "in_width": spatial[1],
        "out_height": out[0],
        "out_width": out[1],
        "filt_height": kernel[0],
        "filt_width": kernel[1],
        "stride_height": stride[0],
        "stride_width": stride[1],
        "pad_top": pad[0][0],
        "pad_bottom": pad[0][1],
        "pad_left": pad[1][0],
        "pad_right": pad[1][1],
    }


def _add_conv(b: LayerList, op: Op, attrs: dict[str, Any], kernel: np.ndarray) -> None:
    x, v = op.operands[0], op.result
    kif, prec = _mac_precisions(op)
    attrs.update(
        {
            "n_chan": x.shape[-1],
            "n_filt": v.shape[-1],
            "data_format": "channels_last",
            "weight_data": kernel,
            "bias_data": _bias(op),
        }
    )
    class_name = "Conv1D" if len(x.shape) == 2 else "Conv2D"
    mult = (int(np.prod(kernel.shape[:-1])), int(kernel.shape[-1]))  # kernel size x channels, filters
    name = b.add(class_name, v.name, [b.holder(x)], attrs, prec, mult=mult)
    b.finish(op, name, kif)


@lowering(OpKind.CONV1D, OpKind.CONV2D, check=_weights_check)
def lower_conv(b: LayerList, op: Op) -> None:
    x, w, v = op.operands[0], op.operands[1], op.result
    nd = len(x.shape) - 1
    attrs = _conv_attrs(
        tuple(x.shape[:-1]), tuple(v.shape[:-1]), tuple(w.shape[:nd]), op.attrs["stride"], op.attrs["pad"]
    )
    _add_conv(b, op, attrs, _values(w))


def _batchnorm_check(op: Op) -> str | None:
    if len(op.operands[0].shape) == 0:
        return "scalar input: hls4ml's BatchNormalization needs a channel axis"
    return _weights_check(op)


@lowering(OpKind.BATCHNORM, check=_batchnorm_check)
def lower_batchnorm(b: LayerList, op: Op) -> None:
    x, s, o = op.operands
    src = b.holder(x)
    scale, offset = _values(s), _values(o)
    if np.all(scale == 1) and np.all(offset == 0):
        b.finish(op, src.layer, src.kif)  # identity: hls4ml would delete the layer, keep the cast
        return
    affine(b, op, src, scale, offset, n_filt=x.shape[-1])
