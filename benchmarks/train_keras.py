"""Training speed and EBOPs of the hgqir Keras shim against plain Keras and HGQ2.

Per-epoch training time, side by side in one run, of (a) the plain float model, (b) the hgqir
shim of it (``hgqir.quantize_keras``), (c) the same model written with HGQ2 layers, on

* a 16-64-32-32-5 ReLU MLP, 20,000 synthetic samples (labels from a random teacher), batch 256;
* a small CNN on scikit-learn's digits (8x8), batch 128.

Also accuracy and EBOPs of (b) and (c) after the same epochs with the same beta, as mean and
standard deviation over several seeds (initial weights and shuffling; the data stay the same).
EBOPs are counted the same way for both: import into hgqir after calibration,
``hgqir.bops(g).total`` (HGQ2's own EBOPs metric, which uses a different formula, is kept in the
JSON too). Times are medians over every epoch but the first of every seed.

All three models are compiled alike, with ``jit_compile`` from ``--jit`` (default ``auto``:
Keras then uses XLA only when a GPU or TPU is present, so on a CPU-only machine none of the
three uses XLA); the JSON records what each model actually ran with.

Usage: ``python benchmarks/train_keras.py [--epochs 20] [--seeds 3] [--beta 1e-5] [--quick]``;
writes ``benchmarks/results/train_keras.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import hgqir  # noqa: E402

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # predict on a last partial batch retraces; not news here

L = keras.layers
RESULTS = Path(__file__).parent / "results" / "train_keras.json"


class EpochTimer(keras.callbacks.Callback):
    """Wall time and process CPU time (all threads) of every epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []
        self.cpu: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._t0, self._c0 = time.perf_counter(), time.process_time()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.times.append(time.perf_counter() - self._t0)
        self.cpu.append(time.process_time() - self._c0)


# ---------------------------------------------------------------- data and models
def mlp_data(n: int = 20000, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 16)).astype("float32")
    w1, w2 = rng.normal(size=(16, 32)), rng.normal(size=(32, 5))
    y = np.argmax(np.tanh(x @ w1) @ w2, axis=1)
    cut = int(0.8 * n)
    return x[:cut], y[:cut], x[cut:], y[cut:]


def digits_data() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype("float32")[..., None]
    y = d.target
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    cut = int(0.8 * len(x))
    return x[:cut], y[:cut], x[cut:], y[cut:]


def mlp_float() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((16,)),
            L.Dense(64, activation="relu"),
            L.Dense(32, activation="relu"),
            L.Dense(32, activation="relu"),
            L.Dense(5),
        ],
        name="mlp",
    )


def mlp_hgq(beta: float) -> keras.Model:
    import hgq.layers as H
    from hgq.config import LayerConfigScope

    with LayerConfigScope(beta0=beta):
        return keras.Sequential(
            [
                keras.Input((16,)),
                H.QDense(64, activation="relu"),
                H.QDense(32, activation="relu"),
                H.QDense(32, activation="relu"),
                H.QDense(5),
            ],
            name="mlp_hgq",
        )


def cnn_float() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            L.Conv2D(8, 3, activation="relu"),
            L.MaxPooling2D(2),
            L.Conv2D(16, 3, activation="relu"),
            L.Flatten(),
            L.Dense(10),
        ],
        name="cnn",
    )


def cnn_hgq(beta: float) -> keras.Model:
    import hgq.layers as H
    from hgq.config import LayerConfigScope

    with LayerConfigScope(beta0=beta):
        return keras.Sequential(
            [
                keras.Input((8, 8, 1)),
                H.QConv2D(8, 3, activation="relu"),
                H.QMaxPooling2D(2),
                H.QConv2D(16, 3, activation="relu"),
                L.Flatten(),
                H.QDense(10),
            ],
            name="cnn_hgq",
        )


# ---------------------------------------------------------------- interleaved training
def compile_model(model: keras.Model, jit: str = "auto") -> keras.Model:
    jit_compile: Any = {"auto": "auto", "on": True, "off": False}[jit]
    model.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )
    return model


def train_interleaved(models: dict[str, keras.Model], data: tuple[np.ndarray, ...], epochs: int, batch: int) -> dict:
    """One epoch of each model in turn, so that load from elsewhere on the machine hits all alike."""
    x, y, _, _ = data
    timers = {name: EpochTimer() for name in models}
    for epoch in range(epochs):
        for name, model in models.items():
            model.fit(
                x,
                y,
                epochs=epoch + 1,
                initial_epoch=epoch,
                batch_size=batch,
                verbose=0,
                callbacks=[timers[name]],
                shuffle=True,
            )
    return {name: {"times": t.times[1:] or t.times, "cpu": t.cpu[1:] or t.cpu} for name, t in timers.items()}


def accuracy(model: keras.Model, data: tuple[np.ndarray, ...]) -> float:
    logits = np.asarray(model.predict(data[2], batch_size=1024, verbose=0))
    return float(np.mean(np.argmax(logits, axis=1) == data[3]))


def ir_ebops(model: keras.Model, x: np.ndarray) -> float:
    """EBOPs by hgqir's rule after calibration (the same count for the shim and HGQ2)."""
    g = hgqir.from_keras(model, calibration=x)
    return float(hgqir.bops(g).total)


def hgq_own_ebops(model: keras.Model) -> float:
    return float(sum(int(layer.ebops) for layer in model.layers if getattr(layer, "enable_ebops", False)))


