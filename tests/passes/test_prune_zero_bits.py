"""``prune-zero-bits``: bit-exact structural pruning, constant folding, I/O shapes."""

from __future__ import annotations

import numpy as np
import pytest
from hgqir.passes.prune_zero_bits import prune
from pass_helpers import BUILDERS, check_exact, inputs, perturb, rand_const, rand_type, run

import hgqir
from hgqir import FixedType, Graph, OpKind


@pytest.mark.parametrize("builder", sorted(BUILDERS))
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shaken", [False, True], ids=["inferred-types", "perturbed-types"])
def test_bit_exact(builder: str, seed: int, shaken: bool) -> None:
    rng = np.random.default_rng(seed)
    g = BUILDERS[builder](rng)
    if shaken:
        perturb(g, rng)
    h = g.clone()
    prune(h)
    check_exact(g, h, inputs(g, rng))
    assert [v.shape for v in h.inputs] == [v.shape for v in g.inputs]
    assert [v.shape for v in h.outputs] == [v.shape for v in g.outputs]


def run_pruned_io(before: Graph, after: Graph, xs: list[np.ndarray]) -> None:
    """Exactness when keep-io=false removed input features and output channels."""
    kept = after.meta.get("io_kept", {})
    xs2 = [x[..., kept[v.name]] if v.name in kept else x for x, v in zip(xs, before.inputs, strict=True)]
    names = [op.attrs["name"] for op in after.ops_of(OpKind.OUTPUT)]
    for name, a, b in zip(names, run(before, xs), run(after, xs2), strict=True):
        assert np.array_equal(a[..., kept[name]] if name in kept else a, b)


@pytest.mark.parametrize("seed", range(6))
def test_keep_io_false(seed: int) -> None:
    rng = np.random.default_rng(seed)
    g = BUILDERS["mlp_nobn"](rng)
    g.ops_of(OpKind.QUANT)[0].result.type = rand_type(rng, g.inputs[0].shape, zero=0.3)  # some inputs unread
    h = g.clone()
    hgqir.PassManager.parse("prune-zero-bits{keep-io=false}").run(h)
    run_pruned_io(g, h, inputs(g, rng))


def test_pruning_does_work() -> None:
    """Across seeds the random MLPs lose channels and fold constants: the tests exercise both."""
    channels = folds = 0
    for seed in range(8):
        g = BUILDERS["mlp_nobn"](np.random.default_rng(seed))
        report = prune(g)
        channels += report.channels
        folds += report.folds
    assert channels >= 5 and folds >= 2


def _dense(g: Graph, x: hgqir.Value, w: np.ndarray, name: str, bias: np.ndarray | None = None) -> hgqir.Value:
    wt = FixedType.uniform(w.shape, 1, 2, 2)
    ops = [x, g.const_mantissa(w, wt, name=f"{name}_w")]
    if bias is not None:
        ops.append(g.const_mantissa(bias, FixedType.uniform(bias.shape, 1, 2, 2), name=f"{name}_b"))
    return g.add(OpKind.DENSE, ops, name=name).result


def test_residual_add_shrinks_both_sources() -> None:
    g = Graph("res")
    x = g.input("x", FixedType.uniform((3,), 1, 2, 2))
    a = _dense(g, x, np.array([[1, 2, 3], [0, 1, 1], [2, 0, 1]]), "a")
    b = _dense(g, x, np.array([[1, 0, 1], [1, 1, 0], [0, 3, 1]]), "b")
    s = g.add(OpKind.ADD, [a, b], name="s").result
    g.output(_dense(g, s, np.array([[1, 2], [0, 0], [3, -1]]), "out"))
    h = g.clone()
    report = prune(h)
    assert report.channels == 1
    assert h.value("a").shape == h.value("b").shape == h.value("s").shape == (2,)
    check_exact(g, h, inputs(g, np.random.default_rng(0)))


