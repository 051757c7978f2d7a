"""HGQ v1 ``.h5`` import against HGQ v1's own predictions (fixtures from ``make_fixtures.py``).

The expected outputs were computed by HGQ v1 itself (TensorFlow 2.15, Keras 2, ``hgq`` 0.2.6):
the proxy model run in float64 (``y64``) and in float32 (``y32``). hgqir reads the files with
h5py only.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import hgqir
from hgqir.cli import main as cli_main
from hgqir.errors import HgqirError, UnsupportedOpError
from hgqir.fixed import OverflowMode
from hgqir.ir import Graph, OpKind

pytest.importorskip("h5py")
import h5py  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"
MODELS = ["mlp", "conv", "bn_add", "wide", "conv_bn", "seq", "mixed"]


def data(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"{name}.npz") as d:
        return {k: d[k] for k in d.files}


@pytest.mark.parametrize("name", MODELS)
def test_proxy_import_equals_hgq1_float64(name: str) -> None:
    d = data(name)
    g = hgqir.from_hgq1(FIXTURES / f"{name}_proxy.h5")
    assert g.ops_of(OpKind.QUANT) or g.inputs[0].type  # a typed graph, not an empty one
    y = g.run(d["x"].astype(np.float64))
    assert y.shape == d["y64"].shape
    assert np.array_equal(y, d["y64"])


def _structure(g: Graph) -> dict[str, tuple[str, object, object]]:
    """Every op's kind, result type and constant mantissas by result name (inputs by position)."""
    out: dict[str, tuple[str, object, object]] = {}
    for op in g.ops:
        if op.kind is OpKind.OUTPUT:
            continue
        data = op.attrs.get("data") if op.kind is OpKind.CONST else None
        key = op.result.name
        if op.kind is OpKind.INPUT:
            key = f"input{g.inputs.index(op.result)}"
        elif op.kind is OpKind.RELU:  # proxy files name their ReLU layers re_lu_<n>
            key = f"relu({op.operands[0].name})"
        out[key] = (op.kind.value, op.result.type, None if data is None else np.asarray(data).tolist())
    return out


@pytest.mark.parametrize("name", MODELS)
def test_raw_import_with_calibration_is_the_proxy_model(name: str) -> None:
    d = data(name)
    g = hgqir.from_hgq1(FIXTURES / f"{name}.h5", calibration=d["calibration"])
    assert np.array_equal(g.run(d["x"].astype(np.float64)), d["y64"])
    proxy = hgqir.from_hgq1(FIXTURES / f"{name}_proxy.h5")
    assert _structure(g) == _structure(proxy)


def test_float32_differs_from_float64_only_on_the_wide_model() -> None:
    """The figures quoted in docs/coming_from.md."""
    counts = {}
    for name in MODELS:
        d = data(name)
        counts[name] = int(np.sum(d["y32"].astype(np.float64) != d["y64"]))
    assert counts == {"mlp": 0, "conv": 0, "bn_add": 0, "wide": 12, "conv_bn": 0, "seq": 0, "mixed": 0}
    d = data("wide")
    g = hgqir.from_hgq1(FIXTURES / "wide_proxy.h5")
    diff = np.abs(g.run(d["x"].astype(np.float64)) - d["y32"])
    lsb = np.ldexp(1.0, -g.outputs[0].type.f)
    assert np.all((diff == 0) | (diff == lsb)), "float32 differs by exactly one LSB where it differs"


def test_only_files_with_hgq1_layers_are_hgq1_files(tmp_path: Path) -> None:
    from hgqir.frontends.hgq1 import is_hgq1_file

    assert is_hgq1_file(FIXTURES / "seq.h5") and is_hgq1_file(FIXTURES / "conv_proxy.h5")

    def plain(cfg: dict) -> None:
        for spec in cfg["config"]["layers"]:
            spec["class_name"] = spec["class_name"].replace("HGQ>FixedPointQuantizer", "Activation")

    _edit_config(FIXTURES / "mlp_proxy.h5", tmp_path / "plain.h5", plain)
    assert not is_hgq1_file(tmp_path / "plain.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    assert not is_hgq1_file(tmp_path / "junk.h5")


def test_raw_without_calibration_says_what_to_pass() -> None:
    with pytest.raises(HgqirError, match="calibration=x"):
        hgqir.from_hgq1(FIXTURES / "mlp.h5")


def test_raw_sat_option_gives_saturating_quantizers() -> None:
    d = data("mlp")
    g = hgqir.from_hgq1(FIXTURES / "mlp.h5", calibration=d["calibration"], aggressive=False)
    modes = {op.attrs["overflow"] for op in g.ops_of(OpKind.QUANT)}
    assert modes == {OverflowMode.SAT}
    calib = d["calibration"].astype(np.float64)
    wrap = hgqir.from_hgq1(FIXTURES / "mlp.h5", calibration=d["calibration"])
    assert np.array_equal(g.run(calib), wrap.run(calib))  # inside the traced range the modes agree


def _edit_config(src: Path, dst: Path, edit: object) -> None:
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        edit(cfg)  # type: ignore[operator]
        f.attrs["model_config"] = json.dumps(cfg)


def test_unsupported_layers_are_listed_in_one_error(tmp_path: Path) -> None:
    def edit(cfg: dict) -> None:
        layers = cfg["config"]["layers"]
        dense = next(s for s in layers if s["class_name"] == "Dense")
        dense["config"]["activation"] = "tanh"
        quant = next(s for s in layers if s["config"]["name"] == "fc3_quantizer")
        quant["config"]["SAT"] = "WRAP_SM"
        relu = next(s for s in layers if s["class_name"] == "ReLU")
        relu["class_name"] = "LeakyReLU"

    path = tmp_path / "bad.h5"
    _edit_config(FIXTURES / "mlp_proxy.h5", path, edit)
    with pytest.raises(UnsupportedOpError) as err:
        hgqir.from_hgq1(path)
    items = err.value.items
    assert len(items) == 3, items
    assert any("fc1 (Dense)" in s and "tanh" in s for s in items)
    assert any("fc3_quantizer (FixedPointQuantizer)" in s and "WRAP_SM" in s for s in items)
    assert any("(LeakyReLU)" in s for s in items)


def test_cli_imports_proxy_and_raw_files(tmp_path: Path) -> None:
    d = data("bn_add")
    out = tmp_path / "proxy.hgq"
    assert cli_main(["import", str(FIXTURES / "bn_add_proxy.h5"), "-o", str(out)]) == 0
    g = hgqir.load(out)
    assert np.array_equal(g.run(d["x"].astype(np.float64)), d["y64"])
    np.save(tmp_path / "calib.npy", d["calibration"])
    out_raw = tmp_path / "raw.hgq"
    argv = ["import", str(FIXTURES / "bn_add.h5"), "-o", str(out_raw), "--calibration", str(tmp_path / "calib.npy")]
    assert cli_main(argv) == 0
    assert np.array_equal(hgqir.load(out_raw).run(d["x"].astype(np.float64)), d["y64"])


def test_cli_raw_without_calibration_fails_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["import", str(FIXTURES / "mlp.h5"), "-o", "/nonexistent/never.hgq"]) == 1
    assert "calibration" in capsys.readouterr().err
