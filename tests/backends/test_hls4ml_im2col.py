"""Compact im2col code of hls4ml convolutions (backends/hls4ml/im2col_code.py), without compiling.

Both forms the backend writes — the per-element copies HLS synthesis sees and the index table
C simulation reads — must copy exactly what hls4ml's own generator copies, element by element,
on padded and strided convolutions in 1D and 2D. (test_hls4ml.py compiles these graphs and
compares the results with the interpreter.)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import op_graphs
import pytest

pytest.importorskip("hls4ml")

from hgqir.backends.hls4ml import to_hls_model  # noqa: E402
from hgqir.backends.hls4ml.im2col_code import CONV_CLASSES  # noqa: E402

Copies = dict[tuple[int, int, int], str]
"""(partition, pixel, window element) -> what is copied: "0" or "data[n]"."""


def hls4ml_copies(layer: Any) -> Copies:
    """What hls4ml's own im2col generator writes for ``layer``."""
    a, be = layer.get_attr, layer.model.config.backend
    shape = layer.get_input_variable().shape
    if CONV_CLASSES[layer.class_name] == 2:
        code = be.generate_conv2d_line_buffer_fn(
            a("index"),
            a("n_partitions"),
            *shape,
            kernel=(a("filt_height"), a("filt_width")),
            stride=(a("stride_height"), a("stride_width")),
            pad=(a("pad_top"), a("pad_bottom"), a("pad_left"), a("pad_right")),
        )
    else:
        code = be.generate_conv1d_line_buffer_fn(
            a("index"),
            a("n_partitions"),
            *shape,
            kernel=a("filt_width"),
            stride=a("stride_width"),
            pad=(a("pad_left"), a("pad_right")),
        )
    return statement_copies(code)


def statement_copies(code: str) -> Copies:
    out: Copies = {}
    part = -1
    for line in code.splitlines():
        if m := re.match(r"\s*if \(partition == +(\d+)\)", line):
            part = int(m.group(1))
        for pixel, j, value in re.findall(r"buffer\[(\d+)\]\[(\d+)\] = +([^;]+);", line):
            out[(part, int(pixel), int(j))] = value.strip()
    return out


def table_copies(code: str) -> Copies:
    """The C-simulation table ``source[partition][pixel][j]`` read as copies (-1: zero)."""
    body = code.split("static const int source")[1].split("};")[0]
    out: Copies = {}
    for part, row in enumerate(re.findall(r"\{ (\{.*?\}), \},", body)):
        for pixel, cell in enumerate(re.findall(r"\{([-\d,]*)\}", row)):
            for j, s in enumerate(int(v) for v in cell.split(",")):
                out[(part, pixel, j)] = "0" if s < 0 else f"data[{s}]"
    return out


def test_both_forms_copy_what_hls4ml_copies(tmp_path: Path) -> None:
    g, _ = op_graphs.conv_pools()
    model = to_hls_model(g, tmp_path / "prj")
    convs = [layer for layer in model.get_layers() if layer.class_name in CONV_CLASSES]
    assert {CONV_CLASSES[c.class_name] for c in convs} == {1, 2}
    for layer in convs:
        code = str(layer.get_attr("line_buffer_codegen"))
        synthesis, simulation = code.split("#ifdef __SYNTHESIS__")[1].split("#else")
        want = hls4ml_copies(layer)
        assert len(want) > 0
        assert statement_copies(synthesis) == want, layer.name
        assert table_copies(simulation) == want, layer.name
