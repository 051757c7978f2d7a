"""The .hgq text form: exact round trips, the elided form, save/load."""

from __future__ import annotations

import numpy as np
import pytest

import hgqir
from hgqir import FixedType, Graph, OpKind, ParseError
from hgqir.interp import run_exact
from hgqir.ops import build_lut

from .graphgen import GraphGen
from .helpers import fractions, inputs_graph, rand_type, rand_values

CANONICAL = """\
hgqir 1 @tiny
meta {"frontend": "test"}
%x = input {round = RND, overflow = SAT} : [4] $t0
%w = const {data = $d0} : [4, 2] $t1
%b = const {data = $d1} : [2] <1,3,-1>
%dense = dense %x, %w, %b : [2] <1,7,4>
%act = quant %dense {round = RND_CONV, overflow = WRAP} : [2] <0,3,2>
%r = reshape %act {shape = [1, 2]} : [1, 2] <0,3,2>
output %r {name = "y"}

$t0 = types [4] {
  k: 1
  i: 0 1 2 0
  f: 2 2 1 0
}
$d0 = data [4, 2] {
  1 -2 3 0 1 1 -1 2
}
$t1 = types [4, 2] {
  k: 1
  i: 0 1 0 1 0 1 0 1
  f: 2 2 3 3 2 2 3 3
}
$d1 = data [2] {
  -2 3
}
"""


def every_op_graph() -> Graph:
    """One graph using every op kind, with per-element types, pruned elements and wide constants."""
    rng = np.random.default_rng(40)
    g, (x, img) = inputs_graph([rand_type(rng, (6,), pruned=0.2), rand_type(rng, (5, 4, 2))])
    g.meta = {"layout": "channels-last", "n": 3}
    w = g.const_mantissa(
        np.array([[1, -2, 0], [3, 0, 1]] * 3), rand_type(rng, (6, 3), k=1, bits=(3, 4), i_range=(0, 1))
    )
    wide = g.const_mantissa(
        np.array([2**90 + 7, -(2**95)], dtype=object), FixedType.uniform((2,), 1, 60, 40), name="wide"
    )
    d = g.add(OpKind.DENSE, [x, w]).result
    q = g.add(
        OpKind.QUANT,
        [g.add(OpKind.RELU, [d]).result],
        {"round": "RND", "overflow": "SAT_SYM"},
        [FixedType((3,), 0, [1, 2, 0], [3, 2, 0])],
    ).result
    t = g.add(OpKind.TRANSPOSE, [g.add(OpKind.CONCAT, [q, q], {"axis": 0}).result], {"perm": [0]}).result
    s = g.add(OpKind.SUB, [g.add(OpKind.MUL, [t, t]).result, t]).result
    g.output(
        g.add(
            OpKind.ADD,
            [
                g.add(OpKind.RESHAPE, [s], {"shape": [2, 3]}).result,
                g.const([[0.5, 0, 1]] * 2, FixedType.uniform((2, 3), 0, 1, 1)),
            ],
        ).result
    )
    cw = g.const_mantissa(np.ones((3, 3, 2, 2), dtype=np.int64), FixedType.uniform((3, 3, 2, 2), 1, 1, 2))
    c = g.add(OpKind.CONV2D, [img, cw], {"stride": [1, 2], "pad": [[1, 1], [0, 1]]}).result
    c = g.add(OpKind.MAXPOOL2D, [c], {"pool": [2, 2], "stride": [2, 1], "pad": [[0, 1], [0, 0]]}).result
    c = g.add(
        OpKind.AVGPOOL1D,
        [g.add(OpKind.RESHAPE, [c], {"shape": [3, 2]}).result],
        {"pool": [3], "stride": [1], "pad": [[1, 1]], "count_pad": False},
    ).result
    bn = [g.const_mantissa(np.array([1, -3]), FixedType.uniform((2,), 1, 2, 1), name=n) for n in ("s", "o")]
    c = g.add(OpKind.BATCHNORM, [c, *bn]).result
    g.output(g.add(OpKind.GLOBAL_AVGPOOL, [c]).result, name="pooled")
    g.output(g.add(OpKind.GLOBAL_MAXPOOL, [c]).result, name="maxed")
    g.output(build_lut(g, q, np.tanh, (1, 0, 5), func="tanh"), name="lut")
    g.output(wide, name="wide")
    g.verify()
    return g


