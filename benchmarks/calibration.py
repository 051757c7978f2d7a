"""Which calibration policy keeps plain float imports right on new data (issue: real models in).

A plain float model imported with ``calibration=x`` gets activation types from the range seen
on ``x``. With exactly that range and WRAP overflow, a new value slightly above it wraps around
to the other end of the range. This benchmark measures three policies side by side on the data
users have: held-out samples from the same distribution, and samples pushed 5 % beyond the
calibration maximum:

* ``exact-wrap``: exactly the calibration range, WRAP (the policy before this benchmark);
* ``guard-wrap``: one more integer bit than the range needs, WRAP (the default it chose:
  ``hgqir.frontends.calibration``);
* ``exact-sat``: exactly the range, SAT (values beyond it clip to the largest one);
* ``guard-nosign``: the guard bit without the sign guard (an element whose calibration values
  were all ``>= 0`` stays unsigned even where it can be negative): what the sign guard adds.

Models: a float Keras 16-64-32-32-5 ReLU MLP trained on the synthetic jet data
(``fixtures/models.py``), the two-input ``torch.add`` model of the issue (outputs in
``[0, 2)``), and a PyTorch 64-32-16-10 MLP with LeakyReLU and PReLU (no relu: hidden values of
either sign) trained on scikit-learn's digits, calibrated on its training split and measured on
the held-out split. Per model and policy: the largest output error against the float model, the share
of outputs that wrapped (they change when every WRAP quantizer of the same graph saturates
instead), the accuracy (classifiers) and the EBOPs.

    python benchmarks/calibration.py

Prints a table and writes ``benchmarks/results/calibration.json``.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).parent))

import hgqir  # noqa: E402
from hgqir.fixed import OverflowMode  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "calibration.json"


def _policies() -> dict[str, tuple[int, OverflowMode, bool]]:
    return {
        "exact-wrap": (0, OverflowMode.WRAP, False),
        "guard-nosign": (1, OverflowMode.WRAP, False),
        "guard-wrap": (1, OverflowMode.WRAP, True),
        "exact-sat": (0, OverflowMode.SAT, False),
    }


def _set_policy(margin: int, overflow: OverflowMode, sign: bool = True) -> None:
    from hgqir.frontends import calibration
    from hgqir.frontends.keras.importer import plain as kplain
    from hgqir.frontends.torch.importer import plain as tplain

    kplain.POLICY = kplain.CalibrationPolicy(margin_bits=margin, overflow=overflow)
    tplain.POLICY = tplain.CalibrationPolicy(margin_bits=margin, overflow=overflow)
    calibration.SIGN_GUARD = sign


def _beyond(x_cal: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Samples whose every feature lies 0-5 % above the calibration maximum."""
    hi = x_cal.max(axis=0)
    rng = np.random.default_rng(seed)
    return hi + np.abs(hi) * rng.uniform(0.0, 0.05, size=(n, *hi.shape))


def keras_mlp() -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    import keras
    from fixtures.models import jet_data

    x_train, y_train, x_test, y_test = jet_data()
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((16,))]
        + [keras.layers.Dense(n, activation="relu") for n in (64, 32, 32)]
        + [keras.layers.Dense(5)]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=5, batch_size=512, verbose=0)
    return model, x_train[:5000].astype(np.float64), x_test.astype(np.float64), y_test


