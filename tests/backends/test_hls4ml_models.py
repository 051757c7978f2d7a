"""hls4ml backend on whole imported models: HGQ2 Keras and PyTorch, through the frontends.

The HGQ2 model has what HGQ2 users build: a convolution, max and average pools, a flatten,
dense layers, batchnorm, a function table and a softmax, all with HGQ2's per-element
quantizers calibrated by ``trace_minmax``. The compiled hls4ml project must equal the
interpreter on inputs far beyond the calibration data, and hls4ml's own conversion of the same
Keras model (HGQ2's route) must agree too. The PyTorch model is channels first: the project
must take and return the module's own layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hgqir

pytest.importorskip("hls4ml")
pytest.importorskip("hgq")
pytestmark = pytest.mark.slow


def hgq2_model() -> Any:
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

    keras.utils.set_random_seed(3)
    inp = keras.layers.Input((8, 8, 2))
    h = QConv2D(4, 3, padding="same", activation="relu")(inp)
    h = QMaxPooling2D(2)(h)
    h = QAveragePooling2D(2)(h)
    h = keras.layers.Flatten()(h)
    h = QDense(10)(h)
    h = QBatchNormalization()(h)
    h = QUnaryFunctionLUT(keras.ops.tanh, allow_heterogeneous_table=False)(h)  # hls4ml needs one table
    h = QSoftmax()(QDense(5)(h))
    model = keras.Model(inp, h)
    trace_minmax(model, np.random.default_rng(0).normal(size=(256, 8, 8, 2)).astype("float32"))
    return model


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, hgqir.Graph]:
    model = hgq2_model()
    g = hgqir.from_keras(model)
    prj = hgqir.emit(g, "hls4ml", tmp_path_factory.mktemp("hgq2"))
    return model, prj.compile(), g


def test_hgq2_model_is_exact(imported: tuple[Any, Any, hgqir.Graph]) -> None:
    _, prj, g = imported
    x = np.random.default_rng(1).normal(size=(200, 8, 8, 2)) * 4  # 4x the calibration range
    got, want = prj.predict(x), g.run(x)
    assert got.shape == want.shape == (200, 5)
    assert np.array_equal(got, want)


def test_hgq2_own_hls4ml_conversion_agrees(imported: tuple[Any, Any, hgqir.Graph], tmp_path: Path) -> None:
    from hls4ml.converters import convert_from_keras_model

    model, prj, g = imported
    theirs = convert_from_keras_model(
        model,
        output_dir=str(tmp_path),
        backend="Vitis",
        io_type="io_parallel",
        hls_config={"Model": {"Precision": "fixed<16,6>", "ReuseFactor": 1}},
    )
    theirs.compile()
    x = np.random.default_rng(2).normal(size=(100, 8, 8, 2))
    assert np.array_equal(np.asarray(theirs.predict(np.ascontiguousarray(x))).reshape(100, 5), prj.predict(x))


def torch_graph() -> hgqir.Graph:
    """A PyTorch CNN (channels first) through an hgqir shim and ``hgqir.from_torch``."""
    import torch

    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 3, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(3)
            self.pool = torch.nn.AvgPool2d(2)
            self.fc = torch.nn.Linear(27, 4)

        def forward(self, x: Any) -> Any:
            x = self.pool(torch.relu(self.bn(self.conv(x))))
            return torch.softmax(self.fc(torch.flatten(x, 1)), -1)

    example = torch.randn(1, 2, 6, 6)
    shim = hgqir.quantize_torch(Net().eval(), example)
    return hgqir.from_torch(shim, example, calibration=torch.randn(256, 2, 6, 6))


def test_torch_model_is_exact_in_its_own_layout(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    g = torch_graph()
    prj = hgqir.emit(g, "hls4ml", tmp_path).compile()
    x = np.random.default_rng(0).normal(size=(100, 2, 6, 6)) * 3  # channels first, like the module
    got, want = prj.predict(x), g.run(x)
    assert got.shape == want.shape == (100, 4)
    assert np.array_equal(got, want)
