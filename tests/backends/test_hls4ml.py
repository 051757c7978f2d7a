"""hls4ml backend: compiled hls4ml projects against the interpreter, bit for bit.

hls4ml compiles take ~10 s each, so the ops are grouped into a few graphs, each compiled once
(module-scoped fixtures). Every graph mixes per-element types, pruned elements, rounding and
overflow modes, and is fed values inside the types' ranges, exact rounding ties and values
far outside the calibrated range.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hgqir.frontends.activations import SMOOTH_NUMPY

import hgqir
from hgqir import FixedType, Graph, OpKind, Value
from hgqir.ops import build_lut, make_table

pytest.importorskip("hls4ml")
pytestmark = pytest.mark.slow


# ---------------------------------------------------------------- graph helpers
def random_type(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    i: tuple[int, int],
    f: tuple[int, int],
    signed: float = 0.5,
    pruned: float = 0.0,
) -> FixedType:
    """A per-element type; ``pruned`` is the share of zero-width elements."""
    k = (rng.random(shape) < signed).astype(np.int64)
    ii = rng.integers(i[0], i[1] + 1, shape)
    ff = rng.integers(f[0], f[1] + 1, shape)
    gone = rng.random(shape) < pruned
    return FixedType(shape, k, np.where(gone, 0, ii), np.where(gone, -k, ff))


def const(g: Graph, rng: np.random.Generator, t: FixedType, name: str, scale: float = 1.0) -> Value:
    """A constant of random values exactly representable in ``t``."""
    values = hgqir.quantize(rng.normal(size=t.shape) * scale, t.k, t.i, t.f, round="RND", overflow="SAT")
    return g.const(values, t, name=name)


def probe(rng: np.random.Generator, t: FixedType, n: int) -> np.ndarray:
    """Inputs: in range, exact half-LSB ties, next to the range ends and far out of range."""
    top = np.ldexp(1.0, t.i)
    lsb = np.ldexp(1.0, -t.f)
    inside = rng.uniform(-1.2, 1.2, (n, *t.shape)) * top
    ties = (rng.integers(-64, 64, (n, *t.shape)) + 0.5) * lsb
    edges = rng.choice([-2.0, -1.0, 1.0, 2.0], (n, *t.shape)) * top + rng.uniform(-3, 3, (n, *t.shape)) * lsb
    huge = rng.normal(size=(n, *t.shape)) * top * 300
    return np.concatenate([inside, ties, edges, huge])


def assert_exact(prj: Any, g: Graph, x: Any) -> None:
    got, want = prj.predict(x), g.run(x)
    got = got if isinstance(got, list) else [got]
    want = want if isinstance(want, list) else [want]
    for n, (a, b) in enumerate(zip(got, want, strict=True)):
        bad = np.argwhere(a != b)
        assert a.shape == b.shape, f"output {n}: shape {a.shape} != {b.shape}"
        assert bad.size == 0, (
            f"output {n}: {len(bad)} mismatches, first at {bad[0].tolist()}: {a[tuple(bad[0])]} != {b[tuple(bad[0])]}"
        )


def emitted(tmp_path_factory: pytest.TempPathFactory, build: Callable[[], Graph], **options: Any) -> tuple[Any, Graph]:
    g = build()
    prj = hgqir.emit(g, "hls4ml", tmp_path_factory.mktemp(g.name), **options)
    return prj.compile(), g


# ---------------------------------------------------------------- graph 1: dense path and tables
def softmax(g: Graph, x: Value, exp_len: int, inv_in: tuple[int, int, int], log: bool = False) -> Value:
    f = x.type.union()[2]
    name = "log_softmax" if log else "softmax"
    exp, et = make_table(lambda d: np.exp(-d * 2.0**-f), (0, 12, 0), (0, 1, 7))
    exp_table = g.const_mantissa(exp[:exp_len], FixedType.uniform((exp_len,), 0, 1, 7), name=f"{name}_exp")
    if log:
        inv, it = make_table(lambda s: np.log(np.maximum(s, 1.0)), inv_in, (0, 2, 6))
    else:
        inv, it = make_table(lambda s: 1 / np.maximum(s, 2.0 ** -inv_in[2]), inv_in, (0, 3, 6))
    inv_table = g.const_mantissa(inv, it, name=f"{name}_inv")
    return g.add(OpKind.SOFTMAX, [x, exp_table, inv_table], {"inv_in": inv_in, "log": log}, name=name).result


def mlp_graph() -> Graph:
    rng = np.random.default_rng(7)
    g = Graph("mlp")
    x = g.input("x", random_type(rng, (6,), (0, 3), (1, 4), pruned=0.2), round="RND", overflow="SAT")
    w1 = const(g, rng, random_type(rng, (6, 8), (0, 1), (1, 4), signed=0.7), "w1")
    b1 = const(g, rng, random_type(rng, (8,), (0, 1), (0, 3)), "b1")
    h = g.add(OpKind.DENSE, [x, w1, b1], name="fc1").result
    h = g.add(OpKind.RELU, [h], types=[random_type(rng, (8,), (1, 3), (1, 3), signed=0, pruned=0.1)]).result
    q = g.add(
        OpKind.QUANT,
        [h],
        {"round": "RND_CONV", "overflow": "SAT_SYM"},
        types=[random_type(rng, (8,), (0, 2), (0, 2), signed=0.5)],
        name="q",
    ).result
    bn = g.add(
        OpKind.BATCHNORM,
        [q, const(g, rng, FixedType.uniform((8,), 1, 1, 3), "s"), const(g, rng, FixedType.uniform((8,), 1, 0, 2), "o")],
        types=[FixedType.uniform((8,), 1, 3, 3)],
        name="bn",
    ).result
    t = build_lut(g, bn, np.tanh, (1, 0, 5), func="tanh", name="tanh")
    plus = g.add(OpKind.ADD, [t, const(g, rng, random_type(rng, (8,), (0, 1), (0, 3)), "c")], name="plus").result
    prod = g.add(OpKind.MUL, [plus, q], types=[random_type(rng, (8,), (0, 2), (2, 5))], name="prod").result
    w2 = const(g, rng, random_type(rng, (8, 5), (0, 1), (1, 3)), "w2")
    logits = g.add(OpKind.DENSE, [prod, w2], types=[FixedType.uniform((5,), 1, 2, 3)], name="fc2").result
    g.output(softmax(g, logits, exp_len=40, inv_in=(0, 3, 4)), name="probs")
    g.output(softmax(g, logits, exp_len=40, inv_in=(0, 3, 4), log=True), name="log_probs")
    g.output(h, name="hidden")
    g.output(constant_arithmetic(g, rng, t), name="affine")
    g.output(build_lut(g, bn, SMOOTH_NUMPY["elu"], (1, 3, 5), func="elu", name="elu"), name="elu")
    return g


def constant_arithmetic(g: Graph, rng: np.random.Generator, t: Value) -> Value:
    """``(c1 - t) + (t * c2) - c3``: constants on either side, and a tensor-tensor add."""
    c1, c2, c3 = (const(g, rng, random_type(rng, t.shape, (0, 2), (0, 3)), f"k{n}") for n in (1, 2, 3))
    flipped = g.add(OpKind.SUB, [c1, t], name="flipped").result
    scaled = g.add(OpKind.MUL, [t, c2], name="scaled").result
    both = g.add(OpKind.ADD, [flipped, scaled], types=[random_type(rng, t.shape, (1, 3), (1, 5))], name="both").result
    return g.add(OpKind.SUB, [both, c3], name="shifted").result


@pytest.fixture(scope="module")
def mlp(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Graph]:
    return emitted(tmp_path_factory, mlp_graph)


def test_mlp_with_tables_is_exact(mlp: tuple[Any, Graph]) -> None:
    prj, g = mlp
    assert_exact(prj, g, probe(np.random.default_rng(1), g.inputs[0].type, 300))


def test_mlp_single_sample_layout(mlp: tuple[Any, Graph]) -> None:
    prj, g = mlp
    x = np.linspace(-3, 3, 6)
    probs, log_probs, hidden, affine, elu = prj.predict(x)
    assert (
        probs.shape == log_probs.shape == (5,) and hidden.shape == (8,) and affine.shape == (8,) and elu.shape == (8,)
    )
    assert_exact(prj, g, x)


def test_mlp_keeps_ir_types(mlp: tuple[Any, Graph]) -> None:
    prj, g = mlp
    layers = {layer.name: layer for layer in prj.hls_model.get_layers()}
    fc1 = layers["fc1"]
    assert str(fc1.get_attr("accum_t").precision).startswith("fixed<")
    op = g.value("fc1").producer
    k, i, f = op.rule.infer(op)[0].union()  # the exact type of the dense sum
    assert fc1.get_attr("accum_t").precision.width == k + i + f
    assert layers["q_q"].class_name == "FixedPointQuantizer"  # the per-element quant op survives


# ---------------------------------------------------------------- graph 2: conv2d and pools
def conv2d_graph() -> Graph:
    rng = np.random.default_rng(11)
    g = Graph("conv2d")
    x = g.input("img", FixedType.uniform((6, 6, 2), 1, 2, 3))  # TRN, WRAP: out-of-range data wraps
    w = const(g, rng, random_type(rng, (3, 3, 2, 4), (0, 1), (1, 4), pruned=0.15), "k1")
    b = const(g, rng, FixedType.uniform((4,), 1, 0, 2), "kb1")
    c = g.add(OpKind.CONV2D, [x, w, b], {"stride": (1, 1), "pad": ((1, 1), (1, 1))}, name="conv1").result
    r = g.add(OpKind.RELU, [c], types=[FixedType.uniform(c.shape, 0, 3, 2)], name="relu1").result
    mp = g.add(OpKind.MAXPOOL2D, [r], {"pool": (2, 2), "stride": (2, 2), "pad": ((1, 0), (0, 1))}, name="mp").result
    ap = g.add(
        OpKind.AVGPOOL2D,
        [c],
        {"pool": (3, 3), "stride": (2, 2), "pad": ((1, 1), (1, 1)), "count_pad": False},
        types=[random_type(rng, (3, 3, 4), (1, 3), (0, 3), signed=1)],
        name="ap",
    ).result
    conv2d_heads(g, rng, c, mp, ap)
    return g


def conv2d_heads(g: Graph, rng: np.random.Generator, c: Value, mp: Value, ap: Value) -> None:
    """Strided conv, global pools, flatten, concat and a dense over [H, W, C] as outputs."""
    w2 = const(g, rng, random_type(rng, (2, 2, 4, 3), (0, 1), (1, 3)), "k2")
    c2 = g.add(
        OpKind.CONV2D,
        [ap, w2],
        {"stride": (2, 2), "pad": ((0, 0), (0, 0))},
        types=[FixedType.uniform((1, 1, 3), 1, 4, 2)],
        name="conv2",
    ).result
    gap = g.add(OpKind.GLOBAL_AVGPOOL, [mp], types=[FixedType.uniform((4,), 0, 2, 2)], name="gap").result
    gmp = g.add(OpKind.GLOBAL_MAXPOOL, [c], name="gmp").result
    flat = g.add(OpKind.RESHAPE, [c2], {"shape": (3,)}, name="flat").result
    cat = g.add(OpKind.CONCAT, [gap, gmp, flat], {"axis": 0}, name="cat").result
    w3 = const(g, rng, random_type(rng, (4, 2), (0, 1), (1, 3)), "pw")
    pw_type = random_type(rng, (3, 3, 2), (1, 3), (1, 3), signed=1)
    pw = g.add(OpKind.DENSE, [mp, w3], types=[pw_type], name="pointwise").result
    g.output(cat, name="features")
    g.output(mp, name="pooled")
    g.output(pw, name="pointwise")


@pytest.fixture(scope="module")
def conv2d(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Graph]:
    return emitted(tmp_path_factory, conv2d_graph)


def test_conv2d_and_pools_are_exact(conv2d: tuple[Any, Graph]) -> None:
    prj, g = conv2d
    assert_exact(prj, g, probe(np.random.default_rng(2), g.inputs[0].type, 60))


# ---------------------------------------------------------------- graph 3: conv1d, data movement, two inputs
def conv1d_graph() -> Graph:
    rng = np.random.default_rng(5)
    g = Graph("conv1d")
    seq = g.input("seq", random_type(rng, (8, 3), (0, 2), (1, 3), pruned=0.1), round="RND_CONV", overflow="WRAP")
    aux = g.input("aux", FixedType.uniform((3,), 0, 1, 2), round="RND", overflow="SAT")
    c = g.add(
        OpKind.CONV1D,
        [seq, const(g, rng, random_type(rng, (3, 3, 4), (0, 1), (1, 3)), "k")],
        {"stride": (2,), "pad": ((1, 1),)},
        types=[random_type(rng, (4, 4), (1, 4), (1, 4), signed=1)],
        name="conv",
    ).result
    ap = g.add(
        OpKind.AVGPOOL1D, [c], {"pool": (2,), "stride": (1,), "pad": ((0, 1),), "count_pad": True}, name="ap"
    ).result
    mp = g.add(OpKind.MAXPOOL1D, [c], {"pool": (3,), "stride": (1,), "pad": ((1, 1),)}, name="mp").result
    pw = g.add(
        OpKind.DENSE, [seq, const(g, rng, random_type(rng, (3, 2), (0, 1), (1, 3)), "pw")], name="pointwise"
    ).result
    diff = g.add(OpKind.SUB, [seq, aux], types=[FixedType.uniform((8, 3), 1, 3, 2)], name="diff").result
    tr = g.add(OpKind.TRANSPOSE, [diff], {"perm": (1, 0)}, name="tr").result
    cube = g.add(OpKind.RESHAPE, [tr], {"shape": (2, 3, 4, 1)}, name="cube").result
    gmp = g.add(OpKind.GLOBAL_MAXPOOL, [cube], name="gmp4d").result
    cat = g.add(OpKind.CONCAT, [ap, mp, c], {"axis": 0}, name="cat").result
    total = g.add(OpKind.ADD, [ap, mp], name="total").result
    gap = g.add(OpKind.GLOBAL_AVGPOOL, [c], types=[random_type(rng, (4,), (1, 3), (0, 3), signed=1)], name="gap").result
    g.output(g.add(OpKind.CONCAT, [total, c], {"axis": 1}, name="side").result, name="side_by_side")
    g.output(gap, name="gavg")
    g.output(softmax(g, c, exp_len=300, inv_in=(0, 2, 5)), name="rows_softmax")  # 4 rows of 4
    g.output(cat, name="pools")
    g.output(pw, name="pointwise")
    g.output(tr, name="transposed")
    g.output(gmp, name="gmax")
    return g


@pytest.fixture(scope="module")
def conv1d(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Graph]:
    return emitted(tmp_path_factory, conv1d_graph, backend="Vivado", strategy="Resource", reuse_factor=2)


def test_conv1d_movement_two_inputs_are_exact(conv1d: tuple[Any, Graph]) -> None:
    prj, g = conv1d
    rng = np.random.default_rng(3)
    xs = [probe(rng, v.type, 40) for v in g.inputs]
    assert_exact(prj, g, xs)


def test_project_files(conv1d: tuple[Any, Graph]) -> None:
    prj, g = conv1d
    out = Path(prj.out_dir)
    assert (out / "model.hgq").is_file() and hgqir.load(out / "model.hgq").name == g.name
    assert (out / "firmware" / "myproject.cpp").is_file()
    assert prj.hls_model.config.get_config_value("Backend") == "Vivado"


# ---------------------------------------------------------------- graph 4: every rounding and overflow mode
MODES = [(r.value, o.value) for r in hgqir.RoundMode for o in hgqir.OverflowMode]
PER_ELEMENT = FixedType((5,), [1, 0, 1, 1, 0], [2, 1, 0, 3, -1], [2, 3, 1, -1, 4])


def modes_graph() -> Graph:
    """Per-element inputs and quant ops in every (round, overflow) pair."""
    g = Graph("modes")
    parts = []
    for n, (rnd, ovf) in enumerate(MODES):
        x = g.input(f"x{n}", PER_ELEMENT, round=rnd, overflow=ovf)
        parts.append(
            g.add(
                OpKind.QUANT,
                [x],
                {"round": ovf == "WRAP" and rnd or "TRN", "overflow": ovf},
                types=[PER_ELEMENT],
                name=f"q{n}",
            ).result
        )
    g.output(g.add(OpKind.CONCAT, parts, {"axis": 0}, name="all").result)
    return g


@pytest.fixture(scope="module")
def modes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Graph]:
    return emitted(tmp_path_factory, modes_graph)


def test_every_mode_of_inputs_and_quantizers_is_exact(modes: tuple[Any, Graph]) -> None:
    prj, g = modes
    rng = np.random.default_rng(4)
    xs = [probe(rng, v.type, 30) for v in g.inputs]
    assert_exact(prj, g, xs)


def test_per_element_quantizers_are_grouped_by_type(modes: tuple[Any, Graph]) -> None:
    """Each per-element quantizer is one loop per distinct type (g++ compiles conv-sized ones an
    order of magnitude faster than one statement per element); the casts are the same, so the
    exactness test above covers them."""
    prj, _ = modes
    code = (Path(prj.out_dir) / "firmware" / "nnet_utils" / "nnet_code_gen.h").read_text()
    assert "out[0] =" not in code  # no per-element statements left
    q = code[code.index("void q_q1(") :]
    q = q[: q.index("\n}\n")]
    assert q.count("for (int j = 0;") == 5  # PER_ELEMENT: five elements of five distinct types


def test_grouped_quantizer_source() -> None:
    from hgqir.backends.hls4ml.quantizer_code import grouped_source

    kbi = tuple(np.array(a).reshape(1, 2, 3) for a in ([1, 1, 0, 1, 0, 1], [4, 4, 3, 0, 3, 4], [2, 2, 1, 0, 1, 2]))
    src = grouped_source("q", (2, 3), kbi, "RND", "WRAP")
    assert "static const int idx0[1] = {3};" in src and "out[idx0[j]] = 0;" in src  # the zero-width element
    assert "static const int idx1[2] = {2,4};" in src and "ap_ufixed<3,1,AP_RND,AP_WRAP>(inp[idx1[j]])" in src
    assert "static const int idx2[3] = {0,1,5};" in src and "ap_fixed<4,2,AP_RND,AP_WRAP>" in src
    assert src.endswith("}\n")


# ---------------------------------------------------------------- prelu (LeakyReLU / PReLU), maximum, minimum
def prelu_graph() -> Graph:
    """Per-channel alphas (negative, below and above 1, pruned), a scalar slope, per-element input types."""
    rng = np.random.default_rng(21)
    g = Graph("prelu")
    x = g.input("x", random_type(rng, (3, 4), (0, 3), (1, 4), signed=0.8, pruned=0.1), round="RND", overflow="SAT")
    alpha = g.const(np.array([0.25, -0.5, 1.75, 0.0]), FixedType((4,), np.array([0, 1, 0, 0]), 1, 2), name="alpha")
    slope = g.const(np.array([0.0625]), FixedType.uniform((1,), 0, 0, 4), name="slope")
    g.output(g.add(OpKind.PRELU, [x, alpha], name="prelu").result, name="prelu")
    g.output(g.add(OpKind.PRELU, [x, slope], name="leaky").result, name="leaky")
    y = g.input("y", random_type(rng, (3, 4), (0, 2), (2, 5), signed=0.5, pruned=0.1), round="TRN", overflow="WRAP")
    g.output(g.add(OpKind.MAXIMUM, [x, y], name="max").result, name="max")
    g.output(g.add(OpKind.MINIMUM, [y, x], name="min").result, name="min")
    return g


def test_prelu_maximum_minimum_are_exact(tmp_path_factory: pytest.TempPathFactory) -> None:
    prj, g = emitted(tmp_path_factory, prelu_graph)
    rng = np.random.default_rng(2)
    assert_exact(prj, g, [probe(rng, g.inputs[0].type, 200), probe(rng, g.inputs[1].type, 200)])


# ---------------------------------------------------------------- depthwise convolutions
def depthwise_graph() -> Graph:
    """Depthwise convolutions (multiplier 2 in 2D, 1 in 1D), lowered as block-diagonal convs."""
    rng = np.random.default_rng(23)
    g = Graph("depthwise")
    img = g.input("img", random_type(rng, (6, 5, 2), (0, 2), (1, 3), pruned=0.1), round="RND", overflow="SAT")
    k2 = const(g, rng, random_type(rng, (3, 2, 4), (0, 1), (1, 3)), "k2")
    b2 = const(g, rng, random_type(rng, (4,), (0, 1), (0, 2)), "b2")
    dw2 = g.add(OpKind.DEPTHWISE_CONV2D, [img, k2, b2], {"stride": (1, 2), "pad": ((1, 0), (1, 1))}, name="dw2")
    g.output(dw2.result, name="dw2")
    seq = g.input("seq", random_type(rng, (8, 3), (0, 2), (1, 3)), round="TRN", overflow="WRAP")
    k1 = const(g, rng, random_type(rng, (3, 3), (0, 1), (1, 3)), "k1")
    g.output(g.add(OpKind.DEPTHWISE_CONV1D, [seq, k1], {"stride": (1,), "pad": ((1, 1),)}, name="dw1").result, "dw1")
    return g


def test_depthwise_is_exact(tmp_path_factory: pytest.TempPathFactory) -> None:
    prj, g = emitted(tmp_path_factory, depthwise_graph)
    rng = np.random.default_rng(3)
    assert_exact(prj, g, [probe(rng, g.inputs[0].type, 100), probe(rng, g.inputs[1].type, 100)])


# ---------------------------------------------------------------- cropping and zero padding
def moves_graph() -> Graph:
    """Padding (concatenated zero-width constants) and cropping (slice) in 2D and 1D."""
    from hgqir.frontends.movers import crop, zero_pad

    rng = np.random.default_rng(29)
    g = Graph("moves")
    img = g.input("img", random_type(rng, (5, 4, 2), (0, 2), (1, 3), pruned=0.1), round="RND", overflow="SAT")
    padded = zero_pad(g, img, {0: (1, 2), 1: (0, 1)}, "pad2")
    g.output(crop(g, padded, {0: (2, 0), 1: (1, 1)}, "crop2"), name="img_out")
    seq = g.input("seq", random_type(rng, (6, 3), (0, 2), (1, 3)), round="TRN", overflow="WRAP")
    g.output(crop(g, zero_pad(g, seq, {0: (2, 1)}, "pad1"), {0: (0, 3)}, "crop1"), name="seq_out")
    return g


def test_padding_and_cropping_are_exact(tmp_path_factory: pytest.TempPathFactory) -> None:
    prj, g = emitted(tmp_path_factory, moves_graph)
    classes = {layer.class_name for layer in prj.hls_model.get_layers()}
    assert {"ZeroPadding2D", "Cropping2D", "ZeroPadding1D", "Cropping1D"} <= classes
    rng = np.random.default_rng(4)
    assert_exact(prj, g, [probe(rng, g.inputs[0].type, 100), probe(rng, g.inputs[1].type, 100)])
