"""The vitis backend without a compiler: files, templates, bad input, golden data, C++-free Python."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pytest
from hgqir.backends import vitis
from hgqir.backends.vitis import render, testdata
from vitis_graphs import exp_tables, rand_const, rand_type

import hgqir
from hgqir import FixedType, Graph, OpKind
from hgqir.errors import HgqirError, UnsupportedOpError
from hgqir.ops import build_lut
from hgqir.toolchain import ToolchainError

BACKENDS = Path(vitis.__file__).parent.parent
CODE = re.compile(
    r"^\s*#\s*(include|pragma|define|ifndef|endif)\b|\b(hgq|std)::|\btemplate\s*<|extern\s+\"C\"|\bstatic\s+const\s+\w"
    r"|\b(void|int|bool|double|long)\s+\w+\s*\([^()]*\)\s*[{;]|\bfor\s*\(\s*(int|long|unsigned)\b"
    r"|[\w\]]\s*[-+*]?=\s*[^=;\n]+;\s*$|\)\s*\{\s*$",
    re.MULTILINE,
)
"""C++ code: preprocessor lines, namespaces, templates, declarations, loops, statements, blocks."""
TYPE = re.compile(r"\bap_u?(fixed|int)\s*<")
"""A C++ type spelling: allowed in docstrings (prose), not in other strings or comments."""


def cpp_in_python(path: Path) -> list[str]:
    """String literals and comments of a Python file that hold C++ source."""
    found = []
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if tok.type not in (tokenize.STRING, tokenize.COMMENT):
            continue
        text = tok.string.rstrip("\"'")
        prose = tok.type == tokenize.STRING and tok.string.lstrip("rbuf").startswith(('"""', "'''"))
        if CODE.search(text) or (not prose and TYPE.search(text)):
            found.append(
                f"{path.relative_to(path.parents[1]) if BACKENDS in path.parents else path.name}"
                f":{tok.start[0]}: {tok.string[:60]!r}"
            )
    return found


def test_no_cpp_text_in_backend_python() -> None:
    files = sorted(BACKENDS.rglob("*.py"))
    assert len(files) > 5
    found = [hit for f in files for hit in cpp_in_python(f)]
    assert not found, "C++ text belongs in jinja2 templates:\n" + "\n".join(found)


def test_the_checker_finds_cpp(tmp_path: Path) -> None:
    lines = [
        'A = "static const int w[3] = {1, 2, 3};"',
        "# for (int n = 0; n < 3; ++n) {",
        'B = "ap_fixed<8, 3>"',
        'C = f"acc[{n}] += x[{j}] * {m};"',
        'D = "void f(int x) {"',
        '"""Prose may name ap_fixed<8, 3> types; it holds no code (unknown option(s) {x}; valid)."""',
    ]
    sample = tmp_path / "sample.py"
    sample.write_text("\n".join(lines) + "\n")
    assert [int(hit.split(":")[1]) for hit in cpp_in_python(sample)] == [1, 2, 3, 4, 5]


def every_op_graph() -> Graph:
    """Every layer kind of the backend in one small graph (no compile needed for these tests)."""
    rng = np.random.default_rng(0)
    g = Graph("all_ops")
    x = g.input("x", rand_type(rng, (4, 4, 2), pruned=0.2), round="RND", overflow="SAT")
    c = g.add(
        OpKind.CONV2D, [x, rand_const(g, rng, (2, 2, 2, 3), "k")], {"stride": (1, 1), "pad": ((0, 1), (0, 1))}
    ).result
    p = g.add(OpKind.AVGPOOL2D, [c], {"pool": (2, 2), "stride": (2, 2), "pad": ((0, 0), (0, 0))}).result
    m = g.add(OpKind.GLOBAL_MAXPOOL, [x]).result
    f = g.add(OpKind.RESHAPE, [p], {"shape": (12,)}).result
    d = g.add(OpKind.DENSE, [f, rand_const(g, rng, (12, 5), "w", zeros=0.5), rand_const(g, rng, (5,), "b")]).result
    r = g.add(
        OpKind.RELU, [g.add(OpKind.BATCHNORM, [d, rand_const(g, rng, (5,), "s"), rand_const(g, rng, (5,), "o")]).result]
    ).result
    q = g.add(
        OpKind.QUANT, [r], {"round": "RND_CONV", "overflow": "SAT_SYM"}, [rand_type(rng, (5,), pruned=0.2)]
    ).result
    s = g.add(OpKind.MUL, [q, g.add(OpKind.SUB, [q, rand_const(g, rng, (5,), "c")]).result]).result
    t = build_lut(g, g.add(OpKind.QUANT, [s], {}, [FixedType.uniform((5,), 1, 2, 3)]).result, np.tanh, (1, 0, 5))
    et, it, inv_kif = exp_tables(g, 3)
    g.output(g.add(OpKind.SOFTMAX, [t, et, it], {"inv_in": inv_kif}).result, name="probs")
    g.output(g.add(OpKind.CONCAT, [m, g.add(OpKind.ADD, [m, m]).result], {"axis": 0}).result, name="maxes")
    return g


