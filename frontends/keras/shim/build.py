"""``quantize_keras``: build the shim (quantized twin) of a float Keras model.

Every layer that computes with its inputs' values (dense, conv, batchnorm, merges, average
pooling, tables, softmax) becomes a shim layer with its own input quantizer; layers that only
move or select values (relu, max pooling, reshapes, concatenation, dropout) are cloned as they
are. tanh / sigmoid / softmax fused into a dense or conv layer become a separate table layer.
Each model input gets a quantizer: the first layer's input quantizer when the input feeds one
such layer (possibly through reshapes), else a standalone :class:`Quantizer`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import keras
import numpy as np

from hgqir.errors import HgqirError

from ..graph import KGraph, KNode, check_supported, walk
from ..support import carries_type, float_reason, is_identity, is_mover, layer_activation, quantizes_input
from .layers import QBatchNorm, QConv1D, QConv2D, QDense
from .merge import QAvgPool, QMerge
from .model import ShimModel
from .quant import Quantizer
from .tables import TABLE_FUNCTIONS, QSoftmax, QTable

L = keras.layers


@dataclass(frozen=True)
class ShimOptions:
    """Options of :func:`quantize_keras` (keyword arguments of the same names)."""

    granularity: str = "element"
    """Activation quantizers: 'element', 'channel' or 'tensor'."""
    weight_granularity: str = "element"
    """Weight and bias quantizers: 'element', 'channel' or 'tensor'."""
    round: str = "RND"
    """Rounding of activation quantizers (any ap_fixed mode: TRN, RND, RND_CONV, ...)."""
    overflow: str = "WRAP"
    """Overflow of activation quantizers: WRAP (integer bits from calibration) or SAT / SAT_SYM (learned)."""
    weight_round: str = "RND"
    f0: float = 6.0
    """Initial fractional bits of activations."""
    i0: float = 2.0
    """Initial integer bits of activations."""
    weight_f0: float = 6.0
    """Initial fractional bits of weights and biases."""
    i_decay: float = 0.01
    """Per-step decay of the running integer bits of WRAP quantizers while training."""
    signed: bool | None = None
    """Sign bit of activation quantizers: None lets calibration choose per element."""
    table_bits: int = 16
    """Largest table input width of tanh / sigmoid / softmax layers."""
    table_kif: tuple[tuple[str, tuple[int, int, int]], ...] = ()
    """Output (k, i, f) per table function, e.g. (('tanh', (1, 0, 10)),)."""
    softmax_exp_kif: tuple[int, int, int] = (0, 1, 8)
    softmax_inv_f: int = 8
    softmax_inv_kif: tuple[int, int, int] = (0, 1, 8)

    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> ShimOptions:
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - valid)
        if unknown:
            raise TypeError(f"quantize_keras: unknown option(s) {unknown}; valid: {sorted(valid)}")
        opts = dict(options)
        if isinstance(opts.get("table_kif"), dict):
            opts["table_kif"] = tuple(opts["table_kif"].items())
        return cls(**opts)


class _Builder:
    """Maps the float model's tensors to shim tensors, node by node."""

    def __init__(self, kg: KGraph, source: Any, opts: ShimOptions) -> None:
        self.kg, self.source, self.opts = kg, source, opts
        self.tensors: dict[int, Any] = {}

    # ------------------------------------------------------------ quantizer configs
    def iq(self, key: int) -> dict[str, Any]:
        o = self.opts
        nonneg = self._nonneg(key)
        return dict(
            granularity=o.granularity,
            round=o.round,
            overflow=o.overflow,
            signed=o.signed,
            k0=0.0 if nonneg else 1.0,
            i0=o.i0,
            f0=o.f0,
            i_decay=o.i_decay,
        )

    def wq(self, granularity: str | None = None) -> dict[str, Any]:
        o = self.opts
        return dict(granularity=granularity or o.weight_granularity, round=o.weight_round, f0=o.weight_f0)

    def _nonneg(self, key: int) -> bool:
        """The tensor comes from relu / sigmoid / softmax, maybe through moves that keep signs."""
        node = self.kg.producer(key)
        while node is not None and len(node.inputs) == 1 and (is_mover(node.layer) or is_identity(node.layer)):
            node = self.kg.producer(node.inputs[0])
        return node is not None and layer_activation(node.layer) in ("relu", "sigmoid", "softmax")

    # ------------------------------------------------------------ building
    def run(self) -> tuple[list[Any], list[Any]]:
        inputs = []
        for key, name, shape in zip(
            self.kg.inputs, self.kg.input_names, (self.kg.shapes[k] for k in self.kg.inputs), strict=True
        ):
            t = keras.Input(shape=shape, name=name, dtype=keras.config.floatx())
            inputs.append(t)
            self.tensors[key] = t
            if not self._input_hoistable(key):
                self.tensors[key] = Quantizer(name=f"{name}_q", **self.iq(key))(t)
        for node in self.kg.nodes:
            outs = self.node(node, [self.tensors[k] for k in node.inputs])
            for key, t in zip(node.outputs, outs, strict=True):
                self.tensors[key] = t
        return inputs, [self.tensors[k] for k in self.kg.outputs]

    def _input_hoistable(self, key: int) -> bool:
        """The input feeds exactly one layer with an input quantizer, maybe through reshapes."""
        while True:
            users = self.kg.consumers(key)
            if len(users) != 1 or key in self.kg.outputs:
                return False
            node, _ = users[0]
            if not carries_type(node.layer):
                return quantizes_input(node.layer)
            key = node.outputs[0]

    def node(self, node: KNode, xs: list[Any]) -> list[Any]:
        layer = node.layer
        cls = type(layer)
        if cls in (L.Dense, L.Conv1D, L.Conv2D):
            return [self.affine(node, xs[0])]
        if cls is L.BatchNormalization:
            return [self.batchnorm(node, xs[0])]
        if cls in (L.Add, L.Subtract, L.Multiply):
            op = {L.Add: "add", L.Subtract: "sub", L.Multiply: "mul"}[cls]
            cfgs = [self.iq(k) for k in node.inputs]
            return [QMerge(op, len(xs), cfgs, name=layer.name)(list(xs))]
        if cls in (L.AveragePooling1D, L.AveragePooling2D, L.GlobalAveragePooling1D, L.GlobalAveragePooling2D):
            return [self.avgpool(node, xs[0])]
        act = layer_activation(layer)
        if cls in (L.Activation, L.Softmax) and act in ("tanh", "sigmoid", "softmax"):
            return [self.table(act, node.inputs[0], xs[0], layer.name)]
        return [self.clone(layer)(*xs) if len(xs) == 1 else self.clone(layer)(list(xs))]

    def clone(self, layer: Any) -> Any:
        cfg = layer.get_config()
        cfg["dtype"] = keras.config.floatx()
        return type(layer).from_config(cfg)

    def affine(self, node: KNode, x: Any) -> Any:
        layer = node.layer
        act = layer_activation(layer)
        fused = act if act in ("relu", "linear") else "linear"
        common = dict(
            activation=fused,
            use_bias=layer.use_bias,
            iq=self.iq(node.inputs[0]),
            kq=self.wq(),
            bq=self.wq(),
            name=layer.name,
        )
        if isinstance(layer, L.Dense):
            q = QDense(layer.units, **common)
        else:
            cls = QConv1D if isinstance(layer, L.Conv1D) else QConv2D
            q = cls(layer.filters, layer.kernel_size, strides=layer.strides, padding=layer.padding, **common)
        y = q(x)
        q.kernel.assign(np.asarray(layer.kernel))
        if layer.use_bias:
            q.bias.assign(np.asarray(layer.bias))
        if fused != act:
            y = self.table(act, None, y, f"{layer.name}_{act}")
        return y

    def batchnorm(self, node: KNode, x: Any) -> Any:
        layer = node.layer
        q = QBatchNorm(
            axis=-1,
            momentum=layer.momentum,
            epsilon=layer.epsilon,
            center=layer.center,
            scale=layer.scale,
            iq=self.iq(node.inputs[0]),
            sq=self.wq("element"),
            oq=self.wq("element"),
            name=layer.name,
        )
        y = q(x)
        for name in ("gamma", "beta", "moving_mean", "moving_variance"):
            src = getattr(layer, name, None)
            if src is not None:
                getattr(q, name).assign(np.asarray(src))
        return y

    def avgpool(self, node: KNode, x: Any) -> Any:
        layer = node.layer
        is_global = isinstance(layer, (L.GlobalAveragePooling1D, L.GlobalAveragePooling2D))
        rank = 1 if isinstance(layer, (L.AveragePooling1D, L.GlobalAveragePooling1D)) else 2
        pool = None if is_global else tuple(layer.pool_size)
        strides = None if is_global else tuple(layer.strides)
        padding = "valid" if is_global else layer.padding
        return QAvgPool(rank, pool, strides, padding, is_global, iq=self.iq(node.inputs[0]), name=layer.name)(x)

    def table(self, func: str, key: int | None, x: Any, name: str) -> Any:
        o = self.opts
        iq = self.iq(key) if key is not None else dict(self.iq(-1), k0=1.0)
        if func == "softmax":
            return QSoftmax(
                exp_kif=o.softmax_exp_kif,
                inv_f=o.softmax_inv_f,
                inv_kif=o.softmax_inv_kif,
                table_bits=o.table_bits,
                iq=iq,
                name=name,
            )(x)
        out = dict(o.table_kif).get(func, TABLE_FUNCTIONS[func][2])
        return QTable(func, out_kif=out, table_bits=o.table_bits, iq=iq, name=name)(x)


