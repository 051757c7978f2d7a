"""Graphs and checks shared by the pass tests.

Builders make small graphs with random per-element types and weights (a fraction of them
zero or pruned) covering every op kind of the first op set. ``check_exact`` runs the
interpreter before and after a pass on representable inputs and on inputs far outside the
declared ranges, and demands identical results.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import hgqir
from hgqir import FixedType, Graph, OpKind, Value
from hgqir.ops import build_lut

Rng = np.random.Generator


def rand_type(
    rng: Rng,
    shape: tuple[int, ...],
    i: tuple[int, int] = (0, 3),
    f: tuple[int, int] = (0, 4),
    zero: float = 0.0,
    signed: float = 0.7,
) -> FixedType:
    """Per-element random type; a fraction ``zero`` of the elements pruned."""
    k = (rng.random(shape) < signed).astype(np.int64)
    ii = rng.integers(i[0], i[1] + 1, shape)
    ff = rng.integers(f[0], f[1] + 1, shape)
    ff = np.maximum(ff, 1 - k - ii)  # width >= 1 before pruning
    pruned = rng.random(shape) < zero
    return FixedType(shape, np.where(pruned, 0, k), np.where(pruned, 0, ii), np.where(pruned, 0, ff))


def rand_const(g: Graph, rng: Rng, shape: tuple[int, ...], name: str, zero: float = 0.3, **kw: Any) -> Value:
    """A const with a random per-element type and random representable values (some zero)."""
    t = rand_type(rng, shape, **kw)
    live = ~t.zero_mask
    lo = np.where(live, -t.k * (2 ** np.maximum(t.i + t.f, 0)), 0)
    hi = np.where(live, 2 ** np.maximum(t.i + t.f, 0) - 1, 0)
    data = rng.integers(lo, hi + 1)
    data = np.where(rng.random(shape) < zero, 0, data)
    return g.const_mantissa(data.astype(np.int64), t, name=name)


def rand_quant(g: Graph, rng: Rng, x: Value, name: str, **kw: Any) -> Value:
    modes = {
        "round": rng.choice([m.name for m in hgqir.RoundMode]),
        "overflow": rng.choice([m.name for m in hgqir.OverflowMode]),
    }
    return g.add(OpKind.QUANT, [x], modes, [rand_type(rng, x.shape, **kw)], name=name).result


def mlp(rng: Rng, sizes: tuple[int, ...] = (8, 6, 5, 3), bn: bool = True, zero: float = 0.3) -> Graph:
    """input -> quant -> [dense -> (batchnorm) -> relu -> quant]* -> dense -> output."""
    g = Graph("mlp")
    x = g.input("x", rand_type(rng, (sizes[0],), i=(1, 3)))
    h = rand_quant(g, rng, x, "q0")
    for n, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True), start=1):
        w = rand_const(g, rng, (a, b), f"w{n}", zero=zero)
        bias = rand_const(g, rng, (b,), f"b{n}", zero=zero)
        h = g.add(OpKind.DENSE, [h, w, bias], name=f"fc{n}").result
        if n == len(sizes) - 1:
            break
        if bn:
            s = rand_const(g, rng, (b,), f"s{n}", zero=0.1)
            o = rand_const(g, rng, (b,), f"o{n}", zero=0.1)
            h = g.add(OpKind.BATCHNORM, [h, s, o], name=f"bn{n}").result
        h = g.add(OpKind.RELU, [h], name=f"relu{n}").result
        h = rand_quant(g, rng, h, f"q{n}")
    g.output(h)
    return g


def convnet(rng: Rng) -> Graph:
    """conv2d (same padding) -> bn -> relu -> maxpool -> conv2d -> avgpool -> global avg -> dense."""
    g = Graph("conv")
    x = g.input("x", rand_type(rng, (6, 6, 2), i=(1, 2)))
    h = rand_quant(g, rng, x, "q0")
    w = rand_const(g, rng, (3, 3, 2, 4), "k1")
    h = g.add(
        OpKind.CONV2D, [h, w, rand_const(g, rng, (4,), "c1")], {"stride": [1, 1], "pad": [[1, 1], [1, 1]]}, name="conv1"
    ).result
    h = g.add(OpKind.BATCHNORM, [h, rand_const(g, rng, (4,), "s1"), rand_const(g, rng, (4,), "o1")], name="bn1").result
    h = g.add(OpKind.RELU, [h], name="relu1").result
    h = g.add(OpKind.MAXPOOL2D, [h], {"pool": [2, 2], "stride": [2, 2], "pad": [[0, 0], [0, 0]]}, name="mp").result
    w2 = rand_const(g, rng, (2, 2, 4, 3), "k2")
    h = g.add(OpKind.CONV2D, [h, w2], {"stride": [1, 1], "pad": [[0, 0], [0, 0]]}, name="conv2").result
    h = g.add(OpKind.AVGPOOL2D, [h], {"pool": [2, 2], "stride": [1, 1], "pad": [[0, 0], [0, 0]]}, name="ap").result
    h = g.add(OpKind.GLOBAL_AVGPOOL, [h], name="gap").result
    h = g.add(OpKind.DENSE, [h, rand_const(g, rng, (3, 2), "w3")], name="fc").result
    g.output(h)
    return g


def conv1d_net(rng: Rng) -> Graph:
    """conv1d -> avgpool1d (3-wide: inexact division) -> maxpool1d -> global max."""
    g = Graph("conv1d")
    x = g.input("x", rand_type(rng, (9, 3)))
    h = g.add(OpKind.CONV1D, [x, rand_const(g, rng, (3, 3, 4), "k")], {"stride": [1], "pad": [[1, 1]]}, name="c").result
    h = g.add(
        OpKind.AVGPOOL1D,
        [h],
        {"pool": [3], "stride": [1], "pad": [[1, 1]], "count_pad": False},
        types=[rand_type(rng, (9, 4), i=(2, 5), f=(0, 3))],
        name="ap",
    ).result
    h = g.add(OpKind.MAXPOOL1D, [h], {"pool": [2], "stride": [2], "pad": [[0, 1]]}, name="mp").result
    h = g.add(OpKind.GLOBAL_MAXPOOL, [h], name="gmp").result
    g.output(h)
    return g


def softmax_op(g: Graph, rng: Rng, x: Value, name: str) -> Value:
    """A softmax with arbitrary (random) tables: the passes must keep whatever they compute."""
    et = g.const_mantissa(rng.integers(0, 256, 32), FixedType.uniform((32,), 0, 0, 8), name=f"{name}_exp")
    inv_in = (0, 4, 2)
    it = g.const_mantissa(rng.integers(0, 128, 64), FixedType.uniform((64,), 0, 1, 6), name=f"{name}_inv")
    return g.add(OpKind.SOFTMAX, [x, et, it], {"inv_in": inv_in}, name=name).result


def elementwise(rng: Rng) -> Graph:
    """Two inputs through add, sub, mul, concat, transpose, reshape, lut and softmax."""
    g = Graph("elementwise")
    a = g.input("a", rand_type(rng, (3, 4)))
    b = g.input("b", rand_type(rng, (3, 4), zero=0.2))
    s = g.add(OpKind.ADD, [a, b], name="sum").result
    d = g.add(OpKind.SUB, [a, rand_const(g, rng, (4,), "bias")], name="diff").result
    m = g.add(OpKind.MUL, [s, d], name="prod").result
    c = g.add(OpKind.CONCAT, [m, s], {"axis": 0}, name="cat").result
    t = g.add(OpKind.TRANSPOSE, [c], {"perm": [1, 0]}, name="tr").result
    r = g.add(OpKind.RESHAPE, [t], {"shape": [24]}, name="flat").result
    q = g.add(
        OpKind.QUANT, [r], {"round": "RND", "overflow": "SAT"}, [FixedType.uniform((24,), 1, 2, 2)], name="q"
    ).result
    y = build_lut(g, q, np.tanh, (1, 0, 5), func="tanh", name="tanh")
    z = g.add(
        OpKind.QUANT, [m], {"round": "TRN", "overflow": "WRAP"}, [FixedType.uniform((3, 4), 1, 3, 1)], name="qm"
    ).result
    g.output(y, "y")
    g.output(softmax_op(g, rng, z, "sm"), "p")
    return g


BUILDERS: dict[str, Callable[[Rng], Graph]] = {
    "mlp": mlp,
    "mlp_nobn": lambda rng: mlp(rng, bn=False, zero=0.5),
    "conv": convnet,
    "conv1d": conv1d_net,
    "elementwise": elementwise,
}


def inputs(g: Graph, rng: Rng, n: int = 300) -> list[np.ndarray]:
    """Per input: representable values, range edges and values far outside the range."""
    out = []
    for v in g.inputs:
        t = v.type
        lo = np.broadcast_to(t.lo, t.shape)
        hi = np.broadcast_to(t.hi, t.shape)
        u = rng.random((n, *t.shape))
        inside = np.ldexp(np.floor(np.ldexp(lo + u * (hi - lo), t.f)), -t.f)
        edges = np.stack([lo, hi, np.zeros(t.shape)])
        span = np.maximum(hi - lo, 1.0)
        outside = rng.normal(size=(n, *t.shape)) * span * 8 + rng.random((n, *t.shape)) * 0.37
        out.append(np.concatenate([inside, edges, outside]))
    return out


def run(g: Graph, xs: list[np.ndarray]) -> list[np.ndarray]:
    y = g.run(*xs, batch=True)
    return y if isinstance(y, list) else [y]


def check_exact(before: Graph, after: Graph, xs: list[np.ndarray]) -> None:
    """The interpreter gives identical results (``np.array_equal``) on ``xs``."""
    after.verify()
    ya, yb = run(before, xs), run(after, xs)
    assert len(ya) == len(yb)
    for n, (a, b) in enumerate(zip(ya, yb, strict=True)):
        assert a.shape == b.shape, f"output {n}: shape {a.shape} became {b.shape}"
        diff = np.flatnonzero(a != b)
        assert diff.size == 0, (
            f"output {n} differs at {diff[:5]}: {a.reshape(-1)[diff[:5]]} vs {b.reshape(-1)[diff[:5]]}"
        )


def apply_spec(g: Graph, spec: str) -> Any:
    pm = hgqir.PassManager.parse(spec)
    pm.run(g)
    return pm.results


def perturb(g: Graph, rng: Rng, p: float = 0.5) -> Graph:
    """Re-type computed values at random: wider, or narrower so that casts wrap and truncate.

    Values read by lut/softmax keep their types (their tables are built over them).
    """
    for op in g.ops:
        if op.kind in (OpKind.INPUT, OpKind.CONST, OpKind.QUANT, OpKind.OUTPUT):
            continue
        v = op.result
        if any(u.kind in (OpKind.LUT, OpKind.SOFTMAX) for u in v.users) or rng.random() > p:
            continue
        t = v.type
        di = rng.integers(-3, 3, t.shape)
        df = rng.integers(-2, 3, t.shape)
        v.type = FixedType(t.shape, np.maximum(t.k, rng.integers(0, 2, t.shape)), t.i + di, t.f + df)
    return g
