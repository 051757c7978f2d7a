"""``infer-bitwidth``: bit-exact, never wider, minimal, decisions kept, reasons, calibration."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hgqir.passes.infer_bitwidth import InferBitwidth, infer_bitwidth
from pass_helpers import BUILDERS, apply_spec, check_exact, inputs, perturb, rand_const, rand_type, run

import hgqir
from hgqir import FixedType, Graph, OpKind

SEEDS = range(4)


@pytest.mark.parametrize("builder", sorted(BUILDERS))
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shaken", [False, True], ids=["inferred-types", "perturbed-types"])
def test_bit_exact(builder: str, seed: int, shaken: bool) -> None:
    rng = np.random.default_rng(seed)
    g = BUILDERS[builder](rng)
    if shaken:
        perturb(g, rng)
    h = g.clone()
    infer_bitwidth(h)
    check_exact(g, h, inputs(g, rng))


@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_never_wider_and_decisions_kept(builder: str) -> None:
    rng = np.random.default_rng(7)
    g = perturb(BUILDERS[builder](rng), rng)
    h = g.clone()
    infer_bitwidth(h)
    for a, b in zip(g.values(), h.values(), strict=True):
        kind = a.producer.kind  # type: ignore[union-attr]
        live = ~a.type.zero_mask
        assert np.all((b.type.bits <= a.type.bits) | ~live), f"%{a.name} got wider"
        if kind in (OpKind.INPUT, OpKind.QUANT):
            assert a.type == b.type, f"{kind.value} %{a.name} was retyped"
        if any(u.kind in (OpKind.LUT, OpKind.SOFTMAX) and u.operands[0] is a for u in a.users):
            assert a.type == b.type, f"%{a.name} indexes a table and was retyped"


def test_perturbation_really_wraps() -> None:
    """The perturbed graphs are a real test: typing them exactly would change results."""
    changed = 0
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        g = perturb(BUILDERS["mlp"](rng), rng, p=1.0)
        h = g.clone()
        for op in h.ops:
            if op.kind in (OpKind.DENSE, OpKind.BATCHNORM, OpKind.RELU):
                op.result.type = op.rule.infer(op)[0]
        xs = inputs(g, rng)
        changed += not all(np.array_equal(a, b) for a, b in zip(run(g, xs), run(h, xs), strict=True))
    assert changed >= 2


def _single_dense(rng: np.random.Generator, n: int = 6, m: int = 4) -> Graph:
    g = Graph("one")
    x = g.input("x", rand_type(rng, (n,), i=(0, 3), f=(0, 3)))
    w = rand_const(g, rng, (n, m), "w", zero=0.2)
    b = rand_const(g, rng, (m,), "b", zero=0.2)
    y = g.add(OpKind.DENSE, [x, w, b], types=[FixedType.uniform((m,), 1, 20, 12)], name="y").result
    g.output(y)
    return g


@pytest.mark.parametrize("seed", range(6))
def test_dense_type_is_minimal(seed: int) -> None:
    """The corner inputs reach both ends of the range: one integer bit less would overflow."""
    rng = np.random.default_rng(seed)
    g = _single_dense(rng)
    infer_bitwidth(g)
    x, w = g.inputs[0], g.value("w")
    wv = hgqir.ops.linear.const_exact(w).values()
    t, out = g.value("y").type, g.value("y").type
    lo = np.broadcast_to(x.type.lo, x.shape)[:, None]
    hi = np.broadcast_to(x.type.hi, x.shape)[:, None]
    for o in range(out.shape[0]):
        corner_hi = np.where(wv[:, o] > 0, hi[:, 0], lo[:, 0])
        corner_lo = np.where(wv[:, o] > 0, lo[:, 0], hi[:, 0])
        y = run(g, [np.stack([corner_lo, corner_hi])])[0][:, o]
        k, i = int(t.k[o]), int(t.i[o])
        if t.width[o] <= 0:
            assert np.all(y == 0)
            continue
        assert (-k * 2.0**i <= y.min()) and (y.max() <= 2.0**i - 2.0 ** -int(t.f[o]))
        assert y.max() > 2.0 ** (i - 1) - 2.0 ** -int(t.f[o]) or y.min() < -k * 2.0 ** (i - 1), "i not minimal"
        assert k == int(y.min() < 0), "sign bit not minimal"


def test_wrapping_type_keeps_integer_bits() -> None:
    g = hgqir.loads("""hgqir 1 @w
