"""The standalone Vitis backend against hls4ml 1.3.0 on the same quantized models.

Two HGQ2 networks with per-element bitwidths (random fractional bits on every activation and
weight, about 15 % of the weights pruned to 0 bits, WRAP activations calibrated by HGQ2's
``trace_minmax``):

* ``jet``: the 16-64-32-32-5 MLP (relu) of the jet-tagging benchmark;
* ``wide``: a 16-256-256-128-5 MLP with about 103k weights.

For each model and each tool:

* **emit**: hgqir: ``hgqir.emit(g, "vitis", ...)`` (includes the testbench's golden data);
  hls4ml: ``convert_from_keras_model`` + ``write()``;
* **compile**: g++ of the C simulation (hgqir: ``prj.compile()``; hls4ml: ``_compile()``);
* **predict**: samples per second of ``predict`` on one batch, and whether the outputs equal the
  interpreter's ``g.run`` bit for bit.

The IR comes from ``hgqir.from_keras``. The machine is shared, so each time is the best of
``--repeat`` runs (compiles start from an empty build folder every time).

    python benchmarks/emit_vitis.py [--repeat 2] [--models jet,wide]

Prints a table and writes ``benchmarks/results/emit_vitis.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import hgqir

RESULTS = Path(__file__).parent / "results" / "emit_vitis.json"
MODELS = {"jet": (16, 64, 32, 32, 5), "wide": (16, 256, 256, 128, 5)}
BATCH = {"jet": 20000, "wide": 4000}


def hgq2_mlp(sizes: tuple[int, ...], seed: int = 0) -> Any:
    """An HGQ2 MLP with random per-element fractional bits, calibrated on random data."""
    import keras
    from hgq.layers import QDense
    from hgq.utils import trace_minmax

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = keras.Sequential([keras.layers.Input((sizes[0],))])
    for n, width in enumerate(sizes[1:], start=1):
        model.add(QDense(width, activation="relu" if n < len(sizes) - 1 else None))
    for layer in model.layers:
        iq, kq = layer.iq.quantizer, layer.kq.quantizer
        iq._f.assign(rng.integers(2, 7, tuple(iq._f.shape)).astype("float32"))
        bits = np.where(rng.random(kq._b.shape) < 0.15, 0, rng.integers(2, 7, kq._b.shape))
        kq._b.assign(bits.astype("float32"))
    trace_minmax(model, rng.normal(size=(4096, sizes[0])).astype("float32"))
    return model


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Shortest wall-clock time of ``fn`` over ``repeat`` runs, and its last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def throughput(predict: Callable[[np.ndarray], Any], x: np.ndarray) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    y = np.asarray(predict(x))
    return len(x) / (time.perf_counter() - start), y


def run_hgqir(g: hgqir.Graph, x: np.ndarray, tmp: Path, repeat: int) -> dict[str, Any]:
    folder = tmp / "hgqir"

    def emit() -> Any:
        shutil.rmtree(folder, ignore_errors=True)
        return hgqir.emit(g, "vitis", folder)

    def build() -> Any:
        shutil.rmtree(folder / "build", ignore_errors=True)
        return prj.compile()

    emit_s, prj = best(emit, repeat)
    compile_s, prj = best(build, repeat)
    rate, y = throughput(prj.predict, x)
    return {
        "emit_s": emit_s,
        "compile_s": compile_s,
        "predict_per_s": rate,
        "exact": bool(np.array_equal(y, g.run(x))),
        "files": len(list((folder / "firmware").glob("*.cpp"))),
    }


def run_hls4ml(model: Any, g: hgqir.Graph, x: np.ndarray, tmp: Path, repeat: int) -> dict[str, Any]:
    from hls4ml.converters import convert_from_keras_model

    folder = tmp / "hls4ml"
    config = {"Model": {"Precision": "fixed<16,6>", "ReuseFactor": 1, "Strategy": "Latency"}}

    def emit() -> Any:
        shutil.rmtree(folder, ignore_errors=True)
        hm = convert_from_keras_model(
            model, output_dir=str(folder), backend="Vitis", io_type="io_parallel", hls_config=config
        )
        hm.write()
        return hm

    def build() -> Any:
        hm._compile()
        return hm

    emit_s, hm = best(emit, repeat)
    compile_s, hm = best(build, repeat)
    rate, y = throughput(lambda a: hm.predict(np.ascontiguousarray(a)), x)
    want = g.run(x)
    return {
        "emit_s": emit_s,
        "compile_s": compile_s,
        "predict_per_s": rate,
        "exact": bool(np.array_equal(np.asarray(y).reshape(want.shape), want)),
    }


def run_model(name: str, repeat: int) -> dict[str, Any]:
    sizes = MODELS[name]
    model = hgq2_mlp(sizes)
    start = time.perf_counter()
    g = hgqir.from_keras(model)
    import_s = time.perf_counter() - start
    rng = np.random.default_rng(1)
    x = rng.normal(size=(BATCH[name], sizes[0])) * 3  # partly far outside the calibration range
    tmp = Path(tempfile.mkdtemp(prefix=f"emit_vitis_{name}_"))
    ours = run_hgqir(g, x, tmp, repeat)
    theirs = run_hls4ml(model, g, x, tmp, repeat)
    weights = sum(int(np.prod(w.shape)) for layer in model.layers for w in [layer.kernel])
    return {
        "model": f"HGQ2 QDense {'-'.join(map(str, sizes))} (relu), per-element bitwidths",
        "weights": weights,
        "import_s": import_s,
        "batch": len(x),
        "hgqir": ours,
        "hls4ml": theirs,
        "emit_plus_compile_ratio": (theirs["emit_s"] + theirs["compile_s"]) / (ours["emit_s"] + ours["compile_s"]),
        "predict_ratio": ours["predict_per_s"] / theirs["predict_per_s"],
    }


def table(results: dict[str, Any]) -> str:
    lines = [f"{'model':<6} {'tool':<7} {'emit [s]':>9} {'compile [s]':>12} {'predict [1/s]':>14} {'== g.run':>9}"]
    for name, r in results["models"].items():
        for tool in ("hgqir", "hls4ml"):
            t = r[tool]
            lines.append(
                f"{name:<6} {tool:<7} {t['emit_s']:>9.2f} {t['compile_s']:>12.2f} "
                f"{t['predict_per_s']:>14,.0f} {str(t['exact']):>9}"
            )
        lines.append(
            f"{'':<6} hgqir: emit+compile x{r['emit_plus_compile_ratio']:.2f} faster, "
            f"predict x{r['predict_ratio']:.1f} faster ({r['weights']:,} weights, batch {r['batch']:,})"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--models", default="jet,wide")
    args = parser.parse_args()
    results = {
        "models": {name: run_model(name, args.repeat) for name in args.models.split(",")},
        "repeat": args.repeat,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "load_average": os.getloadavg(),
    }
    print(table(results))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
