"""Turn import records (:mod:`.records`) into an hgqir graph.

The IR is channels-last and PyTorch is channels-first, so every value carries a permutation
``perm`` with ``ir_value = torch_value.permute(perm)`` (unbatched axes). Ops that need a layout
(conv, pooling and batchnorm want channels last; dense, reshape and the outputs want
PyTorch's own order) get a ``transpose`` inserted on demand; ``permute`` only changes the
bookkeeping. Graph inputs and outputs are in PyTorch's layout, so ``g.run`` takes and returns
exactly what the module does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hgqir.passes.dce import DeadCodeElimination

from hgqir.fixed import FixedType
from hgqir.ir import Graph, OpKind, Value

from ...movers import crop, named, repeat_axis, zero_pad
from ..tables import lut_table, softmax_tables, union_kif
from .records import Rec, Types

Perm = tuple[int, ...]


def channels_last(rank: int) -> Perm:
    """Permutation taking PyTorch's ``[C, *spatial]`` to the IR's ``[*spatial, C]``."""
    return tuple(range(rank)) if rank <= 1 else tuple(range(1, rank)) + (0,)


def identity(rank: int) -> Perm:
    return tuple(range(rank))


class Converter:
    """Adds one or a few IR ops per record, in order."""

    def __init__(self, records: dict[str, Rec], outputs: list[str], types: Types, name: str) -> None:
        self.records, self.outputs = records, outputs
        self.types = types
        self.g = Graph(name)
        self.g.meta = {"frontend": "torch", "layout": "inputs and outputs in PyTorch layout (channels first)"}
        self.env: dict[str, tuple[Value, Perm]] = {}
        self._cache: dict[tuple[str, Perm], Value] = {}

    # ------------------------------------------------------------------ layout
    def get(self, name: str, perm: Perm | None = None) -> Value:
        """The value of body node ``name`` in layout ``perm`` (inserting a transpose if needed)."""
        v, p = self.env[name]
        if perm is None or tuple(perm) == p:
            return v
        key = (name, tuple(perm))
        if key not in self._cache:
            order = [p.index(a) for a in perm]
            shape = tuple(v.shape[o] for o in order)
            if sum(1 for s in v.shape if s != 1) <= 1:  # one non-unit axis: a reshape moves nothing
                op = self.g.add(OpKind.RESHAPE, [v], {"shape": shape}, name=f"{name}_r")
            else:
                op = self.g.add(OpKind.TRANSPOSE, [v], {"perm": order}, name=f"{name}_t")
            self._cache[key] = op.result
        return self._cache[key]

    def perm_of(self, name: str) -> Perm:
        return self.env[name][1]

    def type_of(self, spec: int, perm: Perm, shape: tuple[int, ...] | None = None) -> FixedType:
        k, i, f, _ = self.types[spec]
        arrs = [a.reshape(shape) if shape is not None else a for a in (k, i, f)]
        arrs = [a.transpose(perm) if a.ndim else a for a in arrs]
        return FixedType(arrs[0].shape, *arrs)

    def const(self, spec: int, perm: Perm, name: str) -> Value:
        k, i, f, values = self.types[spec]
        assert values is not None
        t = self.type_of(spec, perm)
        v = values.transpose(perm) if values.ndim else values
        return self.g.const(v, t, name=name)

    # ------------------------------------------------------------------ walk
    def run(self) -> Graph:
        for name, rec in self.records.items():
            getattr(self, f"_do_{rec.kind}")(name, rec)
        for n, name in enumerate(self.outputs):
            v = self.get(name, identity(len(self.env[name][0].shape)))
            self.g.output(v, name=f"out{n}" if len(self.outputs) > 1 else "out")
        DeadCodeElimination().apply(self.g)
        self.g.verify()
        return self.g

    def _set(self, name: str, v: Value, perm: Perm) -> None:
        self.env[name] = (v, tuple(perm))

    def _quant(self, x: Value, rec: Rec, perm: Perm, name: str) -> Value:
        t = self.type_of(rec.attrs["spec"], perm)
        attrs = {"round": rec.attrs["round"], "overflow": rec.attrs["overflow"]}
        return self.g.add(OpKind.QUANT, [x], attrs, [t], name=name).result

    # ------------------------------------------------------------------ ops
    def _do_input(self, name: str, rec: Rec) -> None:
        t = self.type_of(rec.attrs["spec"], identity(len(rec.shape)))
        value = self.g.input(rec.attrs["name"], t, rec.attrs["round"], rec.attrs["overflow"])
        self._set(name, value, identity(len(rec.shape)))

    def _do_quant(self, name: str, rec: Rec) -> None:
        x, perm = self.env[rec.inputs[0]]
        self._set(name, self._quant(x, rec, perm, name), perm)

    def _do_linear(self, name: str, rec: Rec) -> None:
        x = self.get(rec.inputs[0], identity(len(self.env[rec.inputs[0]][0].shape)))
        ops = [x, self.const(rec.attrs["w"], (1, 0), f"{name}_w")]
        if rec.attrs["b"] is not None:
            ops.append(self.const(rec.attrs["b"], (0,), f"{name}_b"))
        self._set(name, self.g.add(OpKind.DENSE, ops, name=name).result, identity(len(rec.shape)))

    def _do_conv(self, name: str, rec: Rec) -> None:
        rank = len(rec.shape)
        x = self.get(rec.inputs[0], channels_last(rank))
        nd = rank - 1
        wperm = tuple(range(2, nd + 2)) + (1, 0)
        depthwise = rec.attrs.get("groups", 1) > 1
        w = self._depthwise_kernel(rec.attrs["w"], wperm, f"{name}_w") if depthwise else None
        if "dilation" in rec.attrs:
            w = self._dilated_kernel(rec.attrs["w"], wperm, rec.attrs["dilation"], f"{name}_w")
        ops = [x, w or self.const(rec.attrs["w"], wperm, f"{name}_w")]
        if rec.attrs["b"] is not None:
            ops.append(self.const(rec.attrs["b"], (0,), f"{name}_b"))
        kind = OpKind.CONV1D if nd == 1 else OpKind.CONV2D
        if depthwise:
            kind = OpKind.DEPTHWISE_CONV1D if nd == 1 else OpKind.DEPTHWISE_CONV2D
        attrs = {"stride": rec.attrs["stride"], "pad": rec.attrs["pads"]}
        self._set(name, self.g.add(kind, ops, attrs, name=name).result, channels_last(rank))

    def _do_slice(self, name: str, rec: Rec) -> None:
        x, p = self.env[rec.inputs[0]]  # the torch axes of x's axes: p
        crops = {j: (rec.attrs["begin"][a], x.shape[j] - rec.attrs["end"][a]) for j, a in enumerate(p)}
        self._set(name, named(self.g, crop(self.g, x, crops, name), name), p)

    def _do_pad(self, name: str, rec: Rec) -> None:
        x, p = self.env[rec.inputs[0]]
        pads = {p.index(a): pair for a, pair in rec.attrs["pads"].items()}
        self._set(name, named(self.g, zero_pad(self.g, x, pads, name), name), p)

    def _do_upsample(self, name: str, rec: Rec) -> None:
        x, p = self.env[rec.inputs[0]]
        for a, k in sorted(rec.attrs["factors"].items()):
            x = repeat_axis(self.g, x, p.index(a), k, name)
        self._set(name, named(self.g, x, name), p)

    def _dilated_kernel(self, spec: int, perm: Perm, rates: tuple[int, ...], name: str) -> Value:
        """A dilated kernel as applied: zero-width zeros between the taps (exact, costs nothing)."""
        arrs = [np.asarray(a).transpose(perm) for a in self.types[spec]]  # [*k, Cin, Cout]
        nd = len(rates)
        shape = tuple((k - 1) * d + 1 for k, d in zip(arrs[0].shape[:nd], rates, strict=True)) + arrs[0].shape[nd:]
        index = tuple(slice(None, None, d) for d in rates)
        full = []
        for a in arrs:
            z = np.zeros(shape, dtype=a.dtype)
            z[index] = a
            full.append(z)
        return self.g.const(full[3], FixedType(shape, full[0], full[1], full[2]), name=name)

    def _depthwise_kernel(self, spec: int, perm: Perm, name: str) -> Value:
        """A depthwise weight ``[C*M, 1, *k]`` as the IR's ``[*k, C*M]``."""
        arrs = [np.asarray(a).transpose(perm) for a in self.types[spec]]  # [*k, 1, C*M]
        k, i, f, values = (a.reshape(*a.shape[:-2], a.shape[-1]) for a in arrs)
        return self.g.const(values, FixedType(values.shape, k, i, f), name=name)

    def _do_batchnorm(self, name: str, rec: Rec) -> None:
        perm = channels_last(len(rec.shape))
        x = self.get(rec.inputs[0], perm)
        s = self.const(rec.attrs["scale"], (0,), f"{name}_scale")
        o = self.const(rec.attrs["offset"], (0,), f"{name}_offset")
        self._set(name, self.g.add(OpKind.BATCHNORM, [x, s, o], name=name).result, perm)

    def _do_relu(self, name: str, rec: Rec) -> None:
        x, perm = self.env[rec.inputs[0]]
        self._set(name, self.g.add(OpKind.RELU, [x], name=name).result, perm)

    def _do_identity(self, name: str, rec: Rec) -> None:
        self.env[name] = self.env[rec.inputs[0]]

    def _do_lut(self, name: str, rec: Rec) -> None:
        x, perm = self.env[rec.inputs[0]]
        q = self._quant(x, rec, perm, f"{name}_q")
        func, a = rec.attrs["func"], rec.attrs
        data, t = lut_table(func, union_kif(q.type.k, q.type.i, q.type.f), a["out_f"], a["table_bits"])
        table = self.g.const_mantissa(data, t, name=f"{name}_table")
        self._set(name, self.g.add(OpKind.LUT, [q, table], {"func": func}, name=name).result, perm)

    def _do_softmax(self, name: str, rec: Rec) -> None:
        axis = rec.attrs["axis"]
        x0, p0 = self.env[rec.inputs[0]]
        rank = len(x0.shape)
        perm = p0 if p0[-1] == axis else tuple(a for a in range(rank) if a != axis) + (axis,)
        q = self._quant(self.get(rec.inputs[0], perm), rec, perm, f"{name}_q")
        a = rec.attrs
        kif = union_kif(q.type.k, q.type.i, q.type.f)
        log = bool(a.get("log", False))
        t = softmax_tables(kif, rec.shape[axis], a["exp_f"], a["inv_f"], a["sum_f"], a["table_bits"], log=log)
        e = self.g.const_mantissa(t.exp_data, t.exp_type, name=f"{name}_exp")
        r = self.g.const_mantissa(t.inv_data, t.inv_type, name=f"{name}_{'log' if log else 'inv'}")
        out = self.g.add(OpKind.SOFTMAX, [q, e, r], {"inv_in": t.inv_in, "log": log}, name=name).result
        self._set(name, out, perm)

    def _do_maxpool(self, name: str, rec: Rec) -> None:
        perm = channels_last(len(rec.shape))
        x = self.get(rec.inputs[0], perm)
        kind = OpKind.MAXPOOL1D if rec.attrs["nd"] == 1 else OpKind.MAXPOOL2D
        attrs = {"pool": rec.attrs["kernel"], "stride": rec.attrs["stride"], "pad": rec.attrs["pads"]}
        self._set(name, self.g.add(kind, [x], attrs, name=name).result, perm)

    def _do_avgpool(self, name: str, rec: Rec) -> None:
        perm = channels_last(len(rec.shape))
        x = self.get(rec.inputs[0], perm)
        kind = OpKind.AVGPOOL1D if rec.attrs["nd"] == 1 else OpKind.AVGPOOL2D
        attrs = {
            "pool": rec.attrs["kernel"],
            "stride": rec.attrs["stride"],
            "pad": rec.attrs["pads"],
            "count_pad": rec.attrs["count_pad"],
        }
        t = self.type_of(rec.attrs["spec"], perm)
        self._set(name, self.g.add(kind, [x], attrs, [t], name=name).result, perm)

    def _global(self, name: str, rec: Rec, kind: OpKind, types: list[FixedType] | None) -> None:
        x = self.get(rec.inputs[0], channels_last(len(rec.shape)))
        pooled = self.g.add(kind, [x], {}, types, name=f"{name}_g").result
        out = self.g.add(OpKind.RESHAPE, [pooled], {"shape": rec.shape}, name=name).result
        self._set(name, out, identity(len(rec.shape)))

    def _do_global_avgpool(self, name: str, rec: Rec) -> None:
        c = rec.shape[0]
        self._global(name, rec, OpKind.GLOBAL_AVGPOOL, [self.type_of(rec.attrs["spec"], (0,), (c,))])

    def _do_global_maxpool(self, name: str, rec: Rec) -> None:
        self._global(name, rec, OpKind.GLOBAL_MAXPOOL, None)

    def _do_reshape(self, name: str, rec: Rec) -> None:
        src = rec.inputs[0]
        x = self.get(src, identity(len(self.env[src][0].shape)))
        if tuple(x.shape) == tuple(rec.shape):
            self._set(name, x, identity(len(rec.shape)))
            return
        self._set(
            name, self.g.add(OpKind.RESHAPE, [x], {"shape": rec.shape}, name=name).result, identity(len(rec.shape))
        )

    def _do_permute(self, name: str, rec: Rec) -> None:
        v, p = self.env[rec.inputs[0]]
        d = list(rec.attrs["perm"])
        self._set(name, v, tuple(d.index(a) for a in p))

    def _do_cat(self, name: str, rec: Rec) -> None:
        perm = self.perm_of(rec.inputs[0])
        xs = [self.get(n, perm) for n in rec.inputs]
        out = self.g.add(OpKind.CONCAT, xs, {"axis": perm.index(rec.attrs["axis"])}, name=name).result
        self._set(name, out, perm)

    def _do_stack(self, name: str, rec: Rec) -> None:
        """Each input with a unit axis at ``axis`` (PyTorch layout), then one concatenation."""
        axis = rec.attrs["axis"]
        parts = []
        for n, src in enumerate(rec.inputs):
            x = self.get(src, identity(len(self.env[src][0].shape)))
            shape = (*x.shape[:axis], 1, *x.shape[axis:])
            parts.append(self.g.add(OpKind.RESHAPE, [x], {"shape": shape}, name=f"{name}_unit{n}").result)
        out = self.g.add(OpKind.CONCAT, parts, {"axis": axis}, name=name).result
        self._set(name, out, identity(len(out.shape)))

    def _binary(self, name: str, rec: Rec, kind: OpKind) -> None:
        tensors = [n for n in rec.inputs if isinstance(n, str)]
        perm = self.perm_of(tensors[0])
        ops = [self.get(n, perm) if isinstance(n, str) else self._scalar(n, perm, f"{name}_c") for n in rec.inputs]
        self._set(name, self.g.add(kind, ops, name=name).result, perm)

    def _scalar(self, spec: int, perm: Perm, name: str) -> Value:
        """A quantized constant operand, at the operands' rank and layout (PyTorch broadcasting)."""
        k, i, f, values = self.types[spec]
        assert values is not None
        shape = (1,) * (len(perm) - values.ndim) + values.shape
        arrs = [np.reshape(a, shape).transpose(perm) for a in (k, i, f, values)]
        return self.g.const(arrs[3], FixedType(arrs[0].shape, *arrs[:3]), name=name)

    def _do_add(self, name: str, rec: Rec) -> None:
        self._binary(name, rec, OpKind.ADD)

    def _do_sub(self, name: str, rec: Rec) -> None:
        self._binary(name, rec, OpKind.SUB)

    def _do_mul(self, name: str, rec: Rec) -> None:
        self._binary(name, rec, OpKind.MUL)

    def _do_maximum(self, name: str, rec: Rec) -> None:
        self._binary(name, rec, OpKind.MAXIMUM)

    def _do_minimum(self, name: str, rec: Rec) -> None:
        self._binary(name, rec, OpKind.MINIMUM)

    def _do_prelu(self, name: str, rec: Rec) -> None:
        self._binary(name, rec, OpKind.PRELU)


def to_graph(qmod: Any, name: str = "torch") -> Graph:
    """The hgqir graph of a (calibrated) shim: its records and learned types."""
    return Converter(qmod.plan.records, qmod.plan.outputs, qmod.quantizer_types(), name).run()
