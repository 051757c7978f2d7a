"""The interpreter: exact evaluation of a graph on batches of float64 data."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import HgqirError
from .fixed import FixedType
from .ir import Graph, Op, OpKind, Value
from .numbers import Exact
from .quantize import quantize_exact
from .fixed import OverflowMode, RoundMode


def exact_from_float(x: np.ndarray, t: FixedType, rmode: RoundMode, omode: OverflowMode) -> Exact:
    """Convert float64 data (batch first) into type ``t`` as a C++ cast from double would."""
    if not np.all(np.isfinite(x)):
        raise HgqirError("input holds NaN or infinity; fixed-point inputs must be finite")
    m, s = quantize_exact(x, 0, t.k, t.i, t.f, rmode, omode)
    return Exact(m, s)


def cast_needed(op: Op) -> list[bool]:
    """Whether each result must be cast (TRN, WRAP) into its declared type after ``eval``."""
    rule = op.rule
    if rule.casts_itself:
        return [False] * len(op.results)
    exact = rule.infer(op)
    return [not v.type.contains(t) or _finer(v.type, t) for v, t in zip(op.results, exact)]


def _finer(declared: FixedType, exact: FixedType) -> bool:
    # an exact result that is all zero still needs a cast when the declared type is pruned
    return bool(np.any(declared.zero_mask & ~exact.zero_mask))


def _prepare(g: Graph, args: list[Any], batch: bool | None) -> tuple[list[np.ndarray], bool]:
    ins = g.inputs
    if len(args) == 1 and isinstance(args[0], (list, tuple)) and len(ins) > 1:
        args = list(args[0])
    if len(args) != len(ins):
        raise HgqirError(f"graph {g.name!r} takes {len(ins)} input(s), got {len(args)}")
    arrays = [np.asarray(a, dtype=np.float64) for a in args]
    if batch is None:
        batch = not all(a.shape == v.shape for a, v in zip(arrays, ins))
    out = []
    for a, v in zip(arrays, ins):
        a = a if batch else a[None]
        if a.shape[1:] != v.shape:
            raise HgqirError(
                f"input %{v.name} expects shape [batch, {', '.join(map(str, v.shape))}], got {list(a.shape)}"
            )
        out.append(a)
    return out, batch


def evaluate(g: Graph, arrays: list[np.ndarray]) -> dict[int, Exact]:
    """Exact batched result of every value, keyed by ``id(value)``."""
    env: dict[int, Exact] = {}
    feed = iter(arrays)
    for op in g.ops:
        if op.kind is OpKind.OUTPUT:
            continue
        if op.kind is OpKind.INPUT:
            v = op.result
            env[id(v)] = exact_from_float(next(feed), v.type, op.attrs["round"], op.attrs["overflow"])
            continue
        try:
            results = op.rule.eval(op, [env[id(v)] for v in op.operands])
            for v, r, cast in zip(op.results, results, cast_needed(op)):
                env[id(v)] = _cast(r, v) if cast else r
        except HgqirError:
            raise
        except Exception as e:  # names the op for any internal failure
            raise HgqirError(f"evaluating {op!r} failed: {type(e).__name__}: {e}") from e
    return env


def run_graph(g: Graph, args: list[Any], batch: bool | None = None) -> Any:
    arrays, batched = _prepare(g, args, batch)
    env = evaluate(g, arrays)
    outs = [_to_float(env[id(v)], batched) for v in g.outputs]
    return outs[0] if len(outs) == 1 else outs


def run_exact(g: Graph, args: list[Any]) -> dict[str, Exact]:
    """Every value's exact batched result by name (debugging, golden data for backends)."""
    arrays, _ = _prepare(g, args, True)
    env = evaluate(g, arrays)
    return {v.name: env[id(v)] for v in g.values()}


def _cast(r: Exact, v: Value) -> Exact:
    t = v.type
    m, s = quantize_exact(r.m, r.scale, t.k, t.i, t.f, RoundMode.TRN, OverflowMode.WRAP)
    return Exact(m, s)


def _to_float(e: Exact, batched: bool) -> np.ndarray:
    out = np.array(e.values(), dtype=np.float64)
    return out if batched else out[0]
