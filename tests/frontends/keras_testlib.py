"""Shared helpers of the Keras frontend tests (float64 scope, random bit widths, exactness checks)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from hgqir.frontends.keras.shim.quant import Quantizer, WeightQuantizer  # noqa: E402

import hgqir  # noqa: E402

L = keras.layers


def float64_scope() -> Iterator[None]:
    """Generator for a fixture: float64 Keras while a test runs, the previous floatx after."""
    old, old_policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    # the global dtype policy, once something has read it, no longer follows floatx
    keras.config.set_dtype_policy("float64")
    try:
        yield
    finally:
        keras.config.set_floatx(old)
        keras.config.set_dtype_policy(old_policy)


def randomize_bits(model: Any, seed: int = 0, prune: float = 0.05) -> None:
    """Give every quantizer random per-element fractional bits (a few pruned) and SAT integer bits."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers():
        if isinstance(layer, Quantizer):
            f = rng.integers(1, 7, layer.f.shape).astype(np.float64)
            f[rng.random(f.shape) < prune] = -12.0
            layer.f.assign(f + rng.uniform(-0.3, 0.3, f.shape))
            if not layer.wraps:
                layer.i.assign(rng.integers(0, 3, layer.i.shape) + rng.uniform(-0.3, 0.3, layer.i.shape))
        elif isinstance(layer, WeightQuantizer):
            layer.f.assign(rng.integers(2, 8, layer.f.shape) + rng.uniform(-0.3, 0.3, layer.f.shape))


def outputs(y: Any) -> list[np.ndarray]:
    return [np.asarray(v) for v in y] if isinstance(y, (list, tuple)) else [np.asarray(y)]


def assert_exact(g: hgqir.Graph, model: Any, x: Any) -> None:
    """``g.run(x)`` equals ``model.predict(x)`` bit for bit, output by output."""
    got, want = outputs(g.run(x)), outputs(model.predict(x, verbose=0))
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape
        assert np.array_equal(a, b), f"max |diff| {np.max(np.abs(a - b))}, {np.mean(a != b):.3%} differ"


def check_shim(model: Any, x: np.ndarray, scale: float = 4.0, seed: int = 0, **options: Any) -> tuple[Any, Any]:
    """Quantize, randomize bit widths, calibrate + import; exact on x and scale * x; EBOPs agree."""
    qmodel = hgqir.quantize_keras(model, **options)
    randomize_bits(qmodel, seed)
    g = hgqir.from_keras(qmodel, calibration=x)
    assert_exact(g, qmodel, x)
    assert_exact(g, qmodel, [scale * v for v in x] if isinstance(x, list) else scale * x)
    assert qmodel.ebops() == hgqir.bops(g).total
    return qmodel, g


def single(layer: Any, shape: tuple[int, ...], before: Any = None) -> keras.Model:
    """A model around one layer (optionally after another)."""
    inp = keras.Input(shape)
    x = before(inp) if before is not None else inp
    return keras.Model(inp, layer(x))


def data(shape: tuple[int, ...], n: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *shape))
