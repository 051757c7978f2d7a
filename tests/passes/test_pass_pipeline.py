"""The pass pipeline: specs, exactness end to end, failures that name the op and roll back."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hgqir.passes import PASSES
from hgqir.passes.reslice import Reslicer
from pass_helpers import BUILDERS, check_exact, inputs, perturb

import hgqir
from hgqir import OpKind
from hgqir.ops import RULES

PIPELINE = "fold-batchnorm,infer-bitwidth,prune-zero-bits,dce"
MINE = ["infer-bitwidth", "prune-zero-bits", "fold-batchnorm", "fuse-quant", "annotate-bops", "bops", "dce"]


@pytest.mark.parametrize(
    "spec",
    [
        PIPELINE,
        "fold-batchnorm,fuse-quant,infer-bitwidth{consts=false},prune-zero-bits{keep-io=false},dce,bops",
        "prune-zero-bits{max-sweeps=3,keep-io=false},annotate-bops{dsp-bits=12}",
    ],
)
def test_spec_prints_back(spec: str) -> None:
    assert str(hgqir.PassManager.parse(spec)) == spec


def test_passes_are_registered() -> None:
    assert set(MINE) <= set(PASSES)


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(hgqir.PipelineError, match="valid passes:.*infer-bitwidth.*prune-zero-bits"):
        hgqir.PassManager.parse("infer-bitwidth,prune-zero-bit")
    with pytest.raises(hgqir.PipelineError, match="valid options: keep-io, max-sweeps"):
        hgqir.PassManager.parse("prune-zero-bits{keep_io=false,io=1}")


@pytest.mark.parametrize("builder", sorted(BUILDERS))
@pytest.mark.parametrize("seed", range(3))
def test_full_pipeline_is_exact(builder: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    g = perturb(BUILDERS[builder](rng), rng, p=0.3)
    h = g.clone()
    pm = hgqir.PassManager.parse("fold-batchnorm,fuse-quant,infer-bitwidth,prune-zero-bits,dce,annotate-bops")
    pm.run(h)
    assert not pm.lossy
    check_exact(g, h, inputs(g, rng))
    assert hgqir.dumps(hgqir.loads(hgqir.dumps(h))) == hgqir.dumps(h)
    assert hgqir.bops(h).total <= hgqir.bops(g).total


def test_idempotent() -> None:
    g = BUILDERS["mlp"](np.random.default_rng(4))
    hgqir.PassManager.parse(PIPELINE).run(g)
    text = hgqir.dumps(g)
    hgqir.PassManager.parse(PIPELINE).run(g)
    assert hgqir.dumps(g) == text


def test_analysis_failure_names_the_op_and_leaves_the_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(op, ins):  # type: ignore[no-untyped-def]
        raise ValueError("no rule")

    monkeypatch.setitem(RULES, OpKind.RELU, replace(RULES[OpKind.RELU], transfer=broken))
    g = BUILDERS["mlp"](np.random.default_rng(0))
    text = hgqir.dumps(g)
    with pytest.raises(hgqir.PipelineError) as info:
        hgqir.PassManager.parse("dce,infer-bitwidth").run(g)
    msg = str(info.value)
    assert "pass 'infer-bitwidth' failed" in msg and "Op(%relu1 = relu %bn1)" in msg and "before it: dce" in msg
    assert hgqir.dumps(g) == text
    g.verify()


def test_failure_half_way_through_a_rewrite_rolls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    g = BUILDERS["mlp_nobn"](np.random.default_rng(1))
    text = hgqir.dumps(g)
    real = Reslicer.rebuild
    calls = []

    def flaky(self, op, operands):  # type: ignore[no-untyped-def]
        calls.append(op)
        if len(calls) == 3:
            raise RuntimeError(f"injected failure at {op!r}")
        return real(self, op, operands)

    monkeypatch.setattr(Reslicer, "rebuild", flaky)
    with pytest.raises(hgqir.PipelineError, match="injected failure at Op"):
        hgqir.PassManager.parse("prune-zero-bits").run(g)
    assert len(calls) == 3
    assert hgqir.dumps(g) == text
    g.verify()


def _benchmark_module():  # type: ignore[no-untyped-def]
    path = Path(__file__).parents[2] / "benchmarks" / "passes.py"
    spec = importlib.util.spec_from_file_location("bench_passes", path)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def test_benchmark_network_runs_the_pipeline_exactly() -> None:
    bench = _benchmark_module()
    g = bench.network(3000)
    h = g.clone()
    hgqir.PassManager.parse(bench.PIPELINE).run(h)
    assert bench.weights(h) < bench.weights(g)
    check_exact(g, h, inputs(g, np.random.default_rng(0), 100))


def test_direct_calls_roll_back_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a PassManager the passes still leave the graph untouched when they fail."""
    from hgqir.passes import fold_batchnorm
    from hgqir.passes.fold_batchnorm import fold_batchnorms
    from hgqir.passes.prune_zero_bits import prune

    g = BUILDERS["mlp"](np.random.default_rng(1))
    text = hgqir.dumps(g)
    real = fold_batchnorm.fold

    def late_failure(graph, bn):  # type: ignore[no-untyped-def]
        real(graph, bn)
        raise RuntimeError("after the rewrite")

    monkeypatch.setattr(fold_batchnorm, "fold", late_failure)
    with pytest.raises(hgqir.HgqirError, match=r"fold-batchnorm failed at Op\(%bn1 = batchnorm"):
        fold_batchnorms(g)
    assert hgqir.dumps(g) == text

    monkeypatch.setattr(Reslicer, "rebuild", lambda self, op, operands: 1 / 0)
    g = BUILDERS["mlp_nobn"](np.random.default_rng(1))
    text = hgqir.dumps(g)
    with pytest.raises(hgqir.HgqirError, match=r"rebuilding Op\(%fc2 = dense .*ZeroDivisionError"):
        prune(g)
    assert hgqir.dumps(g) == text
    g.verify()
