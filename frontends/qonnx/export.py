"""hgqir graph -> QONNX model (:func:`export`), for graphs with per-tensor / per-channel types.

Every place where the IR puts values into a type becomes a QONNX ``Quant`` node: inputs,
``quant`` ops, constants (so that their types travel with them) and the implicit TRN / WRAP
cast of an op whose declared result type is narrower than its exact one. A ``Quant`` has one
bitwidth per tensor (broadcast like its scale), so a type whose ``k``, ``i``, ``f`` vary along
more than one axis cannot be written; those tensors are listed in one error. ap_fixed modes
without a QONNX rounding mode are written with an exact offset (``RND``: add half an LSB, then
``FLOOR``); ``WRAP`` that can overflow becomes floor arithmetic on the rounded integer. The
ONNX graph keeps the IR graph's input / output layout (what ``g.run`` takes); conv and pooling
are wrapped in transposes to ONNX's channels-first order. Arithmetic runs in float32 in ONNX
runtimes: exact while every value fits float32's 24-bit significand.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hgqir.errors import UnsupportedOpError
from hgqir.fixed import FixedType, OverflowMode, RoundMode, summary
from hgqir.ir import Graph, Op, OpKind, Value
from hgqir.numbers import exact_from_mantissas
from hgqir.ops import cast_needed

from .reader import require_onnx

QONNX_DOMAIN = "qonnx.custom_op.general"
ROUND_NAMES = {
    RoundMode.RND_CONV: "ROUND",
    RoundMode.TRN: "FLOOR",
    RoundMode.TRN_ZERO: "DOWN",
    RoundMode.RND_INF: "HALF_UP",
    RoundMode.RND_ZERO: "HALF_DOWN",
}
"""ap_fixed rounding with a QONNX rounding mode of the same meaning."""
SHIFTED = {RoundMode.RND: (0.5, "FLOOR"), RoundMode.RND_MIN_INF: (-0.5, "CEIL")}
"""ap_fixed rounding as (offset in LSBs, QONNX mode): RND = floor(x + lsb/2), RND_MIN_INF = ceil(x - lsb/2)."""
WIDE_BITS = 32
"""Bitwidth of the rounding-only Quant before a wrap of external (untyped) data."""


def per_channel(t: FixedType) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(k, i, f)`` reduced to a broadcastable shape (scalar or one axis), or None if per element."""
    arrs = [np.asarray(a) for a in (t.k, t.i, t.f)]
    if t.is_uniform:
        return tuple(np.asarray(a.flat[0] if a.size else 0) for a in arrs)  # type: ignore[return-value]
    for axis in range(len(t.shape)):
        index = tuple(slice(None) if n == axis else slice(0, 1) for n in range(len(t.shape)))
        if all(np.array_equal(a, np.broadcast_to(a[index], a.shape)) for a in arrs):
            return tuple(a[index] for a in arrs)  # type: ignore[return-value]
    return None


