"""Import paths other than the layer matrix: bad input, float models, text round trip, files, CLI."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import pytest
from keras_testlib import L, assert_exact, data, float64_scope, randomize_bits

import hgqir
from hgqir.cli import main
from hgqir.errors import HgqirError


@pytest.fixture(autouse=True)
def _float64() -> Iterator[None]:
    yield from float64_scope()


@pytest.fixture(scope="module")
def shim_and_graph() -> Iterator[tuple]:
    gen = float64_scope()
    next(gen)
    model = keras.Sequential([keras.Input((6,)), L.Dense(8, activation="tanh"), L.Dense(4, activation="softmax")])
    qmodel = hgqir.quantize_keras(model)
    randomize_bits(qmodel, seed=3)
    x = data((6,))
    g = hgqir.from_keras(qmodel, calibration=x)
    yield qmodel, g, x
    next(gen, None)


# ---------------------------------------------------------------- bad input
class Custom(keras.layers.Layer):
    def call(self, x: object) -> object:
        return x * 2


def test_every_unsupported_layer_is_listed_once_before_any_work() -> None:
    inp = keras.Input((5, 3))
    x = L.LSTM(4, return_sequences=True, name="lstm")(inp)
    x = L.Lambda(lambda t: t + 1, name="lam")(x)
    x = Custom(name="custom")(x)
    x = L.Dense(2, activation="softsign", name="softsign_dense")(x)
    x = L.DepthwiseConv1D(2, dilation_rate=2, name="dilated")(x)
    model = keras.Model(inp, x)
    for fn in (hgqir.from_keras, hgqir.quantize_keras):
        with pytest.raises(hgqir.UnsupportedOpError) as info:
            fn(model)
        text = str(info.value)
        for name, cls in [
            ("lstm", "LSTM"),
            ("lam", "Lambda"),
            ("custom", "Custom"),
            ("softsign_dense", "Dense"),
            ("dilated", "DepthwiseConv1D"),
        ]:
            assert f"{name} ({cls})" in text
        assert len(info.value.items) == 5


def test_subclassed_model_gets_a_clear_error() -> None:
    class Net(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.d = L.Dense(2)

        def call(self, x: object) -> object:
            return self.d(x)

    net = Net()
    net(np.zeros((1, 3)))
    with pytest.raises(hgqir.UnsupportedOpError, match="subclassed model.*Sequential"):
        hgqir.from_keras(net)


def test_sequential_without_input_shape() -> None:
    with pytest.raises(hgqir.UnsupportedOpError, match="no input shape"):
        hgqir.quantize_keras(keras.Sequential([L.Dense(2)]))


def test_unknown_options_are_rejected() -> None:
    model = keras.Sequential([keras.Input((2,)), L.Dense(2)])
    with pytest.raises(TypeError, match="unknown option"):
        hgqir.quantize_keras(model, bogus=1)
    with pytest.raises(TypeError, match="unknown option"):
        hgqir.from_keras(model, bogus=1)


# ---------------------------------------------------------------- plain float models
def test_float_model_imports_with_the_documented_default_and_warns() -> None:
    model = keras.Sequential([keras.Input((4,)), L.Dense(3, activation="relu"), L.Dense(2)])
    with pytest.warns(UserWarning, match="float model"):
        g = hgqir.from_keras(model)
    assert g.inputs[0].type.scalar() == (1, 5, 10)
    consts = [op.result for op in g.ops if op.kind is hgqir.OpKind.CONST]
    assert all(int(v.type.f.max()) <= 10 for v in consts)
    x = data((4,))
    assert np.max(np.abs(g.run(x) - model.predict(x, verbose=0))) < 0.05


def test_float_model_default_type_and_calibration() -> None:
    model = keras.Sequential([keras.Input((4,)), L.Dense(3)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = hgqir.from_keras(model, default_type=(1, 3, 6), weight_f=8)
        gc = hgqir.from_keras(model, calibration=10 * data((4,)), default_type=(1, 3, 6))
    assert g.inputs[0].type.scalar() == (1, 3, 6)
    assert gc.inputs[0].type.union()[1] >= 5  # integer bits from the (larger) data


# ---------------------------------------------------------------- text, files, CLI
def test_text_round_trip_runs_identically(shim_and_graph: tuple) -> None:
    qmodel, g, x = shim_and_graph
    g2 = hgqir.loads(hgqir.dumps(g))
    assert hgqir.dumps(g2) == hgqir.dumps(g)
    assert np.array_equal(g2.run(4 * x), g.run(4 * x))
    assert_exact(g2, qmodel, 4 * x)


def test_saved_shim_reloads_and_imports_identically(shim_and_graph: tuple, tmp_path: Path) -> None:
    qmodel, g, x = shim_and_graph
    path = tmp_path / "shim.keras"
    qmodel.save(path)
    again = keras.saving.load_model(path, compile=False)
    assert type(again).__name__ == "ShimModel"
    assert np.array_equal(np.asarray(again.predict(x, verbose=0)), g.run(x))
    assert hgqir.dumps(hgqir.from_keras(again)) == hgqir.dumps(g)


def test_cli_import(shim_and_graph: tuple, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    qmodel, g, x = shim_and_graph
    path, out = tmp_path / "m.keras", tmp_path / "m.hgq"
    qmodel.save(path)
    np.save(tmp_path / "calib.npy", x)
    assert main(["import", str(path), "-o", str(out), "--calibration", str(tmp_path / "calib.npy")]) == 0
    assert "wrote" in capsys.readouterr().out
    loaded = hgqir.load(out)
    assert np.array_equal(loaded.run(4 * x), g.run(4 * x))


def test_ebops_metric_and_regularizer_value(shim_and_graph: tuple) -> None:
    qmodel, g, _ = shim_and_graph
    assert qmodel.ebops() == hgqir.bops(g).total > 0


def test_saved_shim_loads_in_a_fresh_process_after_import_hgqir(shim_and_graph: tuple, tmp_path: Path) -> None:
    # Keras finds registered classes only once their module is imported: load_keras does that
    import subprocess
    import sys

    qmodel, g, x = shim_and_graph
    path = tmp_path / "shim.keras"
    qmodel.save(path)
    np.save(tmp_path / "x.npy", x)
    code = (
        "import keras, numpy as np, hgqir\n"
        "keras.config.set_floatx('float64')\n"  # as the fixture's model was built
        f"m = hgqir.load_keras({str(path)!r}, compile=False)\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        f"np.save({str(tmp_path / 'y.npy')!r}, np.asarray(m.predict(x, verbose=0)))\n"
        "print(type(m).__name__)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "ShimModel"
    assert np.array_equal(np.load(tmp_path / "y.npy"), np.asarray(qmodel.predict(x, verbose=0)))


def test_load_keras_rejects_missing_and_garbage_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(FileNotFoundError, match="nope.keras"):
        hgqir.load_keras(str(tmp_path / "nope.keras"))
    bad = tmp_path / "bad.keras"
    bad.write_text("not a zip file")
    with pytest.raises(HgqirError, match="bad.keras"):
        hgqir.load_keras(str(bad))
    assert main(["import", str(bad), "-o", str(tmp_path / "m.hgq")]) != 0  # one message, no traceback
    assert "bad.keras" in capsys.readouterr().err
