"""One handler per supported ONNX / QONNX op type: ``do_<OpType>(imp, node, attrs)``.

Handlers read operands through the :class:`~.importer.Importer` (activations with their
layout, constants as numpy) and add IR ops with the graph's own builder methods. A handler
raises :class:`~.importer.NodeError` with the reason and the fix when a node has no exact
meaning; the importer collects those into one error.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hgqir.fixed import FixedType, OverflowMode
from hgqir.ir import OpKind

from .importer import Importer, NodeError, channels_last, identity
from .patterns import Fused
from .quant import ceil_offset, quant_spec, quantize_values
from .reader import Const, constant_node_value

SUPPORTED = (
    "Quant",
    "BipolarQuant",
    "Gemm",
    "MatMul",
    "Conv",
    "Relu",
    "MaxPool",
    "Add",
    "Sub",
    "Mul",
    "Flatten",
    "Reshape",
    "Transpose",
    "BatchNormalization",
    "Identity",
    "Dropout",
    "Constant",
)


# ---------------------------------------------------------------- quantizers
def do_Quant(imp: Importer, node: Any, attrs: dict[str, Any]) -> None:
    x, scale, zeropt, bits = node.input[:4]
    params = _params(imp, node)
    signed, narrow = bool(attrs.get("signed", 1)), bool(attrs.get("narrow", 0))
    rounding = str(attrs.get("rounding_mode", "ROUND"))
    out = node.output[0]
    if signed and np.all(np.asarray(params[2]) == 1):  # qonnx executes 1-bit signed Quant as bipolar
        if np.any(np.asarray(params[1]) != 0):
            raise NodeError("a 1-bit (bipolar) Quant needs zero point 0")
        _bipolar(imp, node, x, params[0])
        return
    if imp.is_const(x):
        c = imp.consts[x]
        spec = quant_spec(c.values.shape, *params, signed, narrow, rounding, batched=False)
        imp.consts[out] = Const(quantize_values(c.values, spec), spec.type)
        return
    fused = imp.fused.get(out)
    if fused is not None:  # written by hgqir's exporter: RND shift and / or WRAP chain
        _fused_quant(imp, node, fused, params, signed, narrow, rounding)
        return
    if x in imp.inputs:
        if x in imp.quantized_inputs:
            raise NodeError(f"graph input {x!r} is quantized by several Quant nodes; keep one")
        imp.quantized_inputs.add(x)
        _, shape = imp.inputs[x]
        if shape is None:
            raise NodeError(f"graph input {x!r} needs a static shape apart from the batch axis")
        spec = quant_spec(shape, *params, signed, narrow, rounding, batched=True)
        if spec.ceil:
            raise NodeError("CEIL rounding of a graph input has no ap_fixed input mode; use ROUND or FLOOR there")
        imp.set(out, imp.g.input(x, spec.type, spec.round, spec.overflow), identity(len(shape)))
        return
    v, perm = imp.act(x)
    spec = quant_spec(imp.onnx_shape(x), *params, signed, narrow, rounding, batched=True)
    t = spec.type.map(lambda a: a.transpose(perm))
    if spec.ceil:
        off = ceil_offset(v.type, t)
        if off is not None:
            up = imp.g.const(off, imp.exact_type(off), name=imp.g.unique_name(f"{out}_ceil"))
            v = imp.g.add(OpKind.ADD, [v, up], name=f"{out}_up").result
    q = imp.g.add(OpKind.QUANT, [v], {"round": spec.round, "overflow": spec.overflow}, [t], name=out)
    imp.set(out, q.result, perm)


def _fused_quant(
    imp: Importer,
    node: Any,
    fused: Fused,
    params: tuple[np.ndarray, np.ndarray, np.ndarray],
    signed: bool,
    narrow: bool,
    rounding: str,
) -> None:
    """A Quant with the helper nodes of :mod:`.patterns`: one ``input`` or ``quant`` op."""
    x = fused.source or node.input[0]
    from_input = x in imp.inputs and x not in imp.quantized_inputs
    shape = imp.inputs[x][1] if from_input else imp.onnx_shape(x)
    if shape is None:
        raise NodeError(f"graph input {x!r} needs a static shape apart from the batch axis")
    spec = quant_spec(shape, *params, signed, narrow, rounding, batched=True)
    t, overflow = spec.type, spec.overflow
    if fused.wrap is not None:
        k, i = (np.broadcast_to(a, (1, *shape)).reshape(shape) for a in fused.wrap)
        t, overflow = FixedType(shape, k, i, np.broadcast_to(spec.type.f, shape)).canonical(), OverflowMode.WRAP
    rnd = fused.round or spec.round
    if fused.round is None and spec.ceil:
        raise NodeError("CEIL rounding before a wrap is not supported")
    if from_input:
        imp.quantized_inputs.add(x)
        v, perm = imp.g.input(x, t, rnd, overflow), identity(len(shape))
    else:
        src, perm = imp.act(x)
        attrs = {"round": rnd, "overflow": overflow}
        v = imp.g.add(OpKind.QUANT, [src], attrs, [t.map(lambda a: a.transpose(perm))], name=node.output[0]).result
    for name in (node.output[0], fused.output):
        if name:
            imp.set(name, v, perm)


def _params(imp: Importer, node: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A Quant node's scale, zero point and bitwidth (constants)."""
    scale, zeropt, bits = node.input[1:4]
    return imp.const(scale, "scale").values, imp.const(zeropt, "zero point").values, imp.const(bits, "bitwidth").values


