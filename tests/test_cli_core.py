"""The ``hgqir show`` and ``hgqir opt`` commands (in process through ``hgqir.cli.main``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import hgqir
from hgqir.cli import main

GRAPH = """\
hgqir 1 @cli
%x = input {round = TRN, overflow = WRAP} : [4] $t0
%r = relu %x : [4] $t1
%q = quant %r {round = RND, overflow = SAT} : [4] <0,3,2>
%same = quant %q {round = TRN, overflow = WRAP} : [4] <0,3,2>
output %same {name = "y"}

$t0 = types [4] {
  k: 1
  i: 3 2 3 1
  f: 3 3 0 2
}
$t1 = types [4] {
  k: 0
  i: 3 2 3 1
  f: 3 3 0 2
}
"""


@pytest.fixture
def graph_file(tmp_path: Path) -> Path:
    path = tmp_path / "g.hgq"
    path.write_text(GRAPH)
    return path


def test_show_prints_the_elided_form(graph_file: Path, capsys) -> None:
    assert main(["show", str(graph_file)]) == 0
    out = capsys.readouterr().out
    assert out == hgqir.dumps(hgqir.loads(GRAPH), elide=True)
    assert "%x = input {round = TRN, overflow = WRAP} : [4] {k=1 i=1..3 f=0..3}" in out


def test_show_full(graph_file: Path, capsys) -> None:
    assert main(["show", "--full", str(graph_file)]) == 0
    assert capsys.readouterr().out == GRAPH


def test_opt_writes_the_output_file(graph_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "opt.hgq"
    assert main(["opt", str(graph_file), "-p", "canonicalize,dce", "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().err
    g = hgqir.load(out)
    assert [op.kind.value for op in g.ops] == ["input", "relu", "quant", "output"]


def test_opt_to_stdout_with_dump_dir(graph_file: Path, tmp_path: Path, capsys) -> None:
    assert main(["opt", str(graph_file), "-p", "canonicalize", "--dump-dir", str(tmp_path / "d")]) == 0
    text = capsys.readouterr().out
    assert hgqir.dumps(hgqir.loads(text)) == text and "%same" not in text
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["00-input.hgq", "01-canonicalize.hgq"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["opt", "{file}", "-p", "optimise"], "unknown pass 'optimise'; valid passes:"),
        (["show", "{missing}"], "No such file"),
        (["show", "{folder}"], "Is a directory"),
        (["show", "{bad}"], "line 2, column 6: unknown op 'relux'"),
    ],
)
def test_errors_are_one_line_messages_not_tracebacks(graph_file: Path, tmp_path: Path, capsys, args, message) -> None:
    bad = tmp_path / "bad.hgq"
    bad.write_text("hgqir 1 @b\n%y = relux %x : [4] <1,2,3>\n")
    paths = {"file": graph_file, "missing": tmp_path / "nope.hgq", "bad": bad, "folder": tmp_path}
    assert main([a.format(**paths) for a in args]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_console_script_help() -> None:
    """The installed entry point runs (subprocess: the real command line)."""
    proc = subprocess.run([sys.executable, "-m", "hgqir.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert "show" in proc.stdout and "opt" in proc.stdout