class Exporter:
    """Builds the ONNX node list op by op."""

    def __init__(self, g: Graph, batch_size: int | None) -> None:
        self.onnx = require_onnx()
        self.g = g
        self.batch: int | str = "batch" if batch_size is None else int(batch_size)
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.names: dict[int, str] = {}
        self.used: set[str] = set()

    # ------------------------------------------------------------------ helpers
    def fresh(self, base: str) -> str:
        name, n = base, 1
        while name in self.used:
            name, n = f"{base}_{n}", n + 1
        self.used.add(name)
        return name

    def init(self, base: str, values: Any, dtype: Any = np.float32) -> str:
        arr = np.asarray(values)
        if dtype is np.float32 and not np.array_equal(arr.astype(np.float32).astype(np.float64), arr):
            raise ValueError(f"{base}: values need more than float32's 24-bit significand")
        name = self.fresh(base)
        self.inits.append(self.onnx.numpy_helper.from_array(arr.astype(dtype), name))
        return name

    def node(self, op_type: str, inputs: list[str], base: str, domain: str = "", **attrs: Any) -> str:
        out = self.fresh(base)
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, [out], name=out, domain=domain, **attrs))
        return out

    def batched(self, a: np.ndarray, rank: int) -> np.ndarray:
        """A parameter array broadcast against a tensor of ``rank`` axes (batch included)."""
        a = np.asarray(a, dtype=np.float64)
        return a.reshape((1,) * (rank - a.ndim) + a.shape) if a.ndim else a

    # ------------------------------------------------------------------ casts
    def cast(
        self,
        x: str,
        t: FixedType,
        rnd: RoundMode,
        ovf: OverflowMode,
        src: FixedType | None,
        base: str,
        const: bool = False,
    ) -> str:
        """``x`` put into ``t`` with ap_fixed modes (``src``: the operand's type, None for external
        data; ``const``: ``x`` is a constant without a batch axis).

        :func:`type_problem` has accepted ``(t, rnd, ovf)``.
        """
        k, i, f = per_channel(t)  # type: ignore[misc]
        rank = len(t.shape) + (not const)
        signed = int(np.asarray(k).flat[0])
        lsb = np.ldexp(1.0, -f)
        if rnd in SHIFTED:
            shift, mode = SHIFTED[rnd]
            x = self.node("Add", [x, self.init(f"{base}_half", self.batched(shift * lsb, rank))], f"{base}_shift")
        else:
            mode = ROUND_NAMES[rnd]
        width = np.unique(k + i + f)
        fits = src is not None and bool(np.all(src.lo >= t.lo) and np.all(src.hi <= t.hi)) and width.size == 1
        wrap = ovf is OverflowMode.WRAP and not fits
        narrow = int(ovf is OverflowMode.SAT_SYM and signed == 1)
        bits = int(width[0])
        if wrap:  # rounding only: wide enough never to clip, then the wrap arithmetic
            bits = WIDE_BITS if src is None else max(int(np.max(src.union()[1] + 2 + f)), int(width.max()))
        params = [
            self.init(f"{base}_scale", self.batched(lsb, rank)),
            self.init(f"{base}_zeropt", np.float32(0)),
            self.init(f"{base}_bits", np.float32(bits)),  # QONNX: one bitwidth per tensor
        ]
        q = self.node(
            "Quant",
            [x, *params],
            f"{base}_q" if wrap else base,
            QONNX_DOMAIN,
            signed=1 if wrap else signed,
            narrow=narrow,
            rounding_mode=mode,
        )
        return self.wrap(q, k, i, rank, base) if wrap else q

    def wrap(self, q: str, k: np.ndarray, i: np.ndarray, rank: int, base: str) -> str:
        """Two's complement wrap of rounded ``q`` into ``k + i`` integer bits: ``q - M * floor((q + k*2**i) / M)``."""
        span = np.ldexp(1.0, k + i)
        shifted = self.node("Add", [q, self.init(f"{base}_off", self.batched(k * np.ldexp(1.0, i), rank))], f"{base}_o")
        turns = self.node(
            "Floor",
            [self.node("Mul", [shifted, self.init(f"{base}_inv", self.batched(1 / span, rank))], f"{base}_d")],
            f"{base}_fl",
        )
        back = self.node("Mul", [turns, self.init(f"{base}_span", self.batched(span, rank))], f"{base}_m")
        return self.node("Sub", [q, back], base)

    # ------------------------------------------------------------------ walk
    def run(self) -> Any:
        helper = self.onnx.helper
        problems = check(self.g)
        if problems:
            raise UnsupportedOpError(
                "cannot export to QONNX: a Quant node has one bitwidth per tensor and a scale per tensor or "
                "channel; these tensors have per-element types, or ops or modes QONNX cannot express:",
                problems,
            )
        inputs, outputs = [], []
        for op in self.g.ops:
            if op.kind is OpKind.INPUT:
                v = op.result
                inputs.append(helper.make_tensor_value_info(self.fresh(v.name), 1, [self.batch, *v.shape]))
                raw = inputs[-1].name
                self.names[id(v)] = self.cast(raw, v.type, op.attrs["round"], op.attrs["overflow"], None, f"{v.name}_q")
            elif op.kind is OpKind.OUTPUT:
                name = self.fresh(op.attrs["name"])
                self.nodes.append(helper.make_node("Identity", [self.name(op.operands[0])], [name], name=name))
                outputs.append(helper.make_tensor_value_info(name, 1, [self.batch, *op.operands[0].shape]))
            elif op.kind is not OpKind.CONST:
                self.op(op)
        graph = helper.make_graph(self.nodes, self.g.name, inputs, outputs, self.inits)
        opsets = [helper.make_opsetid("", 13), helper.make_opsetid(QONNX_DOMAIN, 1)]
        return helper.make_model(graph, opset_imports=opsets, producer_name="hgqir")

    def name(self, v: Value) -> str:
        if id(v) not in self.names:
            assert v.producer is not None and v.producer.kind is OpKind.CONST
            self.names[id(v)] = self.const(v, None)
        return self.names[id(v)]

    def const(self, v: Value, perm: tuple[int, ...] | None) -> str:
        """A typed constant: float values and a Quant carrying its type (in layout ``perm``)."""
        assert v.producer is not None
        values = exact_from_mantissas(v.producer.attrs["data"], v.type).values()
        t = v.type
        if perm is not None:
            values, t = values.transpose(perm), t.map(lambda a: a.transpose(perm))
        raw = self.init(f"{v.name}_float", values)
        return self.cast(raw, t, RoundMode.RND_CONV, OverflowMode.SAT, t, v.name, const=True)

    def op(self, op: Op) -> None:
        from .export_ops import LOWER

        out = LOWER[op.kind](self, op)
        v = op.result
        if any(cast_needed(op)):
            out = self.cast(out, v.type, RoundMode.TRN, OverflowMode.WRAP, op.rule.infer(op)[0], f"{v.name}_cast")
        self.names[id(v)] = out


