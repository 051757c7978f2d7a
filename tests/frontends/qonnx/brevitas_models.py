"""Small Brevitas models with fixed-point (power-of-two scale) quantizers, exported to QONNX.

Shared by the QONNX frontend tests. Inputs are made on a grid finer than the input quantizer's
(2**-9 against its 2**-7) and up to twice its range, so that rounding ties and saturation happen.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

BATCH = 48
"""Batch of the example input the models are exported with (and of the reference runs)."""


def brevitas() -> Any:
    pytest.importorskip("qonnx")
    return pytest.importorskip("brevitas")


def inputs(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """float32 data on the 2**-9 grid in [-2, 2): exact in every float format."""
    m = np.random.default_rng(seed).integers(-1024, 1024, size=(BATCH, *shape))
    return np.ldexp(m, -9).astype(np.float32)


def _layers() -> dict[str, Any]:
    brevitas()
    import brevitas.nn as qnn
    from brevitas.quant import Int16Bias
    from brevitas.quant.fixed_point import (
        Int8ActPerTensorFixedPoint,
        Int8WeightPerChannelFixedPoint,
        Int8WeightPerTensorFixedPoint,
        Uint8ActPerTensorFixedPoint,
    )

    return {
        # quant tensors carry the input scale that the biases' Int16Bias is derived from
        "inp": lambda: qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True),
        "relu": lambda: qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=True),
        "act": lambda: qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True),
        "linear": lambda i, o: qnn.QuantLinear(
            i, o, bias=True, weight_quant=Int8WeightPerTensorFixedPoint, bias_quant=Int16Bias
        ),
        "conv": lambda i, o: qnn.QuantConv2d(
            i, o, 3, padding=1, bias=True, weight_quant=Int8WeightPerChannelFixedPoint, bias_quant=Int16Bias
        ),
    }


def mlp() -> tuple[Any, tuple[int, ...]]:
    import torch

    q = _layers()
    torch.manual_seed(0)
    net = torch.nn.Sequential(q["inp"](), q["linear"](12, 16), q["relu"](), q["linear"](16, 4))
    return net, (12,)


def cnn() -> tuple[Any, tuple[int, ...]]:
    """Conv (per-channel weight scales), relu, max pooling, flatten, linear."""
    import torch

    q = _layers()
    torch.manual_seed(1)
    net = torch.nn.Sequential(
        q["inp"](), q["conv"](2, 4), q["relu"](), torch.nn.MaxPool2d(2), torch.nn.Flatten(), q["linear"](36, 3)
    )
    return net, (2, 6, 6)


def residual() -> tuple[Any, tuple[int, ...]]:
    """``relu(linear(x)) + x`` quantized, then a linear layer: an Add of two Quant outputs."""
    import torch

    q = _layers()

    class Residual(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp, self.fc1, self.relu = q["inp"](), q["linear"](10, 10), q["relu"]()
            self.mix, self.fc2 = q["act"](), q["linear"](10, 3)

        def forward(self, x: Any) -> Any:
            x = self.inp(x)
            return self.fc2(self.mix(_plain(self.relu(self.fc1(x))) + _plain(x)))

    torch.manual_seed(2)
    return Residual(), (10,)


def _plain(t: Any) -> Any:
    """The float tensor of a Brevitas quant tensor (export traces plain tensors already)."""
    return getattr(t, "value", t)


MODELS = {"mlp": mlp, "cnn": cnn, "residual": residual}


def export(net: Any, shape: tuple[int, ...], path: Path, dynamo: bool = False) -> Path:
    """The QONNX file of ``net`` exported by Brevitas with a batch of :data:`BATCH`.

    ``dynamo=False``: Brevitas' TorchScript exporter (0.5 s a model); ``True``: torch.export
    (Brevitas' default with recent PyTorch, about 3 s a model; its graphs differ in details).
    """
    import torch
    from brevitas.export import export_qonnx

    net.eval()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(net, torch.from_numpy(inputs(shape)), str(path), dynamo=dynamo)
    return path


def reference(path: Path | Any, x: np.ndarray) -> np.ndarray:
    """qonnx's own executor on ``x``: the reference the import must equal exactly."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    mw = ModelWrapper(path if not isinstance(path, Path) else str(path)).transform(InferShapes())
    out = execute_onnx(mw, {mw.graph.input[0].name: x.astype(np.float32)})
    return np.asarray(out[mw.graph.output[0].name], dtype=np.float64)
