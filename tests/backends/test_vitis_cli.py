"""``hgqir emit`` and ``hgqir csim`` on a saved graph; several compiled designs in one process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from vitis_graphs import check, rand_const, rand_type, wild_inputs

import hgqir
from hgqir import FixedType, Graph, OpKind
from hgqir.cli import main
from hgqir.commands.emit import parse_reuse
from hgqir.errors import HgqirError

pytestmark = pytest.mark.slow


def small_graph(seed: int) -> Graph:
    rng = np.random.default_rng(seed)
    g = Graph("small")
    x = g.input("x", rand_type(rng, (6,), pruned=0.2), round="RND", overflow="SAT")
    h = g.add(OpKind.DENSE, [x, rand_const(g, rng, (6, 4), "w"), rand_const(g, rng, (4,), "b")], name="dense").result
    g.output(g.add(OpKind.RELU, [h]).result, name="y")
    return g


def test_emit_then_csim_passes_and_counts_mismatches(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "model.hgq"
    hgqir.save(small_graph(0), src)
    prj = tmp_path / "prj"
    assert (
        main(["emit", str(src), "--backend", "vitis", "-o", str(prj), "--reuse", "dense=2", "--tb-samples", "9"]) == 0
    )
    assert "#pragma HLS ALLOCATION" in (prj / "firmware" / "myproject.cpp").read_text()
    assert main(["csim", str(prj)]) == 0
    assert "PASS: 9 samples, 0 mismatched samples" in capsys.readouterr().out
    gold = prj / "tb_data" / "outputs.dat"
    lines = gold.read_text().splitlines()
    first = lines[2].split()
    first[0] = str(int(first[0]) + 1)
    lines[2] = " ".join(first)
    gold.write_text("\n".join(lines) + "\n")
    assert main(["csim", str(prj)]) == 1
    assert "FAIL: 9 samples, 1 mismatched samples, 1 mismatched output elements" in capsys.readouterr().out


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["csim", str(tmp_path)]) == 1
    assert "hgqir emit" in capsys.readouterr().err
    assert parse_reuse(["4"]) == 4 and parse_reuse(["%d=3", "*=2"]) == {"d": 3, "*": 2}
    with pytest.raises(HgqirError):
        parse_reuse(["d=x"])


def test_designs_with_equal_names_share_one_process(tmp_path: Path) -> None:
    """Every design's symbols stay private to its library: same top name, same port and table
    names, different element layouts (a shared index table would scramble the inputs)."""
    projects = []
    for n, order in enumerate(([0, 1, 0, 1, 1, 0], [1, 1, 0, 0, 1, 0], [0, 0, 1, 1, 0, 1])):
        g = Graph("layout")
        f = np.array([[3, 1][o] for o in order])
        x = g.input("x", FixedType((6,), 1, 2, f), round="RND")
        g.output(g.add(OpKind.MUL, [x, g.const(np.arange(1.0, 7.0), FixedType.uniform((6,), 0, 3, 0))]).result)
        xs = wild_inputs(g, np.random.default_rng(n), 100)
        projects.append((check(g, xs, tmp_path / str(n)), g, xs))
    for prj, g, xs in projects:  # all three libraries are loaded now
        assert np.array_equal(prj.predict(*xs), g.run(*xs))
