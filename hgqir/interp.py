"""The interpreter: exact evaluation of a graph on batches of float64 data.

Two evaluators give the same bits:

* :func:`evaluate` runs every op through its generic rule (:mod:`hgqir.ops`) and keeps every
  value (``run_exact``, debugging, golden data);
* :class:`Runner` (behind ``Graph.run``) takes the fused float64 kernels of
  :mod:`hgqir.fastpath` where their exactness is proven, the generic rules elsewhere, and
  frees each value after its last use.

``hgqir.quantize.mantissa_paths`` forces the integer paths (tests compare the two).
"""

from __future__ import annotations

import contextlib
import copy
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from . import fastpath as fp
from .errors import HgqirError
from .fixed import FixedType, OverflowMode, RoundMode
from .ir import Graph, Op, OpKind, Value
from .numbers import Exact
from .ops.base import cast_needed  # noqa: F401  (also imported from here by older callers)
from .quantize import float_path_enabled, quantize_exact


def exact_from_float(x: np.ndarray, t: FixedType, rmode: RoundMode, omode: OverflowMode) -> Exact:
    """Convert finite float64 data (batch first) into type ``t`` as a C++ cast from double would.

    :func:`prepare_inputs` has already rejected NaN and infinity.
    """
    m, s = quantize_exact(x, 0, t.k, t.i, t.f, rmode, omode)
    return Exact(m, s)


def prepare_inputs(
    g: Graph, args: Any, batch: bool | None = None, flatten: bool = False
) -> tuple[list[np.ndarray], bool]:
    """Batch-first float64 arrays, one per graph input, and whether the caller gave a batch.

    Shared by the interpreter and every backend's ``predict`` so that they accept the same
    arguments: one array per input (or one list of them), batched or a single sample.
    ``flatten`` gives contiguous ``[batch, size]`` arrays (what compiled code reads).
    """
    ins = g.inputs
    args = list(args)
    if len(args) == 1 and isinstance(args[0], (list, tuple)) and len(ins) > 1:
        args = list(args[0])
    if len(args) != len(ins):
        raise HgqirError(f"graph {g.name!r} takes {len(ins)} input(s), got {len(args)}")
    arrays = [np.asarray(a, dtype=np.float64) for a in args]
    if batch is None:
        batch = not all(a.shape == v.shape for a, v in zip(arrays, ins, strict=True))
    out = []
    for a, v in zip(arrays, ins, strict=True):
        a = a if batch else a[None]
        if a.shape[1:] != v.shape:
            raise HgqirError(
                f"input %{v.name} expects shape [batch, {', '.join(map(str, v.shape))}], got {list(a.shape)}"
            )
        if not np.all(np.isfinite(a)):
            raise HgqirError("input holds NaN or infinity; fixed-point inputs must be finite")
        out.append(np.ascontiguousarray(a.reshape(len(a), -1)) if flatten else a)
    return out, batch


def with_batch(x: Any, v: Value, batch: int, rank: int = 0) -> Any:
    """A constant-derived (unbatched) runtime value broadcast to ``batch`` rows; others unchanged.

    ``rank``: the op's result rank; lower-rank constants get leading 1-axes so that numpy
    broadcasting still lines up their trailing axes with the data's (``[3, 4] + [4]``).
    """
    if x.m.ndim != len(v.shape):
        return x
    lead = (1,) * max(rank - x.m.ndim, 0)
    m = np.broadcast_to(x.m.reshape(*lead, *x.m.shape)[None], (batch, *lead, *x.m.shape))
    return Exact(m, x.scale) if isinstance(x, Exact) else fp.Scaled(m, x.e)


def data_args(op: Op, values: list[Any], batch: int) -> list[Any]:
    """Operands as the rule expects them: data operands batched, weights and tables as they are."""
    n_data = op.rule.data_operands
    n_data = len(values) if n_data < 0 else n_data
    rank = len(op.results[0].shape) if op.results else 0
    return [
        with_batch(x, v, batch, rank) if n < n_data else x
        for n, (x, v) in enumerate(zip(values, op.operands, strict=True))
    ]


def _eval_op(op: Op, args: list[Exact], casts: list[bool]) -> list[Exact]:
    """One op through its rule, each result cast into its declared type where needed."""
    try:
        results = op.rule.eval(op, args)
        return [_cast(r, v) if cast else r for v, r, cast in zip(op.results, results, casts, strict=True)]
    except HgqirError:
        raise
    except Exception as e:  # names the op for any internal failure
        raise HgqirError(f"evaluating {op!r} failed: {type(e).__name__}: {e}") from e


