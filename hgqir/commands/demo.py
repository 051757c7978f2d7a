"""``hgqir demo``: the whole flow on scikit-learn's bundled digits.

Train a small model with the hgqir shims (Keras by default, ``--framework torch``), import it,
run the default pipeline, emit the Vitis HLS project, compile the C simulation with g++ and
check that the framework (float64), the interpreter and the C simulation agree bit for bit.
Exits non-zero if anything disagrees.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_PIPELINE = "fold-batchnorm,infer-bitwidth,prune-zero-bits,dce"


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train, optimize, emit and verify a small digits model end to end")
    p.add_argument("--framework", choices=["keras", "torch"], default="keras")
    p.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    p.add_argument("--beta", type=float, default=1e-5, help="EBOPs regularizer weight (default 1e-5)")
    p.add_argument("-o", "--out", default="hgqir-demo", help="output folder (default ./hgqir-demo)")
    p.add_argument("--pipeline", default=DEFAULT_PIPELINE, help="pass pipeline spec")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


@dataclass
class Data:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass
class Summary:
    rows: list[tuple[str, str]] = field(default_factory=list)

    def add(self, key: str, value: Any) -> None:
        self.rows.append((key, str(value)))

    def print(self) -> None:
        width = max(len(k) for k, _ in self.rows)
        print("\n== hgqir demo summary ==")
        for k, v in self.rows:
            print(f"{k:<{width}}  {v}")


def load_digits(seed: int) -> Data:
    from sklearn.datasets import load_digits as _load
    from sklearn.model_selection import train_test_split

    x, y = _load(return_X_y=True)
    x = x.astype(np.float64) / 16.0
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)
    return Data(xtr, ytr, xte, yte)


def train_keras(data: Data, args: argparse.Namespace) -> tuple[Any, Any]:
    """Returns (quantized model, predict function in float64)."""
    import keras

    import hgqir

    keras.config.set_floatx("float64")
    keras.utils.set_random_seed(args.seed)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    qmodel = hgqir.quantize_keras(model, beta=args.beta)
    qmodel.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    qmodel.fit(data.x_train, data.y_train, epochs=args.epochs, batch_size=64, verbose=2)
    return qmodel, lambda x: np.asarray(qmodel.predict(x, verbose=0), dtype=np.float64)


def train_torch(data: Data, args: argparse.Namespace) -> tuple[Any, Any]:
    import torch

    import hgqir

    torch.manual_seed(args.seed)
    module = torch.nn.Sequential(
        torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10)
    )
    x0 = torch.tensor(data.x_train[:8], dtype=torch.float32)
    qmod = hgqir.quantize_torch(module, x0, beta=args.beta)
    # learned bitwidths move about one learning-rate step per update: give them a larger step
    groups = [{"params": qmod.weight_parameters()}, {"params": qmod.bit_parameters(), "lr": 3e-2}]
    opt = torch.optim.Adam(groups, lr=3e-3)
    xt = torch.tensor(data.x_train, dtype=torch.float32)
    yt = torch.tensor(data.y_train, dtype=torch.long)
    for epoch in range(args.epochs):
        perm = torch.randperm(len(xt))
        for start in range(0, len(xt), 64):
            idx = perm[start : start + 64]
            loss = torch.nn.functional.cross_entropy(qmod(xt[idx]), yt[idx]) + qmod.regularization()
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"epoch {epoch + 1}/{args.epochs}: loss {float(loss):.4f}, EBOPs {float(qmod.ebops()):.0f}")

    def predict(x: np.ndarray) -> np.ndarray:
        qmod.eval().double()
        with torch.no_grad():
            return qmod(torch.tensor(x, dtype=torch.float64)).numpy()

    return qmod, predict


def _accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == y))


def _cost(g: Any) -> tuple[float, str]:
    import hgqir

    report = hgqir.bops(g)
    return report.total, f"{report.total:.0f} (estimate ~{report.lut:.0f} LUT + {report.dsp:.0f} DSP)"


def run(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ log lines only, not results
    from tqdm.auto import tqdm

    import hgqir

    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = Summary()
    steps = tqdm(total=6, desc="hgqir demo", unit="step")
    data = load_digits(args.seed)
    steps.set_postfix_str(f"training ({args.framework})")
    trainer = train_keras if args.framework == "keras" else train_torch
    qmodel, predict = trainer(data, args)
    steps.update()

    steps.set_postfix_str("calibrating and importing")
    if args.framework == "keras":
        g = hgqir.from_keras(qmodel, calibration=data.x_train)
    else:
        import torch

        x0 = torch.tensor(data.x_train[:8], dtype=torch.float32)
        g = hgqir.from_torch(qmodel, x0, calibration=torch.tensor(data.x_train, dtype=torch.float32))
    hgqir.save(g, out / "model.hgq")
    y_fw = predict(data.x_test)
    y_ir = g.run(data.x_test)
    _, cost_before = _cost(g)
    steps.update()

    steps.set_postfix_str("optimizing")
    pm = hgqir.PassManager.parse(args.pipeline)
    pm.run(g)
    hgqir.save(g, out / "model.opt.hgq")
    y_opt = g.run(data.x_test)
    _, cost_after = _cost(g)
    steps.update()

    steps.set_postfix_str("emitting Vitis HLS project")
    prj = hgqir.emit(g, "vitis", out / "vitis_prj")
    steps.update()
    steps.set_postfix_str("compiling C simulation (g++)")
    prj.compile()
    steps.update()
    steps.set_postfix_str("checking bit-exactness")
    y_csim = prj.predict(data.x_test)
    steps.update()
    steps.close()

    n = y_ir.size
    checks = {
        "framework == interpreter": int(np.sum(y_fw == y_ir)),
        "interpreter before == after passes": int(np.sum(y_ir == y_opt)),
        "C simulation == interpreter": int(np.sum(y_csim == y_opt)),
    }
    summary.add("framework", args.framework)
    summary.add("test accuracy (framework)", f"{_accuracy(y_fw, data.y_test):.4f}")
    summary.add("test accuracy (C simulation)", f"{_accuracy(y_csim, data.y_test):.4f}")
    summary.add("EBOPs before passes", cost_before)
    summary.add("EBOPs after passes", cost_after)
    summary.add("pipeline", str(pm))
    for name, equal in checks.items():
        summary.add(name, f"{equal}/{n} outputs equal")
    equal_all = int(np.sum((y_fw == y_ir) & (y_ir == y_opt) & (y_csim == y_opt)))
    summary.add("files written", ", ".join(str(p) for p in (out / "model.hgq", out / "model.opt.hgq", prj.out_dir)))
    summary.add("time", f"{time.perf_counter() - t0:.1f} s")
    summary.add("bit-exact", f"{equal_all}/{n} outputs equal")
    summary.print()
    return 0 if equal_all == n else 1
