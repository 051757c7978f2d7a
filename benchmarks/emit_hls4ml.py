"""IR → hls4ml conversion time against HGQ2's own hls4ml conversion of the same model.

The model is an HGQ2 ``QDense`` network 16-64-32-32-5 (relu) with per-element bitwidths:
random fractional bits on every activation and weight (some weights pruned to 0 bits), then
HGQ2's ``trace_minmax`` calibration of the WRAP activation quantizers.

* **hgqir**: the model's IR graph → hls4ml ``ModelGraph`` (``hgqir.backends.hls4ml.to_hls_model``);
* **HGQ2**: ``hls4ml.converters.convert_from_keras_model`` on the Keras model (hls4ml's HGQ2
  support, including its bit-exact precision inference).

A second model, MNIST-convnet-sized (28x28x1, conv 32 / conv 64 3x3, max pools, dense 10), is
converted and compiled by each tool in its own process: write + g++ time and the peak memory
of the compiler processes (``VmHWM`` of ``cc1plus``/``ld``, watched in ``/proc``; goal: under
120 s and 2 GiB, and no slower than HGQ2's own conversion).

Both conversions stop at the ``ModelGraph`` (nothing written); each is timed ``--repeat``
times after a warm-up and the median is reported. The Keras → IR import (once, cold) is
reported separately. ``compile()`` (write + g++) is timed once each. Both projects'
predictions are compared with the interpreter, bit for bit.

The IR graph comes from ``hgqir.from_keras`` when it imports HGQ2 models; otherwise it is
built by hand from the model's quantizers and quantized weights (``hand_graph``), and the
report says so.

    python benchmarks/emit_hls4ml.py [--repeat 5] [--conv-timeout 1500]

Prints a table and writes ``benchmarks/results/emit_hls4ml.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import hgqir
from hgqir import FixedType, Graph, OpKind

RESULTS = Path(__file__).parent / "results" / "emit_hls4ml.json"
SIZES = (16, 64, 32, 32, 5)


# ---------------------------------------------------------------- the HGQ2 model
def hgq2_model(seed: int = 0) -> Any:
    """The HGQ2 network with random per-element fractional bits, calibrated on random data."""
    import keras
    from hgq.layers import QDense
    from hgq.utils import trace_minmax

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    layers: list[Any] = [keras.layers.Input((SIZES[0],))]
    for n, width in enumerate(SIZES[1:], start=1):
        layers.append(QDense(width, activation="relu" if n < len(SIZES) - 1 else None))
    model = keras.Sequential(layers)
    for layer in model.layers:
        iq, kq = layer.iq.quantizer, layer.kq.quantizer
        iq._f.assign(rng.integers(2, 7, tuple(iq._f.shape)).astype("float32"))
        kq._b.assign(np.where(rng.random(kq._b.shape) < 0.15, 0, rng.integers(2, 7, kq._b.shape)).astype("float32"))
    trace_minmax(model, rng.normal(size=(2048, SIZES[0])).astype("float32"))
    return model


def _kif(q: Any, shape: tuple[int, ...]) -> FixedType:
    from keras import ops

    k, i, f = (np.broadcast_to(ops.convert_to_numpy(a), (1, *shape))[0] for a in q.kif)
    return FixedType(shape, k.astype(np.int64), i.astype(np.int64), f.astype(np.int64))


def _weight(g: Graph, q: Any, values: Any, name: str) -> Any:
    from keras import ops

    data = np.asarray(ops.convert_to_numpy(values), dtype=np.float64)
    return g.const(data, _kif(q, data.shape), name=name)


def hand_graph(model: Any) -> Graph:
    """The HGQ2 network's IR, read off its quantizers: per layer ``quant → dense → relu``.

    HGQ2's ``QDense`` quantizes its input (``iq``, per element), multiplies by the quantized
    kernel, adds the quantized bias exactly and applies the activation; the first ``iq``
    becomes the graph input's type and modes.
    """
    g = Graph("hgq2_mlp")
    h = None
    for n, layer in enumerate(model.layers):
        iq = layer.iq.quantizer
        t = _kif(iq, (layer.kernel.shape[0],))
        if h is None:
            h = g.input("x", t, round=iq.round_mode, overflow=iq.overflow_mode)
        else:
            attrs = {"round": iq.round_mode, "overflow": iq.overflow_mode}
            h = g.add(OpKind.QUANT, [h], attrs, [t], name=f"iq{n}").result
        w = _weight(g, layer.kq.quantizer, layer.qkernel, f"w{n}")
        b = _weight(g, layer.bq.quantizer, layer.qbias, f"b{n}")
        h = g.add(OpKind.DENSE, [h, w, b], name=f"dense{n}").result
        if layer.activation.__name__ == "relu":
            h = g.add(OpKind.RELU, [h], name=f"relu{n}").result
    g.output(h)
    return g


def ir_graph(model: Any) -> tuple[Graph, str]:
    """The model's IR: ``hgqir.from_keras`` if it imports HGQ2 models, else :func:`hand_graph`."""
    try:
        return hgqir.from_keras(model), "hgqir.from_keras"
    except Exception as e:  # the Keras frontend may not import HGQ2 yet
        return hand_graph(model), f"hand-built (hgqir.from_keras failed: {type(e).__name__}: {str(e)[:120]})"


