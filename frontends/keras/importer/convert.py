"""Emitting IR from a quantized Keras model (shim or HGQ2), node by node.

:class:`Emitter` walks the :class:`~hgqir.frontends.keras.graph.KGraph` and calls one converter
per layer class. Quantizers become ``quant`` ops (skipped when the value already has exactly
that type). Each model input takes the type and modes of the first quantizer it meets through
pure reshapes, so ``g.run`` converts external floats exactly like the model's own quantizer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hgqir.errors import UnsupportedOpError
from hgqir.fixed import FixedType, OverflowMode, RoundMode
from hgqir.ir import Graph, OpKind, Value

from ..graph import KGraph, KNode, Shape
from ..shim.layers import conv_pads
from ..shim.merge import pool_counts
from ..support import IDENTITIES, MERGE_OPS, L, carries_type, layer_activation


@dataclass(frozen=True)
class QuantSpec:
    """What a quantizer does to a tensor: its per-element type and its modes."""

    type: FixedType
    round: RoundMode
    overflow: OverflowMode


Converter = Callable[["Emitter", KNode, list[Value]], list[Value]]
InputQuantizer = Callable[[Any, int, Shape], "QuantSpec | None"]
"""``(layer, operand position, tensor shape) -> QuantSpec`` of the quantizer that layer applies first."""


class Emitter:
    """Builds a :class:`Graph` from a walked Keras model."""

    def __init__(self, kg: KGraph, converters: dict[type, Converter], input_quantizer: InputQuantizer) -> None:
        self.kg = kg
        self.converters = converters
        self.input_quantizer = input_quantizer
        self.g = Graph(kg.name)
        self.values: dict[int, Value] = {}

    def run(self) -> Graph:
        for key, name in zip(self.kg.inputs, self.kg.input_names, strict=True):
            spec = self.input_spec(key, name)
            self.values[key] = self.g.input(name, spec.type, spec.round, spec.overflow)
        self.convert_nodes()
        for n, key in enumerate(self.kg.outputs):
            producer = self.kg.producer(key)
            self.g.output(self.output_value(key, producer), name=producer.name if producer else f"out{n}")
        self.g.meta["frontend"] = "keras"
        return self.g

    def convert_nodes(self) -> None:
        """Every layer call through its converter, in topological order."""
        for node in self.kg.nodes:
            outs = self.converters[type(node.layer)](self, node, [self.values[k] for k in node.inputs])
            for key, v in zip(node.outputs, outs, strict=True):
                self.values[key] = v

    def output_value(self, key: int, producer: KNode | None) -> Value:
        """What the graph outputs for the model output ``key`` (subclasses may quantize it)."""
        return self.values[key]

    # ------------------------------------------------------------ helpers for converters
    def shape(self, key: int) -> Shape:
        return self.kg.shapes[key]

    def quant(self, x: Value, spec: QuantSpec, name: str) -> Value:
        """``x`` quantized as ``spec`` says; no op when ``x`` already has exactly that type."""
        if x.type == spec.type:
            return x
        attrs = {"round": spec.round, "overflow": spec.overflow}
        return self.g.add(OpKind.QUANT, [x], attrs, types=[spec.type], name=name).result

    def const(self, values: np.ndarray, t: FixedType, name: str) -> Value:
        return self.g.const(values, t, name=name)

    def add(self, kind: OpKind, operands: list[Value], name: str, **attrs: Any) -> Value:
        return self.g.add(kind, operands, attrs, name=name).result

    # ------------------------------------------------------------ model inputs
    def input_spec(self, key: int, name: str) -> QuantSpec:
        """The first quantizer the input meets (through reshapes), mapped back to the input's shape."""
        chain: list[KNode] = []
        cur = key
        while True:
            users = self.kg.consumers(cur)
            if len(users) == 1 and cur not in self.kg.outputs:
                node, pos = users[0]
                if carries_type(node.layer):
                    chain.append(node)
                    cur = node.outputs[0]
                    continue
                spec = self.input_quantizer(node.layer, pos, self.shape(cur))
                if spec is not None:
                    return QuantSpec(_map_back(spec.type, chain, self.kg), spec.round, spec.overflow)
            raise UnsupportedOpError(
                f"model input {name!r} does not go straight into one quantizer, so hgqir cannot give "
                "the graph input a fixed-point type; put a quantizer layer right after the input "
                "(hgqir.quantize_keras does this for you)",
                [f"{n.name} ({type(n.layer).__name__})" for n, _ in users],
            )


