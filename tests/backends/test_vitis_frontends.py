"""Imported models through the vitis backend: an HGQ2 Keras network and a PyTorch CNN shim.

The compiled C simulation must equal ``g.run`` bit for bit on data far beyond the calibration
range (so wrap and saturation happen in every quantizer).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from vitis_graphs import check

import hgqir

pytestmark = pytest.mark.slow


def hgq2_cnn() -> Any:
    """Conv, max and average pools, flatten, dense, batchnorm, a function table and a softmax."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    pytest.importorskip("hgq")
    import keras
    from hgq.layers import (
        QAveragePooling2D,
        QBatchNormalization,
        QConv2D,
        QDense,
        QMaxPooling2D,
        QSoftmax,
        QUnaryFunctionLUT,
    )
    from hgq.utils import trace_minmax

    keras.utils.set_random_seed(5)
    inp = keras.layers.Input((8, 8, 2))
    h = QConv2D(4, 3, padding="same", activation="relu")(inp)
    h = QAveragePooling2D(2)(QMaxPooling2D(2)(h))
    h = QBatchNormalization()(QDense(10)(keras.layers.Flatten()(h)))
    h = QUnaryFunctionLUT(keras.ops.tanh)(h)
    model = keras.Model(inp, QSoftmax()(QDense(5)(h)))
    trace_minmax(model, np.random.default_rng(0).normal(size=(256, 8, 8, 2)).astype("float32"))
    return model


def test_hgq2_keras_model(tmp_path: Path) -> None:
    g = hgqir.from_keras(hgq2_cnn())
    x = np.random.default_rng(1).normal(size=(300, 8, 8, 2)) * 6
    check(g, [x], tmp_path)


def test_pytorch_cnn_shim(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(48, 6),
        nn.ReLU(),
        nn.Linear(6, 3),
    )
    x = torch.randn(64, 1, 8, 8)
    qmod = hgqir.quantize_torch(net, x)
    g = hgqir.from_torch(qmod, x, calibration=x)
    data = np.random.default_rng(2).normal(size=(300, 1, 8, 8)) * 5  # channels-first, as the model takes it
    check(g, [data], tmp_path)
