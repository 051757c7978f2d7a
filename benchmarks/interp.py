"""Interpreter throughput on a 16-64-32-32-5 dense ReLU network (issue 2's performance goal).

Synthetic: every weight has its own 8-bit type, every activation passes a per-element 8-bit
quantizer (SAT). Real: the HGQ2-trained jet MLP of ``fixtures/models.py`` (RND/WRAP
activations, as HGQ2 trains by default), imported with ``hgqir.from_keras``, on its test data,
beside hls4ml's C simulation of the same graph (our hls4ml backend, compiled once; goal: the
interpreter 100x faster), and the HGQ2-trained digits CNN beside Keras' own float32 ``predict``
of the same model (goal: within 3x), and the same for a digits CNN trained with hgqir's own
Keras shim (trained here, 8 epochs).
Prints a table and writes ``benchmarks/results/interp.json``::

    python benchmarks/interp.py [--samples 100000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from hgqir import FixedType, Graph, OpKind, Value
from hgqir.quantize import mantissa_paths

LAYERS = (16, 64, 32, 32, 5)
BITS = 8
GOAL = 1_000_000
"""Samples per second the issue asks for."""


def _weight(g: Graph, shape: tuple[int, ...], rng: np.random.Generator, name: str) -> Value:
    """A constant with a per-element 8-bit signed type and a random mantissa in range."""
    i = rng.integers(-2, 2, size=shape)
    f = BITS - 1 - i
    top = 2 ** (BITS - 1)
    data = rng.integers(-top, top, size=shape)
    return g.const_mantissa(data, FixedType(shape, 1, i, f), name=name)


def _act_type(n: int, rng: np.random.Generator) -> FixedType:
    """Per-element unsigned 8-bit activation type (after ReLU)."""
    i = rng.integers(0, 4, size=(n,))
    return FixedType((n,), 0, i, BITS - i)


def build_network(seed: int = 0) -> Graph:
    """The benchmark graph: input quantizer, then dense-relu-quant blocks, a final dense."""
    rng = np.random.default_rng(seed)
    g = Graph("dense_16_64_32_32_5")
    i_in = rng.integers(1, 4, size=(LAYERS[0],))
    x = g.input("x", FixedType((LAYERS[0],), 1, i_in, BITS - 1 - i_in), round="RND", overflow="SAT")
    for n, (a, b) in enumerate(zip(LAYERS[:-1], LAYERS[1:], strict=True)):
        w = _weight(g, (a, b), rng, f"w{n}")
        bias = _weight(g, (b,), rng, f"b{n}")
        x = g.add(OpKind.DENSE, [x, w, bias], name=f"dense{n}").result
        if n < len(LAYERS) - 2:
            x = g.add(OpKind.RELU, [x], name=f"relu{n}").result
            q = g.add(OpKind.QUANT, [x], {"round": "RND", "overflow": "SAT"}, types=[_act_type(b, rng)], name=f"act{n}")
            x = q.result
    g.output(x)
    g.verify()
    return g


def measure(g: Graph, x: np.ndarray, repeat: int, limits: dict[str, int] | None = None) -> dict[str, float]:
    """Best and median wall time (and best CPU time) of ``g.run(x)`` over ``repeat`` runs."""
    walls, cpus = [], []
    with mantissa_paths(**(limits or {})):
        g.run(x[:100])  # warm up caches and BLAS threads
        for _ in range(repeat):
            c0, t0 = time.process_time(), time.perf_counter()
            g.run(x)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    n = x.shape[0]
    best, median = min(walls), float(np.median(walls))
    return {
        "best_s": best,
        "median_s": median,
        "cpu_s": min(cpus),
        "samples_per_s": n / best,
        "median_samples_per_s": n / median,
    }


def check_exact(g: Graph, x: np.ndarray) -> bool:
    """The fused float path against forced int64 mantissas (no float64 arithmetic at all)."""
    with mantissa_paths(float_bits=0):
        slow = g.run(x)
    return bool(np.array_equal(g.run(x), slow))


def jet_rows(samples: int, repeat: int) -> dict[str, dict[str, float]]:
    """The HGQ2-trained jet MLP (needs keras and hgq2; empty without them)."""
    try:
        import sys

        sys.path.insert(0, str(Path(__file__).parent))
        from fixtures.models import jet_data, load

        import hgqir

        g = hgqir.from_keras(load("jet_mlp"))
    except ImportError:
        return {}
    x = jet_data()[2].astype(np.float64)
    x = np.resize(x, (samples, x.shape[1]))
    if not check_exact(g, x[:20_000]):
        raise SystemExit("the jet MLP's fast path differs from the int64 path")
    rows = {
        "HGQ2 jet MLP: Graph.run": measure(g, x, repeat),
        "HGQ2 jet MLP: int64": measure(g, x[: samples // 10], 2, {"float_bits": 0}),
        "HGQ2 jet MLP: hls4ml C sim": hls4ml_row(g, x[: max(samples // 10, 1000)], repeat),
    }
    return rows | cnn_rows(max(samples // 5, 1000), repeat)


def hls4ml_row(g: Any, x: np.ndarray, repeat: int) -> dict[str, float]:
    """hls4ml's C simulation of the same graph (our hls4ml backend, compiled once, then
    ``predict``), checked bit for bit against the interpreter."""
    import tempfile

    from hgqir.backends.hls4ml import to_hls_model

    with tempfile.TemporaryDirectory() as tmp:
        m = to_hls_model(g, Path(tmp) / "prj")
        m.compile()
        xc = np.ascontiguousarray(x)
        y = np.asarray(m.predict(xc[:2000])).reshape(g.run(xc[:2000]).shape)
        if not np.array_equal(y, g.run(xc[:2000])):
            raise SystemExit("hls4ml's C simulation differs from the interpreter")
        return timed_row(lambda: m.predict(xc), len(xc), max(repeat // 2, 1))


def cnn_rows(samples: int, repeat: int) -> dict[str, dict[str, float]]:
    """The HGQ2 digits CNN: ``Graph.run`` against Keras ``predict`` (float32) of the same model."""
    from fixtures.models import digits_data, load

    import hgqir

    model = load("digits_cnn")
    g = hgqir.from_keras(model)
    x = digits_data()[2].astype(np.float64)
    x = np.resize(x, (samples, *x.shape[1:]))
    if not check_exact(g, x[:2000]):
        raise SystemExit("the digits CNN's fast path differs from the int64 path")
    keras_row = keras_predict_row(model, x.astype(np.float32), repeat)
    return {
        "HGQ2 digits CNN: Graph.run": measure(g, x, repeat),
        "HGQ2 digits CNN: Keras predict": keras_row,
    } | shim_cnn_rows(x, repeat)


def keras_predict_row(model: Any, x32: np.ndarray, repeat: int) -> dict[str, float]:
    model.predict(x32[:100], verbose=0)
    return timed_row(lambda: model.predict(x32, batch_size=1024, verbose=0), len(x32), repeat)


def timed_row(fn: Any, n: int, repeat: int) -> dict[str, float]:
    """Best and median wall time of ``fn()`` (``n`` samples) over ``repeat`` runs."""
    walls = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
    return {
        "best_s": min(walls),
        "median_s": float(np.median(walls)),
        "cpu_s": float("nan"),
        "samples_per_s": n / min(walls),
        "median_samples_per_s": n / float(np.median(walls)),
    }


def shim_cnn_rows(x: np.ndarray, repeat: int) -> dict[str, dict[str, float]]:
    """A digits CNN trained with hgqir's own Keras shim (learned bitwidths, 8 epochs), imported:
    ``Graph.run`` beside Keras ``predict`` of the trained shim model (float32)."""
    import keras
    from fixtures.models import digits_data
    from train_keras import cnn_float

    import hgqir

    xtr, ytr, _, _ = digits_data()
    keras.utils.set_random_seed(0)
    shim = hgqir.quantize_keras(cnn_float(), beta=1e-5)
    shim.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    shim.fit(xtr, ytr, epochs=8, batch_size=64, verbose=0)
    g = hgqir.from_keras(shim, calibration=xtr)
    if not check_exact(g, x[:2000]):
        raise SystemExit("the shim CNN's fast path differs from the int64 path")
    return {
        "shim digits CNN: Graph.run": measure(g, x, repeat),
        "shim digits CNN: Keras predict": keras_predict_row(shim, x.astype(np.float32), repeat),
    }


def ratio(rows: dict[str, dict[str, float]], a: str, b: str) -> float | None:
    """Throughput of row ``a`` over row ``b`` (best runs), None when either is missing."""
    if a not in rows or b not in rows:
        return None
    return rows[a]["samples_per_s"] / rows[b]["samples_per_s"]


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "interp.json"))
    args = parser.parse_args(argv)
    g = build_network()
    x = np.random.default_rng(1).normal(0.0, 3.0, size=(args.samples, LAYERS[0]))
    rows = {
        "Graph.run (fused float64)": measure(g, x, args.repeat),
        "forced int64 mantissas": measure(g, x[: args.samples // 10], 2, {"float_bits": 0}),
    }
    real = jet_rows(args.samples, args.repeat)
    rows.update(real)
    fast = rows["Graph.run (fused float64)"]
    result = {
        "benchmark": "interp",
        "network": "-".join(map(str, LAYERS)),
        "weight_bits": BITS,
        "activation_bits": BITS,
        "samples": args.samples,
        "repeat": args.repeat,
        **fast,
        "cpu_samples_per_s": args.samples / fast["cpu_s"],
        "paths": rows,
        "exact_vs_int64": check_exact(g, x[:20_000]),
        "jet_mlp_hgq2": real.get("HGQ2 jet MLP: Graph.run"),
        "jet_mlp_hls4ml_csim": real.get("HGQ2 jet MLP: hls4ml C sim"),
        "jet_mlp_vs_hls4ml": ratio(real, "HGQ2 jet MLP: Graph.run", "HGQ2 jet MLP: hls4ml C sim"),
        "digits_cnn_vs_keras": ratio(real, "HGQ2 digits CNN: Graph.run", "HGQ2 digits CNN: Keras predict"),
        "shim_cnn_vs_keras": ratio(real, "shim digits CNN: Graph.run", "shim digits CNN: Keras predict"),
        "digits_cnn_hgq2": real.get("HGQ2 digits CNN: Graph.run"),
        "digits_cnn_keras_predict": real.get("HGQ2 digits CNN: Keras predict"),
        "goal_samples_per_s": GOAL,
        "meets_goal": fast["samples_per_s"] >= GOAL,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    print(f"network {result['network']}, {args.samples} samples, best of {args.repeat}")
    print(f"{'path':<32}{'best s':>9}{'median s':>10}{'cpu s':>8}{'samples/s':>13}{'median/s':>13}")
    for name, r in rows.items():
        print(
            f"{name:<32}{r['best_s']:>9.4f}{r['median_s']:>10.4f}{r['cpu_s']:>8.3f}"
            f"{r['samples_per_s']:>13,.0f}{r['median_samples_per_s']:>13,.0f}"
        )
    if result["jet_mlp_vs_hls4ml"]:
        print(f"jet MLP: Graph.run / hls4ml C sim = {result['jet_mlp_vs_hls4ml']:.0f}x (goal 100x)")
    for key, name in (("digits_cnn_vs_keras", "HGQ2 digits CNN"), ("shim_cnn_vs_keras", "shim digits CNN")):
        if result[key]:
            print(f"{name}: Graph.run / Keras predict = {result[key]:.2f}x (goal >= 1/3)")
    print(
        f"goal {GOAL:,} samples/s: {'met' if result['meets_goal'] else 'NOT met'}; "
        f"bit-identical to the int64 path: {result['exact_vs_int64']}"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
