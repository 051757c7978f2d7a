"""``hgqir import`` with PyTorch models and the ``.hgq`` round trip of imported graphs."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
from hgqir.frontends.torch import calibrate
from torch import nn

import hgqir
from hgqir.cli import main

MODEL_FILE = textwrap.dedent(
    """
    import torch
    from torch import nn

    def make():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 4))

    def make_with_example():
        return make(), torch.randn(32, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    """
)


@pytest.fixture()
def model_dir(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    (tmp_path / "my_torch_model.py").write_text(MODEL_FILE)
    monkeypatch.syspath_prepend(str(tmp_path))
    calib = np.random.default_rng(0).normal(size=(64, 1, 6, 6)).astype(np.float32)
    np.save(tmp_path / "calib.npy", calib)
    return tmp_path


def _import(*args: str) -> int:
    return main(["import", *args])


def _reference(calib: np.ndarray) -> hgqir.Graph:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 4)).eval()
    x = torch.from_numpy(calib)
    return hgqir.from_torch(net, x[:256], calibration=x)


@pytest.mark.parametrize("spec", ["my_torch_model:make", "{dir}/my_torch_model.py:make"])
def test_import_factory_with_calibration(model_dir, spec: str) -> None:  # type: ignore[no-untyped-def]
    out = model_dir / "model.hgq"
    code = _import(
        spec.format(dir=model_dir),
        "-o",
        str(out),
        "--framework",
        "torch",
        "--calibration",
        str(model_dir / "calib.npy"),
    )
    assert code == 0
    g = hgqir.load(out)
    calib = np.load(model_dir / "calib.npy")
    assert hgqir.dumps(g) == hgqir.dumps(_reference(calib))
    assert np.array_equal(g.run(calib.astype(np.float64)), _reference(calib).run(calib.astype(np.float64)))


def test_import_needs_a_shape_or_data(model_dir, capsys) -> None:  # type: ignore[no-untyped-def]
    assert _import("my_torch_model:make", "-o", str(model_dir / "m.hgq")) == 1
    assert "--input-shape" in capsys.readouterr().err
    assert _import("my_torch_model:make", "-o", str(model_dir / "m.hgq"), "--input-shape", "1,6,6") == 0
    assert hgqir.load(model_dir / "m.hgq").inputs[0].shape == (1, 6, 6)


def test_import_factory_returning_an_example(model_dir) -> None:  # type: ignore[no-untyped-def]
    assert _import("my_torch_model:make_with_example", "-o", str(model_dir / "e.hgq")) == 0
    assert hgqir.load(model_dir / "e.hgq").outputs[0].shape == (4,)


def test_import_saved_shim(model_dir) -> None:  # type: ignore[no-untyped-def]
    """A trained shim saved whole with torch.save imports with its learned types."""
    import my_torch_model  # type: ignore[import-not-found]

    x = torch.from_numpy(np.load(model_dir / "calib.npy"))
    qmod = hgqir.quantize_torch(my_torch_model.make(), x, weight={"f": 3})
    calibrate(qmod, x)
    torch.save(qmod, model_dir / "shim.pt")
    assert _import(str(model_dir / "shim.pt"), "-o", str(model_dir / "s.hgq"), "--input-shape", "1,6,6") == 0
    g = hgqir.load(model_dir / "s.hgq")
    assert hgqir.dumps(g) == hgqir.dumps(hgqir.from_torch(qmod, x))


def test_import_errors_are_reported(model_dir, capsys) -> None:  # type: ignore[no-untyped-def]
    assert _import("my_torch_model:nothing", "-o", str(model_dir / "x.hgq"), "--input-shape", "1,6,6") == 1
    assert "no attribute 'nothing'" in capsys.readouterr().err
    assert _import("not_a_spec", "-o", str(model_dir / "x.hgq"), "--framework", "torch") == 1
    (model_dir / "bad_model.py").write_text("import torch\ndef make():\n    return torch.nn.LSTM(4, 4)\n")
    assert _import("bad_model:make", "-o", str(model_dir / "x.hgq"), "--input-shape", "3,4") == 1
    assert "LSTM" in capsys.readouterr().err


def test_hgq_text_round_trip_of_a_conv_model() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(2, 3, 3, padding=1), nn.BatchNorm1d(3), nn.Sigmoid(), nn.Flatten(), nn.Linear(12, 2))
    x = torch.randn(32, 2, 4)
    net.eval()
    g = hgqir.from_torch(hgqir.quantize_torch(net, x), x, calibration=x)
    text = hgqir.dumps(g)
    g2 = hgqir.loads(text)
    assert hgqir.dumps(g2) == text
    assert np.array_equal(g2.run(4 * x.numpy()), g.run(4 * x.numpy()))
