"""hls4ml backend without compiling: errors, options, types kept from the IR, table order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hgqir
from hgqir import FixedType, Graph, HgqirError, OpKind, UnsupportedOpError
from hgqir.ops import make_table

pytest.importorskip("hls4ml")

from hgqir.backends.hls4ml import to_hls_model  # noqa: E402
from hgqir.backends.hls4ml.convert import build_layers, check_precisions  # noqa: E402
from hgqir.backends.hls4ml.lower_table import hls_table  # noqa: E402
from hgqir.backends.hls4ml.precision import mask_kbi, values_kif  # noqa: E402


def small_dense() -> Graph:
    g = Graph("small")
    x = g.input("x", FixedType((3,), [1, 0, 1], [2, 1, 0], [2, 3, -1]))
    w = g.const(
        np.array([[0.5, -1.0], [0.25, 0.0], [-2.0, 1.5]]), FixedType((3, 2), 1, 1, [[1, 0], [2, 0], [0, 1]]), "w"
    )
    b = g.const(np.array([0.125, -0.5]), FixedType.uniform((2,), 1, 0, 3), "b")
    g.output(g.add(OpKind.DENSE, [x, w, b], types=[FixedType((2,), 1, [1, 2], [1, 3])], name="fc").result)
    return g


def layers_of(model: Any) -> dict[str, Any]:
    return {layer.name: layer for layer in model.get_layers()}


# ---------------------------------------------------------------- types come from the IR
def test_dense_precisions_come_from_the_ir(tmp_path: Path) -> None:
    g = small_dense()
    model = to_hls_model(g, tmp_path)
    fc = layers_of(model)["fc"]
    op = g.value("fc").producer
    k, i, f = op.rule.infer(op)[0].union()
    accum = fc.get_attr("accum_t").precision
    assert (accum.width, accum.integer, accum.signed) == (k + i + f, k + i, bool(k))
    weight = fc.get_attr("weight_t").precision
    assert (weight.width, weight.integer, weight.signed) == (1 + 1 + 2, 2, True)  # union of the weight types
    result = fc.get_output_variable().type.precision
    assert (result.width, result.integer) == (1 + 2 + 3, 3)
    assert np.array_equal(fc.get_weights("weight").data, np.array([[0.5, -1.0], [0.25, 0.0], [-2.0, 1.5]]))


def test_per_element_types_become_quantizer_masks(tmp_path: Path) -> None:
    model = to_hls_model(small_dense(), tmp_path)
    layers = layers_of(model)
    q = layers["q_fc"]  # the declared per-element result type of %fc
    k, b, i = q.mask_kbi
    assert k.tolist() == [[1, 1]] and b.tolist() == [[3, 6]] and i.tolist() == [[2, 3]]
    qx = layers["q_x"]
    assert qx.mask_kbi[1].tolist() == [[5, 4, 0]]  # the third input element has width 0: pruned


def test_uniform_input_is_the_port_type(tmp_path: Path) -> None:
    g = Graph("port")
    x = g.input("x", FixedType.uniform((4,), 1, 3, 2), round="RND_CONV", overflow="SAT_SYM")
    g.output(g.add(OpKind.RELU, [x]).result)
    port = layers_of(to_hls_model(g, tmp_path))["x"].get_output_variable().type.precision
    assert str(port) == "fixed<6,4,RND_CONV,SAT_SYM,0>"


def test_non_uniform_input_with_convergent_rounding_gets_a_double_port(tmp_path: Path) -> None:
    g = Graph("port")
    x = g.input("x", FixedType((2,), 1, [1, 2], [3, 1]), round="RND_CONV")
    g.output(g.add(OpKind.RELU, [x]).result)
    layers = layers_of(to_hls_model(g, tmp_path))
    assert str(layers["x_port"].get_output_variable().type.precision) == "double"
    assert layers["q_x"].RND == "RND_CONV"


def test_identity_batchnorm_keeps_only_the_cast(tmp_path: Path) -> None:
    g = Graph("bn")
    x = g.input("x", FixedType.uniform((3,), 1, 3, 3))
    s = g.const(np.ones(3), FixedType.uniform((3,), 0, 1, 0), "s")
    o = g.const(np.zeros(3), FixedType.uniform((3,), 0, 0, 1), "o")
    g.output(g.add(OpKind.BATCHNORM, [x, s, o], types=[FixedType.uniform((3,), 1, 1, 1)], name="bn").result)
    classes = [layer.class_name for layer in to_hls_model(g, tmp_path).get_layers()]
    assert classes == ["Input", "FixedPointQuantizer"]  # hls4ml would delete a unit batchnorm, cast and all


def test_changed_precision_is_detected(tmp_path: Path) -> None:
    g = small_dense()
    model = to_hls_model(g, tmp_path)
    b = build_layers(g)
    b.records["fc"].precisions["accum"] = b.records["fc"].precisions["weight"]
    with pytest.raises(HgqirError, match="fc.accum"):
        check_precisions(model, b)


# ---------------------------------------------------------------- tables in UnaryLUT order
def test_lut_table_is_reordered_by_raw_bits() -> None:
    table = np.arange(8, dtype=np.float64)  # IR index 0 is the lowest value, -4 for (1, 2, 0)
    hls = hls_table((1, 2, 0), (1, 2, 0), table)
    assert hls.tolist() == [4, 5, 6, 7, 0, 1, 2, 3]  # raw bits 0..3 are 0..3, 4..7 are -4..-1


def test_lut_table_over_a_wider_holder_marks_unreachable_entries() -> None:
    table = np.arange(4, dtype=np.float64) + 1  # x: (0, 1, 1) -> values 0, .5, 1, 1.5
    hls = hls_table((0, 1, 2), (0, 1, 1), table)  # holder LSB is .25
    assert hls.tolist() == [1, 0, 2, 0, 3, 0, 4, 0]


def test_values_kif() -> None:
    assert values_kif(np.array([0.75, -2.0])) == (1, 1, 2)
    assert values_kif(np.array([8.0, 16.0])) == (0, 5, -3)
    assert values_kif(np.zeros(3)) == (0, 0, 1)


def test_mask_of_negative_widths_is_zero() -> None:
    t = FixedType((2,), [1, 0], [-3, 2], [1, 1])
    k, b, i = mask_kbi(t)
    assert k.tolist() == [[0, 0]] and b.tolist() == [[0, 3]] and i.tolist() == [[0, 2]]


# ---------------------------------------------------------------- unsupported ops and bad options
def unsupported_graph() -> Graph:
    g = Graph("bad")
    x = g.input("x", FixedType.uniform((2, 4), 1, 2, 2))
    big = g.add(OpKind.RESHAPE, [x], {"shape": (1, 2, 2, 2)}, name="big").result
    g.output(g.add(OpKind.CONCAT, [big, big], {"axis": 3}, name="cat4d").result)
    exp, et = make_table(lambda d: np.exp(-d / 4), (0, 6, 0), (0, 1, 6))
    inv, it = make_table(lambda s: 1 / np.maximum(s, 0.25), (0, 3, 2), (0, 3, 4))
    wide = g.input("wide", FixedType.uniform((2, 4), 1, 12, 9))
    sm = g.add(
        OpKind.SOFTMAX,
        [wide, g.const_mantissa(exp, et, name="e"), g.const_mantissa(inv, it, name="i")],
        {"inv_in": (0, 3, 2)},
        name="sm_wide",
    ).result
    g.output(sm)
    col = g.input("col", FixedType.uniform((2, 1), 1, 2, 2))
    g.output(g.add(OpKind.ADD, [x, col], name="outer").result)  # [2,4] + [2,1]: not a repeated row
    c = g.const(np.ones(4), FixedType.uniform((4,), 0, 1, 0), "c")
    g.output(g.add(OpKind.RELU, [c], name="relu_const").result)
    g.output(c, name="const_out")
    return g


def test_unsupported_ops_are_listed_with_reasons(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedOpError) as info:
        to_hls_model(unsupported_graph(), tmp_path)
    items = info.value.items
    assert len(items) == 5, items
    text = "\n".join(items)
    for name, reason in [
        ("cat4d", "rank 4"),
        ("sm_wide", "22 bits"),
        ("outer", "Merge"),
        ("relu_const", "constant"),
        ("output %c", "constant"),
    ]:
        assert any(name in item and reason in item for item in items), (name, text)
    assert not list(tmp_path.iterdir()), "nothing is written before every op is checked"


def test_options_are_validated(tmp_path: Path) -> None:
    with pytest.raises(HgqirError, match="io_parallel"):
        to_hls_model(small_dense(), tmp_path, io_type="io_stream")
    with pytest.raises(HgqirError, match="valid: backend"):
        to_hls_model(small_dense(), tmp_path, reuse=2)
    with pytest.raises(HgqirError, match="Vitis"):
        to_hls_model(small_dense(), tmp_path, backend="Quartus")


def test_emit_takes_the_hls4ml_backend_option(tmp_path: Path) -> None:
    prj = hgqir.emit(small_dense(), "hls4ml", tmp_path / "prj", backend="Vivado", project_name="tiny")
    assert prj.hls_model.config.get_config_value("Backend") == "Vivado"
    assert (tmp_path / "prj" / "firmware" / "tiny.cpp").is_file()
    with pytest.raises(HgqirError, match="compile"):
        prj.predict(np.zeros(3))


def test_layer_names_are_safe_cxx_identifiers(tmp_path: Path) -> None:
    g = Graph("names")
    x = g.input("int", FixedType.uniform((2,), 1, 2, 2))
    y = g.add(OpKind.RELU, [x], name="w2").result
    g.output(g.add(OpKind.RELU, [y], name="Input.1").result)
    names = [layer.name for layer in to_hls_model(g, tmp_path).get_layers()]
    assert names == ["v_int", "v_w2", "input_1"]
