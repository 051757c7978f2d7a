"""Bring an HGQ2 model into hgqir without retraining, and check it against HGQ2's own predict.

HGQ2 (the ``hgq2`` package, ``hgq.layers``) trains Keras models with per-element learned
bitwidths. ``hgqir.from_keras`` reads its quantizers and quantized weights exactly:

1. build a small HGQ2 CNN for scikit-learn's digits and train it briefly with ``fit``;
2. ``hgqir.from_keras(model, calibration=x)`` runs HGQ2's own ``trace_minmax`` calibration on
   ``x``, then imports every per-element type;
3. in float64, ``model.predict(x)`` equals ``g.run(x)`` exactly, also four times outside the
   calibrated range;
4. the default pass pipeline shrinks the graph without changing a result; the projects are
   emitted and compared with the interpreter as in the other examples.

EBOPs are printed twice: hgqir's count and HGQ2's own metric, which uses a different formula
(see docs/keras.md); compare models through one of them, not across.

    python examples/hgq2_import.py [--quick] [--epochs 20] [--beta 1e-6] [--backend all] [-o out/]

Exits with status 1 if any comparison finds a single differing output.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import PIPELINE, Checks, accuracy, backends_of, base_parser, cost_text, emit_and_check, finish, load_digits

import hgqir


def build_hgq2_model(beta: float) -> Any:
    """A small CNN written with HGQ2's quantized layers (their own EBOPs regularizer, weight beta)."""
    import keras
    from hgq import layers as H
    from hgq.config import LayerConfigScope

    with LayerConfigScope(beta0=beta):
        return keras.Sequential(
            [
                keras.Input((8, 8, 1)),
                H.QConv2D(4, 3, activation="relu"),
                H.QMaxPooling2D(2),
                keras.layers.Flatten(),
                H.QDense(16, activation="relu"),
                H.QDense(10),
            ],
            name="hgq2_digits",
        )


def hgq2_own_ebops(model: Any) -> float:
    """HGQ2's EBOPs metric (its own formula) summed over the layers that track it."""
    return float(sum(float(layer.ebops) for layer in model.layers if getattr(layer, "enable_ebops", False)))


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.set_defaults(beta=1e-6)
    args = parser.parse_args(argv)
    epochs = args.epochs or (2 if args.quick else 20)
    out = args.out or Path("out") / "hgq2_import"
    t0 = time.perf_counter()
    import keras

    keras.config.set_floatx("float64")  # before the model is built: HGQ2's predict is then exact
    keras.utils.set_random_seed(args.seed)
    data = load_digits(samples=600 if args.quick else None, seed=args.seed)
    x_train, x_test = data.x_train.reshape(-1, 8, 8, 1), data.x_test.reshape(-1, 8, 8, 1)
    checks = Checks()

    print(f"training the HGQ2 model for {epochs} epochs")
    model = build_hgq2_model(args.beta)
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, data.y_train, epochs=epochs, batch_size=64, verbose=2)

    print("importing with HGQ2's calibration (trace_minmax)")
    g = hgqir.from_keras(model, calibration=x_train)
    y_hgq = np.asarray(model.predict(x_test, verbose=0))
    y_ir = g.run(x_test)
    checks.compare("HGQ2 predict (float64) == interpreter", y_hgq, y_ir)
    far = 4.0 * x_test  # far outside the calibrated range: WRAP must wrap the same way
    checks.compare("same, inputs 4x out of range", np.asarray(model.predict(far, verbose=0)), g.run(far))
    print(f"  EBOPs: hgqir {hgqir.bops(g).total:,.0f}, HGQ2's own metric {hgq2_own_ebops(model):,.0f}")
    before = cost_text(g)

    print(f"optimizing: {PIPELINE}")
    hgqir.PassManager.parse(PIPELINE).run(g)
    checks.compare("interpreter after passes == before", g.run(x_test), y_ir)
    out.mkdir(parents=True, exist_ok=True)
    hgqir.save(g, out / "model.hgq")

    print("emitting and compiling projects")
    written = emit_and_check(g, np.concatenate([x_test, far]), out, backends_of(args.backend), checks)
    return finish(
        checks,
        [
            ("test accuracy (HGQ2)", f"{accuracy(y_hgq, data.y_test):.3f}"),
            ("cost before passes", before),
            ("cost after passes", cost_text(g)),
            ("files", ", ".join(str(p) for p in [out / "model.hgq", *written])),
            ("time", f"{time.perf_counter() - t0:.1f} s"),
        ],
    )


if __name__ == "__main__":
    sys.exit(main())
