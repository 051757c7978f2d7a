"""The Keras layers hgqir imports, for the support matrix (see :mod:`hgqir.frontends.support`);
``support.py`` is what decides, this list documents it and its examples are imported by the
consistency test."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from ..support import Support

L = keras.layers
DENSE = (4,)
IMAGE = (6, 6, 2)
SEQUENCE = (8, 2)
Example = Callable[[], tuple[Any, tuple[int, ...]]]


def _model(shape: tuple[int, ...], *layers: Any) -> keras.Model:
    inp = keras.Input(shape)
    x = inp
    for layer in layers:
        x = layer(x)
    return keras.Model(inp, x)


def _after_dense(layer: Callable[[], Any]) -> Example:
    return lambda: (_model(DENSE, L.Dense(4), layer()), DENSE)


def _after_conv(layer: Callable[[], Any], nd: int = 2) -> Example:
    shape = IMAGE if nd == 2 else SEQUENCE
    conv = L.Conv2D if nd == 2 else L.Conv1D
    return lambda: (_model(shape, conv(2, 3), layer()), shape)


def _merge(cls: Any) -> Example:
    def make() -> tuple[Any, tuple[int, ...]]:
        inp = keras.Input(DENSE)
        return keras.Model(inp, cls()([L.Dense(4)(inp), L.Dense(4)(inp)])), DENSE

    return make


_SMOOTH = ("elu", "selu", "silu / swish", "gelu", "softplus", "mish", "hard_silu / hard_swish", "hard_sigmoid")

SUPPORT: tuple[Support, ...] = (
    Support("Dense", ("dense",), "on the last axis of any rank", lambda: (_model(DENSE, L.Dense(3)), DENSE)),
    Support("Conv1D", ("conv1d",), "valid, same, causal; no groups", _after_conv(lambda: L.Flatten(), 1)),
    Support("Conv2D", ("conv2d",), "valid, same; no groups", _after_conv(lambda: L.Flatten())),
    Support(
        "Conv1D / Conv2D with dilation_rate",
        ("conv1d",),
        "the convolution with the zero-stuffed kernel (zero weights cost nothing); strides 1",
        lambda: (_model(SEQUENCE, L.Conv1D(2, 3, dilation_rate=2, padding="same")), SEQUENCE),
        True,
    ),
    Support(
        "DepthwiseConv1D",
        ("depthwise_conv1d",),
        "any depth_multiplier; valid, same",
        lambda: (_model(SEQUENCE, L.DepthwiseConv1D(3, depth_multiplier=2)), SEQUENCE),
        True,
    ),
    Support(
        "DepthwiseConv2D",
        ("depthwise_conv2d",),
        "any depth_multiplier; valid, same",
        lambda: (_model(IMAGE, L.DepthwiseConv2D(3)), IMAGE),
        True,
    ),
    Support(
        "SeparableConv1D",
        ("depthwise_conv1d", "conv1d"),
        "depthwise, a learned quantizer, the 1x1 convolution",
        lambda: (_model(SEQUENCE, L.SeparableConv1D(3, 3)), SEQUENCE),
        True,
    ),
    Support(
        "SeparableConv2D",
        ("depthwise_conv2d", "conv2d"),
        "depthwise, a learned quantizer, the 1x1 convolution",
        lambda: (_model(IMAGE, L.SeparableConv2D(3, 3)), IMAGE),
        True,
    ),
    Support("BatchNormalization", ("batchnorm",), "last axis", _after_dense(L.BatchNormalization)),
    Support("ReLU, Activation('relu'), fused relu", ("relu",), "", _after_dense(L.ReLU)),
    Support(
        "LeakyReLU, ReLU(negative_slope), Activation('leaky_relu'), fused leaky_relu",
        ("prelu",),
        "the slope a quantized constant",
        _after_dense(lambda: L.LeakyReLU(0.1)),
        True,
    ),
    Support(
        "PReLU", ("prelu",), "slopes are weights (learned bitwidths); any shared_axes", _after_dense(L.PReLU), True
    ),
    Support("ELU layer", ("lut",), "alpha=1", _after_dense(L.ELU), True),
    Support(
        "Activation / fused sigmoid, tanh",
        ("lut",),
        "table over the quantized input",
        _after_dense(lambda: L.Activation("tanh")),
    ),
    *(
        Support(
            f"Activation / fused {name}",
            ("lut",),
            "exact table",
            _after_dense(lambda n=name: L.Activation(n.split(" ")[0])),
            True,
        )
        for name in _SMOOTH
    ),
    Support(
        "Activation / fused relu6, hard_tanh",
        ("lut",),
        "exact table",
        _after_dense(lambda: L.Activation("relu6")),
        True,
    ),
    Support("Softmax, Activation('softmax')", ("softmax",), "last axis", _after_dense(L.Softmax)),
    Support(
        "Activation('log_softmax'), fused log_softmax",
        ("softmax",),
        "softmax with log = true",
        _after_dense(lambda: L.Activation("log_softmax")),
        True,
    ),
    Support("MaxPooling1D", ("maxpool1d",), "", _after_conv(L.MaxPooling1D, 1)),
    Support("MaxPooling2D", ("maxpool2d",), "", _after_conv(L.MaxPooling2D)),
    Support("AveragePooling1D", ("avgpool1d",), "", _after_conv(lambda: L.AveragePooling1D(2), 1)),
    Support("AveragePooling2D", ("avgpool2d",), "", _after_conv(lambda: L.AveragePooling2D(2))),
    Support("GlobalMaxPooling1D/2D", ("global_maxpool",), "", _after_conv(L.GlobalMaxPooling2D)),
    Support("GlobalAveragePooling1D/2D", ("global_avgpool",), "", _after_conv(L.GlobalAveragePooling1D, 1)),
    Support(
        "GlobalMax/GlobalAveragePooling1D/2D(keepdims=True)",
        ("global_avgpool", "reshape"),
        "",
        _after_conv(lambda: L.GlobalAveragePooling2D(keepdims=True)),
        True,
    ),
    Support("Add", ("add",), "two or more inputs", _merge(L.Add)),
    Support("Subtract", ("sub",), "", _merge(L.Subtract)),
    Support("Multiply", ("mul",), "", _merge(L.Multiply)),
    Support("Maximum", ("maximum",), "two or more inputs", _merge(L.Maximum), True),
    Support("Minimum", ("minimum",), "two or more inputs", _merge(L.Minimum), True),
    Support("Average", ("add", "mul"), "a power-of-two number of inputs (the sum times 1/n)", _merge(L.Average), True),
    Support("Concatenate", ("concat",), "", _merge(L.Concatenate)),
    Support("Flatten, Reshape", ("reshape",), "", _after_conv(L.Flatten)),
    Support("Permute", ("transpose",), "", _after_conv(lambda: L.Permute((2, 1, 3)))),
    Support(
        "ZeroPadding1D/2D",
        ("concat",),
        "concatenated zero-width constants (hls4ml: ZeroPadding layers)",
        _after_conv(lambda: L.ZeroPadding2D(((1, 0), (2, 1)))),
        True,
    ),
    Support("Cropping1D/2D", ("slice",), "", _after_conv(lambda: L.Cropping1D((1, 2)), 1), True),
    Support(
        "UpSampling1D/2D",
        ("reshape", "concat"),
        "interpolation='nearest'",
        _after_conv(lambda: L.UpSampling2D((2, 1))),
        True,
    ),
    Support("RepeatVector", ("reshape", "concat"), "", _after_dense(lambda: L.RepeatVector(3)), True),
    Support(
        "Dropout, SpatialDropout1D/2D, GaussianNoise, GaussianDropout, ActivityRegularization",
        (),
        "the identity at inference",
        _after_dense(lambda: L.Dropout(0.5)),
    ),
)
"""Every Keras layer hgqir imports from a float or shim model."""
