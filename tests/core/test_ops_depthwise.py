"""depthwise_conv1d / depthwise_conv2d: exact against PyTorch's grouped convolution, EBOPs and
values equal to the block-diagonal convolution it expands to, shape errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hgqir
from hgqir import FixedType, Graph, OpKind
from hgqir.errors import VerifyError
from hgqir.ops.depthwise import expand


def _graph(nd: int, c: int, m: int, stride: tuple[int, ...], pad: tuple[tuple[int, int], ...], seed: int) -> Graph:
    rng = np.random.default_rng(seed)
    g = Graph("dw")
    spatial = (7, 6)[:nd]
    x = g.input("x", FixedType.uniform((*spatial, c), 1, 2, 3), round="RND", overflow="SAT")
    kernel = (3, 2)[:nd]
    wv = hgqir.quantize(rng.normal(size=(*kernel, c * m)), 1, 1, 4)
    wv[..., 0] = 0.0  # a zero weight column costs nothing
    w = g.const(wv, FixedType.uniform(wv.shape, 1, 1, 4), name="w")
    b = g.const(hgqir.quantize(rng.normal(size=(c * m,)), 1, 1, 3), FixedType.uniform((c * m,), 1, 1, 3), name="b")
    kind = OpKind.DEPTHWISE_CONV1D if nd == 1 else OpKind.DEPTHWISE_CONV2D
    g.output(g.add(kind, [x, w, b], {"stride": stride, "pad": pad}, name="y").result, "out")
    return g


CASES = [
    (2, 3, 2, (1, 2), ((1, 1), (0, 1))),
    (2, 4, 1, (2, 1), ((0, 0), (1, 0))),
    (1, 3, 1, (1,), ((1, 1),)),
    (1, 2, 3, (2,), ((0, 2),)),
]


@pytest.mark.parametrize("nd, c, m, stride, pad", CASES)
def test_equals_torch_grouped_convolution(nd: int, c: int, m: int, stride: tuple, pad: tuple) -> None:
    g = _graph(nd, c, m, stride, pad, seed=c + m)
    xs = np.random.default_rng(1).normal(size=(40, *g.inputs[0].shape)) * 3
    got = g.run(xs)
    xq = torch.tensor(hgqir.quantize(xs, 1, 2, 3, round="RND", overflow="SAT")).movedim(-1, 1)
    flat = [v for p in reversed(pad) for v in p]
    xq = torch.nn.functional.pad(xq, flat)
    w, b = (torch.tensor(np.asarray(hgqir.ops.linear.const_exact(v).values())) for v in (g.value("w"), g.value("b")))
    w = w.movedim(-1, 0).unsqueeze(1)  # [C*M, 1, *kernel]
    conv = torch.nn.functional.conv1d if nd == 1 else torch.nn.functional.conv2d
    want = conv(xq, w, b, stride=stride, groups=c).movedim(1, -1).numpy()
    assert np.array_equal(got, want)


@pytest.mark.parametrize("nd, c, m, stride, pad", CASES)
def test_expands_to_the_block_diagonal_convolution(nd: int, c: int, m: int, stride: tuple, pad: tuple) -> None:
    g = _graph(nd, c, m, stride, pad, seed=7)
    h = expand(g)
    assert [op.kind for op in h.ops if op.kind.value.startswith(("conv", "depthwise"))] == [
        OpKind.CONV1D if nd == 1 else OpKind.CONV2D
    ]
    xs = np.random.default_rng(2).normal(size=(30, *g.inputs[0].shape)) * 5
    assert np.array_equal(h.run(xs), g.run(xs))
    assert g.outputs[0].type == h.outputs[0].type
    assert hgqir.bops(g, hardware=False).total == hgqir.bops(h, hardware=False).total > 0
    assert expand(h) is h  # nothing left to expand


def test_shape_errors() -> None:
    g = Graph("bad")
    x = g.input("x", FixedType.uniform((5, 3), 1, 2, 3))
    w = g.const(np.zeros((3, 4)), FixedType.uniform((3, 4), 1, 1, 2), name="w")
    with pytest.raises(VerifyError, match="not a multiple"):
        g.add(OpKind.DEPTHWISE_CONV1D, [x, w], {"stride": (1,), "pad": ((0, 0),)})
