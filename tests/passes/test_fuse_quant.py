"""``fuse-quant``: every fusion it makes gives the same results as the two quants it replaces."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hgqir.passes.fuse_quant import fuse_quants
from hypothesis import given, settings
from hypothesis import strategies as st
from pass_helpers import check_exact

from hgqir import FixedType, Graph, OpKind, OverflowMode, RoundMode

ROUNDS = [m.name for m in RoundMode]
OVERFLOWS = ["WRAP", "SAT", "SAT_SYM"]


def kif() -> st.SearchStrategy[tuple[int, int, int]]:
    return st.tuples(st.integers(0, 1), st.integers(-2, 4), st.integers(-1, 5)).filter(lambda t: sum(t) >= 1)


def pair(
    x: tuple[int, int, int],
    t1: tuple[int, int, int],
    m1: tuple[str, str],
    t2: tuple[int, int, int],
    m2: tuple[str, str],
) -> Graph:
    g = Graph("pair")
    v = g.input("x", FixedType.uniform((1,), *x))
    q1 = g.add(OpKind.QUANT, [v], {"round": m1[0], "overflow": m1[1]}, [FixedType.uniform((1,), *t1)], name="q1")
    q2 = g.add(
        OpKind.QUANT, [q1.result], {"round": m2[0], "overflow": m2[1]}, [FixedType.uniform((1,), *t2)], name="q2"
    )
    g.output(q2.result)
    return g


def every_input(k: int, i: int, f: int) -> list[np.ndarray]:
    """Every value of ``<k,i,f>`` plus values outside it (the input op wraps them in)."""
    lo, hi = -k * 2 ** (i + f), 2 ** (i + f)
    grid = np.ldexp(np.arange(lo, hi, dtype=np.float64), -f)
    return [np.concatenate([grid, grid * 3.0 + 0.3, [-1e3, 1e3]])[:, None]]


def fused(x, t1, m1, t2, m2) -> str:  # type: ignore[no-untyped-def]
    g = pair(x, t1, m1, t2, m2)
    h = g.clone()
    rules = fuse_quants(h).fused
    check_exact(g, h, every_input(*x))
    if rules:
        assert len(h.ops_of(OpKind.QUANT)) == 1
    return next(iter(rules.values()), "")


@settings(max_examples=400, deadline=None)
@given(
    kif(),
    kif(),
    st.sampled_from(ROUNDS),
    st.sampled_from(OVERFLOWS),
    kif(),
    st.sampled_from(ROUNDS),
    st.sampled_from(OVERFLOWS),
)
def test_every_fusion_is_exact(x, t1, r1, o1, t2, r2, o2) -> None:  # type: ignore[no-untyped-def]
    fused(x, t1, (r1, o1), t2, (r2, o2))


def test_every_rule_fires() -> None:
    rng = np.random.default_rng(0)
    seen: Counter[str] = Counter()
    for _ in range(600):

        def t() -> tuple[int, int, int]:
            k, i = int(rng.integers(0, 2)), int(rng.integers(-1, 4))
            return (k, i, int(rng.integers(max(1 - k - i, -1), 5)))

        m = [(str(rng.choice(["TRN", "RND", "RND_CONV"])), str(rng.choice(["WRAP", "SAT"]))) for _ in range(2)]
        seen[fused(t(), t(), m[0], t(), m[1])] += 1
    for rule in ("skip-inner", "skip-outer", "wrap-wrap", "sat-sat", ""):
        assert seen[rule] >= 5, seen


def test_chains_of_three() -> None:
    g = Graph("chain")
    v = g.input("x", FixedType.uniform((3,), 1, 4, 4))
    for n, t in enumerate([(1, 3, 3), (1, 2, 2), (1, 1, 1)]):
        v = g.add(
            OpKind.QUANT, [v], {"round": "TRN", "overflow": "WRAP"}, [FixedType.uniform((3,), *t)], name=f"q{n}"
        ).result
    g.output(v)
    h = g.clone()
    fuse_quants(h)
    assert len(h.ops_of(OpKind.QUANT)) == 1
    check_exact(g, h, [np.linspace(-40, 40, 997)[:, None] * np.ones(3)])


def test_lut_input_type_is_kept() -> None:
    """skip-outer would retype the value a lut indexes its table by: not allowed."""
    from hgqir.ops import build_lut

    g = Graph("lut")
    v = g.input("x", FixedType.uniform((2,), 1, 2, 2))
    q1 = g.add(OpKind.QUANT, [v], {"round": "TRN", "overflow": "SAT"}, [FixedType.uniform((2,), 0, 1, 1)]).result
    q2 = g.add(OpKind.QUANT, [q1], {"round": "TRN", "overflow": "SAT"}, [FixedType.uniform((2,), 1, 2, 2)]).result
    g.output(build_lut(g, q2, np.tanh, (1, 0, 4)))
    h = g.clone()
    fuse_quants(h)
    assert h.ops_of(OpKind.LUT)[0].operands[0].type == q2.type
    h.verify()


def test_modes_of_result() -> None:
    g = pair((1, 3, 4), (1, 2, 3), ("TRN", "WRAP"), (1, 1, 1), ("RND", "WRAP"))
    fuse_quants(g)
    q = g.ops_of(OpKind.QUANT)[0]
    assert q.attrs["round"] is RoundMode.RND and q.attrs["overflow"] is OverflowMode.WRAP
