"""``fold-batchnorm``: exact folds into dense/conv, and batchnorms that must stay."""

from __future__ import annotations

import numpy as np
import pytest
from hgqir.passes.fold_batchnorm import fold_batchnorms
from pass_helpers import BUILDERS, check_exact, inputs, perturb, rand_const, rand_type

import hgqir
from hgqir import FixedType, Graph, OpKind


@pytest.mark.parametrize("builder", ["mlp", "conv"])
@pytest.mark.parametrize("seed", range(5))
def test_folds_exactly(builder: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    g = BUILDERS[builder](rng)
    h = g.clone()
    report = fold_batchnorms(h)
    assert report.folded and not h.ops_of(OpKind.BATCHNORM)
    check_exact(g, h, inputs(g, rng))


@pytest.mark.parametrize("seed", range(5))
def test_perturbed_types_fold_only_when_exact(seed: int) -> None:
    rng = np.random.default_rng(seed)
    g = perturb(BUILDERS["mlp"](rng), rng, p=0.7)
    h = g.clone()
    report = fold_batchnorms(h)
    assert len(report.folded) + len(report.kept) == len(g.ops_of(OpKind.BATCHNORM))
    check_exact(g, h, inputs(g, rng))


def _dense_bn(rng: np.random.Generator, share: bool = False) -> Graph:
    g = Graph("bn")
    x = g.input("x", rand_type(rng, (4,)))
    d = g.add(OpKind.DENSE, [x, rand_const(g, rng, (4, 3), "w")], name="fc").result
    bn = g.add(OpKind.BATCHNORM, [d, rand_const(g, rng, (3,), "s"), rand_const(g, rng, (3,), "o")], name="bn").result
    g.output(bn)
    if share:
        g.output(d, "raw")
    return g


def test_bias_is_created_and_names_kept() -> None:
    g = _dense_bn(np.random.default_rng(1))
    h = g.clone()
    fold_batchnorms(h)
    fc = h.ops_of(OpKind.DENSE)[0]
    assert fc.result.name == "fc" and fc.operands[1].name == "w" and len(fc.operands) == 3
    assert fc.result.type == g.value("bn").type
    assert not [op for op in h.ops_of(OpKind.CONST) if not op.result.users]
    check_exact(g, h, inputs(g, np.random.default_rng(1)))


def test_shared_result_is_not_folded() -> None:
    g = _dense_bn(np.random.default_rng(2), share=True)
    report = fold_batchnorms(g)
    assert report.kept == {"bn": "%fc has other users"}


def test_truncating_dense_is_not_folded() -> None:
    g = _dense_bn(np.random.default_rng(3))
    fc = g.value("fc")
    t = fc.type
    fc.type = FixedType(t.shape, t.k, t.i, t.f - 1)
    report = fold_batchnorms(g)
    assert "cast into its declared type" in report.kept["bn"]


def test_wide_constants_stay_exact() -> None:
    """Products past 62 bits switch to Python integers instead of overflowing int64."""
    g = Graph("wide")
    x = g.input("x", FixedType.uniform((2,), 1, 2, 0))
    w = g.const_mantissa(np.array([[2**40 + 1], [-(2**39) - 3]]), FixedType.uniform((2, 1), 1, 41, 0), name="w")
    d = g.add(OpKind.DENSE, [x, w], name="fc").result
    s = g.const_mantissa(np.array([2**30 + 7]), FixedType.uniform((1,), 0, 31, 0), name="s")
    o = g.const_mantissa(np.array([1]), FixedType.uniform((1,), 0, 1, 0), name="o")
    g.output(g.add(OpKind.BATCHNORM, [d, s, o], name="bn").result)
    h = g.clone()
    assert fold_batchnorms(h).folded
    assert h.value("w").producer.attrs["data"].dtype == object  # type: ignore[union-attr]
    check_exact(g, h, inputs(g, np.random.default_rng(0), 30))


def test_pass_spec() -> None:
    pm = hgqir.PassManager.parse("fold-batchnorm")
    g = BUILDERS["mlp"](np.random.default_rng(0))
    pm.run(g)
    assert len(pm.results["fold-batchnorm"].folded) == 2