def check_Quant(imp: Importer, node: Any, attrs: dict[str, Any]) -> None:
    """The parameters of a Quant node whose input could not be imported (so that one error lists them all)."""
    params = _params(imp, node)
    signed, narrow = bool(attrs.get("signed", 1)), bool(attrs.get("narrow", 0))
    if signed and np.all(np.asarray(params[2]) == 1):
        imp.pow2_exponent(params[0], "scale")
        return
    shape = np.broadcast_shapes(*(np.shape(p) for p in params))
    quant_spec(shape, *params, signed, narrow, str(attrs.get("rounding_mode", "ROUND")), batched=False)


def do_BipolarQuant(imp: Importer, node: Any, attrs: dict[str, Any]) -> None:
    _bipolar(imp, node, node.input[0], imp.const(node.input[1], "scale").values)


def _bipolar(imp: Importer, node: Any, x: str, scale: np.ndarray) -> None:
    """``+scale`` where ``x >= 0``, else ``-scale``: a 1-bit floor (0 or -1), times 2s, plus s."""
    out = node.output[0]
    imp.pow2_exponent(scale, "scale")
    if imp.is_const(x):
        c = imp.consts[x]
        values = np.where(c.values >= 0, 1.0, -1.0) * np.broadcast_to(scale, c.values.shape)
        imp.consts[out] = Const(values, imp.exact_type(values))
        return
    v, perm = imp.act(x)
    rank = len(v.shape)
    sign = imp.g.add(OpKind.QUANT, [v], {"round": "TRN", "overflow": "SAT"}, [FixedType.uniform(v.shape, 1, 0, 0)])
    two_s = imp.operand_const(Const(2.0 * np.asarray(scale, np.float64)), perm, rank, f"{out}_2s")
    s = imp.operand_const(Const(np.asarray(scale, np.float64)), perm, rank, f"{out}_s")
    scaled = imp.g.add(OpKind.MUL, [sign.result, two_s], name=f"{out}_m").result
    imp.set(out, imp.g.add(OpKind.ADD, [scaled, s], name=out).result, perm)


# ---------------------------------------------------------------- multiply-accumulate
def do_Gemm(imp: Importer, node: Any, attrs: dict[str, Any]) -> None:
    if attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0 or attrs.get("transA", 0):
        raise NodeError("only alpha = beta = 1 and transA = 0 are supported")
    w = imp.const(node.input[1], "weight B")
    if attrs.get("transB", 0):
        w = Const(w.values.T, None if w.type is None else w.type.map(np.transpose))
    bias = imp.const(node.input[2], "bias C") if len(node.input) > 2 and node.input[2] else None
    _dense(imp, node, w, bias)


def do_MatMul(imp: Importer, node: Any, attrs: dict[str, Any]) -> None:
    _dense(imp, node, imp.const(node.input[1], "weight (second MatMul operand)"), None)


def _dense(imp: Importer, node: Any, w: Const, bias: Const | None) -> None:
    a, out = node.input[0], node.output[0]
    x = imp.get(a, identity(len(imp.act(a)[0].shape)))
    if w.values.ndim != 2:
        raise NodeError(f"weight must be 2-D, got shape {list(w.values.shape)}")
    ops = [x, imp.ir_const(w, (0, 1), f"{out}_w")]
    if bias is not None:
        n = w.values.shape[1]
        if bias.values.size != n:
            raise NodeError(f"bias of shape {list(bias.values.shape)} is not one value per output ({n})")
        ops.append(imp.ir_const(bias, (0,), f"{out}_b", (n,)))
    imp.set(out, imp.g.add(OpKind.DENSE, ops, name=out).result, identity(len(x.shape)))


