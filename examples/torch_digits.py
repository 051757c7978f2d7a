"""PyTorch end to end: train a shim on scikit-learn's digits, import it, optimize, emit, check bit for bit.

1. Write an ordinary ``nn.Module`` (a small CNN), turn it into its quantized twin with
   ``hgqir.quantize_torch`` and train it in a plain PyTorch loop, adding
   ``qmod.regularization()`` (``beta * EBOPs``) to the loss.
2. ``hgqir.from_torch(qmod, x0, calibration=x)`` calibrates the activation ranges and imports
   the learned per-element types; ``g.run`` keeps PyTorch's NCHW layout.
3. Check the contract: ``qmod.eval().double()(x)`` equals ``g.run(x)`` exactly, also four times
   outside the calibrated range; ``qmod.ebops()`` equals ``hgqir.bops(g).total``.
4. Run the default pass pipeline (the results must not change), then emit the Vitis HLS and
   the hls4ml projects, compile them and compare their predictions with the interpreter.

    python examples/torch_digits.py [--quick] [--epochs 30] [--beta 1e-5] [--backend all] [-o out/]

Exits with status 1 if any comparison finds a single differing output.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import PIPELINE, Checks, accuracy, backends_of, base_parser, cost_text, emit_and_check, finish, load_digits
from torch import nn

import hgqir


class DigitsCNN(nn.Module):
    """An ordinary PyTorch module: nothing in it knows about quantization."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, kernel_size=3)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(8 * 3 * 3, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv(x)))
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


def images(x: np.ndarray) -> torch.Tensor:
    """Flat 64-pixel rows as NCHW images."""
    return torch.tensor(x.reshape(-1, 1, 8, 8), dtype=torch.float32)


def train(qmod: Any, x: torch.Tensor, y: torch.Tensor, epochs: int) -> None:
    """A plain training loop; the only hgqir-specific line adds the EBOPs regularizer."""
    opt = torch.optim.Adam(
        [
            {"params": qmod.weight_parameters()},
            {"params": qmod.bit_parameters(), "lr": 3e-2},  # bitwidths move faster with their own step
        ],
        lr=3e-3,
    )
    qmod.train()
    for epoch in range(epochs):
        for idx in torch.randperm(len(x)).split(64):
            loss = nn.functional.cross_entropy(qmod(x[idx]), y[idx]) + qmod.regularization()
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"epoch {epoch + 1}/{epochs}: loss {loss.item():.3f}, EBOPs {qmod.ebops().item():,.0f}")


def predict(qmod: Any, x: np.ndarray) -> np.ndarray:
    """The shim in inference mode, float64: the framework side of the bit-exact contract."""
    qmod.eval().double()
    with torch.no_grad():
        return qmod(torch.tensor(x, dtype=torch.float64)).numpy()


def main(argv: list[str] | None = None) -> int:
    args = base_parser(__doc__.splitlines()[0]).parse_args(argv)
    epochs = args.epochs or (2 if args.quick else 30)
    out = args.out or Path("out") / "torch_digits"
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    data = load_digits(samples=600 if args.quick else None, seed=args.seed)
    x_train, x_test = images(data.x_train), data.x_test.reshape(-1, 1, 8, 8)
    checks = Checks()

    print(f"training the PyTorch shim for {epochs} epochs (beta {args.beta:g})")
    qmod = hgqir.quantize_torch(DigitsCNN(), x_train[:64], beta=args.beta)
    train(qmod, x_train, torch.tensor(data.y_train), epochs)

    print("calibrating and importing")
    g = hgqir.from_torch(qmod, x_train[:64], calibration=x_train)
    y_shim = predict(qmod, x_test)
    y_ir = g.run(x_test)
    checks.compare("PyTorch shim (float64) == interpreter", y_shim, y_ir)
    far = 4.0 * x_test  # far outside the calibrated range: WRAP must wrap the same way
    checks.compare("same, inputs 4x out of range", predict(qmod, far), g.run(far))
    print(f"  shim EBOPs {qmod.ebops().item():,.0f}, IR EBOPs {hgqir.bops(g).total:,.0f}")
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
            ("test accuracy (shim)", f"{accuracy(y_shim, data.y_test):.3f}"),
            ("cost before passes", before),
            ("cost after passes", cost_text(g)),
            ("files", ", ".join(str(p) for p in [out / "model.hgq", *written])),
            ("time", f"{time.perf_counter() - t0:.1f} s"),
        ],
    )


if __name__ == "__main__":
    sys.exit(main())
