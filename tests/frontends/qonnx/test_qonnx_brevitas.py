"""Brevitas models with fixed-point quantizers, exported to QONNX and imported: the graph
equals qonnx's own executor exactly; exported again, the QONNX file gives the same numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from brevitas_models import BATCH, MODELS, export, inputs, reference

import hgqir


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, tuple[int, ...]]]:
    folder = tmp_path_factory.mktemp("brevitas")
    out = {}
    for name, make in MODELS.items():
        net, shape = make()
        out[name] = (export(net, shape, folder / f"{name}.onnx"), shape)
    net, shape = MODELS["cnn"]()
    out["cnn-dynamo"] = (export(net, shape, folder / "cnn_dynamo.onnx", dynamo=True), shape)
    return out


def assert_equal(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    bad = np.argwhere(got != want)
    assert not len(bad), f"{len(bad)} mismatches, first at {bad[0]}: {got[tuple(bad[0])]} != {want[tuple(bad[0])]}"


@pytest.mark.parametrize("name", [*MODELS, "cnn-dynamo"])
def test_import_equals_qonnx_executor(exported: Any, name: str) -> None:
    path, shape = exported[name]
    g = hgqir.from_qonnx(path)
    x = inputs(shape, seed=3)
    want = reference(path, x)
    assert np.any(want != 0)
    assert_equal(g.run(x.astype(np.float64)), want)


def test_types_are_the_quantizers(exported: Any) -> None:
    """Brevitas' 8-bit fixed-point quantizers become 8-bit types, one per tensor or channel."""
    g = hgqir.from_qonnx(exported["cnn"][0])
    x = g.inputs[0]
    assert x.type.scalar() == (1, 0, 7)  # Int8ActPerTensorFixedPoint: signed 8 bits, scale 2**-7
    assert g.ops[0].attrs["round"] is hgqir.RoundMode.RND_CONV
    assert g.ops[0].attrs["overflow"] is hgqir.OverflowMode.SAT
    conv = g.ops_of(hgqir.OpKind.CONV2D)[0]
    w = conv.operands[1].type
    assert np.all(w.width == 8) and w.shape == (3, 3, 2, 4)
    relu_q = [op for op in g.ops_of(hgqir.OpKind.QUANT) if op.result.type.scalar()[0] == 0]
    assert [op.result.type.scalar() for op in relu_q] == [(0, 0, 8)]  # Uint8ActPerTensorFixedPoint
    assert [op.kind for op in g.ops if op.kind is hgqir.OpKind.MAXPOOL2D]


@pytest.mark.parametrize("name", ["cnn", "residual", "cnn-dynamo"])
def test_round_trip(exported: Any, name: str, tmp_path: Path) -> None:
    path, shape = exported[name]
    g = hgqir.from_qonnx(path)
    again = tmp_path / "again.onnx"
    hgqir.to_qonnx(g, again, batch_size=BATCH)
    g2 = hgqir.from_qonnx(again)
    x = inputs(shape, seed=4)
    y = g.run(x.astype(np.float64))
    assert_equal(g2.run(x.astype(np.float64)), y)
    assert_equal(reference(again, x), y)
    assert [op.result.type for op in g2.ops_of(hgqir.OpKind.QUANT)] == [
        op.result.type for op in g.ops_of(hgqir.OpKind.QUANT)
    ]


def test_float_scales_are_refused(tmp_path: Path) -> None:
    """Brevitas' default quantizers have float scales: one error names every such node."""
    import brevitas.nn as qnn
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(qnn.QuantIdentity(), qnn.QuantLinear(4, 3, bias=False), qnn.QuantReLU())
    path = export(net, (4,), tmp_path / "float.onnx")
    with pytest.raises(hgqir.UnsupportedOpError) as info:
        hgqir.from_qonnx(path)
    text = str(info.value)
    assert "not a power of two" in text and "Int8WeightPerTensorFixedPoint" in text
    assert len(info.value.items) == 2, text  # weight and relu (the input's default scale is 2**-7)
    assert all(item.startswith("Quant node") for item in info.value.items)
