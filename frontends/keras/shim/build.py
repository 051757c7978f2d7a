"""``quantize_keras``: build the shim (quantized twin) of a float Keras model.

Every layer that computes with its inputs' values (dense, conv, batchnorm, merges, average
pooling, tables, softmax) becomes a shim layer with its own input quantizer; layers that only
move or select values (relu, max pooling, reshapes, concatenation, dropout) are cloned as they
are. tanh / sigmoid / softmax fused into a dense or conv layer become a separate table layer.
Each model input gets a quantizer: the first layer's input quantizer when the input feeds one
such layer (possibly through reshapes), else a standalone :class:`Quantizer`.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from hgqir.errors import HgqirError

from ...calibration import NONNEG_TABLES
from ..graph import KGraph, KNode, check_supported, walk
from ..support import (
    AFFINE,
    DEPTHWISE,
    LEAKY,
    MERGE_OPS,
    SEPARABLE,
    TABLES,
    carries_type,
    float_reason,
    is_identity,
    is_mover,
    is_prelu,
    layer_activation,
    prelu_slope,
    quantizes_input,
)
from .layers import QBatchNorm, QConv1D, QConv2D, QDense, QDepthwiseConv1D, QDepthwiseConv2D, QPReLU
from .merge import QAvgPool, QMerge, QOutput
from .model import ShimModel
from .options import KerasConfig, activation_kwargs, keras_config, weight_kwargs
from .quant import Quantizer
from .tables import TABLE_FUNCTIONS, QSoftmax, QTable

L = keras.layers


class _Builder:
    """Maps the float model's tensors to shim tensors, node by node."""

    def __init__(self, kg: KGraph, source: Any, config: KerasConfig) -> None:
        self.kg, self.source, self.config = kg, source, config
        self.tensors: dict[int, Any] = {}

    # ------------------------------------------------------------ quantizer configs
    def iq(self, key: int, layer: str) -> dict[str, Any]:
        """Input quantizer of ``layer`` for tensor ``key``: the ``input`` place when the tensor is
        a model input (maybe through reshapes), else ``activation``; ``layer``'s override applies."""
        cfg = self.config.shim.for_layer(layer)
        from_input = key >= 0 and self._from_model_input(key)
        qc = cfg.input if from_input else cfg.activation
        return dict(activation_kwargs(qc, cfg.i_decay, self._nonneg(key)), sign_guard=not from_input)

    def wq(self, layer: str, place: str = "weight", granularity: str | None = None) -> dict[str, Any]:
        return weight_kwargs(getattr(self.config.shim.for_layer(layer), place), granularity)

    def _from_model_input(self, key: int) -> bool:
        node = self.kg.producer(key)
        while node is not None and len(node.inputs) == 1 and carries_type(node.layer):
            node = self.kg.producer(node.inputs[0])
        return node is None

    def _nonneg(self, key: int) -> bool:
        """The tensor comes from relu / sigmoid / softmax, maybe through moves that keep signs."""
        node = self.kg.producer(key)
        while node is not None and len(node.inputs) == 1 and (is_mover(node.layer) or is_identity(node.layer)):
            node = self.kg.producer(node.inputs[0])
        return node is not None and layer_activation(node.layer) in ("relu", *NONNEG_TABLES)

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
                self.tensors[key] = Quantizer(name=f"{name}_q", **self.iq(key, name))(t)
        for node in self.kg.nodes:
            outs = self.node(node, [self.tensors[k] for k in node.inputs])
            for key, t in zip(node.outputs, outs, strict=True):
                self.tensors[key] = t
        return inputs, [self._output(k) for k in self.kg.outputs]

    def _output(self, key: int) -> Any:
        """A model output leaves through the ``output`` place's quantizer, unless a quantizer or a
        table layer produced it (its values already have their type), as in the PyTorch shim."""
        t = self.tensors[key]
        producer = getattr(t, "_keras_history", None)
        if producer is not None and isinstance(producer[0], (Quantizer, QOutput, QTable, QSoftmax)):
            return t
        node = self.kg.producer(key)
        name = node.layer.name if node is not None else self.kg.input_names[self.kg.inputs.index(key)]
        cfg = self.config.shim.for_layer(name)
        qc = cfg.output_config
        iq = activation_kwargs(qc, cfg.i_decay, self._nonneg(key))
        return QOutput(iq=iq, name=f"{name}_out_q")(t)

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
        if cls in AFFINE:
            return [self.affine(node, xs[0])]
        if cls is L.BatchNormalization:
            return [self.batchnorm(node, xs[0])]
        if cls in MERGE_OPS:
            op = MERGE_OPS[cls]
            cfgs = [self.iq(k, layer.name) for k in node.inputs]
            return [QMerge(op, len(xs), cfgs, name=layer.name)(list(xs))]
        if cls in (L.AveragePooling1D, L.AveragePooling2D, L.GlobalAveragePooling1D, L.GlobalAveragePooling2D):
            return [self.avgpool(node, xs[0])]
        if is_prelu(layer):
            return [self.prelu(layer, node.inputs[0], xs[0], layer.name)]
        act = layer_activation(layer)
        if cls in (L.Activation, L.Softmax, L.ELU) and act in TABLES:
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
            iq=self.iq(node.inputs[0], layer.name),
            kq=self.wq(layer.name),
            bq=self.wq(layer.name, "bias"),
            name=layer.name,
        )
        one_d = isinstance(layer, (L.Conv1D, L.DepthwiseConv1D, L.SeparableConv1D))
        if isinstance(layer, (*DEPTHWISE, *SEPARABLE)):
            x = self.depthwise(node, x, common)
            if isinstance(layer, DEPTHWISE):
                return self._activation_after(layer, act, fused, x)
            common["iq"] = dict(self.iq(-1, layer.name), k0=1.0)  # the depthwise output, quantized
        if isinstance(layer, L.Dense):
            q = QDense(layer.units, **common)
        elif isinstance(layer, SEPARABLE):
            q = (QConv1D if one_d else QConv2D)(layer.filters, 1, **common)  # the pointwise convolution
        else:
            cls = QConv1D if one_d else QConv2D
            q = cls(
                layer.filters,
                layer.kernel_size,
                strides=layer.strides,
                padding=layer.padding,
                dilation_rate=layer.dilation_rate,
                **common,
            )
        y = q(x)
        q.kernel.assign(np.asarray(layer.pointwise_kernel if isinstance(layer, SEPARABLE) else layer.kernel))
        if layer.use_bias:
            q.bias.assign(np.asarray(layer.bias))
        return self._activation_after(layer, act, fused, y)

    def _activation_after(self, layer: Any, act: str | None, fused: str, y: Any) -> Any:
        """An activation a quantized layer cannot fuse, as its own shim layer after it."""
        if act == LEAKY:
            return self.prelu(None, None, y, f"{layer.name}_{act}")
        if fused != act:
            return self.table(act, None, y, f"{layer.name}_{act}")  # type: ignore[arg-type]
        return y

    def depthwise(self, node: KNode, x: Any, common: dict[str, Any]) -> Any:
        """The depthwise part of a DepthwiseConv or SeparableConv layer (the latter: no bias,
        no activation; its pointwise part follows)."""
        layer = node.layer
        separable = isinstance(layer, SEPARABLE)
        cls = QDepthwiseConv1D if isinstance(layer, (L.DepthwiseConv1D, L.SeparableConv1D)) else QDepthwiseConv2D
        opts = dict(common)
        if separable:
            opts.update(activation="linear", use_bias=False, name=f"{layer.name}_dw")
        q = cls(
            layer.kernel_size,
            strides=layer.strides,
            padding=layer.padding,
            depth_multiplier=layer.depth_multiplier,
            **opts,
        )
        y = q(x)
        q.kernel.assign(np.asarray(layer.depthwise_kernel if separable else layer.kernel))
        if not separable and layer.use_bias:
            q.bias.assign(np.asarray(layer.bias))
        return y

    def prelu(self, layer: Any, key: int | None, x: Any, name: str) -> Any:
        """LeakyReLU-like layers (one constant slope, the ``constant`` place) and PReLU (learned
        slopes, the ``weight`` place) as :class:`QPReLU`; ``layer`` None: a fused leaky_relu."""
        iq = self.iq(key, name) if key is not None else dict(self.iq(-1, name), k0=1.0)
        slope = prelu_slope(layer) if layer is not None else prelu_slope(L.Activation(LEAKY))
        if slope is not None:
            q = QPReLU((1,), slope, False, iq=iq, aq=self.wq(name, "constant", "tensor"), name=name)
            return q(x)
        shape = tuple(int(d) for d in layer.alpha.shape)
        q = QPReLU(shape, 0.0, True, iq=iq, aq=self.wq(name), name=name)
        y = q(x)
        q.alpha.assign(np.asarray(layer.alpha))
        return y

    def batchnorm(self, node: KNode, x: Any) -> Any:
        layer = node.layer
        q = QBatchNorm(
            axis=-1,
            momentum=layer.momentum,
            epsilon=layer.epsilon,
            center=layer.center,
            scale=layer.scale,
            iq=self.iq(node.inputs[0], layer.name),
            sq=self.wq(layer.name, "weight", "element"),
            oq=self.wq(layer.name, "bias", "element"),
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
        y = QAvgPool(rank, pool, strides, padding, is_global, iq=self.iq(node.inputs[0], layer.name), name=layer.name)(
            x
        )
        if is_global and getattr(layer, "keepdims", False):
            y = L.Reshape((1,) * rank + (int(y.shape[-1]),), name=f"{layer.name}_keepdims")(y)
        return y

    def table(self, func: str, key: int | None, x: Any, name: str) -> Any:
        cfg = self.config.shim.for_layer(name)
        iq = self.iq(key, name) if key is not None else dict(self.iq(-1, name), k0=1.0)
        if func in ("softmax", "log_softmax"):
            return QSoftmax(
                exp_kif=(0, 1, cfg.softmax_exp_f),
                inv_f=cfg.softmax_sum_f,
                inv_kif=(0, 1, cfg.softmax_inv_f),
                table_bits=cfg.table_bits,
                iq=iq,
                name=name,
                log=func == "log_softmax",
            )(x)
        k, i, _ = TABLE_FUNCTIONS[func][2]
        out = dict(self.config.table_kif).get(func, (k, i, cfg.table_f))
        return QTable(func, out_kif=out, table_bits=cfg.table_bits, iq=iq, name=name)(x)


def quantize_keras(model: Any, beta: float | None = None, **options: Any) -> ShimModel:
    """The quantized twin of ``model``: trainable with ``compile`` / ``fit``; loss gets ``beta * EBOPs``.

    ``config=hgqir.ShimConfig(...)`` and/or its fields as keywords set the quantizers (the
    keywords of older releases keep working: see :mod:`.options`); ``beta`` overrides
    ``config.beta``; a ``config.beta_schedule`` sets beta per epoch in ``fit``.

    >>> qmodel = quantize_keras(model, beta=1e-5)                    # doctest: +SKIP
    >>> qmodel.compile("adam", "mse"); qmodel.fit(x, y, epochs=10)    # doctest: +SKIP
    >>> g = hgqir.from_keras(qmodel, calibration=x)                   # doctest: +SKIP
    """
    config = keras_config(options, beta)
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
    _check_overrides(config, kg)
    inputs, outputs = _Builder(kg, model, config).run()
    shim = ShimModel(
        inputs=inputs if len(inputs) > 1 else inputs[0],
        outputs=outputs if len(outputs) > 1 else outputs[0],
        beta=config.shim.beta_at(0),
        resource_scale=config.shim.resource_scale(),
        name=f"{model.name}_shim",
    )
    shim.beta_schedule = config.shim.beta_schedule
    return shim


def _check_overrides(config: KerasConfig, kg: KGraph) -> None:
    """An override pattern that matches no layer (or input) name is a typo: say so."""
    from dataclasses import replace

    names = [node.layer.name for node in kg.nodes] + list(kg.input_names)
    cfg = config.shim
    unmatched = []
    for pattern, over in cfg.overrides.items():
        probe = replace(cfg, overrides={pattern: over})
        if not any(probe.for_layer(n) is not probe for n in names):
            unmatched.append(pattern)
    if unmatched:
        raise HgqirError(f"quantize_keras: override(s) {unmatched} match no layer; layers: {names}")
