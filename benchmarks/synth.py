"""Hardware truth: Yosys synthesis of hgqir's Verilog beside alkaid's, and the cost model checked.

Run (the first Yosys call after install compiles the WebAssembly, ~2 minutes, then it is cached):

    python benchmarks/synth.py --calibrate     # fit the cost model on synthetic training designs
    python benchmarks/synth.py                 # the trained models: hgqir vs alkaid, estimate vs Yosys

**Calibration** (``--calibrate``): 10 synthetic designs that are never used for validation
(random dense and conv layers of many sizes, weight widths 1-8 bits and sparsities, relu,
quantizers with every overflow mode, pools and a table) are emitted with ``pipeline="auto"``,
synthesized, and the cost model's LUT coefficients are fitted per layer by non-negative least
squares; ``passes/netlist/cost_model.json`` gets the coefficients and the fit statistics.

**Models**: the HGQ2-trained jet MLP and digits CNN (``benchmarks/fixtures``), imported with
the default pipeline, emitted with ``pipeline="auto"``; alkaid 0.8.2's Verilog of the same
Keras models (``latency_cutoff=5``, binary adders) from ``benchmarks/emit_verilog.py``'s
environment. Both go through the same Yosys script (``synth_xilinx -family xcup`` up to LUT
mapping, then ``abc -luts``), twice: hierarchy kept (hgqir: one module per layer; alkaid: one
module per pipeline stage with one module instance per adder, every instance counted) and
flattened (one module each: what a vendor tool does by default). The cost model's estimate (made before synthesis)
is compared with Yosys whole-design and per layer.

Prints tables and writes ``benchmarks/results/synth.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import hgqir
from hgqir import FixedType, Graph, OpKind

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "synth.json"
FIXED = {"relu": 1.0}
"""Coefficients not fitted: a relu bit is one LUT (alone, or merged with the rounding increment
that reads it); the training designs have too few relus in each situation to fit them."""
sys.path.insert(0, str(HERE))


# ---------------------------------------------------------------------- training designs
def rand_type(
    rng: np.random.Generator, shape: tuple[int, ...], bits: tuple[int, int], signed: float = 0.5
) -> FixedType:
    k = (rng.random(shape) < signed).astype(int)
    width = rng.integers(bits[0], bits[1] + 1, shape)
    i = rng.integers(0, 3, shape)
    return FixedType(shape, k, i, width - k - i)


def weights(g: Graph, rng: np.random.Generator, shape: tuple[int, ...], bits: int, sparsity: float, name: str) -> Any:
    t = rand_type(rng, shape, (1, bits), signed=1.0)
    e = t.i + t.f
    lo, hi = -(1 << e), (1 << e) - 1
    data = np.floor(lo + rng.random(shape) * (hi - lo + 1)).astype(np.int64)
    data[rng.random(shape) < sparsity] = 0
    return g.const_mantissa(data, t, name=name)


def act(g: Graph, rng: np.random.Generator, v: Any, name: str, overflow: str) -> Any:
    h = g.add(OpKind.RELU, [v], name=f"{name}_relu").result
    t = rand_type(rng, v.shape, (2, 7), signed=0.0)
    return g.add(OpKind.QUANT, [h], {"round": "RND", "overflow": overflow}, [t], name=name).result


def training_design(seed: int) -> Graph:
    rng = np.random.default_rng(1000 + seed)
    g = Graph(f"train{seed}")
    overflow = ["WRAP", "SAT", "SAT_SYM"][seed % 3]
    if seed % 3 == 2:  # a small CNN
        x = g.input("x", rand_type(rng, (6, 6, 2), (3, 7)))
        c = int(rng.integers(3, 7))
        h = g.add(
            OpKind.CONV2D,
            [x, weights(g, rng, (3, 3, 2, c), int(rng.integers(2, 7)), 0.3, "k")],
            {"stride": (1, 1), "pad": ((1, 1), (1, 1))},
            name="conv",
        ).result
        h = act(g, rng, h, "a0", overflow)
        pool = OpKind.MAXPOOL2D if seed % 2 else OpKind.AVGPOOL2D
        h = g.add(pool, [h], {"pool": (2, 2), "stride": (2, 2), "pad": ((0, 0), (0, 0))}, name="pool").result
        h = g.add(OpKind.RESHAPE, [h], {"shape": (9 * c,)}).result
        from hgqir.ops import build_lut

        h = g.add(OpKind.DENSE, [h, weights(g, rng, (9 * c, 6), 5, 0.4, "w")], name="dense").result
        h = g.add(OpKind.QUANT, [h], {"round": "RND", "overflow": "SAT"}, [FixedType.uniform((6,), 1, 2, 3)]).result
        g.output(build_lut(g, h, np.tanh, (1, 0, 5), func="tanh", name="tanh"), name="y")
        return g
    n = [int(rng.choice([8, 16, 24, 32])) for _ in range(3)]
    x = g.input("x", rand_type(rng, (n[0],), (3, 8)))
    h = x
    for layer in range(2):
        bits = int(rng.integers(2, 9))
        sparsity = float(rng.uniform(0.0, 0.6))
        w = weights(g, rng, (n[layer], n[layer + 1]), bits, sparsity, f"w{layer}")
        b = weights(g, rng, (n[layer + 1],), 6, 0.0, f"b{layer}")
        h = g.add(OpKind.DENSE, [h, w, b], name=f"dense{layer}").result
        h = act(g, rng, h, f"act{layer}", overflow)
    g.output(h, name="y")
    return g


# ---------------------------------------------------------------------- helpers
def lowered_estimate(g: Graph, pipeline: Any) -> dict[str, Any]:
    """Per-layer cost (features and estimate) of the netlist the Verilog backend writes."""
    from hgqir.passes.netlist import hardware
    from hgqir.passes.netlist.cost import estimate

    lw, _ = hardware(g, pipeline)
    return {c.name: c for c in estimate(lw.net, [r for p in lw.outputs for r in p.refs])}


def calibrate(out: Path) -> dict[str, Any]:
    from hgqir.passes.netlist.cost import FEATURES, MODEL_FILE

    rows, targets = [], []
    ebops, luts = [], []
    start = time.perf_counter()
    for seed in range(10):
        g = training_design(seed)
        prj = hgqir.emit(g, "verilog", out / f"train{seed}", pipeline="auto")
        rep = prj.synth(progress=False)
        est = lowered_estimate(g, "auto")
        ebops.append(hgqir.bops(g, hardware=False).total)
        luts.append(rep.lut)
        for name, counts in rep.per_layer.items():
            if name in est:
                rows.append([est[name].features.get(k, 0.0) for k in FEATURES])
                targets.append(counts.lut)
        print(f"  train{seed}: {rep.lut} LUT, {rep.seconds:.1f} s", flush=True)
    from scipy.optimize import nnls

    a, y = np.array(rows), np.array(targets, dtype=float)
    # FIXED coefficients are not fitted; rows weighted by 1/sqrt(LUTs), between an absolute fit
    # (only the big layers count) and a relative one
    fixed_at = [FEATURES.index(k) for k in FIXED]
    fixed = a[:, fixed_at] @ np.array(list(FIXED.values()))
    fit = [k for k in range(len(FEATURES)) if k not in fixed_at]
    scale = 1 / np.sqrt(np.maximum(y, 1))
    sub, _ = nnls(a[:, fit] * scale[:, None], (y - fixed) * scale)
    coef = np.zeros(len(FEATURES))
    coef[fit], coef[fixed_at] = sub, list(FIXED.values())
    pred = a @ coef
    err = np.abs(pred - y) / np.maximum(y, 1)
    model = {
        "lut": {k: float(c) for k, c in zip(FEATURES, coef, strict=True)},
        "fit": {
            "layers": len(y),
            "designs": 10,
            "median_layer_error": float(np.median(err)),
            "total_error": float(abs(pred.sum() - y.sum()) / y.sum()),
            "yosys": rep.yosys,
            "seconds": time.perf_counter() - start,
        },
    }
    e, t = np.array(ebops), np.array(luts, dtype=float)
    factor = float(e @ t / (e @ e))
    model["lut_per_ebop"] = {
        "factor": factor,
        "median_design_error": float(np.median(np.abs(factor * e - t) / t)),
        "note": "whole-design Yosys LUTs per EBOP (least squares through 0); ShimConfig(resource='lut')",
    }
    MODEL_FILE.write_text(json.dumps(model, indent=1) + "\n")
    print(f"wrote {MODEL_FILE}: {model}")
    return model


def alkaid_verilog(name: str, folder: Path) -> dict[str, Any]:
    """alkaid's Verilog of the model (its environment from emit_verilog.py)."""
    from emit_verilog import ensure_alkaid

    target, shim = ensure_alkaid()
    env = {**os.environ, "PYTHONPATH": str(target), "PATH": f"{shim}:{os.environ['PATH']}"}
    code = "\n".join(
        [
            "import sys",
            f"sys.path.insert(0, {str(HERE)!r})",
            "from fixtures.models import load",
            "from alkaid.converter import trace_model",
            "from alkaid.trace import HWConfig, trace",
            "from alkaid.codegen import RTLModel",
            f"m = load({name!r})",
            "inp, out = trace_model(m, HWConfig(1, -1, -1), {'hard_dc': 2}, False)",
            f"rtl = RTLModel(trace(inp, out), {str(folder)!r}, 'model', flavor='verilog', latency_cutoff=5, ternary_fuse=False)",
            "rtl.write(); print('LATENCY', rtl.latency)",
        ]
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("LATENCY")]
    if not line:
        raise RuntimeError(proc.stdout[-1000:] + proc.stderr[-2000:])
    files = sorted(str(p.relative_to(folder)) for p in (folder / "src").rglob("*.v"))
    (folder / "files.f").write_text("\n".join(files) + "\n")
    (folder / "project.json").write_text(json.dumps({"top": "model"}))
    return {"latency": float(line[0].split()[1])}


