"""``hgqir report``: the per-op table, explanations and the PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hgqir.passes.report import format_table, report_rows, zero_fraction
from pass_helpers import BUILDERS

import hgqir
from hgqir.cli import main

GOLDEN = Path(__file__).parent / "golden"
MLP = GOLDEN / "pipeline" / "mlp_bn.hgq"


def test_rows_match_the_graph() -> None:
    g = hgqir.load(MLP)
    rows = {r.name: r for r in report_rows(g)}
    assert set(rows) == {v.name for v in g.values()}
    assert rows["w1"].zero == pytest.approx(6 / 12)  # six of the twelve weights are 0
    assert rows["fc1"].ebops == hgqir.bops(g).by_name()["fc1"]
    assert rows["fc1"].types == "k=1 i=8 f=6" and rows["fc1"].bits == 3 * 15
    assert rows["x"].ebops == 0 and rows["x"].recorded is None


def test_zero_fraction_counts_pruned_and_zero_valued() -> None:
    g = hgqir.loads("""hgqir 1 @z
%x = input {round = TRN, overflow = WRAP} : [2] <1,2,2>
%c = const {data = $d0} : [4] $t0
%y = relu %x : [2] <0,2,2>
output %y {name = "out"}

$t0 = types [4] {
  k: 1 1 0 1
  i: 2 2 0 2
  f: 2 2 0 2
}
$d0 = data [4] {
  0 3 0 -1
}
""")
    assert zero_fraction(g.value("c")) == 0.5
    assert zero_fraction(g.value("x")) == 0.0


def test_cli_table_and_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "r.png"
    assert main(["report", str(MLP), "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "%fc1" in out and "dense" in out and "total EBOPs 415" in out and "LUT + 55*DSP" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_cli_pipeline_records_and_explains(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = "fold-batchnorm,infer-bitwidth,prune-zero-bits,dce,annotate-bops"
    assert main(["report", str(MLP), "-p", spec, "--explain", "%fc1"]) == 0
    out = capsys.readouterr().out
    assert f"after {spec}" in out and "recorded" in out
    assert "%fc1 = dense" in out and "exact dense result" in out
    assert main(["report", str(MLP), "--explain", "all"]) == 0
    assert capsys.readouterr().out.count("kept: an explicit quantization is a decision") == 2
    assert main(["report", str(MLP), "--explain", "nope"]) == 1


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "missing.hgq")]) == 1
    assert main(["report", str(MLP), "-p", "no-such-pass"]) == 1
    assert "valid passes" in capsys.readouterr().err


def test_large_graph_figure_is_capped(tmp_path: Path) -> None:
    from hgqir.passes.report import MAX_PANELS, plot

    g = hgqir.Graph("many")
    x = g.input("x", hgqir.FixedType.uniform((3,), 1, 2, 2))
    for n in range(MAX_PANELS + 6):
        w = g.const_mantissa(np.ones((3, 3), dtype=np.int64), hgqir.FixedType.uniform((3, 3), 0, 1, 0), name="w")
        x = g.add(hgqir.OpKind.DENSE, [x, w], types=[hgqir.FixedType.uniform((3,), 1, 2, 2)], name=f"fc{n}").result
    g.output(x)
    assert plot(g, tmp_path / "many.png").exists()
    assert "total EBOPs" in format_table(report_rows(BUILDERS["conv"](np.random.default_rng(0))))
