"""Interpreter throughput on a 16-64-32-32-5 dense ReLU network (issue 2's performance goal).

Every weight has its own 8-bit type, every activation passes a per-element 8-bit quantizer.
Prints a table and writes ``benchmarks/results/interp.json``::

    python benchmarks/interp.py [--samples 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from hgqir import FixedType, Graph, OpKind, Value

LAYERS = (16, 64, 32, 32, 5)
BITS = 8
GOAL = 1_000_000
"""Samples per second the issue asks for."""


def _weight(g: Graph, shape: tuple[int, ...], rng: np.random.Generator, name: str) -> Value:
    """A constant with a per-element 8-bit signed type and a random mantissa in range."""
    i = rng.integers(-2, 2, size=shape)
    f = BITS - 1 - i
    top = 2 ** (BITS - 1)
    data = rng.integers(-top, top, size=shape)
    return g.const_mantissa(data, FixedType(shape, 1, i, f), name=name)


def _act_type(n: int, rng: np.random.Generator) -> FixedType:
    """Per-element unsigned 8-bit activation type (after ReLU)."""
    i = rng.integers(0, 4, size=(n,))
    return FixedType((n,), 0, i, BITS - i)


def build_network(seed: int = 0) -> Graph:
    """The benchmark graph: input quantizer, then dense-relu-quant blocks, a final dense."""
    rng = np.random.default_rng(seed)
    g = Graph("dense_16_64_32_32_5")
    i_in = rng.integers(1, 4, size=(LAYERS[0],))
    x = g.input("x", FixedType((LAYERS[0],), 1, i_in, BITS - 1 - i_in), round="RND", overflow="SAT")
    for n, (a, b) in enumerate(zip(LAYERS[:-1], LAYERS[1:])):
        w = _weight(g, (a, b), rng, f"w{n}")
        bias = _weight(g, (b,), rng, f"b{n}")
        x = g.add(OpKind.DENSE, [x, w, bias], name=f"dense{n}").result
        if n < len(LAYERS) - 2:
            x = g.add(OpKind.RELU, [x], name=f"relu{n}").result
            q = g.add(OpKind.QUANT, [x], {"round": "RND", "overflow": "SAT"}, types=[_act_type(b, rng)],
                      name=f"act{n}")
            x = q.result
    g.output(x)
    g.verify()
    return g


def measure(g: Graph, samples: int, repeat: int, seed: int = 1) -> dict[str, float]:
    """Best and median wall time of ``g.run`` over ``repeat`` runs on ``samples`` inputs."""
    x = np.random.default_rng(seed).normal(0.0, 3.0, size=(samples, LAYERS[0]))
    g.run(x[:100])  # warm up caches and BLAS threads
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        g.run(x)
        times.append(time.perf_counter() - t0)
    best, median = min(times), float(np.median(times))
    return {"best_s": best, "median_s": median, "samples_per_s": samples / best,
            "median_samples_per_s": samples / median}


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "interp.json"))
    args = parser.parse_args(argv)
    g = build_network()
    stats = measure(g, args.samples, args.repeat)
    result = {
        "benchmark": "interp", "network": "-".join(map(str, LAYERS)), "weight_bits": BITS,
        "activation_bits": BITS, "samples": args.samples, "repeat": args.repeat, **stats,
        "goal_samples_per_s": GOAL, "meets_goal": stats["samples_per_s"] >= GOAL,
        "machine": platform.machine(), "python": platform.python_version(), "numpy": np.__version__,
    }
    print(f"{'network':<22}{'samples':>10}{'best s':>10}{'median s':>10}{'samples/s':>14}{'goal':>12}")
    print(f"{result['network']:<22}{args.samples:>10}{stats['best_s']:>10.4f}{stats['median_s']:>10.4f}"
          f"{stats['samples_per_s']:>14,.0f}{GOAL:>12,}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
