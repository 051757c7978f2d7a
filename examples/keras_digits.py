"""Keras end to end: train a shim on scikit-learn's digits, import it, optimize, emit, check bit for bit.

1. Build an ordinary Keras model, turn it into its quantized twin with ``hgqir.quantize_keras``
   (learned per-element bitwidths, ``beta * EBOPs`` added to the loss) and train it with the
   ordinary ``compile`` / ``fit``.
2. ``hgqir.from_keras(qmodel, calibration=x)`` fixes the integer bits of the WRAP quantizers
   from the training data and imports the learned types into the IR.
3. Check the contract: ``qmodel.predict`` (float64) equals ``g.run`` exactly, also for inputs
   four times outside the calibrated range; the shim's EBOPs equal ``hgqir.bops(g).total``.
4. Run the default pass pipeline (the results must not change), then emit the Vitis HLS and
   the hls4ml projects, compile them and compare their predictions with the interpreter.

    python examples/keras_digits.py [--quick] [--epochs 30] [--beta 1e-5] [--backend all] [-o out/]

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


def build_model() -> Any:
    """An ordinary Keras model: nothing in it knows about quantization."""
    import keras

    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(10),
        ],
        name="digits_mlp",
    )


def train(x: np.ndarray, y: np.ndarray, epochs: int, beta: float, seed: int) -> Any:
    """The shim, trained with Keras' own fit; beta ramps up so that accuracy comes first."""
    import keras
    from hgqir.frontends.keras import BetaScheduler

    keras.utils.set_random_seed(seed)
    qmodel = hgqir.quantize_keras(build_model(), beta=0.0)
    qmodel.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    ramp = BetaScheduler(lambda epoch: beta * min(1.0, epoch / max(1, epochs // 2)))
    qmodel.fit(x, y, epochs=epochs, batch_size=64, verbose=2, callbacks=[ramp])
    return qmodel


def main(argv: list[str] | None = None) -> int:
    args = base_parser(__doc__.splitlines()[0]).parse_args(argv)
    epochs = args.epochs or (2 if args.quick else 30)
    out = args.out or Path("out") / "keras_digits"
    t0 = time.perf_counter()
    import keras

    keras.config.set_floatx("float64")  # before any model is built: float64 makes the shim bit-exact
    data = load_digits(samples=600 if args.quick else None, seed=args.seed)
    checks = Checks()

    print(f"training the Keras shim for {epochs} epochs (beta up to {args.beta:g})")
    qmodel = train(data.x_train, data.y_train, epochs, args.beta, args.seed)

    print("calibrating and importing")
    g = hgqir.from_keras(qmodel, calibration=data.x_train)
    y_shim = np.asarray(qmodel.predict(data.x_test, verbose=0))
    y_ir = g.run(data.x_test)
    checks.compare("Keras shim (float64) == interpreter", y_shim, y_ir)
    far = 4.0 * data.x_test  # far outside the calibrated range: WRAP must wrap the same way
    checks.compare("same, inputs 4x out of range", np.asarray(qmodel.predict(far, verbose=0)), g.run(far))
    print(f"  shim EBOPs {qmodel.ebops():,.0f}, IR EBOPs {hgqir.bops(g).total:,.0f}")
    before = cost_text(g)

    print(f"optimizing: {PIPELINE}")
    hgqir.PassManager.parse(PIPELINE).run(g)
    checks.compare("interpreter after passes == before", g.run(data.x_test), y_ir)
    out.mkdir(parents=True, exist_ok=True)
    hgqir.save(g, out / "model.hgq")

    print("emitting and compiling projects")
    written = emit_and_check(g, np.concatenate([data.x_test, far]), out, backends_of(args.backend), checks)
    return finish(
        checks,
        [
            ("test accuracy (shim)", f"{accuracy(y_shim, data.y_test):.3f}"),
            ("cost before passes", before),
            ("cost after passes", cost_text(g)),
            ("files", ", ".join(str(p) for p in [out / "model.hgq", *written])),
            ("time", f"{time.perf_counter() - t0:.1f} s"),
        ],
    )


if __name__ == "__main__":
    sys.exit(main())
