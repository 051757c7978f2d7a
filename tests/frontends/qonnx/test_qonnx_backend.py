"""A Brevitas CNN exported to QONNX, imported, optimised and compiled as Vitis HLS C++ (slow):
the C simulation equals qonnx's executor on the original file bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from brevitas_models import cnn, export, inputs, reference

import hgqir

pytestmark = pytest.mark.slow


def test_brevitas_cnn_through_passes_and_vitis(tmp_path: Path) -> None:
    net, shape = cnn()
    path = export(net, shape, tmp_path / "cnn.onnx")
    g = hgqir.from_qonnx(path)
    hgqir.PassManager.parse("canonicalize,infer-bitwidth,prune-zero-bits,dce").run(g)
    x = inputs(shape, seed=7)
    want = reference(path, x)
    assert np.array_equal(g.run(x.astype(np.float64)), want)
    prj = hgqir.emit(g, "vitis", tmp_path / "prj").compile()
    got = prj.predict(x.astype(np.float64))
    bad = np.argwhere(got != want)
    assert not len(bad), f"{len(bad)} mismatches, first at {bad[0]}"
    result = prj.csim()
    assert result.passed and result.samples > 0, result.output


def test_brevitas_residual_through_hls4ml_and_rtl(tmp_path: Path) -> None:
    """The other two backends: hls4ml's compiled model and the Verilog RTL under Verilator."""
    from brevitas_models import residual

    net, shape = residual()
    path = export(net, shape, tmp_path / "res.onnx")
    g = hgqir.from_qonnx(path)
    hgqir.PassManager.parse("canonicalize,infer-bitwidth,prune-zero-bits,dce").run(g)
    x = inputs(shape, seed=3).astype(np.float64)
    want = reference(path, x.astype(np.float32))
    for backend, options in (("hls4ml", {}), ("verilog", {"pipeline": "auto"})):
        got = hgqir.emit(g, backend, tmp_path / backend, **options).compile().predict(x)
        bad = np.argwhere(got != want)
        assert not len(bad), f"{backend}: {len(bad)} mismatches, first at {bad[0]}"
