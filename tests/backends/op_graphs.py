"""The op graphs every backend is tested on: several ops per graph (one compile each), inputs
with per-element types, pruned elements and data far outside their ranges, so that wrap,
saturation and rounding ties all occur."""

from __future__ import annotations

import numpy as np
from hgqir.frontends.activations import SMOOTH_NUMPY
from vitis_graphs import exp_tables, rand_const, rand_type, wild_inputs

from hgqir import FixedType, Graph, OpKind, OverflowMode, RoundMode, Value
from hgqir.ops import build_lut, make_table

N = 400
GRAPHS = ("elementwise", "quant_modes", "input_modes", "conv_pools", "tables", "edges")


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
        g.add(OpKind.MAXIMUM, [x, y]).result,
        g.add(OpKind.MINIMUM, [y, x]).result,
        g.add(OpKind.MAXIMUM, [x, rand_const(g, rng, (12,), "floor")]).result,
        g.add(OpKind.PRELU, [y, rand_const(g, rng, (12,), "alpha")]).result,  # per element, |alpha| < 4
        g.add(OpKind.PRELU, [x, g.const(np.array([0.375]), FixedType.uniform((1,), 0, 0, 3), name="slope")]).result,
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
    # depthwise: multiplier 2 (2D, strided, asymmetric padding) and 1 (1D, on the conv output)
    dw2 = [img, rand_const(g, rng, (2, 3, 4), "dk2"), rand_const(g, rng, (4,), "db2")]
    g.output(g.add(OpKind.DEPTHWISE_CONV2D, dw2, {"stride": (1, 2), "pad": ((1, 0), (1, 1))}).result, name="dw2")
    dw1 = [c1, rand_const(g, rng, (3, 2), "dk1")]
    g.output(g.add(OpKind.DEPTHWISE_CONV1D, dw1, {"stride": (1,), "pad": ((1, 1),)}).result, name="dw1")
    for n, (kind, v, attrs) in enumerate(pools):
        g.output(g.add(kind, [v], attrs).result, name=f"p{n}")
    return g, wild_inputs(g, rng, N)


def tables() -> tuple[Graph, list[np.ndarray]]:
    rng = np.random.default_rng(5)
    g = Graph("tables")
    x = g.input("x", rand_type(rng, (6,), bits=(2, 7), i_range=(0, 3), pruned=0.1), overflow="SAT")
    g.output(build_lut(g, x, np.tanh, (1, 0, 6), func="tanh"), name="tanh")
    g.output(build_lut(g, x, lambda v: 1 / (1 + np.exp(-v)), (0, 0, 5), round="TRN", name="sig"), name="sig")
    # unbounded smooth activations (signed outputs beyond 1, saturating at 2**3)
    g.output(build_lut(g, x, SMOOTH_NUMPY["elu"], (1, 3, 6), func="elu", name="elu"), name="elu")
    g.output(build_lut(g, x, SMOOTH_NUMPY["gelu"], (1, 3, 5), func="gelu", name="gelu"), name="gelu")
    s = g.input("s", rand_type(rng, (2, 5), bits=(3, 6), i_range=(1, 3)))
    et, it, inv_kif = exp_tables(g, s.type.union()[2])
    g.output(g.add(OpKind.SOFTMAX, [s, et, it], {"inv_in": inv_kif}).result, name="softmax")
    log_m, log_t = make_table(lambda v: np.log(np.maximum(v, 1.0)), inv_kif, (0, 2, 5))
    lt = g.const_mantissa(log_m, log_t, name="log")
    g.output(g.add(OpKind.SOFTMAX, [s, et, lt], {"inv_in": inv_kif, "log": True}).result, name="log_softmax")
    return g, wild_inputs(g, rng, N)


def quant(g: Graph, rng: np.random.Generator, v: Value, name: str, pruned: float = 0.1) -> Value:
    """An HGQ-style activation quantizer: per-element types, some elements pruned."""
    t = rand_type(rng, v.shape, bits=(2, 7), i_range=(0, 3), pruned=pruned)
    return g.add(OpKind.QUANT, [v], {"round": "RND", "overflow": "SAT"}, [t], name=name).result


