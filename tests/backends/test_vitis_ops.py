"""Every op of the first op set through g++: the compiled C simulation equals ``g.run`` bit for bit.

The graphs (``op_graphs.py``) are shared with the other backends' tests.
"""

from __future__ import annotations

from pathlib import Path

import op_graphs
import pytest
from vitis_graphs import check

pytestmark = pytest.mark.slow


def test_elementwise_data_movement_and_affine(tmp_path: Path) -> None:
    check(*op_graphs.elementwise(), tmp_path, csim=True)


def test_quant_every_rounding_and_overflow_mode(tmp_path: Path) -> None:
    check(*op_graphs.quant_modes(), tmp_path)


def test_input_conversion_modes(tmp_path: Path) -> None:
    check(*op_graphs.input_modes(), tmp_path)


def test_conv_and_pools(tmp_path: Path) -> None:
    check(*op_graphs.conv_pools(), tmp_path, csim=True)


def test_tables(tmp_path: Path) -> None:
    check(*op_graphs.tables(), tmp_path, csim=True)


def test_edge_widths(tmp_path: Path) -> None:
    check(*op_graphs.edges(), tmp_path)
