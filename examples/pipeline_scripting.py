"""Scripting pass pipelines from Python: pass objects, spec strings, a custom pass, dumps, EBOPs.

No training framework is needed: the graph is built by hand with per-element types (some
weights pruned to width 0, a dead neuron, a batchnorm to fold). The script then

1. builds a pipeline from pass objects (their dataclass fields are the options) and prints it
   as a spec string; parses the same spec back and checks both pipelines give the same graph;
2. registers a small custom analysis pass and uses it by name inside a spec;
3. runs the pipeline with ``PassManager(dump_dir=...)``, which writes the graph after every
   pass as ``.hgq`` text, and reads what each pass returned (``pm.results``);
4. prints the EBOPs report before and after, with the LUT / DSP estimate;
5. checks that ``g.run`` gives identical results before and after, on random inputs inside
   and far outside the declared input ranges.

    python examples/pipeline_scripting.py [--quick] [-o out/pipeline_scripting]

Exits with status 1 if any comparison finds a single differing output.
"""

from __future__ import annotations

import argparse
import collections
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from common import Checks, finish
from hgqir.passes import PASSES, Pass, PassManager, register

import hgqir
from hgqir import FixedType, Graph, OpKind, Value


# ---------------------------------------------------------------- a graph by hand
def weights(g: Graph, rng: np.random.Generator, shape: tuple[int, int], name: str) -> Value:
    """A constant with its own random type per weight; about 30% pruned (width 0), one dead column."""
    f = rng.integers(2, 7, size=shape)
    f[rng.random(shape) < 0.3] = -8  # k + i + f <= 0: pruned, the weight is exactly 0
    f[:, -1] = -8  # the last neuron gets no input at all
    t = FixedType(shape, 1, 1, f)
    top = np.where(t.zero_mask, 0, 2 ** (1 + np.maximum(f, 0)) - 1)
    return g.const_mantissa(rng.integers(-top, top + 1), t, name=name)


def layer(g: Graph, x: Value, n_out: int, rng: np.random.Generator, name: str) -> Value:
    """dense -> batchnorm -> relu -> quant (per-element 6-bit activations)."""
    w = weights(g, rng, (x.shape[-1], n_out), f"{name}_w")
    b = g.const(rng.integers(-8, 8, n_out) / 8, FixedType((n_out,), 1, 1, 3), name=f"{name}_b")
    y = g.add(OpKind.DENSE, [x, w, b], name=name).result
    scale = g.const(rng.integers(1, 8, n_out) / 4, FixedType((n_out,), 0, 1, 2), name=f"{name}_s")
    offset = g.const(rng.integers(-4, 4, n_out) / 4, FixedType((n_out,), 1, 1, 2), name=f"{name}_o")
    y = g.add(OpKind.BATCHNORM, [y, scale, offset], name=f"{name}_bn").result
    y = g.add(OpKind.RELU, [y], name=f"{name}_relu").result
    act = FixedType((n_out,), 0, rng.integers(1, 4, n_out), 6 - rng.integers(1, 4, n_out))
    return g.add(OpKind.QUANT, [y], {"round": "RND", "overflow": "SAT"}, [act], name=f"{name}_q").result


def build_graph(sizes: list[int], seed: int = 0) -> Graph:
    """An MLP ``sizes[0] -> ... -> sizes[-1]`` with per-element types everywhere."""
    rng = np.random.default_rng(seed)
    g = Graph("scripted_mlp")
    x = g.input("x", FixedType((sizes[0],), 1, 2, rng.integers(2, 6, sizes[0])), round="RND", overflow="SAT")
    for n, width in enumerate(sizes[1:-1]):
        x = layer(g, x, width, rng, f"fc{n}")
    w = weights(g, rng, (sizes[-2], sizes[-1]), "head_w")
    g.output(g.add(OpKind.DENSE, [x, w], name="head").result, name="logits")
    g.verify()
    return g


# ---------------------------------------------------------------- a custom pass
@register
@dataclass(frozen=True)
class CountOps(Pass):
    """Analysis: how many ops of each kind the graph has (returned, the graph is unchanged)."""

    name: ClassVar[str] = "count-ops"
    skip_consts: bool = True
    """Option `skip-consts`: leave constants out of the count."""

    def apply(self, g: Graph) -> dict[str, int]:
        kinds = (op.kind.value for op in g.ops if not (self.skip_consts and op.kind is OpKind.CONST))
        return dict(collections.Counter(kinds))


# ---------------------------------------------------------------- the script
def from_objects() -> PassManager:
    """A pipeline from pass objects: fields are options, ``str`` gives the spec back."""
    passes = [
        PASSES["fold-batchnorm"](),
        PASSES["infer-bitwidth"](consts=True),
        PASSES["prune-zero-bits"](max_sweeps=10),
        PASSES["dce"](),
        CountOps(),
        PASSES["annotate-bops"](dsp_bits=10),
    ]
    return PassManager(passes)


def samples(g: Graph, n: int, scale: float, seed: int = 1) -> np.ndarray:
    """Random inputs spread over ``scale`` times each input element's range."""
    t = g.inputs[0].type
    rng = np.random.default_rng(seed)
    return rng.uniform(-scale, scale, size=(n, *t.shape)) * np.maximum(np.abs(t.lo), np.abs(t.hi))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a smaller network")
    p.add_argument("-o", "--out", type=Path, default=Path("out") / "pipeline_scripting")
    args = p.parse_args(argv)
    g = build_graph([16, 32, 16, 5] if args.quick else [16, 64, 32, 32, 5])
    x = np.concatenate([samples(g, 2000, 1.0), samples(g, 2000, 8.0)])
    y_before, cost_before = g.run(x), hgqir.bops(g)
    checks = Checks()

    pm = from_objects()
    spec = str(pm)
    print(f"pipeline from objects: {spec}")
    again = PassManager.parse(spec, dump_dir=args.out / "steps")
    checks.record("the parsed spec prints back identically", str(again) == spec)
    twin = g.clone()
    pm.run(g)
    again.run(twin)
    checks.record("same graph from the objects and from the spec", hgqir.dumps(g) == hgqir.dumps(twin))
    checks.compare("interpreter after passes == before", g.run(x), y_before)

    print(f"\ndumps after every pass in {again.dump_dir}:")
    for path in sorted(again.dump_dir.glob("*.hgq")):  # type: ignore[union-attr]
        print(f"  {path.name}")
    print("\nwhat the passes returned:")
    print(f"  fold-batchnorm: folded {pm.results['fold-batchnorm'].folded}")
    print(f"  prune-zero-bits: {pm.results['prune-zero-bits']}")
    print(f"  count-ops: {pm.results['count-ops']}")
    print("  why %fc0 got its width:\n    " + pm.results["infer-bitwidth"].explain("%fc0").replace("\n", "\n    "))
    print(f"\nEBOPs before:\n{cost_before.table()}\n\nEBOPs after:\n{hgqir.bops(g).table()}")
    try:
        PassManager.parse("infer-bitwidth,no-such-pass")
    except hgqir.PipelineError as e:
        print(f"\nan unknown pass is refused: {e}")
    return finish(
        checks,
        [
            ("spec", spec),
            ("EBOPs before -> after", f"{cost_before.total:,.0f} -> {hgqir.bops(g).total:,.0f}"),
            ("recorded by annotate-bops", f"{g.meta['ebops']['total']:,.0f}"),
        ],
    )


if __name__ == "__main__":
    sys.exit(main())