class Recorder(jinja2.FileSystemLoader):
    """A loader that remembers which templates were loaded."""

    seen: set[str] = set()

    def get_source(self, environment: jinja2.Environment, template: str) -> Any:
        Recorder.seen.add(template)
        return super().get_source(environment, template)


def test_every_template_renders_strictly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = render.environment()
    assert env.undefined is jinja2.StrictUndefined
    env.loader = Recorder(str(render.TEMPLATES))
    monkeypatch.setattr(render, "environment", lambda: env)
    monkeypatch.setattr(render, "PART_WEIGHT", 500)  # several files of layer functions
    prj = hgqir.emit(every_op_graph(), "vitis", tmp_path)
    templates = {p.name for p in render.TEMPLATES.glob("*.j2")}
    assert templates == Recorder.seen
    assert len(list((tmp_path / "firmware").glob("myproject_layers_*.cpp"))) > 1
    kinds = {layer.kind for layer in vitis.Lowering(prj.graph, prj.options).run().layers}
    assert kinds == {"conv", "pool", "dense", "affine", "relu", "copy", "binary", "lut", "softmax"}
    with pytest.raises(jinja2.UndefinedError):
        render.environment().get_template("README.md.j2").render(top="t")


def test_project_layout(tmp_path: Path) -> None:
    prj = hgqir.emit(
        every_op_graph(), "vitis", tmp_path, top="net", part="xc7z020clg400-1", clock_ns=10, cosim=True, tb_samples=7
    )
    for rel in (
        "firmware/net.cpp",
        "firmware/net.h",
        "firmware/net_layers.h",
        "firmware/hgq_fixed.h",
        "sim/net_io.h",
        "sim/net_bridge.cpp",
        "tb/net_test.cpp",
        "tb_data/inputs.dat",
        "tb_data/outputs.dat",
        "build_prj.tcl",
        "README.md",
        "hgqir_vitis.json",
    ):
        assert (tmp_path / rel).is_file(), rel
    tcl = (tmp_path / "build_prj.tcl").read_text()
    assert "set_part xc7z020clg400-1" in tcl and "create_clock -period 10" in tcl
    assert "csim 1 csynth 1 cosim 1 export 0" in tcl
    for step in ("csim_design", "csynth_design", "cosim_design", "export_design"):
        assert step in tcl
    assert len((tmp_path / "tb_data" / "inputs.dat").read_text().splitlines()) == 7
    assert "net" in (tmp_path / "README.md").read_text()
    assert repr(prj).startswith("VitisProject(")


def test_ports_are_typed_per_element_and_pruned_elements_have_no_storage(tmp_path: Path) -> None:
    g = Graph("ports")
    t = FixedType((5,), [1, 0, 1, 1, 0], [2, 3, 2, 0, 0], [3, 1, 3, -1, 0])  # two equal types, one pruned
    x = g.input("x", t)
    g.output(g.add(OpKind.RELU, [x]).result)
    hgqir.emit(g, "vitis", tmp_path)
    header = (tmp_path / "firmware" / "myproject.h").read_text()
    assert "const ap_fixed<6, 3> in_x_g0[2]" in header
    assert "const ap_ufixed<4, 3> in_x_g1[1]" in header
    assert "ap_fixed<0" not in header and "<0, 0>" not in header  # the pruned element has no type
    assert re.search(r"in_x_g\d\[\d\]", header) and "in_x_g3" not in header