def hgq2_conv_model(seed: int = 0) -> Any:
    """An MNIST-convnet-sized HGQ2 model (28x28x1, conv 32 / conv 64 3x3 relu, 2x2 max pools,
    dense 10), HGQ2's default quantizers, calibrated with ``trace_minmax`` on random images."""
    import keras
    from hgq.layers import QConv2D, QDense
    from hgq.utils import trace_minmax

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.layers.Input((28, 28, 1)),
            QConv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            QConv2D(64, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            QDense(10),
        ]
    )
    trace_minmax(model, np.random.default_rng(seed).random((512, 28, 28, 1)).astype("float32"))
    return model


class CompilerPeak:
    """Peak memory of the compilers this process starts, watched while a build runs.

    ``getrusage(RUSAGE_CHILDREN)`` cannot tell: a child forked from this process (Python plus
    Keras, hundreds of MiB) carries that size until it execs, so it reports the parent's size.
    Instead a thread polls ``/proc`` every 50 ms for descendant ``cc1plus`` / ``ld`` processes
    and reads their ``VmHWM`` (the kernel's own high-water mark, exact even if read late).
    """

    NAMES = ("cc1plus", "ld", "collect2", "as")

    def __init__(self) -> None:
        import threading

        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> CompilerPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        import os

        me = os.getpid()
        while not self._stop.wait(0.05):
            parents: dict[int, int] = {}
            hwm: dict[int, int] = {}
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    status = Path(f"/proc/{entry}/status").read_text()
                except OSError:
                    continue
                fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
                parents[int(entry)] = int(fields.get("PPid", "0"))
                if fields.get("Name", "").strip() in self.NAMES and "VmHWM" in fields:
                    hwm[int(entry)] = int(fields["VmHWM"].split()[0])
            for pid, kib in hwm.items():
                p = pid
                while p > 1 and p != me:
                    p = parents.get(p, 0)
                if p == me:
                    self.peak_kib = max(self.peak_kib, kib)


def conv_worker(tool: str, out_dir: Path) -> dict[str, Any]:
    """One tool's conversion + compile of the conv model, in its own process; the compilers'
    peak memory is watched by :class:`CompilerPeak`."""
    from hgqir.backends.hls4ml import to_hls_model

    model = hgq2_conv_model()
    g = hgqir.from_keras(model)
    start = time.perf_counter()
    hls = to_hls_model(g, out_dir / "hgqir") if tool == "hgqir" else hgq2_convert(model, out_dir / "hgq2")
    convert_s = time.perf_counter() - start
    with CompilerPeak() as peak:
        compile_s = compile_seconds(hls)
    x = np.random.default_rng(1).random((200, 28, 28, 1))
    want = g.run(x)
    got = np.asarray(hls.predict(np.ascontiguousarray(x))).reshape(want.shape)
    return {
        "convert_s": round(convert_s, 3),
        "compile_s": round(compile_s, 1),
        "compile_peak_mib": round(peak.peak_kib / 1024),
        "bit_exact_vs_interpreter": bool(np.array_equal(got, want)),
    }


def run_conv(tmp: Path, timeout: float) -> dict[str, Any]:
    """Both tools' conv-model compile, each in its own process (see :func:`conv_worker`).

    A worker still running after ``timeout`` seconds is stopped with its compilers, and the
    row says so (HGQ2's route has not finished a compile of this model here in 20 minutes).
    """
    import os
    import signal
    import subprocess
    import sys

    out: dict[str, Any] = {
        "model": "HGQ2 MNIST-sized convnet: 28x28x1, QConv2D 32 / 64 (3x3, relu), 2x2 max pools, QDense 10"
    }
    for tool in ("hgqir", "hgq2"):
        cmd = [sys.executable, __file__, "--conv-worker", tool, "--out", str(tmp / f"conv_{tool}")]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        with CompilerPeak() as watch:  # the workers' compilers are this process' descendants too
            try:
                stdout, stderr = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                out[tool] = {"timeout_s": timeout, "compile_peak_mib_so_far": round(watch.peak_kib / 1024)}
                print(f"  conv model, {tool}: not finished after {timeout:.0f} s", flush=True)
                continue
        line = [ln for ln in stdout.splitlines() if ln.startswith("{")]
        out[tool] = json.loads(line[-1]) if line else {"error": (stdout + stderr)[-1500:]}
        print(f"  conv model, {tool}: {out[tool]}", flush=True)
    return out


