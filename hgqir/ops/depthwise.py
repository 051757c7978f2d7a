"""Depthwise convolution: every input channel convolved with its own ``M`` kernels.

``depthwise_conv1d`` / ``depthwise_conv2d``: ``x`` channels-last ``[L, C]`` / ``[H, W, C]``,
``w`` ``[kw, C*M]`` / ``[kh, kw, C*M]`` and ``b`` ``[C*M]`` constants; output channel
``o = c*M + m`` reads input channel ``c = o // M`` only (Keras' ``DepthwiseConv2D`` with
``depth_multiplier=M``, PyTorch's ``Conv2d(groups=C, out_channels=C*M)``). With ``M = 1`` the op
is channelwise: channel pruning drops an input channel with its output channel and kernel.

Semantics, intervals and EBOPs are those of the convolution with the block-diagonal kernel
``full[..., c, o] = w[..., o]`` for ``o // M == c`` and 0 elsewhere (zero weights add nothing and
cost nothing), which :func:`expand` builds; backends lower that convolution (its zero products
vanish in the Verilog netlist and in the Vitis C++, which keep non-zero weights only).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..fixed import FixedType, Shape
from ..ir import Graph, Op, OpKind
from ..numbers import Exact
from .base import PAD_F, Attr, Interval, OpRule, Trait, expect, interval_of, register
from .linear import _check_consts, _conv_out_shape, contract_interval, conv_contract, unfold

KINDS = {OpKind.DEPTHWISE_CONV1D: OpKind.CONV1D, OpKind.DEPTHWISE_CONV2D: OpKind.CONV2D}
"""Depthwise kind -> the convolution it expands to."""


def block_diagonal(a: np.ndarray, channels: int, fill: Any) -> np.ndarray:
    """``[..., C*M]`` -> ``[..., C, C*M]``: entry ``(c, o)`` is ``a[..., o]`` when ``o // M == c``."""
    cout = a.shape[-1]
    m = cout // channels
    out = np.full((*a.shape[:-1], channels, cout), fill, dtype=a.dtype)
    for c in range(channels):
        out[..., c, c * m : (c + 1) * m] = a[..., c * m : (c + 1) * m]
    return out


def _channels(op: Op) -> int:
    return int(op.operands[0].shape[-1])


def _shapes(op: Op) -> list[Shape]:
    x, w = op.operands[0].shape, op.operands[1].shape
    nd = 1 if op.kind is OpKind.DEPTHWISE_CONV1D else 2
    expect(len(x) == nd + 1 and len(w) == nd + 1, op, f"needs x rank {nd + 1} and w rank {nd + 1} ([*kernel, C*M])")
    expect(w[-1] % max(x[-1], 1) == 0 and w[-1] >= x[-1], op, f"w has {w[-1]} outputs, not a multiple of {x[-1]}")
    if len(op.operands) == 3:
        expect(op.operands[2].shape == (w[-1],), op, f"bias shape must be [{w[-1]}]")
    return [(*_conv_out_shape(op, x[:-1], w[:-1]), w[-1])]


def _weights(op: Op, w: Interval) -> tuple[np.ndarray, np.ndarray]:
    """Block-diagonal weight values and LSBs, flattened to ``[prod(kernel) * C, C*M]``."""
    c = _channels(op)
    lo, f = block_diagonal(w.lo, c, 0.0), block_diagonal(w.f, c, PAD_F)
    cout = op.operands[1].shape[-1]
    return lo.reshape(-1, cout), f.reshape(-1, cout)


def _patches(op: Op, x: Interval) -> Interval:
    def fold(a: np.ndarray, fill: Any) -> np.ndarray:
        return unfold(a, _as_conv(op), fill, False)

    return Interval(fold(x.lo, 0.0), fold(x.hi, 0.0), fold(x.f, PAD_F))


class _ConvView:
    """What :func:`unfold` reads of a convolution: the kernel shape (``[*kernel, C, C*M]``) and attrs."""

    def __init__(self, op: Op) -> None:
        w = op.operands[1].shape
        self.attrs = op.attrs
        self.operands = [op.operands[0], _Shaped((*w[:-1], _channels(op), w[-1]))]