def test_removal_cascades_upstream() -> None:
    """Dropping a dead column of fc2 empties a row of fc2: fc1 loses that column next sweep."""
    g = Graph("chain")
    x = g.input("x", FixedType.uniform((2,), 1, 2, 2))
    h1 = g.add(OpKind.RELU, [_dense(g, x, np.array([[1, 2, 3], [2, 1, -1]]), "fc1")], name="r1").result
    h2 = g.add(OpKind.RELU, [_dense(g, h1, np.array([[1, 0], [0, 2], [3, 1]]), "fc2")], name="r2").result
    g.output(_dense(g, h2, np.array([[2], [0]]), "fc3"))
    h = g.clone()
    report = prune(h)
    assert h.value("fc2").shape == (1,) and h.value("fc1").shape == (2,)
    assert report.channels == 2
    check_exact(g, h, inputs(g, np.random.default_rng(1)))


def test_constant_channel_folds_into_dense_over_positions() -> None:
    """x [L, C]: a channel constant at every position folds into the next dense's bias."""
    g = Graph("seq")
    x = g.input("x", FixedType.uniform((4, 2), 1, 2, 2))
    h = g.add(OpKind.RELU, [_dense(g, x, np.array([[1, 0, 2], [2, 0, -1]]), "fc1", np.array([1, 3, 0]))]).result
    g.output(_dense(g, h, np.array([[1, 1], [2, -3], [1, 0]]), "fc2"))
    h2 = g.clone()
    report = prune(h2)
    assert report.folds == 1 and h2.value("fc1").shape == (4, 2)
    check_exact(g, h2, inputs(g, np.random.default_rng(2)))


def test_conv_without_padding_folds_constants() -> None:
    g = Graph("conv")
    x = g.input("x", FixedType.uniform((5, 1), 1, 2, 1))
    k1 = g.const_mantissa(np.array([[[1, 0]]]), FixedType.uniform((1, 1, 2), 1, 1, 1), name="k1")
    c1b = g.const_mantissa(np.array([0, 3]), FixedType.uniform((2,), 1, 2, 1), name="c1b")
    c1 = g.add(OpKind.CONV1D, [x, k1, c1b], {"stride": [1], "pad": [[0, 0]]}, name="c1").result
    k2 = g.const_mantissa(np.array([[[1], [2]], [[-1], [3]]]), FixedType.uniform((2, 2, 1), 1, 2, 1), name="k2")
    g.output(g.add(OpKind.CONV1D, [c1, k2], {"stride": [1], "pad": [[0, 0]]}, name="c2").result)
    h = g.clone()
    report = prune(h)
    assert report.folds == 1 and h.value("c1").shape == (5, 1)
    check_exact(g, h, inputs(g, np.random.default_rng(3)))


def test_batchnorm_params_shrink_with_the_channels() -> None:
    rng = np.random.default_rng(11)
    g = Graph("bn")
    x = g.input("x", FixedType.uniform((3,), 1, 2, 2))
    d = _dense(g, x, np.array([[1, 2, 3, 1], [0, 1, 1, 1], [2, 0, 1, 1]]), "fc1")
    bn = g.add(OpKind.BATCHNORM, [d, rand_const(g, rng, (4,), "s", zero=0), rand_const(g, rng, (4,), "o")]).result
    g.output(_dense(g, bn, np.array([[1], [0], [2], [1]]), "fc2"))
    h = g.clone()
    prune(h)
    assert h.value("fc1").shape == (3,)
    bn_op = h.ops_of(OpKind.BATCHNORM)[0]
    assert bn_op.operands[1].shape == bn_op.operands[2].shape == (3,)
    check_exact(g, h, inputs(g, rng))