def evaluate(g: Graph, arrays: list[np.ndarray]) -> dict[int, Exact]:
    """Exact batched result of every value, keyed by ``id(value)`` (generic rules only)."""
    env: dict[int, Exact] = {}
    feed = iter(arrays)
    batch = arrays[0].shape[0] if arrays else 1
    for op in g.ops:
        if op.kind is OpKind.OUTPUT:
            continue
        if op.kind is OpKind.INPUT:
            v = op.result
            env[id(v)] = exact_from_float(next(feed), v.type, op.attrs["round"], op.attrs["overflow"])
            continue
        args = data_args(op, [env[id(v)] for v in op.operands], batch)
        results = _eval_op(op, args, cast_needed(op))
        for v, r in zip(op.results, results, strict=True):
            env[id(v)] = r
    return env


_BLAS: dict[str, Any] = {"controller": None, "made": False, "depth": 0, "limit": None}
"""threadpoolctl's controller (made on first use) and how many runs hold the one-thread limit."""
_BLAS_LOCK = threading.Lock()


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """Limit numpy's BLAS to one thread while blocks run, when threadpoolctl is installed.

    The products here are thin (a few dozen columns): a second BLAS thread gains little on an
    idle machine and, on a busy one, its spin-waiting costs up to ten times the work. Speed
    only: results are bit-identical either way (every sum is exact). Concurrent runs share
    one limit: the first sets it, the last restores the user's setting.
    """
    with _BLAS_LOCK:
        if not _BLAS["made"]:
            _BLAS["made"] = True
            try:
                from threadpoolctl import ThreadpoolController

                _BLAS["controller"] = ThreadpoolController()
            except Exception:  # not installed, or no BLAS found: run as configured
                _BLAS["controller"] = None
        if _BLAS["controller"] is not None and _BLAS["depth"] == 0:
            _BLAS["limit"] = _BLAS["controller"].limit(limits=1, user_api="blas")
        _BLAS["depth"] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS["depth"] -= 1
            if _BLAS["depth"] == 0 and _BLAS["limit"] is not None:
                _BLAS["limit"].restore_original_limits()
                _BLAS["limit"] = None


_POOL: list[ThreadPoolExecutor] = []


def _pool() -> ThreadPoolExecutor:
    """Worker threads for blocks of rows: numpy and BLAS release the GIL, so blocks overlap."""
    if not _POOL:
        _POOL.append(
            ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="hgqir-run")
        )
    return _POOL[0]


