"""Lowering of the graph boundary, quantizers, elementwise ops and data movement.

* ``input``: a uniform type becomes the port type itself (hls4ml's bridge casts the double
  data with the input's rounding and overflow). A per-element type needs a quantizer after
  the port, which then casts with the input's modes. The port is the union type widened so
  that it decides nothing itself: one more integer bit (with RND an element of coarse LSB
  can round from just below the union's range back into its own range), TRN, one guard
  bit for RND (so the element's rounding still sees the bit that decides it), and the
  input's overflow mode (which composes: nested saturation ranges, or moduli that divide).
  Rounding modes whose ties depend on every lower bit (RND_CONV, ...) get a ``double`` port.
* ``quant``: a ``FixedPointQuantizer`` with the op's modes.
* ``add``/``sub``/``mul`` of two tensors: hls4ml ``Merge`` (exact ``ap_fixed`` arithmetic,
  then the cast into the result type). With one constant operand: ``BatchNormalization``
  with per-element scale and bias (``x*s + b`` is exact), or no layer at all when it is the
  identity (hls4ml deletes batchnorms with scale 1 and bias 0).
"""

from __future__ import annotations

import numpy as np

from hgqir.fixed import RoundMode
from hgqir.ir import Op, OpKind, Value
from hgqir.ops.linear import const_exact

from .builder import Holder, LayerList
from .precision import is_plain, to_precision, union_kif, values_kif
from .registry import const_data_operands, is_const, lowering

_MERGE_OPS = {
    OpKind.ADD: "add",
    OpKind.SUB: "subtract",
    OpKind.MUL: "multiply",
    OpKind.MAXIMUM: "maximum",
    OpKind.MINIMUM: "minimum",
}


# ---------------------------------------------------------------- boundary
@lowering(OpKind.INPUT)
def lower_input(b: LayerList, op: Op) -> None:
    v = op.result
    rnd, ovf = op.attrs["round"], op.attrs["overflow"]
    attrs = {"input_shape": list(v.shape)}
    if is_plain(v.type):
        kif = union_kif(v.type)
        name = b.add("InputLayer", v.name, [], attrs, {"result": to_precision(kif, rnd, ovf)})
        b.inputs.append(name)
        b.bind(v, Holder(name, kif, v.shape))
        return
    if rnd in (RoundMode.TRN, RoundMode.RND):
        k, i, f = union_kif(v.type)
        port: object = to_precision((k, i + 1, f + (rnd is RoundMode.RND)), RoundMode.TRN, ovf)
    else:
        port = "double"
    name = b.add("InputLayer", f"{v.name}_port", [], attrs, {"result": port})
    b.inputs.append(name)
    b.bind(v, b.quantizer(name, v.type, rnd, ovf, v.name))


@lowering(OpKind.CONST)
def lower_const(b: LayerList, op: Op) -> None:
    """Constants become weights of the layers that use them; no layer of their own."""


def _output_check(op: Op) -> str | None:
    v = op.operands[0]
    if is_const(v):
        return f"output %{v.name} is a constant; hls4ml has no constant tensors"
    return None


@lowering(OpKind.OUTPUT, check=_output_check)
def lower_output(b: LayerList, op: Op) -> None:
    held = b.holder(op.operands[0])
    # hls4ml outputs must be distinct layers that compute something: it cannot output an input,
    # and it deletes final reshapes (an output twice over if their input is one too)
    if held.layer in b.outputs or b.records[held.layer].class_name in ("InputLayer", "Reshape"):
        held = b.copy(held)
    b.outputs.append(held.layer)


@lowering(OpKind.QUANT, check=const_data_operands)
def lower_quant(b: LayerList, op: Op) -> None:
    v = op.result
    held = b.quantizer(b.holder(op.operands[0]), v.type, op.attrs["round"], op.attrs["overflow"], v.name)
    b.bind(v, held)