def test_prelu_alphas_shrink_with_the_channels() -> None:
    """A per-channel prelu is channelwise: its alphas are sliced with the dropped channel."""
    rng = np.random.default_rng(12)
    g = Graph("prelu")
    x = g.input("x", FixedType.uniform((3,), 1, 2, 2))
    d = _dense(g, x, np.array([[1, 2, 3, 1], [0, 1, 1, 1], [2, 0, 1, 1]]), "fc1")
    alpha = g.const(np.array([0.25, -0.5, 1.5, 0.125]), FixedType.uniform((4,), 1, 1, 3), name="alpha")
    p = g.add(OpKind.PRELU, [d, alpha], name="act").result
    g.output(_dense(g, p, np.array([[1], [0], [2], [1]]), "fc2"))
    h = g.clone()
    prune(h)
    assert h.value("fc1").shape == (3,)
    op = h.ops_of(OpKind.PRELU)[0]
    assert op.operands[1].shape == (3,)
    check_exact(g, h, inputs(g, rng))
    assert hgqir.bops(h).total < hgqir.bops(g).total


def test_always_zero_elements_are_pruned() -> None:
    g = hgqir.loads("""hgqir 1 @z
%x = input {round = TRN, overflow = WRAP} : [2] <1,2,2>
%c = const {data = $d0} : [2] <1,2,2>
%m = mul %x, %c : [2] <1,5,4>
%r = relu %m : [2] <0,5,4>
output %r {name = "out"}

$d0 = data [2] {
  0 3
}
""")
    h = g.clone()
    report = prune(h)
    assert report.elements == 3  # c[0], m[0], r[0]
    for name in ("c", "m", "r"):
        assert h.value(name).type.zero_mask[0] and not h.value(name).type.zero_mask[1]
    check_exact(g, h, inputs(g, np.random.default_rng(0)))


def test_a_group_keeps_one_channel() -> None:
    g = Graph("empty")
    x = g.input("x", FixedType.uniform((2,), 1, 2, 2))
    h = _dense(g, x, np.array([[1, 2, 3], [2, 1, -1]]), "fc1")
    g.output(_dense(g, h, np.zeros((3, 2), dtype=np.int64), "fc2"))
    h2 = g.clone()
    prune(h2)
    assert h2.value("fc1").shape == (1,)
    check_exact(g, h2, inputs(g, np.random.default_rng(0)))


def test_softmax_and_lut_inputs_keep_their_channels() -> None:
    g = BUILDERS["elementwise"](np.random.default_rng(0))
    h = g.clone()
    prune(h)
    for op in h.ops_of(OpKind.LUT, OpKind.SOFTMAX):
        assert op.operands[0].type == g.value(op.operands[0].name).type


def test_report_text() -> None:
    report = prune(BUILDERS["mlp_nobn"](np.random.default_rng(1)))
    assert str(report).startswith("pruned ") and "channel(s)" in str(report)


def test_depthwise_kernels_shrink_with_the_channels() -> None:
    """A depthwise convolution (multiplier 1) is channelwise: a dropped channel takes its kernel
    and bias along."""
    rng = np.random.default_rng(13)
    g = Graph("dw")
    x = g.input("x", FixedType.uniform((5, 3), 1, 2, 2))
    c = g.add(OpKind.CONV1D, [x, rand_const(g, rng, (1, 3, 4), "k", zero=0)], {"stride": (1,), "pad": ((0, 0),)}).result
    dw = g.add(
        OpKind.DEPTHWISE_CONV1D,
        [c, rand_const(g, rng, (3, 4), "dk", zero=0), rand_const(g, rng, (4,), "db", zero=0)],
        {"stride": (1,), "pad": ((1, 1),)},
        name="dw",
    ).result
    wk = np.ones((1, 4, 1))
    wk[0, 2, 0] = 0.0  # channel 2 is never read
    g.output(
        g.add(
            OpKind.CONV1D,
            [dw, g.const(wk, FixedType.uniform(wk.shape, 0, 1, 0), name="k2")],
            {"stride": (1,), "pad": ((0, 0),)},
        ).result
    )
    h = g.clone()
    prune(h)
    op = h.ops_of(OpKind.DEPTHWISE_CONV1D)[0]
    assert op.operands[0].shape == (5, 3) and op.operands[1].shape == (3, 3) and op.operands[2].shape == (3,)
    check_exact(g, h, inputs(g, rng))
