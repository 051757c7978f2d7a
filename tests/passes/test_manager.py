"""Pass infrastructure: spec strings, registry errors, failures with rollback, verify_each, dump_dir.

Also the two core passes, ``dce`` and ``canonicalize``, checked bit-exact with the interpreter.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
from hgqir.passes import PASSES, Pass, PassManager, register
from hgqir.passes.canonicalize import Canonicalize
from hgqir.passes.dce import DeadCodeElimination

import hgqir
from hgqir import FixedType, Graph, OpKind, PipelineError


@dataclass(frozen=True)
class Vandal(Pass):
    """Test pass: erases the last quant op, then fails (or leaves an invalid graph)."""

    name: ClassVar[str] = "vandal"
    invalid_only: bool = False

    def apply(self, g: Graph) -> None:
        q = g.ops_of(OpKind.QUANT)[-1]
        if self.invalid_only:
            g.ops.remove(q)  # leaves a dangling operand behind
            return
        g.replace_uses(q.result, q.operands[0])
        g.erase(q)
        raise RuntimeError("boom")


@pytest.fixture
def vandal() -> Iterator[None]:
    register(Vandal)
    yield
    PASSES.pop("vandal", None)


def sample_graph() -> Graph:
    g = Graph("pm")
    x = g.input("x", FixedType.uniform((4,), 1, 3, 3))
    unused = g.input("unused", FixedType.uniform((2,), 1, 1, 1))
    r = g.add(OpKind.RELU, [x]).result
    q = g.add(OpKind.QUANT, [r], {"round": "RND", "overflow": "SAT"}, [FixedType.uniform((4,), 0, 3, 2)]).result
    same = g.add(OpKind.QUANT, [q], {"round": "TRN", "overflow": "WRAP"}, [q.type]).result
    rs = g.add(OpKind.RESHAPE, [g.add(OpKind.RESHAPE, [same], {"shape": [2, 2]}).result], {"shape": [4]}).result
    g.add(OpKind.RELU, [unused])  # dead
    g.output(g.add(OpKind.RELU, [rs]).result)
    g.verify()
    return g


@pytest.mark.parametrize(
    "spec",
    [
        "canonicalize,dce{keep-io=true}",
        "dce",
        "dce{keep-io=false},canonicalize",
        "canonicalize{max-iterations=3},bops",
        "",
    ],
)
def test_spec_prints_back_identically(spec: str) -> None:
    assert str(PassManager.parse(spec)) == spec


def test_spec_normalises_spaces_and_reads_options() -> None:
    pm = PassManager.parse(" canonicalize , dce{ keep-io = false } ")
    assert str(pm) == "canonicalize,dce{keep-io=false}"
    assert pm.passes == [Canonicalize(), DeadCodeElimination(keep_io=False)]
    assert str(PassManager([DeadCodeElimination(keep_io=False)])) == "dce{keep-io=false}"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("canonicalise", "unknown pass 'canonicalise'; valid passes: "),
        ("dce{keep-everything=true}", "pass 'dce' has no option 'keep-everything'; valid options: keep-io"),
        ("dce{keep-io=maybe}", "bad value 'maybe' for option 'keep-io'"),
        ("dce{keep-io}", "needs a value (key=value)"),
        ("dce{keep-io=true", "unbalanced '{'"),
        ("dce},canonicalize", "unbalanced '}'"),
        ("dce,,canonicalize", "empty pass name"),
        ("dce{keep-io=true,keep-io=false}", "option 'keep-io' given twice"),
    ],
)
def test_bad_specs_list_the_valid_names(spec: str, message: str) -> None:
    with pytest.raises(PipelineError) as info:
        PassManager.parse(spec)
    assert message in str(info.value)
    if "valid passes" in message:
        assert "canonicalize" in str(info.value) and "dce" in str(info.value)


def test_failing_pass_is_named_and_rolled_back(vandal) -> None:
    g = sample_graph()
    before = hgqir.dumps(g)
    pm = PassManager.parse("canonicalize,dce,vandal")
    with pytest.raises(PipelineError) as info:
        pm.run(g)
    msg = str(info.value)
    assert "pass 'vandal' failed: boom" in msg and "passes run before it: canonicalize, dce" in msg
    assert info.value.pass_name == "vandal"  # type: ignore[attr-defined]
    assert isinstance(info.value.__cause__, RuntimeError)
    after_two = PassManager.parse("canonicalize,dce").run(hgqir.loads(before))
    assert hgqir.dumps(g) == hgqir.dumps(after_two)  # state after the last good pass
    g.verify()


def test_verify_each_catches_an_invalid_graph(vandal) -> None:
    g = sample_graph()
    before = hgqir.dumps(g)
    with pytest.raises(PipelineError, match="pass 'vandal{invalid-only=true}' left an invalid graph") as info:
        PassManager.parse("vandal{invalid-only=true}").run(g)
    assert "passes run before it: none" in str(info.value)
    assert hgqir.dumps(g) == before
    g2 = sample_graph()
    PassManager.parse("vandal{invalid-only=true}", verify_each=False).run(g2)  # not checked: no error
    with pytest.raises(hgqir.VerifyError):
        g2.verify()


def test_dump_dir_writes_every_stage(tmp_path) -> None:
    g = sample_graph()
    pm = PassManager.parse("canonicalize,dce{keep-io=false}", dump_dir=tmp_path / "dumps")
    pm.run(g)
    files = sorted(p.name for p in (tmp_path / "dumps").iterdir())
    assert files == ["00-input.hgq", "01-canonicalize.hgq", "02-dce.hgq"]
    assert (tmp_path / "dumps" / "02-dce.hgq").read_text() == hgqir.dumps(g)
    assert hgqir.dumps(hgqir.load(tmp_path / "dumps" / "00-input.hgq")) == hgqir.dumps(sample_graph())


def test_analysis_results_and_lossy_flag() -> None:
    pm = PassManager.parse("dce,bops")
    pm.run(sample_graph())
    assert pm.results["dce"] == 1 and pm.results["bops"].total >= 0
    assert pm.lossy is False


def test_core_passes_are_bit_exact() -> None:
    g = sample_graph()
    x = [np.random.default_rng(0).normal(0, 9, (500, 4)), np.zeros((500, 2))]
    before = g.run(*x)
    pm = PassManager.parse("canonicalize,dce")
    pm.run(g)
    assert np.array_equal(g.run(*x), before)
    kinds = [op.kind for op in g.ops]
    assert kinds.count(OpKind.RESHAPE) == 0  # [4] -> [2, 2] -> [4] folds to an identity reshape, then goes
    assert kinds.count(OpKind.QUANT) == 1  # the quant to its input's own type went
    assert kinds.count(OpKind.RELU) == 1  # the relu of an unsigned value went, the dead one too
    assert len(g.inputs) == 2  # keep-io keeps the unused input port


def test_dce_drops_unused_inputs_without_keep_io() -> None:
    g = sample_graph()
    PassManager.parse("dce{keep-io=false}").run(g)
    assert [v.name for v in g.inputs] == ["x"]


def test_canonicalize_keeps_sat_sym_quant_of_same_type() -> None:
    """SAT_SYM moves the most negative value even without overflow: not a no-op."""
    g = Graph()
    t = FixedType.uniform((2,), 1, 2, 0)
    x = g.input("x", t)
    g.output(g.add(OpKind.QUANT, [x], {"round": "TRN", "overflow": "SAT_SYM"}, [t]).result)
    x_val = np.array([[-4.0, 3.0]])
    assert g.run(x_val).tolist() == [[-3.0, 3.0]]
    PassManager.parse("canonicalize").run(g)
    assert g.run(x_val).tolist() == [[-3.0, 3.0]] and g.ops_of(OpKind.QUANT)


def test_canonicalize_keeps_reshape_chain_that_casts() -> None:
    g = Graph()
    x = g.input("x", FixedType.uniform((4,), 1, 3, 2))
    inner = g.add(OpKind.RESHAPE, [x], {"shape": [2, 2]}, [FixedType.uniform((2, 2), 1, 1, 1)]).result
    g.output(g.add(OpKind.RESHAPE, [inner], {"shape": [4]}).result)
    x_val = np.array([[7.75, -3.25, 1.5, 0.25]])
    before = g.run(x_val)
    PassManager.parse("canonicalize,dce").run(g)
    assert np.array_equal(g.run(x_val), before) and len(g.ops_of(OpKind.RESHAPE)) == 2