def torch_add() -> tuple[Any, tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    import torch

    class Add(torch.nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return torch.add(a, b)

    rng = np.random.default_rng(0)
    cal = (rng.uniform(0, 1, (2000, 32)), rng.uniform(0, 1, (2000, 32)))
    fresh = (rng.uniform(0, 1, (2400, 32)), rng.uniform(0, 1, (2400, 32)))
    return Add(), cal, fresh


def torch_leaky_digits() -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    """A LeakyReLU / PReLU MLP trained on scikit-learn's digits (pixels scaled to [0, 1])."""
    import torch
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    train, test = order[:1400], order[1400:]
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(64, 32),
        torch.nn.LeakyReLU(0.1),
        torch.nn.Linear(32, 16),
        torch.nn.PReLU(16),
        torch.nn.Linear(16, 10),
    ).double()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    xt, yt = torch.as_tensor(x[train]), torch.as_tensor(y[train])
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    return net.eval(), x[train], x[test], y[test]


def _errors(g: Any, xs: tuple[np.ndarray, ...], want: np.ndarray) -> dict[str, float]:
    """Largest error against the float model, and the share of outputs a wrap changed."""
    got = g.run(*xs)
    sat = hgqir.loads(hgqir.dumps(g))
    for op in sat.ops:
        if op.kind in (hgqir.OpKind.QUANT, hgqir.OpKind.INPUT) and op.attrs["overflow"] is OverflowMode.WRAP:
            op.attrs["overflow"] = OverflowMode.SAT
    wrapped = np.mean(sat.run(*xs) != got)
    return {"max_err": float(np.abs(got - want).max()), "wrapped_share": float(wrapped)}


def measure() -> list[dict[str, Any]]:
    import torch

    rows: list[dict[str, Any]] = []
    model, x_cal, x_test, y_test = keras_mlp()
    float_test = np.asarray(model.predict(x_test, verbose=0), dtype=np.float64)
    x_out = _beyond(x_cal, 2000, 1)
    float_out = np.asarray(model.predict(x_out, verbose=0), dtype=np.float64)
    add, cal, fresh = torch_add()
    out = tuple(_beyond(c, 2400, 2 + n) for n, c in enumerate(cal))
    net, d_cal, d_test, d_y = torch_leaky_digits()
    d_out = np.clip(_beyond(d_cal, 2000, 5), 0, None)
    with torch.no_grad():
        d_float = net(torch.as_tensor(d_test)).numpy()
        d_float_out = net(torch.as_tensor(d_out)).numpy()
    for name, (margin, overflow, sign) in _policies().items():
        _set_policy(margin, overflow, sign)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            g = hgqir.from_keras(model, calibration=x_cal)
            gt = hgqir.from_torch(
                add, tuple(torch.as_tensor(c[:8]) for c in cal), calibration=tuple(torch.as_tensor(c) for c in cal)
            )
            gd = hgqir.from_torch(net, torch.as_tensor(d_cal[:8]), calibration=torch.as_tensor(d_cal))
        y = g.run(x_test)
        rows.append(
            {
                "model": "keras jet MLP",
                "policy": name,
                "held_out": _errors(g, (x_test,), float_test),
                "beyond_5pct": _errors(g, (x_out,), float_out),
                "accuracy": float(np.mean(np.argmax(y, axis=1) == y_test)),
                "float_accuracy": float(np.mean(np.argmax(float_test, axis=1) == y_test)),
                "ebops": hgqir.bops(g).total,
            }
        )
        rows.append(
            {
                "model": "torch add",
                "policy": name,
                "held_out": _errors(gt, fresh, fresh[0] + fresh[1]),
                "beyond_5pct": _errors(gt, out, out[0] + out[1]),
                "accuracy": None,
                "float_accuracy": None,
                "ebops": hgqir.bops(gt).total,
            }
        )
        yd = gd.run(d_test)
        rows.append(
            {
                "model": "torch leaky digits",
                "policy": name,
                "held_out": _errors(gd, (d_test,), d_float),
                "beyond_5pct": _errors(gd, (d_out,), d_float_out),
                "accuracy": float(np.mean(np.argmax(yd, axis=1) == d_y)),
                "float_accuracy": float(np.mean(np.argmax(d_float, axis=1) == d_y)),
                "ebops": hgqir.bops(gd).total,
            }
        )
    from hgqir.frontends.calibration import GUARD_BITS

    _set_policy(GUARD_BITS, OverflowMode.WRAP)  # the default again
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    head = f"{'model':18} {'policy':12} {'held-out max err':>16} {'wrapped':>8} {'+5% max err':>12} {'wrapped':>8} {'acc':>6} {'EBOPs':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        acc = f"{r['accuracy']:.4f}" if r["accuracy"] is not None else "-"
        lines.append(
            f"{r['model']:18} {r['policy']:12} {r['held_out']['max_err']:16.4f} {r['held_out']['wrapped_share']:8.2%} "
            f"{r['beyond_5pct']['max_err']:12.4f} {r['beyond_5pct']['wrapped_share']:8.2%} {acc:>6} {r['ebops']:8.0f}"
        )
    return "\n".join(lines)


def main() -> None:
    rows = measure()
    print(_table(rows))
    floats = {r["model"]: r["float_accuracy"] for r in rows if r["float_accuracy"] is not None}
    print("float accuracy: " + ", ".join(f"{m} {a:.4f}" for m, a in floats.items()))
    print("'wrapped': share of outputs a wrap changed (vs the same graph saturating)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"benchmark": "calibration", "rows": rows}, indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