class _Shaped:
    def __init__(self, shape: Shape) -> None:
        self.shape = shape


def _as_conv(op: Op) -> Any:
    return _ConvView(op)


def _transfer(op: Op, ins: list[Interval]) -> Interval:
    wv, wf = _weights(op, ins[1])
    bias = ins[2] if len(ins) == 3 else None
    return contract_interval(_patches(op, ins[0]), wv, wf, bias)


def _infer(op: Op) -> list[FixedType]:
    return [_transfer(op, [interval_of(v) for v in op.operands]).to_type()]


def _eval(op: Op, args: list[Exact]) -> list[Exact]:
    x, w = args[0], args[1]
    b = args[2] if len(args) == 3 else None
    full = block_diagonal(np.asarray(w.m), _channels(op), 0).reshape(-1, w.m.shape[-1])
    return [conv_contract(_as_conv(op), op.operands[0].type, x, Exact(full, w.scale), b)]


def _bops(op: Op) -> float:
    """``bits(x) * bits(w)`` per product (the convolution rule), over the compact kernel."""
    from .linear import nonzero_bits

    xb = unfold(op.operands[0].type.bits, _as_conv(op), 0, False)
    xb = xb.reshape(-1, xb.shape[-1]).sum(axis=0)  # per (kernel tap, channel)
    c = _channels(op)
    wb = nonzero_bits(op.operands[1])
    cout = wb.shape[-1]
    per_tap = xb.reshape(-1, c)  # [taps, C]
    wt = wb.reshape(-1, c, cout // c)  # [taps, C, M]
    return float(np.sum(per_tap[:, :, None] * wt))


_ATTRS = {"stride": Attr("ints", required=True), "pad": Attr("pads", required=True)}
for _kind, _doc in ((OpKind.DEPTHWISE_CONV1D, "[L, C]"), (OpKind.DEPTHWISE_CONV2D, "[H, W, C]")):
    register(
        OpRule(
            _kind,
            (2, 3),
            1,
            _ATTRS,
            shapes=_shapes,
            infer=_infer,
            eval=_eval,
            bops=_bops,
            transfer=_transfer,
            traits=Trait.CHANNELWISE,
            check=_check_consts,
            operand_names=("x", "w", "b"),
            data_operands=1,
            doc=f"Depthwise convolution of x {_doc}: output channel c*M + m reads input channel c "
            "only; w [*kernel, C*M] and b [C*M] are constants; `pad` and `stride` as the convolution.",
        )
    )


def expand(g: Graph) -> Graph:
    """``g`` with every depthwise convolution replaced by the equal convolution with the
    block-diagonal kernel (a copy; ``g`` itself when it has none). Backends lower that."""
    if not any(op.kind in KINDS for op in g.ops):
        return g
    h = g.clone()
    for op in [op for op in h.ops if op.kind in KINDS]:
        x, w = op.operands[0], op.operands[1]
        data, t = np.asarray(w.producer.attrs["data"]), w.type  # type: ignore[union-attr]
        c = _channels(op)
        full_t = FixedType(
            (*w.shape[:-1], c, w.shape[-1]),
            block_diagonal(np.broadcast_to(t.k, w.shape), c, 0),
            block_diagonal(np.broadcast_to(t.i, w.shape), c, 0),
            block_diagonal(np.broadcast_to(t.f, w.shape), c, 0),
        )
        full = h.const_mantissa(block_diagonal(data, c, 0), full_t, name=f"{w.name}_full", before=op)
        operands = [x, full, *op.operands[2:]]
        name = op.result.name
        new = h.add(KINDS[op.kind], operands, dict(op.attrs), [op.result.type], name=f"{name}__dw", before=op)
        h.replace_uses(op.result, new.result)
        h.erase(op)
        h.rename(new.result, name)
        if not w.users:
            h.erase(w.producer)  # type: ignore[arg-type]
    h.verify()
    return h
