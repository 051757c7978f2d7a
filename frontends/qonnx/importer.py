"""QONNX graph -> hgqir graph, node by node.

ONNX is channels-first and the IR channels-last, so (as in the PyTorch frontend) every
activation carries a permutation ``perm`` with ``ir_value = onnx_value.transpose(perm)``
(unbatched axes); conv, pooling and batchnorm get a ``transpose`` inserted on demand, dense,
reshape and the graph outputs read ONNX's own order. ``g.run`` therefore takes and returns
exactly what the ONNX model does. Constants stay numpy arrays (:class:`~.reader.Const`) until
an op reads them. A node that cannot be imported exactly is recorded and the walk goes on, so
that one :class:`~hgqir.UnsupportedOpError` lists every such node.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from hgqir.errors import UnsupportedOpError
from hgqir.fixed import FixedType
from hgqir.ir import Graph, OpKind, Value

from .patterns import find as find_patterns
from .quant import QuantMappingError, exact_type, power_of_two_exponent
from .reader import Const, attrs_of, initializers, input_shapes

Perm = tuple[int, ...]


class NodeError(ValueError):
    """One node cannot be imported; the message says why and how to fix it."""


def identity(rank: int) -> Perm:
    return tuple(range(rank))


def channels_last(rank: int) -> Perm:
    return tuple(range(rank)) if rank <= 1 else (*range(1, rank), 0)


class Importer:
    """Walks the ONNX nodes in order (ONNX graphs are topologically sorted)."""

    def __init__(self, model: Any, name: str) -> None:
        self.graph = model.graph
        self.g = Graph(name)
        self.g.meta = {"frontend": "qonnx", "layout": "inputs and outputs in ONNX layout (channels first)"}
        self.consts: dict[str, Const] = initializers(self.graph)
        self.env: dict[str, tuple[Value, Perm]] = {}
        self.inputs = input_shapes(self.graph, set(self.consts))
        self.batch = next((b for b, _ in self.inputs.values() if b), 1)
        """Batch size the model was exported with (reshape targets may spell it out)."""
        self.quantized_inputs: set[str] = set()
        self.fused, self.absorbed = find_patterns(self.graph, self.consts)
        self.problems: list[str] = []
        self.bad: set[str] = set()
        self._layout: dict[tuple[str, Perm], Value] = {}

    # ------------------------------------------------------------------ walk
    def run(self) -> Graph:
        from . import nodes

        for node in self.graph.node:
            if node.output[0] in self.absorbed:  # a helper node of a fused Quant (see .patterns)
                continue
            downstream = any(n in self.bad for n in node.input)
            handler = getattr(nodes, f"{'check' if downstream else 'do'}_{node.op_type}", None)
            try:
                if downstream:  # behind a refused node: only its own parameters are checked
                    self.bad.update(node.output)
                    if handler is not None:
                        handler(self, node, attrs_of(node))
                    continue
                if handler is None:
                    raise NodeError(
                        f"op type {node.op_type} is not supported (supported: {', '.join(nodes.SUPPORTED)})"
                    )
                handler(self, node, attrs_of(node))
            except (NodeError, QuantMappingError) as e:
                self.problems.append(f"{node.op_type} node {node.name or node.output[0]!r}: {e}")
                self.bad.update(node.output)
        self._outputs()
        if self.problems:
            raise UnsupportedOpError(
                f"cannot import the QONNX model {self.g.name!r} exactly; {len(self.problems)} node(s):", self.problems
            )
        self._tidy_names()
        self.g.verify()
        return self.g

    def _tidy_names(self) -> None:
        """ONNX tensor names such as ``/1/act_quant/Quant_output_0`` become ``act_quant_Quant``."""
        for op in self.g.ops:
            if op.kind in (OpKind.INPUT, OpKind.OUTPUT):
                continue
            for v in op.results:
                nice = re.sub(r"^_*(\d+_+)?", "", v.name.replace("_output_0", ""))
                if nice and nice != v.name:
                    self.g.rename(v, nice)

    def _outputs(self) -> None:
        outs = list(self.graph.output)
        for n, vi in enumerate(outs):
            if vi.name in self.bad:
                continue
            if vi.name not in self.env:
                self.problems.append(f"graph output {vi.name!r} is a constant or a float graph input, not computed")
                continue
            v = self.get(vi.name, identity(len(self.env[vi.name][0].shape)))
            self.g.output(v, name="out" if len(outs) == 1 else f"out{n}")

    # ------------------------------------------------------------------ operands
    def is_const(self, name: str) -> bool:
        return name in self.consts

    def const(self, name: str, what: str) -> Const:
        if name not in self.consts:
            raise NodeError(f"{what} ({name!r}) must be a constant")
        return self.consts[name]

    def act(self, name: str) -> tuple[Value, Perm]:
        if name in self.env:
            return self.env[name]
        if name in self.inputs:
            raise NodeError(
                f"reads the float graph input {name!r}: quantize the model input first "
                "(a QuantIdentity with a fixed-point quantizer in Brevitas)"
            )
        raise NodeError(f"operand {name!r} is not a computed tensor")

    def get(self, name: str, perm: Perm | None = None) -> Value:
        """The IR value of activation ``name`` in layout ``perm`` (a transpose inserted once if needed)."""
        v, p = self.act(name)
        if perm is None or tuple(perm) == p:
            return v
        key = (name, tuple(perm))
        if key not in self._layout:
            order = [p.index(a) for a in perm]
            if sum(1 for s in v.shape if s != 1) <= 1:  # nothing moves: a reshape is enough
                shape = tuple(v.shape[o] for o in order)
                op = self.g.add(OpKind.RESHAPE, [v], {"shape": shape}, name=f"{v.name}_r")
            else:
                op = self.g.add(OpKind.TRANSPOSE, [v], {"perm": order}, name=f"{v.name}_t")
            self._layout[key] = op.result
        return self._layout[key]

    def set(self, name: str, v: Value, perm: Perm) -> None:
        self.env[name] = (v, tuple(perm))

    def onnx_shape(self, name: str) -> tuple[int, ...]:
        """Unbatched ONNX-layout shape of activation ``name``."""
        v, p = self.act(name)
        shape = [0] * len(p)
        for j, a in enumerate(p):
            shape[a] = v.shape[j]
        return tuple(shape)

    def ir_const(self, c: Const, perm: Perm, name: str, shape: tuple[int, ...] | None = None) -> Value:
        """An IR const from ONNX-layout ``c`` (reshaped to ``shape`` first, then transposed by ``perm``)."""
        values = c.values.astype(np.float64)
        t = c.type if c.type is not None else exact_type(values)
        if shape is not None:
            values, t = values.reshape(shape), t.reshape(shape)
        values = values.transpose(perm)
        t = t.map(lambda a: a.transpose(perm))
        return self.g.const(values, t, name=self.g.unique_name(name))

    def operand_const(self, c: Const, perm: Perm, rank: int, name: str) -> Value:
        """A constant operand of an elementwise op (ONNX broadcasting, batch axis dropped)."""
        shape = c.values.shape
        if len(shape) == rank + 1:
            if shape[0] != 1:
                raise NodeError(f"constant {name!r} of shape {list(shape)} varies along the batch axis")
            shape = shape[1:]
        shape = (1,) * (rank - len(shape)) + tuple(shape)
        return self.ir_const(c, perm, name, shape)

    def pow2_exponent(self, scale: np.ndarray, what: str) -> np.ndarray:
        try:
            return power_of_two_exponent(scale, what)
        except QuantMappingError as e:
            raise NodeError(str(e)) from None

    def exact_type(self, values: np.ndarray) -> FixedType:
        return exact_type(values)
