"""Building the IR of an HGQ v1 model, layer by layer, and the Keras 2 layers both file kinds share.

:class:`Builder` walks an :class:`~.h5model.H5Model` in topological order and calls one
converter per layer class. A *dialect* (the proxy reader, :mod:`.proxy`, or the raw reader,
:mod:`.raw`) supplies the converters of its own layers, a support check, and the quantizer each
model input meets first: the graph input takes that quantizer's type and modes, so ``g.run``
converts external floats exactly as the model's first quantizer does. Plain Keras 2 layers
(dense, convolutions, pools, reshapes, merges, ReLU) are the same in both kinds and live here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from hgqir.errors import UnsupportedOpError
from hgqir.fixed import FixedType, OverflowMode, RoundMode
from hgqir.ir import Graph, OpKind, Value

from .h5model import H5Layer, H5Model, Shape


@dataclass(frozen=True)
class QuantSpec:
    """What a quantizer does to a tensor: its per-element type and its modes."""

    type: FixedType
    round: RoundMode
    overflow: OverflowMode


Converter = Callable[["Builder", H5Layer, list[Value]], Value]


@dataclass(frozen=True)
class Dialect:
    """The layers one kind of HGQ v1 file adds to plain Keras 2 layers."""

    name: str
    converters: dict[str, Converter]
    reason: Callable[[H5Layer], str | None]
    """Why a layer of this dialect cannot be imported exactly (None: it can)."""
    input_spec: Callable[[Builder, H5Layer, Shape], QuantSpec | None]
    """The quantizer a layer applies first to a model input of this shape (None: it applies none)."""


class Builder:
    """Builds a :class:`Graph` from an :class:`H5Model`; ``data``: calibration inputs, if any."""

    def __init__(self, model: H5Model, dialect: Dialect, data: list[np.ndarray] | None = None, **options: Any) -> None:
        self.model = model
        self.dialect = dialect
        self.data = data
        self.options = options
        self.g = Graph(model.name)
        self.values: dict[str, Value] = {}

    def run(self) -> Graph:
        check_supported(self.model, self.dialect)
        for name in self.model.inputs:
            spec = self._input_spec(name)
            self.values[name] = self.g.input(name, spec.type, spec.round, spec.overflow)
        for layer in self.model.layers:
            if layer.cls == "InputLayer":
                continue
            convert = self.dialect.converters.get(layer.cls) or PLAIN[layer.cls]
            self.values[layer.name] = convert(self, layer, [self.values[n] for n in layer.inputs])
        for name in self.model.outputs:
            self.g.output(self.values[name], name=name)
        self.g.meta["frontend"] = f"hgq1-{self.dialect.name}"
        self.g.verify()
        return self.g

    def _input_spec(self, name: str) -> QuantSpec:
        users = self.model.consumers(name)
        shape = self.model.input_shapes[name]
        if len(users) == 1 and name not in self.model.outputs:
            spec = self.dialect.input_spec(self, users[0], shape)
            if spec is not None:
                return spec
        raise UnsupportedOpError(
            f"model input {name!r} does not go straight into one quantizer, so hgqir cannot give the graph "
            "input a fixed-point type; HGQ v1 models start with an HQuantize (or Signature) layer",
            [f"{u.name} ({u.cls})" for u in users],
        )

    # ------------------------------------------------------------ helpers for converters
    def quant(self, x: Value, spec: QuantSpec, name: str) -> Value:
        """``x`` quantized as ``spec`` says; no op when ``x`` already has exactly that type."""
        if x.type == spec.type:
            return x
        attrs = {"round": spec.round, "overflow": spec.overflow}
        return self.g.add(OpKind.QUANT, [x], attrs, types=[spec.type], name=name).result

    def const(self, values: np.ndarray, name: str) -> Value:
        """A constant with the tightest exact per-element type of its values."""
        v = np.asarray(values, dtype=np.float64)
        return self.g.const(v, FixedType.covering(v, v, exact_f(v)).canonical(), name=name)

    def add(self, kind: OpKind, operands: list[Value], name: str, **attrs: Any) -> Value:
        return self.g.add(kind, operands, attrs, name=name).result

    @contextmanager
    def scratch(self) -> Iterator[None]:
        """Ops added inside the block are erased at its end (for values needed only on calibration data)."""
        n = len(self.g.ops)
        try:
            yield
        finally:
            for op in reversed(self.g.ops[n:]):
                self.g.erase(op)

    def evaluate(self, v: Value) -> np.ndarray:
        """``v`` on the calibration data, computed exactly by the graph built so far."""
        assert self.data is not None
        out = self.g.output(v, name="__calibration__")
        try:
            return np.asarray(self.g.run(*self.data), dtype=np.float64)
        finally:
            self.g.erase(out)


def exact_f(v: np.ndarray) -> np.ndarray:
    """Per element, the fewest fractional bits that hold the float value exactly (0 for 0)."""
    m, e = np.frexp(np.asarray(v, dtype=np.float64))
    mant = np.abs(np.ldexp(m, 53)).astype(np.int64)  # exact 53-bit integer mantissa
    low = mant & -mant  # lowest set bit
    tz = np.where(mant == 0, 53, np.log2(np.maximum(low, 1)).astype(np.int64))
    return np.where(mant == 0, 0, 53 - e - tz).astype(np.int64)


def check_supported(model: H5Model, dialect: Dialect) -> None:
    """Raise one :class:`UnsupportedOpError` listing every layer that cannot be imported."""
    problems = []
    for layer in model.layers:
        if layer.cls == "InputLayer":
            continue
        if layer.cls in dialect.converters:
            reason = dialect.reason(layer)
        elif layer.cls in PLAIN:
            reason = plain_reason(layer)
        else:
            reason = f"{layer.cls} is not supported by the HGQ v1 importer ({dialect.name} file)"
        if reason is not None:
            problems.append(f"{layer.name} ({layer.cls}): {reason}")
    if problems:
        raise UnsupportedOpError(
            f"model {model.name!r} has {len(problems)} unsupported layer(s); nothing was imported", problems
        )


# ---------------------------------------------------------------- plain Keras 2 layers
def same_pads(n: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding of one spatial axis (the extra pixel goes after)."""
    total = max((-(-n // s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def window_attrs(cfg: dict[str, Any], spatial: Shape, kernel: Shape, stride_key: str = "strides") -> dict[str, Any]:
    stride = tuple(int(s) for s in cfg[stride_key] or kernel)
    if cfg.get("padding", "valid") == "same":
        pads = [same_pads(n, k, s) for n, k, s in zip(spatial, kernel, stride, strict=True)]
    else:
        pads = [(0, 0)] * len(spatial)
    return {"stride": stride, "pad": pads}


def affine(b: Builder, layer: H5Layer, x: Value, kernel: np.ndarray, bias: np.ndarray | None) -> Value:
    """A dense or convolution layer with constant (already quantized) ``kernel`` and ``bias``."""
    operands = [x, b.const(kernel, f"{layer.name}_w")]
    if bias is not None:
        operands.append(b.const(bias, f"{layer.name}_b"))
    if kernel.ndim == 2:
        return b.add(OpKind.DENSE, operands, layer.name)
    kind = OpKind.CONV1D if kernel.ndim == 3 else OpKind.CONV2D
    return b.add(kind, operands, layer.name, **window_attrs(layer.config, x.shape[:-1], kernel.shape[:-2]))


def _keras_affine(b: Builder, layer: H5Layer, xs: list[Value]) -> Value:
    bias = layer.weight("bias") if layer.config.get("use_bias", True) else None
    y = affine(b, layer, xs[0], layer.weight("kernel"), bias)
    return b.add(OpKind.RELU, [y], f"{layer.name}_relu") if layer.config.get("activation") == "relu" else y


def _activation(b: Builder, layer: H5Layer, xs: list[Value]) -> Value:
    if layer.cls == "Activation" and layer.config.get("activation") == "linear":
        return xs[0]
    return b.add(OpKind.RELU, xs, layer.name)


def _pool(b: Builder, layer: H5Layer, xs: list[Value]) -> Value:
    pool = tuple(int(p) for p in layer.config["pool_size"])
    attrs = window_attrs(layer.config, xs[0].shape[:-1], pool)
    kind = {1: OpKind.MAXPOOL1D, 2: OpKind.MAXPOOL2D}[len(pool)]
    if "Average" in layer.cls:
        reason = avgpool_reason(layer, xs[0].shape)
        if reason:
            raise UnsupportedOpError(f"model {b.model.name!r}: layer {layer.name} ({layer.cls}): {reason}")
        kind = {1: OpKind.AVGPOOL1D, 2: OpKind.AVGPOOL2D}[len(pool)]
        attrs["count_pad"] = False
    return b.add(kind, xs, layer.name, pool=pool, **attrs)


def _reshape(b: Builder, layer: H5Layer, xs: list[Value]) -> Value:
    x = xs[0]
    if layer.cls.endswith("Flatten"):
        shape: tuple[int, ...] = (int(np.prod(x.shape)),)
    else:
        target = [int(d) for d in layer.config["target_shape"]]
        if -1 in target:
            known = int(np.prod([d for d in target if d != -1]))
            target[target.index(-1)] = int(np.prod(x.shape)) // known
        shape = tuple(target)
    return b.add(OpKind.RESHAPE, [x], layer.name, shape=shape)


def _permute(b: Builder, layer: H5Layer, xs: list[Value]) -> Value:
    return b.add(OpKind.TRANSPOSE, xs, layer.name, perm=[int(d) - 1 for d in layer.config["dims"]])


def _concat(b: Builder, layer: H5Layer, xs: list[Value]) -> Value:
    axis = int(layer.config.get("axis", -1))
    axis = axis - 1 if axis > 0 else len(xs[0].shape) + axis
    return b.add(OpKind.CONCAT, xs, layer.name, axis=axis)


def merge_add(b: Builder, xs: list[Value], name: str) -> Value:
    """Left-to-right sum of ``xs`` (exact, so the order does not change the value)."""
    y = xs[0]
    for n, v in enumerate(xs[1:]):
        y = b.add(OpKind.ADD, [y, v], name if n == len(xs) - 2 else f"{name}_{n}")
    return y


def _add(b: Builder, layer: H5Layer, xs: list[Value]) -> Value:
    return merge_add(b, xs, layer.name)


def _identity(b: Builder, layer: H5Layer, xs: list[Value]) -> Value:
    return xs[0]


def _pool_counts(layer: H5Layer, shape: Shape) -> np.ndarray:
    """How many input elements each output of a pooling layer averages ('same' pads excluded)."""
    pool = [int(p) for p in layer.config["pool_size"]]
    stride = [int(s) for s in layer.config["strides"] or pool]
    counts = np.ones(1, dtype=np.int64)
    for n, k, s in zip(shape, pool, stride, strict=True):
        if layer.config.get("padding", "valid") == "same":
            p0, _ = same_pads(n, k, s)
            starts = np.arange(-(-n // s)) * s - p0
        else:
            starts = np.arange((n - k) // s + 1) * s
        axis = np.minimum(starts + k, n) - np.maximum(starts, 0)
        counts = np.multiply.outer(counts, axis)
    return counts


def plain_reason(layer: H5Layer) -> str | None:
    """Why a plain Keras 2 layer is not exact in hgqir (None: it is)."""
    cfg = layer.config
    if layer.cls in ("Dense", "Activation") and cfg.get("activation", "linear") not in ("linear", "relu"):
        return f"activation {cfg['activation']!r} is applied in float; only relu and linear are exact"
    if layer.cls.startswith("Conv"):
        if cfg.get("activation", "linear") not in ("linear", "relu"):
            return f"activation {cfg['activation']!r} is applied in float; only relu and linear are exact"
        return conv_reason(cfg)
    if layer.cls == "ReLU" and (cfg.get("max_value") is not None or cfg.get("negative_slope") or cfg.get("threshold")):
        return "only the plain ReLU (no max_value, slope or threshold) is supported"
    if "Pooling" in layer.cls and cfg.get("data_format", "channels_last") != "channels_last":
        return "only channels_last pooling is supported"
    return None


def avgpool_reason(layer: H5Layer, in_shape: Shape) -> str | None:
    counts = _pool_counts(layer, in_shape[:-1])
    if np.any(counts & (counts - 1)):
        return "a float average over a window whose size is not a power of two is not exact"
    return None


def conv_reason(cfg: dict[str, Any]) -> str | None:
    if cfg.get("data_format", "channels_last") != "channels_last":
        return "only channels_last convolutions are supported"
    if any(int(d) != 1 for d in cfg.get("dilation_rate", [1])) or int(cfg.get("groups", 1)) != 1:
        return "dilated or grouped convolutions are not supported"
    if cfg.get("padding") not in ("valid", "same"):
        return f"padding {cfg.get('padding')!r} is not supported"
    return None


PLAIN: dict[str, Converter] = {
    "Dense": _keras_affine,
    "Conv1D": _keras_affine,
    "Conv2D": _keras_affine,
    "ReLU": _activation,
    "Activation": _activation,
    "MaxPooling1D": _pool,
    "MaxPooling2D": _pool,
    "AveragePooling1D": _pool,
    "AveragePooling2D": _pool,
    "Flatten": _reshape,
    "Reshape": _reshape,
    "Permute": _permute,
    "Concatenate": _concat,
    "Add": _add,
    "Dropout": _identity,
}
"""Keras 2 layer class -> converter, for layers that are the same in proxy and raw files."""