%x = input {round = TRN, overflow = WRAP} : [1] <0,3,0>
%s = add %x, %x : [1] <1,3,1>
output %s {name = "out"}
""")
    report = infer_bitwidth(g)
    assert g.value("s").type.scalar() == (1, 3, 0)
    assert "may wrap" in report.explain("%s")
    assert g.run(np.array([[7.0]]))[0, 0] == -2.0  # 14 wraps to -2 in <1,3,0>, as in <1,3,1>


def test_reasons_and_explain() -> None:
    rng = np.random.default_rng(3)
    g = BUILDERS["mlp"](rng)
    report = apply_spec(g, "infer-bitwidth")["infer-bitwidth"]
    assert set(report.reasons) == {v.name for v in g.values()}
    text = report.explain("fc1")
    assert "exact dense result" in text and "range [" in text and "LSB 2^-" in text
    assert "decision" in report.explain("%q1")
    before, after = report.bits()
    assert after < before
    assert "total bits" in report.table()
    with pytest.raises(KeyError, match="no value %nope"):
        report.explain("nope")


def test_consts_option() -> None:
    rng = np.random.default_rng(4)
    g = BUILDERS["mlp"](rng)
    h = g.clone()
    apply_spec(h, "infer-bitwidth{consts=false}")
    for op in g.ops_of(OpKind.CONST):
        assert h.value(op.result.name).type == op.result.type
    apply_spec(g, "infer-bitwidth")
    assert any(h.value(op.result.name).type != op.result.type for op in g.ops_of(OpKind.CONST))


def test_too_wide_for_floats_keeps_declared_types() -> None:
    """Accumulators past 50 bits are not narrowed by float interval arithmetic, and stay exact."""
    g = Graph("wide")
    x = g.input("x", FixedType.uniform((3,), 1, 30, 20))
    w = g.const_mantissa(np.array([[3], [-5], [7]]), FixedType.uniform((3, 1), 1, 3, 1), name="w")
    y = g.add(OpKind.DENSE, [x, w], types=[FixedType.uniform((1,), 1, 40, 22)], name="y").result
    g.output(y)
    h = g.clone()
    report = infer_bitwidth(h)
    assert h.value("y").type == g.value("y").type
    assert "keep their type" in report.explain("y")
    check_exact(g, h, inputs(g, np.random.default_rng(0), 50))


def _calibrated(tmp_path, rng):  # type: ignore[no-untyped-def]
    g = BUILDERS["mlp_nobn"](rng)
    data = inputs(g, rng, 200)[0][:200] * 0.25
    path = tmp_path / "calib.npy"
    np.save(path, data)
    return g, data, path


def test_calibration_is_lossy_but_exact_on_its_data(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(5)
    g, data, path = _calibrated(tmp_path, rng)
    pm = hgqir.PassManager.parse(f"infer-bitwidth{{calibration={path}}}")
    assert pm.lossy and str(pm) == f"infer-bitwidth{{calibration={path}}}"
    assert not hgqir.PassManager.parse("infer-bitwidth").lossy
    h = g.clone()
    with pytest.warns(UserWarning, match="lossy"):
        pm.run(h)
    assert pm.results["infer-bitwidth"].lossy
    assert "calibration" in pm.results["infer-bitwidth"].explain("fc1")
    check_exact(g, h, [data])
    exact = g.clone()
    infer_bitwidth(exact)
    assert sum(int(v.type.bits.sum()) for v in h.values()) < sum(int(v.type.bits.sum()) for v in exact.values())


def test_calibration_file_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    g = BUILDERS["elementwise"](np.random.default_rng(0))
    np.save(tmp_path / "one.npy", np.zeros((2, 3, 4)))
    with pytest.raises(hgqir.PipelineError, match="one array per input"):
        hgqir.PassManager.parse(f"infer-bitwidth{{calibration={tmp_path / 'one.npy'}}}").run(g)
    with pytest.raises(hgqir.PipelineError, match="does not exist"):
        hgqir.PassManager.parse("infer-bitwidth{calibration=/no/such.npz}").run(g)
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 3, 4)), b=np.ones((2, 3, 4)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hgqir.PassManager.parse(f"infer-bitwidth{{calibration={tmp_path / 'two.npz'}}}").run(g)


def test_pass_object() -> None:
    p = InferBitwidth(consts=False)
    assert str(p) == "infer-bitwidth{consts=false}" and not p.lossy