# ---------------------------------------------------------------- timing
def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median wall-clock seconds of ``fn`` over ``repeat`` runs (after one warm-up), and a result."""
    result = fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def hgq2_convert(model: Any, out_dir: Path) -> Any:
    from hls4ml.converters import convert_from_keras_model

    config = {"Model": {"Precision": "fixed<16,6>", "ReuseFactor": 1, "Strategy": "Latency"}}
    return convert_from_keras_model(
        model, output_dir=str(out_dir), backend="Vitis", io_type="io_parallel", hls_config=config
    )


def compile_seconds(hls_model: Any) -> float:
    start = time.perf_counter()
    hls_model.compile()
    return time.perf_counter() - start


def run(repeat: int, conv_timeout: float) -> dict[str, Any]:
    from hgqir.backends.hls4ml import to_hls_model

    model = hgq2_model()
    start = time.perf_counter()
    g, source = ir_graph(model)
    import_seconds = time.perf_counter() - start
    tmp = Path(tempfile.mkdtemp(prefix="emit_hls4ml_"))
    ours_s, ours = timed(lambda: to_hls_model(g, tmp / "hgqir"), repeat)
    hgq2_s, theirs = timed(lambda: hgq2_convert(model, tmp / "hgq2"), repeat)
    ours_c, hgq2_c = compile_seconds(ours), compile_seconds(theirs)
    x = np.random.default_rng(1).normal(size=(500, SIZES[0])) * 4
    want = g.run(x)
    ours_y = np.asarray(ours.predict(np.ascontiguousarray(x))).reshape(want.shape)
    hgq2_y = np.asarray(theirs.predict(np.ascontiguousarray(x))).reshape(want.shape)
    return {
        "model": "HGQ2 QDense " + "-".join(map(str, SIZES)) + " (relu), per-element bitwidths",
        "ir_source": source,
        "import_seconds": round(import_seconds, 4),
        "repeat": repeat,
        "convert_seconds": {"hgqir": round(ours_s, 4), "hgq2": round(hgq2_s, 4)},
        "convert_speedup": round(hgq2_s / ours_s, 2),
        "compile_seconds": {"hgqir": round(ours_c, 2), "hgq2": round(hgq2_c, 2)},
        "layers": {"hgqir": len(ours.get_layers()), "hgq2": len(theirs.get_layers())},
        "bit_exact_vs_interpreter": {
            "hgqir": bool(np.array_equal(ours_y, want)),
            "hgq2": bool(np.array_equal(hgq2_y, want)),
        },
        "conv": run_conv(tmp, conv_timeout),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def table(r: dict[str, Any]) -> str:
    rows = [
        ("", "hgqir (IR → hls4ml)", "HGQ2 (Keras → hls4ml)"),
        ("Keras → IR [s]", f"{r['import_seconds']:.4f}", "-"),
        ("convert [s]", f"{r['convert_seconds']['hgqir']:.4f}", f"{r['convert_seconds']['hgq2']:.4f}"),
        ("compile [s]", f"{r['compile_seconds']['hgqir']:.1f}", f"{r['compile_seconds']['hgq2']:.1f}"),
        ("hls4ml layers", str(r["layers"]["hgqir"]), str(r["layers"]["hgq2"])),
        ("== g.run(x)", str(r["bit_exact_vs_interpreter"]["hgqir"]), str(r["bit_exact_vs_interpreter"]["hgq2"])),
    ]
    lines = [f"{a:<15} {b:>22} {c:>24}" for a, b, c in rows]
    lines.append(f"{r['model']}; IR: {r['ir_source']}; conversion speedup x{r['convert_speedup']}")
    conv = r.get("conv", {})
    if conv:
        lines.append("")
        lines.append(conv["model"])
        for tool in ("hgqir", "hgq2"):
            c = conv[tool]
            if "timeout_s" in c:
                lines.append(
                    f"  {tool}: not finished after {c['timeout_s']:.0f} s "
                    f"(compiler peak so far {c['compile_peak_mib_so_far']:,} MiB)"
                )
            elif "error" in c:
                lines.append(f"  {tool}: failed: {c['error'][-300:]}")
            else:
                lines.append(
                    f"  {tool:<6} convert {c['convert_s']:.2f} s, compile {c['compile_s']:.1f} s, "
                    f"g++ peak {c['compile_peak_mib']:,} MiB, == g.run(x): {c['bit_exact_vs_interpreter']}"
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--conv-timeout", type=float, default=1500.0, help="seconds before a conv-model compile is stopped"
    )
    parser.add_argument("--conv-worker", choices=["hgqir", "hgq2"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.conv_worker:
        print(json.dumps(conv_worker(args.conv_worker, Path(args.out))))
        return
    result = run(args.repeat, args.conv_timeout)
    print(table(result))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