def _map_back(t: FixedType, chain: list[KNode], kg: KGraph) -> FixedType:
    """Undo reshapes / permutes on a type: the type of the chain's first tensor."""
    full = FixedType(t.shape, np.array(t.k), np.array(t.i), np.array(t.f))
    for node in reversed(chain):
        in_shape = kg.shapes[node.inputs[0]]
        if type(node.layer) is L.Permute:
            inv = tuple(int(p) for p in np.argsort([d - 1 for d in node.layer.dims]))
            full = full.map(lambda a, inv=inv: a.transpose(inv))
        else:
            full = full.reshape(in_shape)
    return full


# ---------------------------------------------------------------- plain Keras layers
def _relu(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    if layer_activation(node.layer) == "linear":
        return xs
    return [em.add(OpKind.RELU, xs, node.name)]


def _identity(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    return xs


def _reshape(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    return [em.add(OpKind.RESHAPE, xs, node.name, shape=em.shape(node.outputs[0]))]


def _permute(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    return [em.add(OpKind.TRANSPOSE, xs, node.name, perm=[d - 1 for d in node.layer.dims])]


def _concat(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    rank = len(xs[0].shape)
    axis = node.layer.axis
    axis = axis - 1 if axis > 0 else rank + axis
    return [em.add(OpKind.CONCAT, xs, node.name, axis=axis)]


def window_attrs(layer: Any, in_shape: Shape) -> dict[str, Any]:
    """pool / stride / pad attributes of a Keras pooling layer on a channels-last input."""
    pool = tuple(int(p) for p in layer.pool_size)
    stride = tuple(int(s) for s in layer.strides)
    pads = [conv_pads(n, p, s, layer.padding) for n, p, s in zip(in_shape[:-1], pool, stride, strict=True)]
    return {"pool": pool, "stride": stride, "pad": pads}


def _maxpool(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    kind = OpKind.MAXPOOL1D if type(node.layer) is L.MaxPooling1D else OpKind.MAXPOOL2D
    return [em.add(kind, xs, node.name, **window_attrs(node.layer, xs[0].shape))]


def _global_maxpool(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    return [keep_dims(em, em.add(OpKind.GLOBAL_MAXPOOL, xs, f"{node.name}_g"), em.shape(node.outputs[0]), node.name)]


def keep_dims(em: Emitter, v: Value, out_shape: Shape, name: str) -> Value:
    """A global pool's ``[C]`` result reshaped to the layer's ``keepdims=True`` shape (or renamed)."""
    if tuple(v.shape) == tuple(out_shape):
        em.g.rename(v, name)
        return v
    return em.add(OpKind.RESHAPE, [v], name, shape=tuple(out_shape))


MERGE_KINDS = {"add": OpKind.ADD, "sub": OpKind.SUB, "mul": OpKind.MUL, "max": OpKind.MAXIMUM, "min": OpKind.MINIMUM}


def merge_values(em: Emitter, op: str, xs: list[Value], name: str) -> Value:
    """A Keras merge of ``xs``: left to right; ``avg`` the sum times ``1/n`` (n a power of two)."""
    if op != "avg":
        return merge_chain(em, MERGE_KINDS[op], xs, name)
    n = len(xs)
    total = merge_chain(em, OpKind.ADD, xs, f"{name}_sum")
    inv = np.full((1,), 1.0 / n)
    t = FixedType.covering(inv, inv, np.full((1,), max(n.bit_length() - 1, 0))).canonical()
    return em.add(OpKind.MUL, [total, em.const(inv, t, f"{name}_inv")], name)


def merge_chain(em: Emitter, kind: OpKind, xs: list[Value], name: str) -> Value:
    """Left-to-right chain of a binary op over ``xs`` (as Keras merges compute them)."""
    y = xs[0]
    for n, v in enumerate(xs[1:]):
        y = em.add(kind, [y, v], name if n == len(xs) - 2 else f"{name}_{n}")
    return y


def _plain_merge(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    return [merge_values(em, MERGE_OPS[type(node.layer)], xs, node.name)]


def _plain_avgpool(em: Emitter, node: KNode, xs: list[Value]) -> list[Value]:
    """A float average pool is exact only over power-of-two counts (checked by the support test)."""
    layer = node.layer
    if isinstance(layer, (L.GlobalAveragePooling1D, L.GlobalAveragePooling2D)):
        pooled = em.add(OpKind.GLOBAL_AVGPOOL, xs, f"{node.name}_g")
        return [keep_dims(em, pooled, em.shape(node.outputs[0]), node.name)]
    kind = OpKind.AVGPOOL1D if isinstance(layer, L.AveragePooling1D) else OpKind.AVGPOOL2D
    return [em.add(kind, xs, node.name, count_pad=False, **window_attrs(layer, xs[0].shape))]


def quantized_avgpool(
    em: Emitter, x: Value, name: str, out_shape: Shape, extra: int, attrs: dict[str, Any] | None
) -> Value:
    """An average pool of quantized ``x``: the exact window sum over the count, truncated to the
    input's union type plus ``extra`` fractional bits (``attrs`` None: global, else the window's
    ``pool`` / ``stride`` / ``pad``)."""
    k, i, f = x.type.union()
    live = not np.all(x.type.zero_mask)
    if attrs is None:
        shape = (x.shape[-1],)
        t = FixedType.uniform(shape, k, i, f + extra) if live else FixedType.zero(shape)
        pooled = em.g.add(OpKind.GLOBAL_AVGPOOL, [x], {}, types=[t], name=f"{name}_g").result
        return keep_dims(em, pooled, out_shape, name)
    t = FixedType.uniform(out_shape, k, i, f + extra) if live else FixedType.zero(out_shape)
    kind = OpKind.AVGPOOL1D if len(attrs["pool"]) == 1 else OpKind.AVGPOOL2D
    return em.g.add(kind, [x], {**attrs, "count_pad": False}, types=[t], name=name).result


def plain_avgpool_reason(layer: Any) -> str | None:
    shape = tuple(int(d) for d in layer.input.shape[1:])
    if isinstance(layer, (L.GlobalAveragePooling1D, L.GlobalAveragePooling2D)):
        counts = np.array([int(np.prod(shape[:-1]))])
    else:
        counts = pool_counts(shape[:-1], tuple(layer.pool_size), tuple(layer.strides), layer.padding)
    if np.any(counts & (counts - 1)):
        return "float average over a window whose size is not a power of two is not exact; use a quantized average pool"
    return None


PLAIN_CONVERTERS: dict[type, Converter] = {
    L.ReLU: _relu,
    L.Activation: _relu,
    L.Flatten: _reshape,
    L.Reshape: _reshape,
    L.Permute: _permute,
    L.Concatenate: _concat,
    L.MaxPooling1D: _maxpool,
    L.MaxPooling2D: _maxpool,
    L.GlobalMaxPooling1D: _global_maxpool,
    L.GlobalMaxPooling2D: _global_maxpool,
    L.Add: _plain_merge,
    L.Subtract: _plain_merge,
    L.Multiply: _plain_merge,
    L.Maximum: _plain_merge,
    L.Minimum: _plain_merge,
    L.Average: _plain_merge,
    L.AveragePooling1D: _plain_avgpool,
    L.AveragePooling2D: _plain_avgpool,
    L.GlobalAveragePooling1D: _plain_avgpool,
    L.GlobalAveragePooling2D: _plain_avgpool,
    **{cls: _identity for cls in IDENTITIES},
}
