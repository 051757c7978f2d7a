"""Hand-written QONNX graphs: every rounding mode, narrow ranges, BipolarQuant and CEIL against
qonnx's executor; unsupported nodes listed in one error; the exporter's refusals and its
WRAP / RND lowerings checked by running the exported file in qonnx."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hgqir
from hgqir import FixedType, OpKind

onnx = pytest.importorskip("onnx")
pytest.importorskip("qonnx")
from brevitas_models import reference  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

DOMAIN = "qonnx.custom_op.general"
N = 64


class Builder:
    """A tiny ONNX graph writer: float input ``x`` of shape [N, *shape]."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape, self.nodes, self.inits, self.n = shape, [], [], 0

    def const(self, value: Any) -> str:
        self.n += 1
        name = f"c{self.n}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], domain: str = "", **attrs: Any) -> str:
        self.n += 1
        out = f"t{self.n}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"{op.lower()}{self.n}", domain=domain, **attrs))
        return out

    def quant(self, x: str, f: int, bits: int, signed: int = 1, narrow: int = 0, mode: str = "ROUND") -> str:
        ins = [x, self.const(2.0**-f), self.const(0.0), self.const(bits)]
        return self.node("Quant", ins, DOMAIN, signed=signed, narrow=narrow, rounding_mode=mode)

    def model(self, outputs: list[str]) -> Any:
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [N, *self.shape])
        outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
        g = helper.make_graph(self.nodes, "handmade", [x], outs, self.inits)
        opsets = [helper.make_opsetid("", 13), helper.make_opsetid(DOMAIN, 1)]
        return helper.make_model(g, opset_imports=opsets)


def run_reference(model: Any, x: np.ndarray) -> list[np.ndarray]:
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    mw = ModelWrapper(model).transform(InferShapes())
    out = execute_onnx(mw, {"x": x.astype(np.float32)})
    return [np.asarray(out[o.name], dtype=np.float64) for o in mw.graph.output]


def ties(shape: tuple[int, ...], f: int, top: float, seed: int = 0) -> np.ndarray:
    """Values on the 2**-f grid in [-top, top): many exact ties for coarser quantizers."""
    m = np.random.default_rng(seed).integers(-int(top * 2**f), int(top * 2**f), size=(N, *shape))
    return np.ldexp(m, -f).astype(np.float32)


MODES = ["ROUND", "HALF_EVEN", "FLOOR", "CEIL", "DOWN", "HALF_UP", "HALF_DOWN"]


def test_rounding_modes_narrow_and_bipolar(tmp_path: Path) -> None:
    b = Builder((8,))
    x = b.quant("x", f=5, bits=10)  # exact: the data is on the 2**-5 grid within range
    outs = [b.quant(x, f=2, bits=5, mode=m) for m in MODES]  # saturates at +-4
    outs.append(b.quant(x, f=2, bits=5, narrow=1))  # SAT_SYM: [-3.75, 3.75]
    outs.append(b.quant(x, f=3, bits=6, signed=0, mode="CEIL"))  # unsigned, CEIL
    outs.append(b.node("BipolarQuant", [x, b.const(0.5)], DOMAIN))
    outs.append(b.quant(x, f=1, bits=1))  # 1-bit signed Quant is bipolar in qonnx
    model = b.model(outs)
    g = hgqir.from_qonnx(model)
    data = ties((8,), 5, 12.0)
    want = run_reference(model, data)
    got = g.run(data.astype(np.float64))
    for name, a, w in zip([*MODES, "narrow", "unsigned-ceil", "bipolar", "1-bit"], got, want, strict=True):
        assert np.array_equal(a, w), f"{name}: {np.argwhere(a != w)[:3].tolist()}"
    rounds = {op.attrs["round"] for op in g.ops_of(OpKind.QUANT)}
    assert {hgqir.RoundMode.RND_CONV, hgqir.RoundMode.RND_INF, hgqir.RoundMode.RND_ZERO} <= rounds


def test_unsupported_nodes_listed_once() -> None:
    b = Builder((4,))
    x = b.quant("x", f=3, bits=8)
    s = b.node("Sigmoid", [x])
    q = b.node("Quant", [s, b.const(0.3), b.const(0.0), b.const(8.0)], DOMAIN, signed=1, narrow=0)
    z = b.node("Quant", [x, b.const(0.25), b.const(1.0), b.const(8.0)], DOMAIN, signed=1, narrow=0)
    model = b.model([q, b.node("Add", [z, x])])
    with pytest.raises(hgqir.UnsupportedOpError) as info:
        hgqir.from_qonnx(model)
    items = info.value.items
    assert len(items) == 3, items
    assert "Sigmoid" in items[0] and "not supported" in items[0]
    assert "0.3" in items[1] and "power of two" in items[1] and "FixedPoint" in items[1]
    assert "zero point" in items[2]


def test_float_graph_input_refused() -> None:
    b = Builder((4,))
    w = b.quant(b.const(np.eye(4)), f=2, bits=4)
    model = b.model([b.node("MatMul", ["x", w])])
    with pytest.raises(hgqir.UnsupportedOpError, match="QuantIdentity"):
        hgqir.from_qonnx(model)


