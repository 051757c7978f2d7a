"""Pass pipeline cost on dense networks with 10k, 100k and 1M per-element-typed weights.

Pipeline: ``fold-batchnorm,infer-bitwidth,prune-zero-bits,dce`` (verification after every
pass, as ``PassManager`` does by default). Each network is ``[a, a, a, a, 10]`` dense layers
with batchnorm, relu and a per-element quantizer after every hidden layer; every weight has
its own random type, 40% of the weights are zero and a few neurons are dead or constant, so
every pass has work. Each size runs in its own process: the time is wall-clock for the
pipeline, the memory is that process's peak RSS (graph building included) and the peak of
Python/numpy allocations during the pipeline (tracemalloc, separate run).

    python benchmarks/passes.py [--sizes 10000,100000,1000000]

Prints a table and writes ``benchmarks/results/passes.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from hgqir.passes import PassManager

from hgqir import FixedType, Graph, OpKind, Value

PIPELINE = "fold-batchnorm,infer-bitwidth,prune-zero-bits,dce"
SIZES = (10_000, 100_000, 1_000_000)
GOAL_SECONDS, GOAL_GIB = 30.0, 4.0
RESULTS = Path(__file__).parent / "results" / "passes.json"


def _const(g: Graph, rng: np.random.Generator, shape: tuple[int, ...], name: str, zero: float) -> Value:
    """Per-element type (k, i in 0..2, width 2..8) and a random in-range mantissa."""
    k = (rng.random(shape) < 0.8).astype(np.int64)
    i = rng.integers(0, 3, shape)
    f = rng.integers(2, 9, shape) - k - i
    top = 2 ** (i + f)
    data = np.where(rng.random(shape) < zero, 0, rng.integers(-k * top, top))
    return g.const_mantissa(data, FixedType(shape, k, i, f), name=name)


def network(n_weights: int, seed: int = 0) -> Graph:
    """Dense network with about ``n_weights`` weights (see the module docstring)."""
    rng = np.random.default_rng(seed)
    a = int((-10 + math.sqrt(100 + 12 * n_weights)) / 6)
    sizes = (a, a, a, a, 10)
    g = Graph(f"dense_{n_weights}")
    x = g.input("x", FixedType((a,), 1, rng.integers(1, 4, a), 4), round="RND", overflow="SAT")
    h = g.add(OpKind.QUANT, [x], {"round": "RND", "overflow": "SAT"}, [FixedType((a,), 1, 2, 3)], name="q0").result
    for n, (p, q) in enumerate(zip(sizes[:-1], sizes[1:], strict=True), start=1):
        w = _const(g, rng, (p, q), f"w{n}", zero=0.4)
        dead = rng.random(q) < 0.05
        w.producer.attrs["data"] = np.where(dead[None, :], 0, w.producer.attrs["data"])  # type: ignore[union-attr]
        h = g.add(OpKind.DENSE, [h, w, _const(g, rng, (q,), f"b{n}", zero=0.2)], name=f"fc{n}").result
        if n == len(sizes) - 1:
            break
        bn = [_const(g, rng, (q,), f"{s}{n}", zero=0.0) for s in ("s", "o")]
        h = g.add(OpKind.BATCHNORM, [h, *bn], name=f"bn{n}").result
        h = g.add(OpKind.RELU, [h], name=f"relu{n}").result
        t = FixedType((q,), 0, rng.integers(0, 4, q), rng.integers(2, 5, q))
        h = g.add(OpKind.QUANT, [h], {"round": "TRN", "overflow": "SAT"}, [t], name=f"q{n}").result
    g.output(h)
    return g


def weights(g: Graph) -> int:
    return sum(op.operands[1].type.size for op in g.ops_of(OpKind.DENSE))


def measure(n_weights: int) -> dict[str, object]:
    """Time and memory of the pipeline on one network (run in a fresh process)."""
    g = network(n_weights)
    before = weights(g)
    pm = PassManager.parse(PIPELINE)
    per_pass = {}
    start = time.perf_counter()
    for p in pm.passes:
        t0 = time.perf_counter()
        PassManager([p]).run(g)
        per_pass[str(p)] = round(time.perf_counter() - t0, 3)
    seconds = time.perf_counter() - start
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    g2 = network(n_weights)
    tracemalloc.start()
    PassManager.parse(PIPELINE).run(g2)
    traced = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return {
        "weights": before,
        "weights_after": weights(g),
        "seconds": round(seconds, 3),
        "peak_rss_mib": round(rss_mib, 1),
        "pipeline_alloc_peak_mib": round(traced, 1),
        "per_pass": per_pass,
    }


def _table(rows: list[dict[str, object]]) -> str:
    lines = [
        f"{'weights':>9} {'after':>9} {'seconds':>8} {'s/Mweight':>10} {'peak RSS MiB':>13} {'alloc peak MiB':>15}"
    ]
    for r in rows:
        rate = float(r["seconds"]) / int(r["weights"]) * 1e6  # type: ignore[arg-type]
        lines.append(
            f"{r['weights']:>9} {r['weights_after']:>9} {r['seconds']:>8} {rate:>10.2f} "
            f"{r['peak_rss_mib']:>13} {r['pipeline_alloc_peak_mib']:>15}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one)))
        return
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        out = subprocess.run([sys.executable, __file__, "--one", str(n)], check=True, capture_output=True, text=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(_table(rows).splitlines()[-1] if len(rows) > 1 else _table(rows), flush=True)
    big = rows[-1]
    ok = float(big["seconds"]) < GOAL_SECONDS and float(big["peak_rss_mib"]) < GOAL_GIB * 1024  # type: ignore[arg-type]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "pipeline": PIPELINE,
                "python": platform.python_version(),
                "machine": platform.machine(),
                "goal": f"< {GOAL_SECONDS:.0f} s and < {GOAL_GIB:.0f} GiB at 1M weights",
                "goal_met": ok,
                "runs": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\ngoal ({GOAL_SECONDS:.0f} s, {GOAL_GIB:.0f} GiB at the largest size): {'met' if ok else 'NOT met'}")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
