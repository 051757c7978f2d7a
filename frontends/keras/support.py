"""Which Keras layers hgqir understands, and why it rejects the others.

Layers are matched by exact class (a subclass may change ``call``, so it counts as custom).
A ``*_reason`` function returns None for a supported layer and otherwise a short reason that
goes into the one :class:`~hgqir.errors.UnsupportedOpError` listing every offending layer.
"""

from __future__ import annotations

from typing import Any

import keras

from .graph import KNode

L = keras.layers

KERAS_SMOOTH = {
    "elu": "elu",
    "selu": "selu",
    "silu": "silu",
    "gelu": "gelu",
    "softplus": "softplus",
    "mish": "mish",
    "hard_silu": "hard_swish",
    "hard_sigmoid": "hard_sigmoid",
    "relu6": "relu6",
    "hard_tanh": "hard_tanh",
}
"""Keras activation name -> table function of :mod:`hgqir.frontends.activations` (Keras 3's
definitions: ``gelu`` is the erf form, ``swish`` / ``hard_swish`` serialise as ``silu`` /
``hard_silu``)."""
TABLES = ("tanh", "sigmoid", *KERAS_SMOOTH, "softmax", "log_softmax")
"""Activations that become tables (``lut``, ``softmax``) over their quantized input."""
LEAKY = "leaky_relu"
"""The piecewise-linear activation (``keras.activations.leaky_relu``, slope 0.2): the ``prelu`` op."""
LEAKY_SLOPE = 0.2
ACTIVATIONS = ("relu", "linear", LEAKY, *TABLES)
"""Activation functions a float model may use (fused or as a layer)."""

RESHAPERS = (L.Flatten, L.Reshape, L.Permute)
"""Pure data movement with one input: a value's type moves with it."""
PLACERS = (
    L.ZeroPadding1D,
    L.ZeroPadding2D,
    L.Cropping1D,
    L.Cropping2D,
    L.UpSampling1D,
    L.UpSampling2D,
    L.RepeatVector,
)
"""Layers that pad, crop or repeat values (exact; see ``importer/movers.py``)."""
MOVERS = (
    *RESHAPERS,
    L.MaxPooling1D,
    L.MaxPooling2D,
    L.GlobalMaxPooling1D,
    L.GlobalMaxPooling2D,
    L.Concatenate,
    *PLACERS,
)
"""Layers that only move or select values (exact for any type)."""
IDENTITIES = (
    L.Dropout,
    L.SpatialDropout1D,
    L.SpatialDropout2D,
    L.GaussianNoise,
    L.GaussianDropout,
    L.ActivityRegularization,
)
"""Layers that are the identity at inference."""
DEPTHWISE = (L.DepthwiseConv1D, L.DepthwiseConv2D)
SEPARABLE = (L.SeparableConv1D, L.SeparableConv2D)
AFFINE = (L.Dense, L.Conv1D, L.Conv2D, *DEPTHWISE, *SEPARABLE)
AVGPOOLS = (L.AveragePooling1D, L.AveragePooling2D, L.GlobalAveragePooling1D, L.GlobalAveragePooling2D)
MERGES = (L.Add, L.Subtract, L.Multiply, L.Maximum, L.Minimum, L.Average)
MERGE_OPS = {L.Add: "add", L.Subtract: "sub", L.Multiply: "mul", L.Maximum: "max", L.Minimum: "min", L.Average: "avg"}
"""Merge layer -> shim merge op (``QMerge.op``)."""


def is_mover(layer: Any) -> bool:
    return type(layer) in MOVERS


def is_identity(layer: Any) -> bool:
    return type(layer) in IDENTITIES or (type(layer) is L.Activation and layer_activation(layer) == "linear")


def carries_type(layer: Any) -> bool:
    """Pure data movement with one input and no selection: a quantizer's type can move across it."""
    return type(layer) in RESHAPERS or is_identity(layer)


def is_prelu(layer: Any) -> bool:
    """LeakyReLU, PReLU, ReLU with only a negative slope, ``Activation('leaky_relu')``: the prelu op."""
    cls = type(layer)
    if cls in (L.LeakyReLU, L.PReLU):
        return True
    if cls is L.ReLU:
        return layer.max_value is None and float(layer.threshold) == 0 and float(layer.negative_slope) != 0
    return cls is L.Activation and layer_activation(layer) == LEAKY


def prelu_slope(layer: Any) -> float | None:
    """The one slope of a LeakyReLU-like layer (None for PReLU's learned slopes)."""
    cls = type(layer)
    if cls is L.PReLU:
        return None
    if cls is L.Activation:
        return LEAKY_SLOPE
    return float(layer.negative_slope)