def train_seed(
    seed: int, make_float: Any, make_hgq: Any, data: tuple[np.ndarray, ...], args: argparse.Namespace, batch: int
) -> dict[str, Any]:
    """Train the three models of one seed side by side; times, accuracy and EBOPs."""
    models = {}
    for kind in ("plain", "shim", "hgq2"):
        keras.utils.set_random_seed(seed)
        if kind == "plain":
            models[kind] = make_float()
        elif kind == "shim":
            models[kind] = hgqir.quantize_keras(make_float(), beta=args.beta)
        else:
            models[kind] = make_hgq(args.beta)
        compile_model(models[kind], args.jit)
    res: dict[str, Any] = train_interleaved(models, data, args.epochs, batch)
    for kind, model in models.items():
        res[kind]["jit_compile"] = bool(model.jit_compile)
    res["plain"]["accuracy"] = accuracy(models["plain"], data)
    for kind in ("shim", "hgq2"):
        res[kind]["accuracy_before_calibration"] = accuracy(models[kind], data)
        res[kind]["ebops"] = ir_ebops(models[kind], data[0])
        res[kind]["accuracy"] = accuracy(models[kind], data)
    res["shim"]["shim_ebops"] = models["shim"].ebops()
    res["hgq2"]["hgq_own_ebops"] = hgq_own_ebops(models["hgq2"])
    return res


def bench(
    name: str, make_float: Any, make_hgq: Any, data: tuple[np.ndarray, ...], args: argparse.Namespace, batch: int
) -> dict[str, Any]:
    runs = [train_seed(seed, make_float, make_hgq, data, args, batch) for seed in range(1, args.seeds + 1)]
    out: dict[str, Any] = {}
    for kind in ("plain", "shim", "hgq2"):
        times = [v for r in runs for v in r[kind]["times"]]
        cpu = [v for r in runs for v in r[kind]["cpu"]]
        row: dict[str, Any] = {
            "epoch_time": statistics.median(times),
            "epoch_time_min": min(times),
            "epoch_cpu": statistics.median(cpu),
            "jit_compile": sorted({r[kind]["jit_compile"] for r in runs}),
            "epoch_times": [[round(v, 4) for v in r[kind]["times"]] for r in runs],
        }
        keys = ["accuracy"] + (["accuracy_before_calibration", "ebops"] if kind != "plain" else [])
        keys += {"shim": ["shim_ebops"], "hgq2": ["hgq_own_ebops"], "plain": []}[kind]
        for key in keys:
            values = [r[kind][key] for r in runs]
            row[key] = statistics.mean(values)
            row[f"{key}_std"] = statistics.pstdev(values)
            row[f"{key}_per_seed"] = values
        out[kind] = row
    plain = out["plain"]
    ratios = {
        f"{kind}_overhead{suffix}": out[kind][key] / plain[key]
        for kind in ("shim", "hgq2")
        for suffix, key in (("", "epoch_time"), ("_min", "epoch_time_min"), ("_cpu", "epoch_cpu"))
    }
    return {
        "model": name,
        "batch": batch,
        "epochs": args.epochs,
        "seeds": args.seeds,
        "beta": args.beta,
        **out,
        **ratios,
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'model':<6} {'plain s/ep':>10} {'shim s/ep':>10} {'HGQ2 s/ep':>10} {'shim x':>7} {'HGQ2 x':>7} "
        f"{'shim x cpu':>10} {'HGQ2 x cpu':>10} {'acc plain':>9} {'acc shim':>14} {'acc HGQ2':>14} "
        f"{'EBOPs shim':>15} {'EBOPs HGQ2':>15}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        p, s, h = r["plain"], r["shim"], r["hgq2"]
        lines.append(
            f"{r['model']:<6} {p['epoch_time']:>10.3f} {s['epoch_time']:>10.3f} {h['epoch_time']:>10.3f} "
            f"{r['shim_overhead']:>7.2f} {r['hgq2_overhead']:>7.2f} {r['shim_overhead_cpu']:>10.2f} "
            f"{r['hgq2_overhead_cpu']:>10.2f} {p['accuracy']:>9.3f} "
            f"{s['accuracy']:>7.3f} ± {s['accuracy_std']:.3f} {h['accuracy']:>7.3f} ± {h['accuracy_std']:.3f} "
            f"{s['ebops']:>8.0f} ± {s['ebops_std']:<4.0f} {h['ebops']:>8.0f} ± {h['ebops_std']:<4.0f}"
        )
    seeds, epochs = rows[0]["seeds"], rows[0]["epochs"]
    jit = sorted({str(v) for r in rows for k in ("plain", "shim", "hgq2") for v in r[k]["jit_compile"]})
    lines.append(
        f"{seeds} seed(s), {epochs} epochs each, jit_compile {'/'.join(jit)}. s/ep: median wall seconds per epoch "
        "(first epoch of each seed left out); x: ratio to plain Keras (cpu: process CPU time); "
        "accuracy and EBOPs (hgqir count after calibration): mean ± std over seeds"
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seeds", type=int, default=3, help="seeds 1..N (initial weights, shuffling)")
    ap.add_argument("--beta", type=float, default=1e-5)
    ap.add_argument("--jit", choices=["auto", "on", "off"], default="auto", help="jit_compile of all three")
    ap.add_argument("--quick", action="store_true", help="2 epochs, 1 seed, fewer samples (smoke test)")
    ap.add_argument("--only", choices=["mlp", "cnn"], help="run one model only")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.quick:
        args.epochs, args.seeds = 2, 1
    rows = []
    if args.only in (None, "mlp"):
        rows.append(bench("mlp", mlp_float, mlp_hgq, mlp_data(4000 if args.quick else 20000), args, 256))
    if args.only in (None, "cnn"):
        rows.append(bench("cnn", cnn_float, cnn_hgq, digits_data(), args, 128))
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"keras": keras.__version__, "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