def mlp(rng: np.random.Generator) -> Graph:
    g = Graph("mlp")
    h = g.input("x", rand_type(rng, (16,), bits=(3, 8), pruned=0.1), round="RND", overflow="SAT")
    for n, width in enumerate((24, 12)):
        h = g.add(
            OpKind.DENSE,
            [h, rand_const(g, rng, (h.shape[0], width), f"w{n}", zeros=0.4), rand_const(g, rng, (width,), f"b{n}")],
            name=f"dense{n}",
        ).result
        h = quant(g, rng, g.add(OpKind.RELU, [h], name=f"relu{n}").result, f"act{n}")
    logits = g.add(OpKind.DENSE, [h, rand_const(g, rng, (12, 5), "w_out")], name="logits").result
    logits = g.add(
        OpKind.QUANT, [logits], {"round": "TRN", "overflow": "SAT"}, [FixedType.uniform((5,), 1, 3, 3)]
    ).result
    et, it, inv_kif = exp_tables(g, 3)
    g.output(g.add(OpKind.SOFTMAX, [logits, et, it], {"inv_in": inv_kif}, name="probs").result, name="probs")
    g.output(logits, name="logits")
    return g


def cnn(rng: np.random.Generator) -> Graph:
    g = Graph("cnn")
    x = g.input("img", rand_type(rng, (8, 8, 1), bits=(3, 6), i_range=(0, 2)), round="RND", overflow="SAT")
    h = g.add(
        OpKind.CONV2D,
        [x, rand_const(g, rng, (3, 3, 1, 4), "k0"), rand_const(g, rng, (4,), "c0")],
        {"stride": (1, 1), "pad": ((1, 1), (1, 1))},
    ).result
    h = quant(g, rng, g.add(OpKind.RELU, [h]).result, "a0")
    h = g.add(OpKind.MAXPOOL2D, [h], {"pool": (2, 2), "stride": (2, 2), "pad": ((0, 0), (0, 0))}).result
    h = g.add(
        OpKind.CONV2D, [h, rand_const(g, rng, (3, 3, 4, 4), "k1")], {"stride": (1, 1), "pad": ((0, 0), (0, 0))}
    ).result
    h = g.add(OpKind.BATCHNORM, [h, rand_const(g, rng, (4,), "s"), rand_const(g, rng, (4,), "o")]).result
    h = quant(g, rng, h, "a1")
    flat = g.add(OpKind.RESHAPE, [h], {"shape": (16,)}).result
    h = g.add(OpKind.DENSE, [flat, rand_const(g, rng, (16, 6), "w"), rand_const(g, rng, (6,), "b")]).result
    g.output(build_lut(g, quant(g, rng, h, "a2", pruned=0.0), np.tanh, (1, 0, 5), func="tanh"), name="y")
    g.output(g.add(OpKind.GLOBAL_AVGPOOL, [x]).result, name="mean")
    return g


def random_step(g: Graph, rng: np.random.Generator, vals: list[Value], n: int) -> Value:
    """One random op on one of the values built so far."""
    x = vals[int(rng.integers(len(vals)))]
    kind = rng.choice(["dense", "relu", "quant", "add", "mul", "bn", "concat"])
    if kind == "dense":
        ops = [x, rand_const(g, rng, (x.shape[0], 6), f"w{n}"), rand_const(g, rng, (6,), f"b{n}")]
        return g.add(OpKind.DENSE, ops).result
    if kind == "relu":
        return g.add(OpKind.RELU, [x]).result
    if kind == "quant":
        modes = {"round": rng.choice(list(RoundMode)), "overflow": rng.choice(list(OverflowMode))}
        return g.add(OpKind.QUANT, [x], modes, [rand_type(rng, x.shape, pruned=0.15)]).result
    if kind in ("add", "mul"):
        others = [v for v in vals if v.shape == x.shape]
        other = others[int(rng.integers(len(others)))]
        return g.add(OpKind.ADD if kind == "add" else OpKind.MUL, [x, other]).result
    if kind == "bn":
        c = x.shape[-1]
        return g.add(OpKind.BATCHNORM, [x, rand_const(g, rng, (c,), f"s{n}"), rand_const(g, rng, (c,), f"o{n}")]).result
    return g.add(OpKind.CONCAT, [x, vals[0]], {"axis": 0}).result