def type_problem(t: FixedType, rnd: RoundMode, ovf: OverflowMode) -> str | None:
    """Why a quantization point cannot be one QONNX Quant (with helper nodes), or None."""
    kif = per_channel(t)
    if kif is None:
        return f"type {summary(t)} varies per element; QONNX needs per-tensor or per-channel types"
    if np.any(t.zero_mask) or np.unique(kif[0]).size > 1:
        return f"type {summary(t)} has pruned (zero-width) elements or mixed signedness"
    if ovf in (OverflowMode.SAT, OverflowMode.SAT_SYM) and np.unique(kif[0] + kif[1] + kif[2]).size > 1:
        return f"type {summary(t)} has per-channel widths; a QONNX Quant has one bitwidth per tensor"
    if ovf is OverflowMode.SAT_ZERO:
        return "overflow SAT_ZERO has no QONNX equivalent"
    if rnd not in ROUND_NAMES and rnd not in SHIFTED:
        return f"rounding {rnd.value} has no QONNX equivalent"
    return None


def check(g: Graph) -> list[str]:
    """Every op, constant and quantization point the exporter cannot write, one line each."""
    from .export_ops import LOWER

    problems = []
    for op in g.ops:
        if op.kind in (OpKind.INPUT, OpKind.QUANT):
            point = (op.result.type, op.attrs["round"], op.attrs["overflow"])
        elif op.kind is OpKind.CONST:
            point = (op.result.type, RoundMode.RND_CONV, OverflowMode.SAT)
        elif op.kind is OpKind.OUTPUT:
            continue
        elif op.kind not in LOWER:
            problems.append(f"%{op.result.name} ({op.kind.value}): op kind {op.kind.value} has no QONNX export yet")
            continue
        elif any(cast_needed(op)):
            point = (op.result.type, RoundMode.TRN, OverflowMode.WRAP)
        else:
            continue
        why = type_problem(*point)
        if why:
            problems.append(f"%{op.result.name} ({op.kind.value}): {why}")
    return problems


def export(g: Graph, batch_size: int | None = 1) -> Any:
    return Exporter(g, batch_size).run()