def quantizes_input(layer: Any) -> bool:
    """A float-model layer whose shim twin starts with its own input quantizer."""
    cls = type(layer)
    if cls in (*AFFINE, L.BatchNormalization, *MERGES, *AVGPOOLS, L.ELU) or is_prelu(layer):
        return True
    return cls in (L.Activation, L.Softmax) and layer_activation(layer) in TABLES


def layer_activation(layer: Any) -> str | None:
    """Name of the activation a layer applies (fused or as its job), None if it has none."""
    if type(layer) is L.Softmax:
        return "softmax"
    if type(layer) is L.ReLU:
        return "relu"
    if type(layer) is L.ELU:
        return "elu"
    act = getattr(layer, "activation", None)
    if act is None or not callable(act):
        return None
    name = keras.activations.serialize(act)
    return name if isinstance(name, str) else getattr(act, "__name__", str(act))


def _activation_reason(layer: Any, allowed: tuple[str, ...]) -> str | None:
    act = layer_activation(layer)
    if act not in allowed:
        return f"activation {act!r} is not supported (supported: {', '.join(allowed)})"
    return None


def conv_reason(layer: Any) -> str | None:
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        return "only data_format='channels_last' is supported"
    dilated = any(d != 1 for d in getattr(layer, "dilation_rate", (1,)))
    if dilated and type(layer) in (*DEPTHWISE, *SEPARABLE):
        return "dilated depthwise / separable convolutions are not supported"
    if dilated and any(s != 1 for s in getattr(layer, "strides", (1,))):
        return "a dilated convolution with strides (Keras refuses it too)"
    if getattr(layer, "groups", 1) != 1:
        return "grouped convolutions are not supported"
    if layer.padding not in ("valid", "same", "causal"):
        return f"padding {layer.padding!r} is not supported"
    if type(layer) in (*DEPTHWISE, *SEPARABLE) and layer.padding == "causal":
        return "causal padding of a depthwise / separable convolution is not supported"
    return None


def pool_reason(layer: Any) -> str | None:
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        return "only data_format='channels_last' is supported"
    return None


def relu_reason(layer: Any) -> str | None:
    if layer.max_value is not None or float(layer.negative_slope) != 0 or float(layer.threshold) != 0:
        return "only the plain ReLU (no max_value, negative_slope or threshold) is supported"
    return None


def batchnorm_reason(layer: Any) -> str | None:
    axis = layer.axis if isinstance(layer.axis, int) else (layer.axis[0] if len(layer.axis) == 1 else None)
    try:
        last = len(layer.input.shape) - 1
    except (AttributeError, ValueError):
        last = None
    if axis is None or (axis != -1 and axis != last):
        return "BatchNormalization must normalize the last (channel) axis"
    return None


def movers_reason(layer: Any) -> str | None:
    """Reason for data-movement, identity, relu and softmax-axis checks (None when fine)."""
    cls = type(layer)
    if cls is L.ReLU:
        return relu_reason(layer)
    if cls in (L.MaxPooling1D, L.MaxPooling2D, L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, *AVGPOOLS):
        return pool_reason(layer)
    if cls in (L.UpSampling1D, L.UpSampling2D) and getattr(layer, "interpolation", "nearest") != "nearest":
        return f"UpSampling with interpolation={layer.interpolation!r}; only 'nearest' is exact"
    if cls in PLACERS and getattr(layer, "data_format", "channels_last") != "channels_last":
        return "only data_format='channels_last' is supported"
    if cls in MOVERS or cls in IDENTITIES:
        return None
    return "not supported"


def float_reason(node: KNode) -> str | None:
    """Why a layer of a float model cannot become a shim layer (None: it can)."""
    layer = node.layer
    cls = type(layer)
    if cls in AFFINE:
        return _activation_reason(layer, ACTIVATIONS) or (conv_reason(layer) if cls is not L.Dense else None)
    if cls is L.BatchNormalization:
        return batchnorm_reason(layer)
    if cls is L.Activation:
        return _activation_reason(layer, ACTIVATIONS)
    if cls is L.Softmax:
        return None if layer.axis in (-1,) else "softmax must run over the last axis"
    if cls is L.Average and len(node.inputs) & (len(node.inputs) - 1):
        return f"Average of {len(node.inputs)} inputs: only a power-of-two count divides exactly"
    if cls in MERGES or is_prelu(layer):
        return None
    if cls is L.ELU:
        return None if float(layer.alpha) == 1.0 else f"ELU with alpha={float(layer.alpha)}; only alpha=1 is supported"
    return movers_reason(layer)