def assert_same_results(a: Graph, b: Graph, n: int = 40) -> None:
    rng = np.random.default_rng(41)
    xs = [
        np.concatenate([rand_values(rng, v.type, n // 2), rng.normal(0, 9, (n - n // 2, *v.shape))]) for v in a.inputs
    ]
    ra, rb = run_exact(a, xs), run_exact(b, xs)
    assert list(ra) == list(rb)
    for name in ra:
        assert fractions(ra[name]).tolist() == fractions(rb[name]).tolist(), name


def test_canonical_text_round_trips() -> None:
    g = hgqir.loads(CANONICAL)
    assert hgqir.dumps(g) == CANONICAL
    assert g.meta == {"frontend": "test"}
    # x3 saturates to 0; dense = [-3.875, 5]; -15.5 LSBs rounds to even -16 and wraps to 16
    assert g.run(np.array([0.75, 1.5, -2.5, 1.0])).tolist() == [[4.0, 5.0]]


@pytest.mark.parametrize(
    "build", [every_op_graph, lambda: GraphGen(7, wide=True).build(8), lambda: GraphGen(8).build(12)]
)
def test_dumps_loads_reproduces_the_graph(build) -> None:
    g = build()
    text = hgqir.dumps(g)
    g2 = hgqir.loads(text)
    assert hgqir.dumps(g2) == text
    assert [v.name for v in g2.values()] == [v.name for v in g.values()]
    assert all(a.type == b.type for a, b in zip(g.values(), g2.values(), strict=True))
    assert_same_results(g, g2)


def test_wide_constants_stay_python_ints() -> None:
    g = hgqir.loads(hgqir.dumps(every_op_graph()))
    data = g.value("wide").producer.attrs["data"]
    assert data.dtype == object and data.tolist() == [2**90 + 7, -(2**95)]


def test_quoted_graph_names_and_empty_shapes() -> None:
    g = Graph("my net (v2)")
    x = g.input("x", FixedType.uniform((), 1, 3, 2))
    g.output(g.add(OpKind.RELU, [x]).result)
    text = hgqir.dumps(g)
    assert text.startswith('hgqir 1 @"my net (v2)"\n') and "[] <1,3,2>" in text
    assert hgqir.dumps(hgqir.loads(text)) == text and hgqir.loads(text).name == "my net (v2)"


def test_elided_form_summarises_tables() -> None:
    g = hgqir.loads(CANONICAL)
    text = hgqir.dumps(g, elide=True)
    assert text.splitlines()[0] == "hgqir 1 @tiny (elided)"
    assert "%x = input {round = RND, overflow = SAT} : [4] {k=1 i=0..2 f=0..2}" in text
    assert "%w = const {data = <8 values>} : [4, 2] {k=1 i=0..1 f=2..3}" in text
    assert "$t0" not in text and str(g) == text
    pruned = FixedType((4,), 1, [2, -1, 2, 2], [3, 0, 2, -5])
    assert hgqir.summary(pruned) == "k=1 i=2 f=2..3 zero=2/4"
    with pytest.raises(ParseError, match="elided text"):
        hgqir.loads(text)


def test_save_and_load(tmp_path) -> None:
    g = every_op_graph()
    path = tmp_path / "g.hgq"
    hgqir.save(g, path)
    assert path.read_text() == hgqir.dumps(g)
    assert hgqir.dumps(hgqir.load(path)) == hgqir.dumps(g)


def test_large_tables_round_trip() -> None:
    """Rows of thousands of numbers take the fast writer and reader: still exact."""
    rng = np.random.default_rng(42)
    t = rand_type(rng, (60, 50), pruned=0.1, i_range=(-3, 3))
    g, (x,) = inputs_graph([rand_type(rng, (60,))])
    w = g.const_mantissa(np.ldexp(rand_values(rng, t, 1, corners=False)[0], t.f).astype(np.int64), t, name="w")
    g.output(g.add(OpKind.DENSE, [x, w]).result)
    text = hgqir.dumps(g)
    g2 = hgqir.loads(text)
    assert hgqir.dumps(g2) == text and g2.value("w").type == t
    assert np.array_equal(g2.value("w").producer.attrs["data"], w.producer.attrs["data"])
    assert_same_results(g, g2)