def run_models(out: Path, use_alkaid: bool) -> dict[str, Any]:
    from fixtures.models import load
    from hgqir.backends.verilog.synth import synth

    results: dict[str, Any] = {}
    for name in ("jet_mlp", "digits_cnn"):
        g = hgqir.from_keras(load(name))
        hgqir.PassManager.parse("fold-batchnorm,infer-bitwidth,prune-zero-bits,dce").run(g)
        prj = hgqir.emit(g, "verilog", out / f"{name}_hgqir", pipeline="auto")
        est = lowered_estimate(g, "auto")
        rep = prj.synth(progress=False)
        flat = prj.synth(progress=False, flatten=True)
        flat = prj.synth(progress=False, flatten=True)
        layers = {}
        for layer, counts in rep.per_layer.items():
            if layer in est and counts.lut:
                layers[layer] = {"yosys": counts.lut, "estimate": est[layer].lut}
        est_total = sum(c.lut for c in est.values())
        errs = [abs(v["estimate"] - v["yosys"]) / v["yosys"] for v in layers.values()]
        r: dict[str, Any] = {
            "hgqir": {
                "lut": rep.lut,
                "ff": rep.ff,
                "carry": rep.carry,
                "dsp": rep.dsp,
                "srl": rep.srl,
                "latency": prj.latency,
                "synth_s": rep.seconds,
                "lut_flat": flat.lut,
                "ff_flat": flat.ff,
                "synth_flat_s": flat.seconds,
                "ebops": hgqir.bops(g).total,
                "estimate_lut": est_total,
                "estimate_error": abs(est_total - rep.lut) / rep.lut,
                "median_layer_error": float(np.median(errs)) if errs else None,
                "layers": layers,
            }
        }
        if use_alkaid:
            try:
                info = alkaid_verilog(name, out / f"{name}_alkaid")
                arep = synth(out / f"{name}_alkaid", progress=False)
                aflat = synth(out / f"{name}_alkaid", progress=False, flatten=True)
                r["alkaid"] = {
                    "lut": arep.lut,
                    "ff": arep.ff,
                    "carry": arep.carry,
                    "dsp": arep.dsp,
                    "srl": arep.srl,
                    "latency": info["latency"],
                    "synth_s": arep.seconds,
                    "lut_flat": aflat.lut,
                    "ff_flat": aflat.ff,
                    "synth_flat_s": aflat.seconds,
                }
            except Exception as e:  # report, do not hide
                r["alkaid"] = {"error": f"{type(e).__name__}: {e}"[-1500:]}
        results[name] = r
        print(f"  {name}: done", flush=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calibrate", action="store_true", help="fit the cost model first")
    ap.add_argument("--no-alkaid", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        model = calibrate(out) if args.calibrate else None
        results = run_models(out, not args.no_alkaid)
    print()
    head = f"{'model':<11} {'tool':<7} {'LUT':>7} {'FF':>6} {'CARRY':>6} {'DSP':>4} {'LUT flat':>8} {'FF flat':>7} {'latency':>7} {'synth s':>8} {'est. LUT':>9} {'err':>6} {'layer med':>9}"
    print(head)
    print("-" * len(head))
    for name, tools in results.items():
        for tool, r in tools.items():
            if "error" in r:
                print(f"{name:<11} {tool:<7} failed: {r['error'][-200:]}")
                continue
            est = (
                f"{r['estimate_lut']:9.0f} {r['estimate_error']:6.1%} {r['median_layer_error']:9.1%}"
                if "estimate_lut" in r
                else ""
            )
            print(
                f"{name:<11} {tool:<7} {r['lut']:>7} {r['ff']:>6} {r['carry']:>6} {r['dsp']:>4} {r['lut_flat']:>8} {r['ff_flat']:>7} {r['latency']:>7} {r['synth_s']:8.1f} {est}"
            )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"calibration": model, "results": results}, indent=1) + "\n")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
