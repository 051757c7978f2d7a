"""Whole networks, wide types, random graphs and build variants through g++, exact against ``g.run``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from op_graphs import cnn, mlp, random_graph, wide
from vitis_graphs import check, wild_inputs

pytestmark = pytest.mark.slow
N = 300


def test_mlp_with_softmax(tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    g = mlp(rng)
    check(g, wild_inputs(g, rng, N), tmp_path, csim=True)


def test_cnn(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    g = cnn(rng)
    check(g, wild_inputs(g, rng, N), tmp_path)


def test_wide_types_and_unusual_integer_bits(tmp_path: Path) -> None:
    g, big = wide()
    prj = check(g, big, tmp_path, csim=True)
    assert prj.outputs[0].words > 1  # the dense result really is wider than 62 bits


@pytest.mark.parametrize("seed", [0, 1])
def test_random_graphs(tmp_path: Path, seed: int) -> None:
    g = random_graph(seed)
    check(g, wild_inputs(g, np.random.default_rng(seed), N), tmp_path)


def test_ap_int_simulation_and_reuse_factor(tmp_path: Path) -> None:
    """Integers simulated as ap_int (as synthesis sees them) give the same bits; a reuse factor
    adds the pragmas and changes no result."""
    rng = np.random.default_rng(13)
    g = mlp(rng)
    prj = check(g, wild_inputs(g, rng, 100), tmp_path, cflags=("-DHGQ_AP_INT_ONLY",), reuse={"dense0": 4, "*": 2})
    top = (tmp_path / "firmware" / "myproject.cpp").read_text()
    assert "#pragma HLS PIPELINE II=4" in top
    assert (
        "#pragma HLS ALLOCATION operation instances=mul limit=" in (tmp_path / "firmware" / "myproject.cpp").read_text()
    )
    assert prj.options.reuse_for("dense1") == 2
