"""Convolution im2col code that g++ compiles quickly (hls4ml's ``fill_buffer`` classes).

For io_parallel convolutions hls4ml generates a ``fill_buffer`` function that copies every
input element of every output pixel's window into a buffer with one statement each, chosen by
an ``if`` per partition: ``out_h * out_w * kernel * channels`` statements (34,848 for the
second layer of an MNIST-sized convnet). g++ spends over a minute and more than a gigabyte
optimizing them, about 90 % of that model's whole build. After hls4ml's flows have run,
:func:`compact_im2col` replaces that source: HLS synthesis (``__SYNTHESIS__``) still gets the
same per-element form, while C simulation reads the same source indices from a constant table
in a loop. Both forms come from one index table computed here (the window element at
``(kh, kw, c)`` of output pixel ``(oh, ow)`` reads input ``(oh*sh + kh - pad_top, ow*sw + kw -
pad_left, c)``, or 0 in the padding), so they copy the same values.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2
import numpy as np

CONV_CLASSES = {"Conv1D": 1, "Conv2D": 2, "PointwiseConv1D": 1, "PointwiseConv2D": 2}
"""hls4ml layer classes whose io_parallel im2col is one ``fill_buffer`` class, by rank."""


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader(__package__, "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env.get_template("im2col.h.j2")


def window_sources(
    in_shape: tuple[int, int, int], kernel: tuple[int, int], stride: tuple[int, int], pad: tuple[int, int, int, int]
) -> np.ndarray:
    """The flat input index each window element reads (-1 in the padding), one row per output pixel.

    ``in_shape`` is ``(h, w, c)`` (1D: one row), ``pad`` is ``(top, bottom, left, right)``.
    Pixels are in row-major output order, window elements in ``(kh, kw, c)`` order, as in
    hls4ml's buffer.
    """
    (h, w, c), (kh, kw), (sh, sw), (pt, pb, pl, pr) = in_shape, kernel, stride, pad
    out_h, out_w = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    row = (np.arange(out_h) * sh)[:, None, None, None, None] + np.arange(kh)[None, None, :, None, None] - pt
    col = (np.arange(out_w) * sw)[None, :, None, None, None] + np.arange(kw)[None, None, None, :, None] - pl
    chan = np.arange(c)[None, None, None, None, :]
    inside = (row >= 0) & (row < h) & (col >= 0) & (col < w)
    src = np.where(inside, (row * w + col) * c + chan, -1)
    return src.reshape(out_h * out_w, kh * kw * c)


def _geometry(layer: Any, rank: int) -> tuple[Any, ...]:
    """Input shape, kernel, stride and padding of a hls4ml convolution, as 2D (1D: one row)."""
    shape = tuple(layer.get_input_variable().shape)
    a = layer.get_attr
    if rank == 1:
        return (1, *shape), (1, a("filt_width")), (1, a("stride_width")), (0, 0, a("pad_left"), a("pad_right"))
    kernel = (a("filt_height"), a("filt_width"))
    stride = (a("stride_height"), a("stride_width"))
    return shape, kernel, stride, (a("pad_top"), a("pad_bottom"), a("pad_left"), a("pad_right"))


def im2col_source(layer: Any, rank: int) -> str:
    """The C++ ``fill_buffer_<index>`` class of one hls4ml convolution layer."""
    shape, kernel, stride, pad = _geometry(layer, rank)
    src = window_sources(shape, kernel, stride, pad)
    parts = src.reshape(layer.get_attr("n_partitions"), -1, src.shape[1])
    window = "CONFIG_T::filt_width * CONFIG_T::n_chan"
    data = "CONFIG_T::in_width * CONFIG_T::n_chan"
    if rank == 2:
        window, data = f"CONFIG_T::filt_height * {window}", f"CONFIG_T::in_height * {data}"
    return _template().render(
        index=layer.get_attr("index"),
        rank=rank,
        data_size=data,
        window=window,
        partitions=parts.tolist(),
        n_pixels=parts.shape[1],
        n_in=parts.shape[2],
    )


def compact_im2col(model: Any) -> int:
    """Replace the im2col source of every io_parallel convolution of ``model``; returns how many."""
    from hls4ml.model.types import Source

    count = 0
    for layer in model.get_layers():
        rank = CONV_CLASSES.get(layer.class_name)
        if rank is None or layer.get_attr("line_buffer_codegen") is None:
            continue
        if layer.get_attr("dilation_height", 1) != 1 or layer.get_attr("dilation_width", 1) != 1:
            continue  # hls4ml's im2col pass assumes no dilation: leave such layers as hls4ml made them
        layer.set_attr("line_buffer_codegen", Source(im2col_source(layer, rank)))
        count += 1
    return count