def _pads(attrs: dict[str, Any], nd: int) -> tuple[tuple[int, int], ...]:
    if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise NodeError(f"auto_pad={attrs['auto_pad']} is not supported: export with explicit pads")
    if any(d != 1 for d in attrs.get("dilations", [1] * nd)):
        raise NodeError("dilations other than 1 are not supported")
    p = list(attrs.get("pads", [0] * (2 * nd)))
    return tuple((int(p[n]), int(p[n + nd])) for n in range(nd))


def do_Conv(imp: Importer, node: Any, attrs: dict[str, Any]) -> None:
    out = node.output[0]
    rank = len(imp.act(node.input[0])[0].shape)
    nd = rank - 1
    if nd not in (1, 2):
        raise NodeError(f"only 1-D and 2-D convolutions are supported, got {nd}-D")
    if attrs.get("group", 1) != 1:
        raise NodeError("grouped / depthwise convolution (group > 1) is not supported")
    x = imp.get(node.input[0], channels_last(rank))
    w = imp.const(node.input[1], "weight")
    ops = [x, imp.ir_const(w, (*range(2, nd + 2), 1, 0), f"{out}_w")]
    if len(node.input) > 2 and node.input[2]:
        ops.append(imp.ir_const(imp.const(node.input[2], "bias"), (0,), f"{out}_b"))
    stride = tuple(attrs.get("strides", [1] * nd))
    kind = OpKind.CONV1D if nd == 1 else OpKind.CONV2D
    op = imp.g.add(kind, ops, {"stride": stride, "pad": _pads(attrs, nd)}, name=out)
    imp.set(out, op.result, channels_last(rank))


def do_BatchNormalization(imp: Importer, node: Any, attrs: dict[str, Any]) -> None:
    """Inference batchnorm as the per-channel affine ``x * s + o``, folded exactly in float64."""
    out = node.output[0]
    gamma, beta, mean, var = (
        imp.const(n, w).values.astype(np.float64)
        for n, w in zip(node.input[1:5], ("scale", "B", "mean", "var"), strict=True)
    )
    s = gamma / np.sqrt(var + float(np.float32(attrs.get("epsilon", 1e-5))))
    o = beta - mean * s
    rank = len(imp.act(node.input[0])[0].shape)
    perm = channels_last(rank)
    x = imp.get(node.input[0], perm)
    sv = imp.ir_const(Const(s), (0,), f"{out}_scale")
    ov = imp.ir_const(Const(o), (0,), f"{out}_offset")
    imp.set(out, imp.g.add(OpKind.BATCHNORM, [x, sv, ov], name=out).result, perm)


# ---------------------------------------------------------------- elementwise and pooling
def do_Relu(imp: Importer, node: Any, attrs: dict[str, Any]) -> None:
    v, perm = imp.act(node.input[0])
    imp.set(node.output[0], imp.g.add(OpKind.RELU, [v], name=node.output[0]).result, perm)


def _binary(imp: Importer, node: Any, kind: OpKind) -> None:
    a, b = node.input[:2]
    out = node.output[0]
    if imp.is_const(a) and imp.is_const(b):
        raise NodeError("both operands are constants (fold them before export)")
    first = b if imp.is_const(a) else a
    v, perm = imp.act(first)
    rank = len(v.shape)
    ops = [
        imp.operand_const(imp.consts[n], perm, rank, f"{out}_c") if imp.is_const(n) else imp.get(n, perm)
        for n in (a, b)
    ]
    imp.set(out, imp.g.add(kind, ops, name=out).result, perm)


def do_Add(imp: Importer, node: Any, attrs: dict[str, Any]) -> None:
    _binary(imp, node, OpKind.ADD)


def do_Sub(imp: Importer, node: Any, attrs: dict[str, Any]) -> None:
    _binary(imp, node, OpKind.SUB)


def do_Mul(imp: Importer, node: Any, attrs: dict[str, Any]) -> None:
    _binary(imp, node, OpKind.MUL)