def test_weights_are_integer_mantissas_of_nonzero_terms(tmp_path: Path) -> None:
    g = Graph("weights")
    x = g.input("x", FixedType.uniform((3,), 1, 3, 4))
    w = g.const(np.array([[0.5, 0.0], [0.0, -1.25], [0.1875, 0.0]]), FixedType((3, 2), 1, 1, [[1, 2], [2, 2], [4, 4]]))
    g.output(g.add(OpKind.DENSE, [x, w]).result)
    hgqir.emit(g, "vitis", tmp_path)
    code = (tmp_path / "firmware" / "myproject.cpp").read_text()
    table = re.search(r"static const hgq::int_of<\d+>::type w\[(\d+)\] = \{([^}]*)\}", code)
    assert table is not None and table.group(1) == "3"  # three non-zero weights, zeros never multiplied
    # x mantissas (LSB 2**-4) times these land on the accumulator's LSB 2**-8: w * 2**4
    assert [int(v) for v in table.group(2).split(",")] == [8, 3, -20]
    assert not re.search(r"\d\.\d|\de-\d", code.split("void myproject(")[0])  # no decimal floats


def test_unsupported_ops_are_named_before_anything_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(vitis.LOWERINGS, OpKind.RELU)
    monkeypatch.delitem(vitis.LOWERINGS, OpKind.SOFTMAX)
    g = every_op_graph()
    with pytest.raises(UnsupportedOpError) as err:
        hgqir.emit(g, "vitis", tmp_path / "prj")
    assert any("relu" in item for item in err.value.items)
    assert any("softmax" in item for item in err.value.items)
    assert not (tmp_path / "prj").exists()


def test_too_wide_values_are_refused(tmp_path: Path) -> None:
    g = Graph("huge")
    x = g.input("x", FixedType.uniform((2,), 1, 600, 600))  # ap_int stops at 1024 bits
    g.output(g.add(OpKind.RELU, [x]).result)
    with pytest.raises(UnsupportedOpError, match="bits") as err:
        hgqir.emit(g, "vitis", tmp_path)
    assert "%x (input): 1201 bits" in err.value.items


def test_bad_options(tmp_path: Path) -> None:
    g = every_op_graph()
    with pytest.raises(HgqirError, match="unknown vitis option"):
        hgqir.emit(g, "vitis", tmp_path, bogus=1)
    with pytest.raises(HgqirError, match="C identifier"):
        hgqir.emit(g, "vitis", tmp_path, top="my-project")
    with pytest.raises(HgqirError, match="reuse factor"):
        hgqir.emit(g, "vitis", tmp_path, reuse={"dense": 0})


def test_missing_compiler_or_headers_say_what_to_install(tmp_path: Path) -> None:
    g = every_op_graph()
    with pytest.raises(ToolchainError, match="install g\\+\\+"):
        hgqir.emit(g, "vitis", tmp_path, cxx="no-such-g++-compiler").compile()
    with pytest.raises(ToolchainError, match="ap_fixed.h"):
        hgqir.emit(g, "vitis", tmp_path, ap_types=str(tmp_path)).compile()
    with pytest.raises(HgqirError, match="compile"):
        hgqir.emit(g, "vitis", tmp_path).predict(np.zeros((1, 4, 4, 2)))


def test_golden_data_is_the_interpreter(tmp_path: Path) -> None:
    g = every_op_graph()
    prj = hgqir.emit(g, "vitis", tmp_path, tb_samples=12)
    rows = [
        np.array(line.split(), dtype=np.float64)
        for line in (tmp_path / "tb_data" / "inputs.dat").read_text().splitlines()
    ]
    x = np.stack(rows).reshape(-1, 4, 4, 2)
    words = np.array(
        [line.split() for line in (tmp_path / "tb_data" / "outputs.dat").read_text().splitlines()], dtype=np.int64
    )
    want = g.run(x)
    start = 0
    for port, expected in zip(prj.outputs, want, strict=True):
        part = words[:, start : start + port.slots]
        start += port.slots
        f = np.asarray(port.value.type.f).reshape(-1)
        got = np.ldexp(testdata.from_words(part, port.words).astype(np.float64), -f).reshape(expected.shape)
        assert np.array_equal(np.where(port.value.type.zero_mask, 0.0, got), expected)


def test_words_round_trip() -> None:
    m = np.array([[0, -1, (1 << 70) + 5, -(1 << 90) - 3]], dtype=object)
    assert (testdata.from_words(testdata.to_words(m, 2), 2) == m).all()
