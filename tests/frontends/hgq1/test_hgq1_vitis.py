"""An imported HGQ v1 model through the passes and the vitis backend, bit-exact.

The raw conv model (conv, ReLU, max pool, flatten, dense) is imported with its calibration data,
optimized, emitted as a Vitis HLS project and compiled with g++: the C simulation equals the
interpreter and HGQ v1's own float64 proxy prediction on every output, including inputs three
times beyond the calibration range (half of the fixture's test inputs), where the WRAP
quantizers overflow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import hgqir

pytest.importorskip("h5py")
pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_raw_hgq1_conv_through_passes_and_vitis(tmp_path: Path) -> None:
    with np.load(FIXTURES / "conv.npz") as d:
        calibration, x, y64 = d["calibration"], d["x"].astype(np.float64), d["y64"]
    g = hgqir.from_hgq1(FIXTURES / "conv.h5", calibration=calibration)
    hgqir.PassManager.parse("infer-bitwidth,prune-zero-bits,dce").run(g)
    want = g.run(x)
    assert np.array_equal(want, y64), "the passes kept HGQ v1's results"
    got = hgqir.emit(g, "vitis", tmp_path / "prj").compile().predict(x)
    bad = np.argwhere(got != want)
    assert not len(bad), f"{len(bad)} mismatches, first at {bad[0]}"


def test_proxy_hgq1_mlp_through_hls4ml_and_rtl(tmp_path: Path) -> None:
    """The proxy MLP (exact, no calibration) through hls4ml and the Verilog RTL, bit-exact."""
    with np.load(FIXTURES / "mlp.npz") as d:
        x, y64 = d["x"].astype(np.float64), d["y64"]
    g = hgqir.from_hgq1(FIXTURES / "mlp_proxy.h5")
    hgqir.PassManager.parse("infer-bitwidth,prune-zero-bits,dce").run(g)
    assert np.array_equal(g.run(x), y64)
    for backend, options in (("hls4ml", {}), ("verilog", {"pipeline": 2})):
        got = hgqir.emit(g, backend, tmp_path / backend, **options).compile().predict(x)
        bad = np.argwhere(got != y64)
        assert not len(bad), f"{backend}: {len(bad)} mismatches, first at {bad[0]}"