def do_MaxPool(imp: Importer, node: Any, attrs: dict[str, Any]) -> None:
    out = node.output[0]
    if attrs.get("ceil_mode", 0) or attrs.get("storage_order", 0) or len(node.output) > 1:
        raise NodeError("ceil_mode, storage_order and the indices output are not supported")
    rank = len(imp.act(node.input[0])[0].shape)
    nd = rank - 1
    if nd not in (1, 2):
        raise NodeError(f"only 1-D and 2-D pooling is supported, got {nd}-D")
    x = imp.get(node.input[0], channels_last(rank))
    pool = tuple(attrs["kernel_shape"])
    attrs_ir = {"pool": pool, "stride": tuple(attrs.get("strides", [1] * nd)), "pad": _pads(attrs, nd)}
    kind = OpKind.MAXPOOL1D if nd == 1 else OpKind.MAXPOOL2D
    imp.set(out, imp.g.add(kind, [x], attrs_ir, name=out).result, channels_last(rank))


# ---------------------------------------------------------------- data movement and constants
def _reshape_to(imp: Importer, node: Any, shape: tuple[int, ...]) -> None:
    src, out = node.input[0], node.output[0]
    x = imp.get(src, identity(len(imp.act(src)[0].shape)))
    if tuple(x.shape) == shape:
        imp.set(out, x, identity(len(shape)))
        return
    imp.set(out, imp.g.add(OpKind.RESHAPE, [x], {"shape": shape}, name=out).result, identity(len(shape)))


def do_Flatten(imp: Importer, node: Any, attrs: dict[str, Any]) -> None:
    axis = attrs.get("axis", 1)
    if imp.is_const(node.input[0]):
        c = imp.consts[node.input[0]]
        lead = math.prod(c.values.shape[:axis])
        imp.consts[node.output[0]] = _const_reshape(c, (lead, -1))
        return
    if axis != 1:
        raise NodeError(f"Flatten with axis={axis} mixes the batch axis; only axis=1 is supported")
    _reshape_to(imp, node, (math.prod(imp.onnx_shape(node.input[0])),))


def do_Reshape(imp: Importer, node: Any, attrs: dict[str, Any]) -> None:
    target = [int(t) for t in imp.const(node.input[1], "shape").values.reshape(-1)]
    src = node.input[0]
    if imp.is_const(src):
        c = imp.consts[src]
        dims = [c.values.shape[n] if t == 0 and not attrs.get("allowzero", 0) else t for n, t in enumerate(target)]
        imp.consts[node.output[0]] = _const_reshape(c, tuple(dims))
        return
    shape = imp.onnx_shape(src)
    batch = imp.batch
    full = (batch, *shape)
    dims = [full[n] if t == 0 and not attrs.get("allowzero", 0) else t for n, t in enumerate(target)]
    try:
        new: tuple[int, ...] = np.empty(full, dtype=np.int8).reshape(dims).shape
    except ValueError:
        raise NodeError(f"cannot reshape {list(full)} to {target}") from None
    if new[0] != batch:
        raise NodeError(f"reshape to {target} changes the batch axis (batch {batch}); keep it first")
    _reshape_to(imp, node, tuple(new[1:]))


def _const_reshape(c: Const, shape: tuple[int, ...]) -> Const:
    values = c.values.reshape(shape)
    return Const(values, None if c.type is None else c.type.reshape(values.shape))


def do_Transpose(imp: Importer, node: Any, attrs: dict[str, Any]) -> None:
    src, out = node.input[0], node.output[0]
    if imp.is_const(src):
        c = imp.consts[src]
        perm = attrs.get("perm", list(range(c.values.ndim))[::-1])
        imp.consts[out] = Const(
            c.values.transpose(perm), None if c.type is None else c.type.map(lambda a: a.transpose(perm))
        )
        return
    v, p = imp.act(src)
    full = list(attrs.get("perm", list(range(len(p) + 1))[::-1]))
    if full[0] != 0:
        raise NodeError(f"transpose perm {full} moves the batch axis")
    d = [a - 1 for a in full[1:]]
    imp.set(out, v, tuple(d.index(a) for a in p))


def do_Identity(imp: Importer, node: Any, attrs: dict[str, Any]) -> None:
    src, out = node.input[0], node.output[0]
    if imp.is_const(src):
        imp.consts[out] = imp.consts[src]
    else:
        imp.env[out] = imp.act(src)


def do_Dropout(imp: Importer, node: Any, attrs: dict[str, Any]) -> None:
    if len(node.output) > 1 and node.output[1]:
        raise NodeError("the Dropout mask output is not supported (export in inference mode)")
    do_Identity(imp, node, attrs)


def do_Constant(imp: Importer, node: Any, attrs: dict[str, Any]) -> None:
    try:
        imp.consts[node.output[0]] = Const(constant_node_value(node))
    except ValueError as e:
        raise NodeError(str(e)) from None
