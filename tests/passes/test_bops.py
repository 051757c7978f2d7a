"""``bops`` / ``annotate-bops``: EBOPs by the documented rules, and the LUT/DSP estimate."""

from __future__ import annotations

import numpy as np
import pytest
from hgqir.passes.annotate_bops import annotated
from hgqir.passes.bops import DSP_EBOPS, bops
from pass_helpers import BUILDERS

import hgqir
from hgqir import FixedType, Graph, OpKind


def _graph() -> Graph:
    """x widths [12, 4]; w widths [[10, 3], [12, 0-valued]]; batchnorm and add for the other rules."""
    g = Graph("b")
    x = g.input("x", FixedType((2,), 1, np.array([5, 1]), np.array([6, 2])))
    w = g.const_mantissa(
        np.array([[300, 3], [1000, 0]]),
        FixedType((2, 2), 1, np.array([[4, 1], [5, 5]]), np.array([[5, 1], [6, 6]])),
        name="w",
    )
    d = g.add(OpKind.DENSE, [x, w], name="fc").result
    s = g.const_mantissa(np.array([5, 0]), FixedType.uniform((2,), 0, 3, 0), name="s")
    o = g.const_mantissa(np.array([0, 0]), FixedType.uniform((2,), 0, 1, 0), name="o")
    bn = g.add(OpKind.BATCHNORM, [x, s, o], name="bn").result
    g.output(d)
    g.output(g.add(OpKind.ADD, [bn, x], name="sum").result, "sum")
    return g


def test_hand_computed_ebops_and_split() -> None:
    report = bops(_graph(), dsp_bits=10, hardware=False)
    rows = {r.name: r for r in report.rows}
    # fc: 12*10 + 12*3 + 4*12 (the 0-valued weight costs nothing)
    assert rows["fc"].ebops == 120 + 36 + 48
    # only 12x10 has both operands >= 10 bits: one DSP, its 120 EBOPs leave the LUT count
    assert (rows["fc"].dsp, rows["fc"].lut) == (1, 84)
    assert (rows["fc"].ebops_dsp, rows["fc"].ebops_lut) == (1, 84)
    # batchnorm: width(x) * width(scale), zero scales free: 12*3
    assert rows["bn"].ebops == 36 and rows["bn"].dsp == 0
    assert report.total == sum(r.ebops for r in report.rows)
    assert hgqir.bops(_graph()).total == report.total
    assert f"LUT + {DSP_EBOPS}*DSP" in report.table()


def test_add_rule() -> None:
    g = _graph()
    rows = bops(g).by_name()
    bn, x = g.value("bn").type.bits, g.inputs[0].type.bits
    assert rows["sum"] == float(np.maximum(bn, x).sum())


@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_split_adds_up(builder: str) -> None:
    g = BUILDERS[builder](np.random.default_rng(0))
    for dsp_bits in (0, 3, 5, 100):
        report = bops(g, dsp_bits)
        assert report.total > 0
        for r in report.rows:
            assert 0 <= r.ebops_lut <= r.ebops and r.ebops_dsp >= 0
        if dsp_bits == 100:
            assert report.ebops_dsp == 0 and report.ebops_lut == report.total
    assert bops(g, 1).ebops_dsp >= bops(g, 5).ebops_dsp


@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_hardware_estimate_comes_from_the_netlist(builder: str) -> None:
    g = BUILDERS[builder](np.random.default_rng(0))
    report = bops(g)
    assert report.model == "netlist" and report.lut > 0 and report.ff == 0
    piped = bops(g, pipeline=1)
    assert piped.ff > 0 and piped.lut == pytest.approx(report.lut, rel=0.01)
    contracting = [r for r in report.rows if r.kind in ("dense", "conv1d", "conv2d")]
    assert all(r.lut > 0 for r in contracting)
    assert bops(g, hardware=False).model == "ebops"
    with pytest.raises(hgqir.HgqirError, match="pipeline"):
        bops(g, pipeline="fast")


def test_bops_pass_option_round_trips() -> None:
    pm = hgqir.PassManager.parse("bops{dsp-bits=8}")
    assert str(pm) == "bops{dsp-bits=8}"
    pm.run(BUILDERS["mlp"](np.random.default_rng(0)))
    assert pm.results["bops"].dsp_bits == 8


def test_annotate_bops_travels_with_the_text() -> None:
    g = BUILDERS["conv"](np.random.default_rng(1))
    pm = hgqir.PassManager.parse("annotate-bops")
    pm.run(g)
    g2 = hgqir.loads(hgqir.dumps(g))
    assert annotated(g2) == bops(g).by_name()
    assert g2.meta["ebops"]["total"] == pm.results["annotate-bops"].total
    assert annotated(Graph("plain")) == {}


def test_pruning_lowers_ebops() -> None:
    g = BUILDERS["mlp"](np.random.default_rng(2))
    before = bops(g).total
    hgqir.PassManager.parse("fold-batchnorm,infer-bitwidth,prune-zero-bits,dce").run(g)
    assert bops(g).total < before
