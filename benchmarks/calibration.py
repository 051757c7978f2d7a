"""Which calibration policy keeps plain float imports right on new data (issue: real models in).

A plain float model imported with ``calibration=x`` gets activation types from the range seen
on ``x``. With exactly that range and WRAP overflow, a new value slightly above it wraps around
to the other end of the range. This benchmark measures three policies side by side on the data
users have: held-out samples from the same distribution, and samples pushed 5 % beyond the
calibration maximum:

* ``exact-wrap``: exactly the calibration range, WRAP (the policy before this benchmark);
* ``guard-wrap``: one more integer bit than the range needs, WRAP (the default it chose:
  ``hgqir.frontends.calibration``);
* ``exact-sat``: exactly the range, SAT (values beyond it clip to the largest one).

Models: a float Keras 16-64-32-32-5 ReLU MLP trained on the synthetic jet data
(``fixtures/models.py``) and the two-input ``torch.add`` model of the issue (outputs in
``[0, 2)``). Per model and policy: the largest output error against the float model, the share
of outputs off by more than ``1/8`` (a wrap, not rounding), the accuracy (MLP) and the EBOPs.

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
BIG = 0.125
"""An output error above this is a wrap (rounding errors of these models stay far below)."""


def _policies() -> dict[str, tuple[int, OverflowMode]]:
    return {
        "exact-wrap": (0, OverflowMode.WRAP),
        "guard-wrap": (1, OverflowMode.WRAP),
        "exact-sat": (0, OverflowMode.SAT),
    }


def _set_policy(margin: int, overflow: OverflowMode) -> None:
    from hgqir.frontends.keras.importer import plain as kplain
    from hgqir.frontends.torch.importer import plain as tplain

    kplain.POLICY = kplain.CalibrationPolicy(margin_bits=margin, overflow=overflow)
    tplain.POLICY = tplain.CalibrationPolicy(margin_bits=margin, overflow=overflow)


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


def _errors(got: np.ndarray, want: np.ndarray) -> dict[str, float]:
    err = np.abs(got - want)
    return {"max_err": float(err.max()), "wrapped_share": float(np.mean(err > BIG))}


def measure() -> list[dict[str, Any]]:
    import torch

    rows: list[dict[str, Any]] = []
    model, x_cal, x_test, y_test = keras_mlp()
    float_test = np.asarray(model.predict(x_test, verbose=0), dtype=np.float64)
    x_out = _beyond(x_cal, 2000, 1)
    float_out = np.asarray(model.predict(x_out, verbose=0), dtype=np.float64)
    add, cal, fresh = torch_add()
    out = tuple(_beyond(c, 2400, 2 + n) for n, c in enumerate(cal))
    for name, (margin, overflow) in _policies().items():
        _set_policy(margin, overflow)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            g = hgqir.from_keras(model, calibration=x_cal)
            gt = hgqir.from_torch(
                add, tuple(torch.as_tensor(c[:8]) for c in cal), calibration=tuple(torch.as_tensor(c) for c in cal)
            )
        y = g.run(x_test)
        rows.append(
            {
                "model": "keras jet MLP",
                "policy": name,
                "held_out": _errors(y, float_test),
                "beyond_5pct": _errors(g.run(x_out), float_out),
                "accuracy": float(np.mean(np.argmax(y, axis=1) == y_test)),
                "float_accuracy": float(np.mean(np.argmax(float_test, axis=1) == y_test)),
                "ebops": hgqir.bops(g).total,
            }
        )
        rows.append(
            {
                "model": "torch add",
                "policy": name,
                "held_out": _errors(gt.run(*fresh), fresh[0] + fresh[1]),
                "beyond_5pct": _errors(gt.run(*out), out[0] + out[1]),
                "accuracy": None,
                "float_accuracy": None,
                "ebops": hgqir.bops(gt).total,
            }
        )
    from hgqir.frontends.calibration import GUARD_BITS

    _set_policy(GUARD_BITS, OverflowMode.WRAP)  # the default again
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    head = f"{'model':15} {'policy':11} {'held-out max err':>16} {'wrapped':>8} {'+5% max err':>12} {'wrapped':>8} {'acc':>6} {'EBOPs':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        acc = f"{r['accuracy']:.4f}" if r["accuracy"] is not None else "-"
        lines.append(
            f"{r['model']:15} {r['policy']:11} {r['held_out']['max_err']:16.4f} {r['held_out']['wrapped_share']:8.2%} "
            f"{r['beyond_5pct']['max_err']:12.4f} {r['beyond_5pct']['wrapped_share']:8.2%} {acc:>6} {r['ebops']:8.0f}"
        )
    return "\n".join(lines)


def main() -> None:
    rows = measure()
    print(_table(rows))
    fl = next(r["float_accuracy"] for r in rows if r["float_accuracy"] is not None)
    print(f"float Keras MLP accuracy {fl:.4f}; 'wrapped': share of outputs off by more than {BIG}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"benchmark": "calibration", "rows": rows}, indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