# ---------------------------------------------------------------- elementwise
@lowering(OpKind.RELU, check=const_data_operands)
def lower_relu(b: LayerList, op: Op) -> None:
    v = op.result
    kif, prec = b.result_precision(v)
    attrs = {"activation": "relu", "n_in": int(np.prod(v.shape))}
    name = b.add("Activation", v.name, [b.holder(op.operands[0])], attrs, prec)
    b.finish(op, name, kif)


def _extreme_check(op: Op) -> str | None:
    if any(is_const(v) for v in op.operands):
        return f"{op.kind.value} with a constant operand: hls4ml's Merge needs two tensors"
    return _binary_check(op)


@lowering(OpKind.MAXIMUM, OpKind.MINIMUM, check=_extreme_check)
def lower_extreme(b: LayerList, op: Op) -> None:
    lower_binary(b, op)


def _prelu_check(op: Op) -> str | None:
    x, alpha = op.operands
    if is_const(x):
        return "the input is a constant; fold it before emitting"
    if not is_const(alpha):
        return "alpha must be a constant"
    return None


@lowering(OpKind.PRELU, check=_prelu_check)
def lower_prelu(b: LayerList, op: Op) -> None:
    """``relu(x) + alpha * (x - relu(x))``: ReLU, Merge subtract, BatchNormalization (per-element
    scale alpha), Merge add. Every intermediate value fits the result's union type (``relu(x)``
    and ``alpha * min(x, 0)`` are values of the result or 0) except ``min(x, 0)``, held in x's."""
    x, alpha = op.operands
    v = op.result
    src = b.holder(x)
    n_in = int(np.prod(v.shape))
    out_kif, prec = b.result_precision(v)
    x_kif = src.kif
    r_kif = (0, x_kif[1], x_kif[2])
    relu = b.add(
        "Activation", f"{v.name}_pos", [src], {"activation": "relu", "n_in": n_in}, {"result": to_precision(r_kif)}
    )
    pos = Holder(relu, r_kif, v.shape)
    neg_name = b.add("Merge", f"{v.name}_negx", [src, pos], {"op": "subtract"}, {"result": to_precision(x_kif)})
    neg = Holder(neg_name, x_kif, v.shape)
    scale = np.broadcast_to(const_exact(alpha).values(), v.shape).astype(np.float64)
    attrs = {
        "n_in": n_in,
        "n_filt": -1,
        "scale_data": scale.reshape(-1),
        "bias_data": np.zeros(n_in),
    }
    bn_prec = {
        "result": to_precision(out_kif),
        "scale": to_precision(values_kif(scale)),
        "bias": to_precision((0, 1, 0)),
    }
    scaled = Holder(b.add("BatchNormalization", f"{v.name}_neg", [neg], attrs, bn_prec), out_kif, v.shape)
    name = b.add("Merge", v.name, [pos, scaled], {"op": "add"}, prec)
    b.finish(op, name, out_kif)


def _tiles(small: tuple[int, ...], big: tuple[int, ...]) -> bool:
    """hls4ml's Merge broadcasts by ``data[i % size]``: ``small`` must be a suffix of ``big``."""
    core = list(small)
    while core and core[0] == 1:
        core.pop(0)
    return len(core) <= len(big) and tuple(core) == tuple(big[len(big) - len(core) :])


def _binary_check(op: Op) -> str | None:
    a, c = op.operands
    out = op.result.shape
    if is_const(a) and is_const(c):
        return "both operands are constants; fold them before emitting"
    if is_const(a) or is_const(c):
        x = c if is_const(a) else a
        if x.shape != out:
            return f"the tensor operand %{x.name} {list(x.shape)} is broadcast to {list(out)}"
        return None
    small, big = sorted((a.shape, c.shape), key=lambda s: int(np.prod(s)))
    if big != out or not _tiles(small, big):
        return (
            f"operand shapes {list(a.shape)} and {list(c.shape)}: hls4ml's Merge only repeats "
            "the smaller operand along leading axes"
        )
    return None


