"""Each supported Keras layer, alone and in small models: shim in float64 == interpreter, bit for bit.

Bit widths are randomized per element (some pruned), integer bits come from calibration, and
inputs four times the calibration range check wrap-around and saturation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import keras
import numpy as np
import pytest
from keras_testlib import L, check_shim, data, float64_scope, single


@pytest.fixture(autouse=True)
def _float64() -> Iterator[None]:
    yield from float64_scope()


def _relu(x: object) -> object:
    return L.Activation("relu")(x)


LAYERS: dict[str, tuple[Callable[[], object], tuple[int, ...], Callable | None]] = {
    "dense_relu": (lambda: L.Dense(6, activation="relu"), (5,), None),
    "dense_linear_nobias": (lambda: L.Dense(6, use_bias=False), (5,), None),
    "dense_tanh": (lambda: L.Dense(6, activation="tanh"), (5,), None),
    "dense_sigmoid": (lambda: L.Dense(6, activation="sigmoid"), (5,), None),
    "dense_softmax": (lambda: L.Dense(6, activation="softmax"), (5,), None),
    "dense_rank3": (lambda: L.Dense(4), (3, 5), None),
    "conv1d_valid": (lambda: L.Conv1D(3, 3), (9, 2), None),
    "conv1d_same_stride": (lambda: L.Conv1D(3, 3, strides=2, padding="same", activation="relu"), (9, 2), None),
    "conv1d_causal": (lambda: L.Conv1D(3, 2, padding="causal"), (7, 2), None),
    "conv2d_valid": (lambda: L.Conv2D(3, 3, activation="relu"), (6, 6, 2), None),
    "conv2d_same_stride": (lambda: L.Conv2D(2, (3, 2), strides=(2, 1), padding="same"), (7, 6, 2), None),
    "conv2d_tanh": (lambda: L.Conv2D(2, 2, activation="tanh"), (4, 4, 1), None),
    "batchnorm": (lambda: L.BatchNormalization(), (4,), None),
    "batchnorm_2d": (lambda: L.BatchNormalization(center=False), (3, 3, 2), None),
    "relu_layer": (lambda: L.ReLU(), (5,), lambda x: L.Dense(5)(x)),
    "activation_relu": (lambda: L.Activation("relu"), (5,), lambda x: L.Dense(5)(x)),
    "activation_linear": (lambda: L.Activation("linear"), (5,), lambda x: L.Dense(5)(x)),
    "activation_tanh": (lambda: L.Activation("tanh"), (5,), None),
    "activation_sigmoid": (lambda: L.Activation("sigmoid"), (5,), None),
    "activation_softmax": (lambda: L.Activation("softmax"), (5,), None),
    "softmax_layer": (lambda: L.Softmax(), (3, 4), None),
    "maxpool1d": (lambda: L.MaxPooling1D(2), (7, 2), lambda x: L.Conv1D(2, 2)(x)),
    "maxpool2d_same": (lambda: L.MaxPooling2D(3, strides=2, padding="same"), (5, 5, 2), lambda x: L.Conv2D(2, 1)(x)),
    "avgpool1d": (lambda: L.AveragePooling1D(3, padding="same"), (7, 2), None),
    "avgpool2d": (lambda: L.AveragePooling2D(2), (4, 4, 2), None),
    "avgpool2d_same": (lambda: L.AveragePooling2D(3, strides=2, padding="same"), (5, 5, 1), None),
    "global_max1d": (lambda: L.GlobalMaxPooling1D(), (5, 3), lambda x: L.Conv1D(3, 2)(x)),
    "global_max2d": (lambda: L.GlobalMaxPooling2D(), (4, 4, 2), lambda x: L.Conv2D(2, 1)(x)),
    "global_avg1d": (lambda: L.GlobalAveragePooling1D(), (5, 3), None),
    "global_avg2d": (lambda: L.GlobalAveragePooling2D(), (4, 4, 2), None),
    "flatten": (lambda: L.Flatten(), (3, 2, 2), lambda x: L.Conv2D(2, 1)(x)),
    "reshape": (lambda: L.Reshape((-1, 2)), (6,), lambda x: L.Dense(6)(x)),
    "permute": (lambda: L.Permute((2, 1)), (3, 4), lambda x: L.Dense(4)(x)),
    "dropout": (lambda: L.Dropout(0.5), (4,), lambda x: L.Dense(4)(x)),
    "relu_on_input": (lambda: L.ReLU(), (5,), None),
    "dense_after_global_max_on_input": (lambda: L.Dense(2), (4, 3), lambda x: L.GlobalMaxPooling1D()(x)),
    "dense_after_flatten_on_input": (lambda: L.Dense(2), (2, 3), lambda x: L.Flatten()(x)),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_alone_is_exact(name: str) -> None:
    make, shape, before = LAYERS[name]
    model = single(make(), shape, before)
    if name.startswith("batchnorm"):
        bn = model.layers[-1]
        rng = np.random.default_rng(1)
        bn.moving_mean.assign(rng.normal(size=bn.moving_mean.shape))
        bn.moving_variance.assign(rng.uniform(0.2, 3.0, size=bn.moving_variance.shape))
    check_shim(model, data(shape))


@pytest.mark.parametrize("merge", ["add", "subtract", "multiply", "concatenate"])
def test_merges_are_exact(merge: str) -> None:
    inp = keras.Input((4,))
    a, b, c = L.Dense(4)(inp), L.Dense(4, activation="relu")(inp), L.Dense(4)(inp)
    layer = {"add": L.Add, "subtract": L.Subtract, "multiply": L.Multiply, "concatenate": L.Concatenate}[merge]()
    y = layer([a, b] if merge == "subtract" else [a, b, c])
    _, g = check_shim(keras.Model(inp, y), data((4,)))
    assert len(g.inputs) == 1


def test_two_inputs_and_two_outputs() -> None:
    x1, x2 = keras.Input((3,), name="left"), keras.Input((3,), name="right")
    s = L.Add()([x1, x2])
    model = keras.Model([x1, x2], [L.Dense(2)(s), L.ReLU()(x1)])
    _, g = check_shim(model, [data((3,)), data((3,), seed=1)])
    assert [v.name for v in g.inputs] == ["left", "right"]
    assert len(g.outputs) == 2


def test_small_cnn_is_exact() -> None:
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            L.Conv2D(4, 3, activation="relu"),
            L.MaxPooling2D(2),
            L.BatchNormalization(),
            L.Conv2D(4, 2, padding="same", activation="relu"),
            L.Flatten(),
            L.Dropout(0.1),
            L.Dense(10, activation="softmax"),
        ]
    )
    check_shim(model, data((8, 8, 1), n=32), granularity="channel", weight_granularity="channel")


def test_small_mlp_tensor_granularity_and_sat() -> None:
    model = keras.Sequential([keras.Input((6,)), L.Dense(8, activation="relu"), L.Dense(3)])
    check_shim(model, data((6,)), granularity="tensor", weight_granularity="tensor", overflow="SAT", round="TRN")


@pytest.mark.parametrize("rnd,ovf", [("RND_CONV", "WRAP"), ("TRN", "SAT_SYM"), ("RND_ZERO", "SAT")])
def test_rounding_and_overflow_modes(rnd: str, ovf: str) -> None:
    model = keras.Sequential([keras.Input((5,)), L.Dense(4, activation="relu"), L.Dense(3)])
    check_shim(model, data((5,)), round=rnd, overflow=ovf, weight_round=rnd)


def test_nested_sequential_is_inlined() -> None:
    inner = keras.Sequential([keras.Input((4,)), L.Dense(3, activation="relu")], name="inner")
    inp = keras.Input((4,))
    model = keras.Model(inp, L.Dense(2)(inner(inp)))
    _, g = check_shim(model, data((4,)))
    assert {op.kind.value for op in g.ops} >= {"dense", "relu"}
