"""Helpers shared by the example scripts: the digits data, bit-exact checks, emission, a summary.

Kept small and plain on purpose: the examples themselves show the hgqir API; this module only
avoids repeating the bookkeeping around it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow's start-up chatter out of the output

PIPELINE = "fold-batchnorm,infer-bitwidth,prune-zero-bits,dce"
"""The default optimization pipeline (the one ``hgqir demo`` runs)."""
BACKENDS = ("vitis", "hls4ml")


@dataclass
class Digits:
    """scikit-learn's bundled 8x8 digits, pixels scaled to [0, 1], split 75/25."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits(samples: int | None = None, seed: int = 0) -> Digits:
    """The digits data set (no download: it ships with scikit-learn); ``samples`` limits its size."""
    from sklearn.datasets import load_digits as _load
    from sklearn.model_selection import train_test_split

    x, y = _load(return_X_y=True)
    x = x.astype(np.float64) / 16.0
    if samples is not None:
        x, y = x[:samples], y[:samples]
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)
    return Digits(xtr, ytr, xte, yte)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


@dataclass
class Checks:
    """Bit-exact comparisons (``np.array_equal`` element by element, never a tolerance)."""

    rows: list[tuple[str, int, int]] = field(default_factory=list)

    def compare(self, name: str, got: Any, want: Any) -> bool:
        got, want = np.asarray(got), np.asarray(want)
        if got.shape != want.shape:
            print(f"  {name}: shapes differ, {got.shape} != {want.shape}")
            self.rows.append((name, 0, want.size))
            return False
        equal = int(np.sum(got == want))
        self.rows.append((name, equal, want.size))
        print(f"  {name}: {equal}/{want.size} outputs equal")
        return equal == want.size

    def record(self, name: str, passed: bool) -> bool:
        """A yes/no check that counts as one output (e.g. two graphs print the same text)."""
        self.rows.append((name, int(passed), 1))
        print(f"  {name}: {'yes' if passed else 'NO'}")
        return passed

    @property
    def ok(self) -> bool:
        return all(equal == total for _, equal, total in self.rows)

    def summary(self) -> str:
        equal = sum(e for _, e, _ in self.rows)
        total = sum(t for _, _, t in self.rows)
        return f"bit-exact: {equal}/{total} outputs equal over {len(self.rows)} checks"


def backend_missing(backend: str) -> str | None:
    """Why ``backend`` cannot compile here (None when it can): examples skip it, tests still pass."""
    if importlib.util.find_spec("hls4ml") is None:
        return "hls4ml is not installed (it also provides the ap_types headers)"
    if backend == "vitis":
        from hgqir.errors import HgqirError
        from hgqir.toolchain import ap_types_include, find_cxx

        try:
            find_cxx()
            ap_types_include()
        except HgqirError as e:
            return str(e)
    return None


def emit_and_check(g: Any, x: np.ndarray, out_dir: Path, backends: list[str], checks: Checks) -> list[Path]:
    """Emit each backend's project, compile it and compare ``predict`` with ``g.run`` bit for bit."""
    import hgqir

    written = []
    want = g.run(x)
    for backend in backends:
        why = backend_missing(backend)
        if why:
            print(f"  {backend}: skipped ({why})")
            continue
        prj = hgqir.emit(g, backend, out_dir / f"{backend}_prj")
        prj.compile()
        checks.compare(f"{backend} C simulation == interpreter", prj.predict(x), want)
        written.append(prj.out_dir)
    return written


def cost_text(g: Any) -> str:
    """EBOPs with the LUT / DSP estimate (rule of thumb EBOPs ~ LUT + 55 * DSP)."""
    import hgqir

    report = hgqir.bops(g)
    return f"{report.total:,.0f} EBOPs (~{report.lut:,.0f} LUT + {report.dsp:,.0f} DSP)"


def base_parser(description: str) -> argparse.ArgumentParser:
    """Options every training example shares."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny run (few epochs and samples) for CI")
    p.add_argument("--epochs", type=int, help="training epochs (default 30, --quick 2)")
    p.add_argument("--beta", type=float, default=1e-5, help="weight of the EBOPs regularizer")
    p.add_argument("--backend", choices=[*BACKENDS, "all", "none"], default="all", help="projects to emit")
    p.add_argument("-o", "--out", type=Path, help="output folder (default: out/<example name>)")
    p.add_argument("--seed", type=int, default=0)
    return p


def backends_of(choice: str) -> list[str]:
    return list(BACKENDS) if choice == "all" else [] if choice == "none" else [choice]


def finish(checks: Checks, lines: list[tuple[str, str]]) -> int:
    """Print the summary; the exit status is 1 when any bit-exact check failed."""
    width = max(len(k) for k, _ in lines)
    print()
    for key, value in lines:
        print(f"{key:<{width}}  {value}")
    print(checks.summary())
    if not checks.ok:
        print("FAILED: some outputs differ", file=sys.stderr)
    return 0 if checks.ok else 1
