"""Whole networks, wide types, random graphs and build variants through g++, exact against ``g.run``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from vitis_graphs import check, exp_tables, rand_const, rand_type, wild_inputs

from hgqir import FixedType, Graph, OpKind, OverflowMode, RoundMode, Value
from hgqir.ops import build_lut

pytestmark = pytest.mark.slow
N = 300


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


def test_mlp_with_softmax(tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    g = mlp(rng)
    check(g, wild_inputs(g, rng, N), tmp_path, csim=True)


def test_cnn(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    g = cnn(rng)
    check(g, wild_inputs(g, rng, N), tmp_path)


def test_wide_types_and_unusual_integer_bits(tmp_path: Path) -> None:
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
    prj = check(g, big, tmp_path, csim=True)
    assert prj.outputs[0].words > 1  # the dense result really is wider than 62 bits


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