def quantize_keras(model: Any, beta: float = 0.0, **options: Any) -> ShimModel:
    """The quantized twin of ``model``: trainable with ``compile`` / ``fit``; loss gets ``beta * EBOPs``.

    >>> qmodel = quantize_keras(model, beta=1e-5)                    # doctest: +SKIP
    >>> qmodel.compile("adam", "mse"); qmodel.fit(x, y, epochs=10)    # doctest: +SKIP
    >>> g = hgqir.from_keras(qmodel, calibration=x)                   # doctest: +SKIP
    """
    opts = ShimOptions.from_kwargs(options)
    if isinstance(model, ShimModel):
        raise HgqirError(f"model {model.name!r} is already a shim; train it, or quantize the float model")
    kg = walk(model)
    calls: dict[int, int] = {}
    for node in kg.nodes:
        calls[id(node.layer)] = calls.get(id(node.layer), 0) + 1

    def reason(node: KNode) -> str | None:
        if calls[id(node.layer)] > 1:
            return f"the layer is shared ({calls[id(node.layer)]} calls); the shim needs one call per layer"
        return float_reason(node)

    check_supported(kg, reason)
    inputs, outputs = _Builder(kg, model, opts).run()
    return ShimModel(
        inputs=inputs if len(inputs) > 1 else inputs[0],
        outputs=outputs if len(outputs) > 1 else outputs[0],
        beta=beta,
        name=f"{model.name}_shim",
    )
