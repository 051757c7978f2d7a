"""Make the HGQ v1 test fixtures (run once, in a separate environment; CI never runs this).

HGQ v1 (PyPI ``hgq`` 0.2.x, import name ``HGQ``) needs TensorFlow <= 2.15 and Keras 2, so it
cannot live beside hgqir's Keras 3. The fixtures were made in a venv built with::

    python3.11 -m venv /work/envs/hgq1
    /work/envs/hgq1/bin/pip install "tensorflow==2.15.1" "tensorflow-cpu==2.15.1" "keras<3" "hgq==0.2.6"
    /work/envs/hgq1/bin/python tests/frontends/hgq1/make_fixtures.py

(``hgq`` 0.2.6 depends on the ``tensorflow`` distribution; naming it with the same version as
``tensorflow-cpu`` keeps pip from backtracking through every newer TensorFlow.)

For every model it trains a few steps on synthetic data, runs ``trace_minmax`` on calibration
data, converts it with ``to_proxy_model`` and writes, into ``fixtures/``:

- ``NAME.h5``: the raw HGQ v1 model (``model.save``, Keras 2 HDF5);
- ``NAME_proxy.h5``: the proxy model (``FixedPointQuantizer`` layers, fused weights);
- ``NAME.npz``: ``calibration`` (the data given to ``trace_minmax``), ``x`` (test inputs, partly
  beyond the calibration range so that overflow happens), ``y64`` (the proxy model's prediction
  with Keras in float64) and ``y32`` (its prediction in float32, as HGQ v1 users run it).

Float64: HGQ v1's quantizer function casts its bit widths to float32 and so refuses float64
tensors; for ``y64`` it is replaced by the same formula (``SAT(RND(x * 2**f)) / 2**f``, zero-width
elements 0) carried out in the input's dtype. Every layer of the proxy model then runs in float64.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import HGQ  # noqa: E402
import HGQ.proxy.fixed_point_quantizer as fpq  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from HGQ import to_proxy_model, trace_minmax  # noqa: E402
from HGQ.layers import (  # noqa: E402
    HActivation,
    HAdd,
    HConv1D,
    HConv2D,
    HConv2DBatchNorm,
    HDense,
    HDenseBatchNorm,
    HQuantize,
    PAvgPool2D,
    PConcatenate,
    PFlatten,
    PMaxPool1D,
    PMaxPool2D,
    PReshape,
)
from tensorflow import keras  # noqa: E402

OUT = Path(__file__).resolve().parent / "fixtures"


def kq(bw: float) -> dict:
    conf = HGQ.get_default_kq_conf()
    conf["init_bw"] = bw
    return conf


def paq(bw: float) -> dict:
    conf = HGQ.get_default_paq_conf()
    conf["init_bw"] = bw
    return conf


def mlp() -> keras.Model:
    inp = keras.Input((12,))
    h = HQuantize(beta=1e-6, name="inp_q")(inp)
    h = HDense(16, activation="relu", beta=1e-6, name="fc1")(h)
    h = HDense(8, activation="relu", beta=1e-6, name="fc2")(h)
    out = HDense(4, beta=1e-6, name="fc3")(h)
    return keras.Model(inp, out, name="mlp")


def conv() -> keras.Model:
    inp = keras.Input((8, 8, 2))
    h = HQuantize(beta=1e-6, name="inp_q")(inp)
    h = HConv2D(4, 3, activation="relu", beta=1e-6, name="conv1")(h)
    h = PMaxPool2D(2, name="pool")(h)
    h = PFlatten(name="flat")(h)
    out = HDense(5, beta=1e-6, name="fc")(h)
    return keras.Model(inp, out, name="conv")


def bn_add() -> keras.Model:
    inp = keras.Input((10,))
    h = HQuantize(beta=1e-6, name="inp_q")(inp)
    h = HDenseBatchNorm(8, activation="relu", beta=1e-6, name="fcbn")(h)
    a = HDense(8, beta=1e-6, name="left")(h)
    b = HDense(8, use_bias=False, beta=1e-6, name="right")(h)
    h = HAdd(beta=1e-6, name="add")([a, b])
    h = HActivation("relu", beta=1e-6, name="act")(h)
    out = HDense(3, beta=1e-6, name="fc_out")(h)
    return keras.Model(inp, out, name="bn_add")


def wide() -> keras.Model:
    """Wide types (about 12 fractional bits everywhere): float32 can no longer hold every sum."""
    inp = keras.Input((32,))
    h = HQuantize(paq_conf=paq(12), name="inp_q")(inp)
    h = HDense(64, kq_conf=kq(12), paq_conf=paq(12), name="fc1")(h)
    h = HDense(64, activation="relu", kq_conf=kq(12), paq_conf=paq(12), name="fc2")(h)
    out = HDense(10, kq_conf=kq(12), paq_conf=paq(12), name="fc3")(h)
    return keras.Model(inp, out, name="wide")


def conv_bn() -> keras.Model:
    inp = keras.Input((6, 6, 3))
    h = HQuantize(beta=1e-6, name="inp_q")(inp)
    h = HConv2DBatchNorm(4, 3, padding="same", activation="relu", beta=1e-6, name="convbn")(h)
    h = PAvgPool2D(2, name="avg")(h)
    h = PReshape((36,), name="flat")(h)
    out = HDense(3, beta=1e-6, name="fc")(h)
    return keras.Model(inp, out, name="conv_bn")


def seq() -> keras.Model:
    """A Sequential model (its file has no inbound-node lists)."""
    return keras.Sequential(
        [keras.Input((6,)), HQuantize(beta=1e-6), HDense(8, activation="relu", beta=1e-6), HDense(3, beta=1e-6)],
        name="seq",
    )


def mixed() -> keras.Model:
    """Two branches from the input: a strided 'same' Conv1D with max pool, and a batchnorm dense
    without learned scale (HGQ v1 still folds gamma = variance = 1); concatenated."""
    inp = keras.Input((8, 3))
    h = HQuantize(beta=1e-6, name="inp_q")(inp)
    c = HConv1D(4, 3, padding="same", strides=2, beta=1e-6, name="conv")(h)
    c = PFlatten(name="flat_c")(PMaxPool1D(2, name="pool")(c))
    d = HDenseBatchNorm(6, scale=False, activation="relu", beta=1e-6, name="fcbn")(PFlatten(name="flat_d")(h))
    h = HActivation("relu", beta=1e-6, name="act")(PConcatenate(name="cat")([c, d]))
    out = HDense(3, use_bias=False, beta=1e-6, name="fc")(h)
    return keras.Model(inp, out, name="mixed")


MODELS = {
    "mlp": (mlp, 64),
    "conv": (conv, 64),
    "bn_add": (bn_add, 64),
    "wide": (wide, 256),
    "conv_bn": (conv_bn, 64),
    "seq": (seq, 64),
    "mixed": (mixed, 64),
}
"""name -> (builder, number of test samples)."""


def train(model: keras.Model, rng: np.random.Generator) -> np.ndarray:
    """A few steps on a synthetic regression task; returns the calibration data."""
    shape = tuple(model.input_shape[1:])
    x = rng.normal(size=(512, *shape)).astype("float32")
    w = rng.normal(size=(int(np.prod(shape)), int(model.output_shape[-1])))
    y = np.tanh(x.reshape(len(x), -1) @ w / np.sqrt(w.shape[0])).astype("float32")
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    model.fit(x, y, batch_size=64, epochs=3, verbose=0)
    return x[:128]


def float64_gfixed(x, keep_negative, bits, integer_bits, RND="TRN", SAT="WRAP"):  # noqa: N803 (HGQ's names)
    """HGQ v1's ``gfixed_quantizer`` formula in the dtype of ``x`` (HGQ's own casts to float32)."""
    dt = x.dtype
    k, b, i = (tf.cast(v, dt) for v in (keep_negative, bits, integer_bits))
    scale = tf.pow(tf.constant(2, dt), b - i)
    q = fpq.SAT_MAP[SAT](fpq.RND_MAP[RND](x * scale), k, b)
    return q / scale * tf.cast(b != 0, dt)


def predict64(path: Path, x: np.ndarray) -> np.ndarray:
    keras.backend.set_floatx("float64")
    original = fpq.gfixed_quantizer
    fpq.gfixed_quantizer = float64_gfixed
    try:
        objects = {"FixedPointQuantizer": fpq.FixedPointQuantizer}
        proxy32 = keras.models.load_model(path, custom_objects=objects)
        config = proxy32.get_config()
        for layer in config["layers"]:
            layer["config"]["dtype"] = "float64"
        proxy = keras.Model.from_config(config, custom_objects=objects)
        proxy.set_weights(proxy32.get_weights())
        assert all(layer.dtype == "float64" for layer in proxy.layers)
        return np.asarray(proxy(tf.constant(x, tf.float64), training=False), dtype=np.float64)
    finally:
        fpq.gfixed_quantizer = original
        keras.backend.set_floatx("float32")


def make(name: str, seed: int) -> None:
    build, n_test = MODELS[name]
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = build()
    calibration = train(model, rng)
    trace_minmax(model, calibration, verbose=False)
    proxy = to_proxy_model(model)
    raw_path, proxy_path = OUT / f"{name}.h5", OUT / f"{name}_proxy.h5"
    model.save(raw_path, include_optimizer=False)
    proxy.save(proxy_path)
    # test inputs: half like the calibration data, half scaled up (overflow / wrap happen there)
    x = rng.normal(size=(n_test, *calibration.shape[1:])).astype("float32")
    x[n_test // 2 :] *= 3
    y32 = np.asarray(proxy.predict(x, verbose=0), dtype=np.float32)
    y64 = predict64(proxy_path, x)
    np.savez_compressed(OUT / f"{name}.npz", calibration=calibration, x=x, y64=y64, y32=y32)
    differ = int(np.sum(y64 != y32.astype(np.float64)))
    print(f"{name}: {y64.size} outputs, float32 differs from float64 in {differ}")


def main() -> int:
    OUT.mkdir(exist_ok=True)
    names = sys.argv[1:] or list(MODELS)
    for name in names:
        make(name, seed=10 + list(MODELS).index(name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