def wrap_graph() -> hgqir.Graph:
    """Per-tensor and per-channel types with the modes QONNX lacks: WRAP inputs, RND, WRAP quant."""
    g = hgqir.Graph("modes")
    x = g.input("x", FixedType.uniform((6,), 1, 2, 3), round="RND", overflow="WRAP")
    w = g.const(np.arange(-9, 9).reshape(6, 3) / 8, FixedType.uniform((6, 3), 1, 1, 3))
    h = g.add(OpKind.DENSE, [x, w]).result
    per_channel = FixedType((3,), 1, np.array([1, 2, 0]), np.array([1, 2, 3]))
    q = g.add(OpKind.QUANT, [h], {"round": "RND", "overflow": "WRAP"}, [per_channel]).result
    r = g.add(OpKind.RELU, [q]).result
    g.output(
        g.add(
            OpKind.QUANT, [r], {"round": "RND_CONV", "overflow": "SAT_SYM"}, [FixedType.uniform((3,), 1, 1, 2)]
        ).result
    )
    return g


def test_export_lowers_wrap_and_rnd_exactly(tmp_path: Path) -> None:
    g = wrap_graph()
    path = tmp_path / "modes.onnx"
    hgqir.to_qonnx(g, path, batch_size=N)
    x = ties((6,), 6, 12.0, seed=1)  # far beyond the input's [-4, 4): the input wraps
    y = g.run(x.astype(np.float64))
    assert np.any(np.abs(x) >= 4)
    assert np.array_equal(reference(path, x), y)
    g2 = hgqir.from_qonnx(path)  # the helper nodes of RND and WRAP read back as the same modes
    assert np.array_equal(g2.run(x.astype(np.float64)), y)
    assert structure(g2) == structure(g)


def structure(g: hgqir.Graph) -> list[Any]:
    """Kinds, attributes and result types of the ops (names aside; constants by their types)."""
    return [(op.kind, {k: v for k, v in op.attrs.items() if k != "data"}, [r.type for r in op.results]) for op in g.ops]


def test_export_refuses_per_element_types() -> None:
    g = hgqir.Graph("hgq")
    x = g.input("x", FixedType.uniform((4,), 1, 2, 3))
    t = FixedType((4,), 1, np.array([0, 1, 2, 3]), 2)  # HGQ-style: one width per element
    q = g.add(OpKind.QUANT, [x], {"round": "RND", "overflow": "SAT"}, [t], name="act").result
    w = g.const(np.eye(4)[:, :2], FixedType((4, 2), 0, 1, np.array([[0, 1], [1, 2], [0, 0], [3, 1]])), name="kernel")
    g.output(g.add(OpKind.DENSE, [q, w]).result)
    with pytest.raises(hgqir.UnsupportedOpError) as info:
        hgqir.to_qonnx(g)
    text = str(info.value)
    assert "%act" in text and "%kernel" in text and "per element" in text
    assert len(info.value.items) == 2


def test_cli_export_then_import(tmp_path: Path, capsys: Any) -> None:
    from hgqir.cli import main

    g = hgqir.Graph("native")  # QONNX-native modes only: the written file imports back
    x = g.input("x", FixedType.uniform((6,), 1, 2, 3), round="RND_CONV", overflow="SAT")
    wt = FixedType((6, 3), 1, np.array([0, 1, 2]), np.array([3, 2, 1]))  # per output channel, 4 bits each
    w = g.const(hgqir.quantize(np.arange(-9, 9).reshape(6, 3) / 3, wt.k, wt.i, wt.f, "RND", "SAT"), wt)
    h = g.add(OpKind.DENSE, [x, w]).result
    g.output(
        g.add(OpKind.QUANT, [h], {"round": "TRN", "overflow": "SAT_SYM"}, [FixedType.uniform((3,), 1, 1, 2)]).result
    )
    hgqir.save(g, tmp_path / "m.hgq")
    assert main(["export", str(tmp_path / "m.hgq"), "-o", str(tmp_path / "m.onnx"), "--batch-size", "4"]) == 0
    assert main(["import", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "back.hgq")]) == 0
    back = hgqir.load(tmp_path / "back.hgq")
    x = ties((6,), 6, 12.0, seed=2)
    assert np.array_equal(back.run(x.astype(np.float64)), g.run(x.astype(np.float64)))
    assert main(["export", str(tmp_path / "m.hgq"), "-o", str(tmp_path / "m.txt")]) == 1
    assert "ending in .onnx" in capsys.readouterr().err


def test_batchnorm_and_layouts() -> None:
    """BatchNormalization over channels-first [C, L] (exact in float32 here: eps = 0, var a square)."""
    b = Builder((2, 4))
    x = b.quant("x", f=4, bits=8)
    params = [b.const(v) for v in ([1.0, 0.5], [0.25, -0.5], [0.5, -1.0], [0.25, 1.0])]
    bn = b.node("BatchNormalization", [x, *params], epsilon=0.0)
    t = b.node("Transpose", [b.quant(bn, f=3, bits=8)], perm=[0, 2, 1])
    model = b.model([b.node("Relu", [t])])
    g = hgqir.from_qonnx(model)
    assert [op.kind for op in g.ops_of(OpKind.BATCHNORM)] == [OpKind.BATCHNORM]
    data = ties((2, 4), 5, 10.0, seed=3)
    want = run_reference(model, data)[0]
    assert np.array_equal(g.run(data.astype(np.float64)), want)
