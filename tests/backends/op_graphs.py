"""The op graphs every backend is tested on: several ops per graph (one compile each), inputs
with per-element types, pruned elements and data far outside their ranges, so that wrap,
saturation and rounding ties all occur."""

from __future__ import annotations

import numpy as np
from vitis_graphs import exp_tables, rand_const, rand_type, wild_inputs

from hgqir import FixedType, Graph, OpKind, OverflowMode, RoundMode
from hgqir.ops import build_lut

N = 400
GRAPHS = ("elementwise", "quant_modes", "input_modes", "conv_pools", "tables")


def elementwise() -> tuple[Graph, list[np.ndarray]]:
    rng = np.random.default_rng(1)
    g = Graph("elementwise")
    x = g.input("x", rand_type(rng, (12,), pruned=0.15), round="RND", overflow="SAT")
    y = g.input("y", rand_type(rng, (12,), pruned=0.15), round="RND_CONV", overflow="WRAP")
    outs = [
        g.add(OpKind.ADD, [x, y]).result,
        g.add(OpKind.SUB, [x, y]).result,
        g.add(OpKind.MUL, [x, y]).result,
        g.add(OpKind.ADD, [x, rand_const(g, rng, (1,), "c1", zeros=0)]).result,  # broadcast
        g.add(OpKind.MUL, [y, rand_const(g, rng, (12,), "c2")]).result,
        g.add(OpKind.SUB, [rand_const(g, rng, (12,), "c3"), x]).result,
        g.add(OpKind.RELU, [x]).result,
    ]
    grid = g.add(OpKind.RESHAPE, [g.add(OpKind.CONCAT, [x, y], {"axis": 0}).result], {"shape": (6, 4)}).result
    t = g.add(OpKind.TRANSPOSE, [grid], {"perm": (1, 0)}).result
    bn = g.add(OpKind.BATCHNORM, [t, rand_const(g, rng, (6,), "s"), rand_const(g, rng, (6,), "o")]).result
    outs.append(bn)
    rows = g.add(OpKind.DENSE, [grid, rand_const(g, rng, (4, 3), "w"), rand_const(g, rng, (3,), "b")]).result
    outs.append(rows)
    # declared types narrower than the exact ones: the C++ must cast TRN/WRAP like the interpreter
    narrow = g.add(OpKind.ADD, [x, y], types=[rand_type(rng, (12,), bits=(1, 4), pruned=0.2)]).result
    outs.append(g.add(OpKind.RESHAPE, [narrow], {"shape": (3, 4)}, types=[rand_type(rng, (3, 4), bits=(1, 3))]).result)
    for n, v in enumerate(outs):
        g.output(v, name=f"o{n}")
    return g, wild_inputs(g, rng, N)


def quant_modes() -> tuple[Graph, list[np.ndarray]]:
    rng = np.random.default_rng(2)
    g = Graph("quant")
    x = g.input("x", FixedType.uniform((16,), 1, 5, 6))
    for rmode in RoundMode:
        for omode in OverflowMode:
            # ties of x's grid land exactly between the quantized values (f = 2 vs 6)
            t = FixedType((16,), rng.integers(0, 2, 16), rng.integers(-1, 4, 16), rng.integers(0, 4, 16))
            q = g.add(OpKind.QUANT, [x], {"round": rmode, "overflow": omode}, [t], name=f"q_{rmode.name}_{omode.name}")
            g.output(q.result, name=q.result.name)
    return g, wild_inputs(g, rng, N)


def input_modes() -> tuple[Graph, list[np.ndarray]]:
    """The port cast from double uses each input's own rounding and overflow."""
    rng = np.random.default_rng(3)
    g = Graph("inputs")
    for n, (rmode, omode) in enumerate(zip(list(RoundMode), [*OverflowMode, *OverflowMode], strict=False)):
        g.output(g.input(f"x{n}", rand_type(rng, (5,), bits=(1, 8), pruned=0.1), round=rmode, overflow=omode))
    return g, wild_inputs(g, rng, N)


def conv_pools() -> tuple[Graph, list[np.ndarray]]:
    rng = np.random.default_rng(4)
    g = Graph("cnn_ops")
    img = g.input("img", rand_type(rng, (7, 6, 2), pruned=0.1), round="RND", overflow="SAT")
    seq = g.input("seq", rand_type(rng, (9, 3), pruned=0.1))
    conv2 = {"stride": (2, 1), "pad": ((1, 1), (0, 2))}
    c2 = g.add(
        OpKind.CONV2D, [img, rand_const(g, rng, (3, 2, 2, 4), "k2"), rand_const(g, rng, (4,), "b2")], conv2
    ).result
    c1 = g.add(OpKind.CONV1D, [seq, rand_const(g, rng, (3, 3, 2), "k1")], {"stride": (2,), "pad": ((2, 1),)}).result
    pools = [
        (OpKind.MAXPOOL2D, img, {"pool": (2, 3), "stride": (2, 2), "pad": ((1, 0), (0, 2))}),
        (OpKind.AVGPOOL2D, img, {"pool": (3, 2), "stride": (2, 1), "pad": ((1, 1), (1, 0)), "count_pad": False}),
        (OpKind.AVGPOOL2D, c2, {"pool": (2, 2), "stride": (2, 2), "pad": ((0, 0), (0, 0))}),
        (OpKind.MAXPOOL1D, seq, {"pool": (2,), "stride": (1,), "pad": ((1, 0),)}),
        (OpKind.AVGPOOL1D, c1, {"pool": (3,), "stride": (2,), "pad": ((1, 1),), "count_pad": True}),
        (OpKind.GLOBAL_MAXPOOL, img, {}),
        (OpKind.GLOBAL_AVGPOOL, img, {}),
        (OpKind.GLOBAL_AVGPOOL, seq, {}),
    ]
    g.output(c2, name="c2")
    g.output(c1, name="c1")
    for n, (kind, v, attrs) in enumerate(pools):
        g.output(g.add(kind, [v], attrs).result, name=f"p{n}")
    return g, wild_inputs(g, rng, N)


def tables() -> tuple[Graph, list[np.ndarray]]:
    rng = np.random.default_rng(5)
    g = Graph("tables")
    x = g.input("x", rand_type(rng, (6,), bits=(2, 7), i_range=(0, 3), pruned=0.1), overflow="SAT")
    g.output(build_lut(g, x, np.tanh, (1, 0, 6), func="tanh"), name="tanh")
    g.output(build_lut(g, x, lambda v: 1 / (1 + np.exp(-v)), (0, 0, 5), round="TRN", name="sig"), name="sig")
    s = g.input("s", rand_type(rng, (2, 5), bits=(3, 6), i_range=(1, 3)))
    et, it, inv_kif = exp_tables(g, s.type.union()[2])
    g.output(g.add(OpKind.SOFTMAX, [s, et, it], {"inv_in": inv_kif}).result, name="softmax")
    return g, wild_inputs(g, rng, N)