class Runner:
    """``Graph.run``: fused float64 kernels where proven exact, generic rules elsewhere.

    Static decisions (casts, constants, kernel plans) are made once per run and reused for
    every block of ``CHUNK_ROWS`` rows; blocks keep the intermediates in cache and run on a
    few worker threads (shallow copies of the runner: shared plans, own values).
    """

    CHUNK_ROWS = 8192

    def __init__(self, g: Graph) -> None:
        self.g = g
        self.casts = {id(op): cast_needed(op) for op in g.ops}
        self.consts: dict[int, Exact] = {}
        self.plans: dict[tuple[int, bytes], Any] = {}
        """Kernel plans by op and input exponents (None: use the generic rule)."""
        self.env: dict[int, Exact | fp.Scaled] = {}
        self.fused: set[int] = set()
        """Ops computed inside a fused chain (they need not be adjacent in ``g.ops``)."""
        keep = {id(v) for v in g.outputs}
        last: dict[int, int] = {}
        for n, op in enumerate(g.ops):
            for v in op.operands:
                last[id(v)] = n
        self.last_use: dict[int, list[int]] = {}
        """Values to free after the op at each position (their last use)."""
        for vid, n in last.items():
            if vid not in keep:
                self.last_use.setdefault(n, []).append(vid)

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        rows = arrays[0].shape[0] if arrays else 1
        step = self.CHUNK_ROWS
        if rows <= step:
            return self._run_rows(arrays, rows)
        blocks = [([a[s : s + step] for a in arrays], min(step, rows - s)) for s in range(0, rows, step)]
        with _single_threaded_blas():
            first = self._run_rows(*blocks[0])  # makes the plans and constants the other blocks share
            rest = _pool().map(lambda b: copy.copy(self)._run_rows(*b), blocks[1:])
            parts = [first, *rest]
        return [np.concatenate(chunks) for chunks in zip(*parts, strict=True)]

    def _run_rows(self, arrays: list[np.ndarray], rows: int) -> list[np.ndarray]:
        feed = iter(arrays)
        self.batch = rows
        self.env = {}
        self.fused = set()
        for n, op in enumerate(self.g.ops):
            kernel = op.rule.kernel
            if kernel == "input":
                self._input(op, next(feed))
            elif id(op) not in self.fused and kernel != "none":
                self.KERNELS[kernel](self, op)
            for vid in self.last_use.get(n, ()):
                self.env.pop(vid, None)
        return [self._float(v) for v in self.g.outputs]

    # ------------------------------------------------------------ values
    def value(self, v: Value) -> Exact | fp.Scaled:
        got = self.env.get(id(v))
        if got is not None:
            return got
        if v.producer is None or v.producer.kind is not OpKind.CONST:
            raise HgqirError(f"value %{v.name} is used before it is computed")
        if id(v) not in self.consts:
            self.consts[id(v)] = fp.const_exact(v)
        return self.consts[id(v)]

    def exact(self, v: Value) -> Exact:
        x = self.value(v)
        return x.to_exact(v.type) if isinstance(x, fp.Scaled) else x

    def scaled(self, v: Value) -> fp.Scaled | None:
        """A data operand for the fast kernels (batched), or None if not float64 within limits."""
        x = with_batch(self.value(v), v, self.batch)
        return fp.Scaled.of(x) if fp.bound_ok(x, v.type) else None

    def _float(self, v: Value) -> np.ndarray:
        x = with_batch(self.value(v), v, self.batch)
        return x.to_float() if isinstance(x, fp.Scaled) else np.asarray(x.values(), dtype=np.float64)

    def _plan(self, op: Op, e: np.ndarray, make: Any) -> Any:
        key = (id(op), np.asarray(e).tobytes() + bytes(str(np.shape(e)), "ascii"))
        if key not in self.plans:
            self.plans[key] = make()
        return self.plans[key]

    # ------------------------------------------------------------ ops
    def _input(self, op: Op, x: np.ndarray) -> None:
        plan = self._plan(op, np.zeros(0), lambda: fp.input_plan(op))
        fast = None if plan is None else fp.run_input(plan, x)
        self.env[id(op.result)] = (
            fast if fast is not None else exact_from_float(x, op.result.type, op.attrs["round"], op.attrs["overflow"])
        )

    def _dense(self, op: Op) -> None:
        xs = None if any(self.casts[id(op)]) or len(op.operands[0].shape) != 1 else self.scaled(op.operands[0])
        found = None if xs is None else self._plan(op, xs.e, lambda: self._dense_plan(op, xs.e))
        if found is None or xs is None:
            self._generic(op)
            return
        chain, plan = found
        self.env[id(chain[-1].result)] = self._guard(chain[-1], fp.run_dense, xs, plan)
        self.fused.update(id(c) for c in chain[1:])

    def _dense_plan(self, op: Op, e: np.ndarray) -> tuple[list[Op], fp.DensePlan] | None:
        chain = fp.fusable_chain(op, {k: any(v) for k, v in self.casts.items()})
        plan = fp.dense_plan(chain, e)
        if plan is None and len(chain) > 1:
            chain = [op]
            plan = fp.dense_plan(chain, e)
        return None if plan is None else (chain, plan)

    def _unary(self, op: Op) -> None:
        xs = self.scaled(op.operands[0])
        if xs is None or (op.kind is OpKind.RELU and any(self.casts[id(op)])):
            self._generic(op)
        elif op.kind is OpKind.RELU:
            self.env[id(op.result)] = fp.Scaled(np.maximum(xs.m, 0.0), xs.e)
        else:
            rmode, omode = op.attrs["round"], op.attrs["overflow"]
            src, dst = op.operands[0].type, op.result.type
            plan = self._plan(op, xs.e, lambda: fp.quant_plan(xs.e, src, dst, rmode, omode, False))
            if plan is None:
                self._generic(op)
            else:
                self.env[id(op.result)] = self._guard(op, fp.run_quant, xs, plan)

    def _generic(self, op: Op) -> None:
        args = data_args(op, [self.exact(v) for v in op.operands], self.batch)
        results = _eval_op(op, args, self.casts[id(op)])
        for v, r in zip(op.results, results, strict=True):
            self.env[id(v)] = r

    @staticmethod
    def _guard(op: Op, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as e:  # names the op for any internal failure
            raise HgqirError(f"evaluating {op!r} failed: {type(e).__name__}: {e}") from e

    KERNELS: dict[str, Any] = {
        "dense": lambda self, op: self._dense(op),
        "unary": lambda self, op: self._unary(op),
        "generic": lambda self, op: self._generic(op),
    }
    """The rule table's ``kernel`` names -> the runner's methods (``input`` and ``none`` aside)."""


def run_graph(g: Graph, args: list[Any], batch: bool | None = None) -> Any:
    arrays, batched = prepare_inputs(g, args, batch)
    if float_path_enabled():
        outs = Runner(g).run(arrays)
    else:
        env = evaluate(g, arrays)
        n = arrays[0].shape[0] if arrays else 1
        outs = [np.asarray(with_batch(env[id(v)], v, n).values(), dtype=np.float64) for v in g.outputs]
    outs = [o if batched else o[0] for o in outs]
    return outs[0] if len(outs) == 1 else outs


def run_exact(g: Graph, args: list[Any]) -> dict[str, Exact]:
    """Every value's exact batched result by name (debugging, golden data for backends)."""
    arrays, _ = prepare_inputs(g, args, True)
    env = evaluate(g, arrays)
    batch = arrays[0].shape[0] if arrays else 1
    return {v.name: with_batch(env[id(v)], v, batch) for v in g.values()}


def _cast(r: Exact, v: Value) -> Exact:
    t = v.type
    m, s = quantize_exact(r.m, r.scale, t.k, t.i, t.f, RoundMode.TRN, OverflowMode.WRAP)
    return Exact(m, s)