@lowering(OpKind.ADD, OpKind.SUB, OpKind.MUL, check=_binary_check)
def lower_binary(b: LayerList, op: Op) -> None:
    a, c = op.operands
    if is_const(a) or is_const(c):
        _lower_affine(b, op)
        return
    v = op.result
    kif, prec = b.result_precision(v)
    attrs = {"op": _MERGE_OPS[op.kind]}
    name = b.add("Merge", v.name, [b.holder(a), b.holder(c)], attrs, prec)
    b.finish(op, name, kif)


def _affine_terms(op: Op) -> tuple[Value, np.ndarray, np.ndarray]:
    """``(x, scale, bias)`` with ``op(x, const) == x * scale + bias`` element by element."""
    a, c = op.operands
    x, k = (c, a) if is_const(a) else (a, c)
    kv = np.broadcast_to(const_exact(k).values(), x.shape).astype(np.float64)
    one, zero = np.ones(x.shape), np.zeros(x.shape)
    if op.kind is OpKind.ADD:
        return x, one, kv
    if op.kind is OpKind.MUL:
        return x, kv, zero
    return (x, one, -kv) if x is a else (x, -one, kv)


def _lower_affine(b: LayerList, op: Op) -> None:
    x, scale, bias = _affine_terms(op)
    src = b.holder(x)
    if np.all(scale == 1) and np.all(bias == 0):
        b.finish(op, src.layer, src.kif)  # identity: only the cast into the result type remains
        return
    affine(b, op, src, scale, bias, n_filt=-1)


def affine(b: LayerList, op: Op, src: Holder, scale: np.ndarray, bias: np.ndarray, n_filt: int) -> None:
    """``x * scale + bias`` as hls4ml ``BatchNormalization`` (``n_filt=-1``: per element)."""
    v = op.result
    kif, prec = b.result_precision(v)
    prec["scale"] = to_precision(values_kif(scale))
    prec["bias"] = to_precision(values_kif(bias))
    attrs = {
        "n_in": int(np.prod(v.shape)),
        "n_filt": n_filt,
        "scale_data": scale.reshape(-1) if n_filt == -1 else scale,
        "bias_data": bias.reshape(-1) if n_filt == -1 else bias,
    }
    name = b.add("BatchNormalization", v.name, [src], attrs, prec)
    b.finish(op, name, kif)


# ---------------------------------------------------------------- data movement
def _concat_check(op: Op) -> str | None:
    rank = len(op.result.shape)
    if rank > 3:
        return f"rank {rank}: hls4ml concatenates tensors of rank 1 to 3"
    return const_data_operands(op)


@lowering(OpKind.CONCAT, check=_concat_check)
def lower_concat(b: LayerList, op: Op) -> None:
    v = op.result
    rank = len(v.shape)
    attrs = {"axis": op.attrs["axis"] + 1, "op": f"concatenate{rank}d"}  # hls4ml counts the batch axis
    parts = [b.holder(x) for x in op.operands]
    acc = parts[0]
    for n, part in enumerate(parts[1:], start=2):
        last = n == len(parts)
        kif = union_kif(v.type) if last else tuple(max(p, q) for p, q in zip(acc.kif, part.kif, strict=True))
        name = b.add("Concatenate", v.name, [acc, part], attrs, {"result": to_precision(kif)})  # type: ignore[arg-type]
        acc = Holder(name, kif, v.shape)  # type: ignore[arg-type]
    b.finish(op, acc.layer, acc.kif)  # one operand: no layer, only the cast remains


@lowering(OpKind.RESHAPE, check=const_data_operands)
def lower_reshape(b: LayerList, op: Op) -> None:
    v = op.result
    held = b.reshape(b.holder(op.operands[0]), v.shape, v.name)
    b.finish(op, held.layer, held.kif)


@lowering(OpKind.TRANSPOSE, check=const_data_operands)
def lower_transpose(b: LayerList, op: Op) -> None:
    v = op.result
    perm = list(op.attrs["perm"])
    src = b.holder(op.operands[0])
    if perm == sorted(perm):
        b.finish(op, src.layer, src.kif)  # identity permutation moves nothing
        return
    held = b.transpose(src, perm, v.name)
    b.finish(op, held.layer, held.kif)