def random_graph(seed: int) -> Graph:
    """A random chain of ops over per-element types, with narrower declared types here and there."""
    rng = np.random.default_rng(seed)
    g = Graph(f"random{seed}")
    modes = {"round": rng.choice(list(RoundMode)), "overflow": rng.choice(list(OverflowMode))}
    vals = [g.input("x", rand_type(rng, (6,), pruned=0.1), **modes)]
    for n in range(10):
        y = random_step(g, rng, vals, n)
        if rng.random() < 0.3 and y.producer is not None and y.producer.kind is not OpKind.QUANT:
            y.type = rand_type(rng, y.shape, bits=(1, 8), pruned=0.1)  # the C++ must cast TRN/WRAP
        vals.append(y)
    g.output(vals[-1], name="last")
    g.output(vals[len(vals) // 2], name="middle")
    g.verify()
    return g


def wide() -> tuple[Graph, list[np.ndarray]]:
    """Values wider than 53 (and 64) bits, ap_fixed's I above W and below 0."""
    rng = np.random.default_rng(12)
    g = Graph("wide")
    x = g.input("x", FixedType((4,), 1, [30, 20, 2, 40], [40, 50, 60, 23]), round="RND_CONV", overflow="SAT_SYM")
    odd = g.input("odd", FixedType((4,), [1, 0, 1, 0], [9, 7, -3, -2], [-4, -3, 8, 7]), round="RND", overflow="WRAP")
    w = g.const_mantissa(
        np.array([[3, -(1 << 40), 5], [7, 1, 0], [-3, (1 << 44) - 3, 2], [1, 1, -1]]),
        FixedType((4, 3), 1, [[2, 15, 3]] * 4, [[30, 30, 30]] * 4),
        name="w",
    )
    d = g.add(OpKind.DENSE, [x, w]).result
    g.output(d, name="dense")
    g.output(g.add(OpKind.MUL, [x, x]).result, name="square")
    q = g.add(OpKind.QUANT, [d], {"round": "RND", "overflow": "WRAP"}, [FixedType.uniform((3,), 1, 20, 10)]).result
    g.output(q, name="narrowed")
    g.output(g.add(OpKind.ADD, [odd, g.add(OpKind.RELU, [odd]).result]).result, name="odd")
    s = g.input("s", FixedType.uniform((3,), 1, 2, 2))
    entries = np.array([(n - 16) * (1 << 62) + 12345 * n - 7 for n in range(32)], dtype=object)  # 71 bits
    table = g.const_mantissa(entries, FixedType.uniform((32,), 1, 40, 30), name="table")
    g.output(g.add(OpKind.LUT, [s, table]).result, name="wide_table")
    big = wild_inputs(g, rng, N)
    big[0] = np.concatenate([big[0][: N // 2], rng.normal(size=(N - N // 2, 4)) * 1e14])
    return g, big


def edges() -> tuple[Graph, list[np.ndarray]]:
    """Widths at the edges: 1-bit signed and unsigned, negative i and f, zero-width elements."""
    rng = np.random.default_rng(21)
    g = Graph("edges")
    t = FixedType((6,), [1, 0, 1, 0, 1, 0], [0, 0, -3, -2, 5, 4], [0, 1, 6, 5, -2, -4])
    x = g.input("x", t, round="RND_CONV", overflow="SAT_SYM")
    w = g.const_mantissa(
        np.array([[-1, 0], [-1, -1], [0, -1], [-1, -1], [-1, 0], [0, -1]]), FixedType.uniform((6, 2), 1, 0, 0), name="w"
    )
    d = g.add(OpKind.DENSE, [x, w]).result
    g.output(d, name="dense")
    one_bit = FixedType((6,), [1, 0, 1, 0, 1, 0], [0, 0, 0, 1, 0, -1], [0, 1, 0, -1, 0, 1])
    g.output(g.add(OpKind.QUANT, [x], {"round": "RND", "overflow": "SAT_SYM"}, [one_bit]).result, name="sat_sym_1bit")
    g.output(g.add(OpKind.QUANT, [x], {"round": "TRN_ZERO", "overflow": "WRAP"}, [one_bit]).result, name="wrap_1bit")
    g.output(g.add(OpKind.RELU, [g.add(OpKind.ADD, [x, x]).result]).result, name="relu")
    g.output(
        g.add(OpKind.QUANT, [x], {"round": "RND", "overflow": "SAT"}, [FixedType.zero((6,))]).result, name="pruned"
    )
    g.output(g.add(OpKind.GLOBAL_MAXPOOL, [g.add(OpKind.RESHAPE, [x], {"shape": (3, 2)}).result]).result, name="max")
    return g, wild_inputs(g, rng, N)
