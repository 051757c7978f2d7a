"""The interpreter's paths agree bit for bit on random graphs with random per-element types.

``Graph.run`` (fused float64 kernels + generic rules), the generic rules with forced int64
mantissas, with forced Python ints, and ``run_exact`` (generic, every value kept) must give
identical results for every input, including inputs far outside the declared ranges.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hgqir import FixedType
from hgqir.interp import run_exact
from hgqir.quantize import mantissa_paths

from .graphgen import GraphGen
from .helpers import assert_results_fit, fractions


def _as_list(y):
    return y if isinstance(y, list) else [y]


def check_paths_agree(seed: int, wide: bool) -> None:
    gen = GraphGen(seed, wide=wide)
    g = gen.build(n_steps=int(gen.rng.integers(1, 7)))
    xs = gen.inputs(64)
    fast = _as_list(g.run(*xs))
    for limits in ({"float_bits": 0}, {"float_bits": 0, "int_bits": 0}):
        with mantissa_paths(**limits):
            slow = _as_list(g.run(*xs))
        assert all(np.array_equal(a, b) for a, b in zip(fast, slow, strict=True)), (seed, limits, str(g))
    exact = run_exact(g, xs)
    for v, y in zip(g.outputs, fast, strict=True):
        want = np.vectorize(float)(fractions(exact[v.name]))
        assert np.array_equal(y, want), (seed, v.name, str(g))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_random_graphs_fast_and_integer_paths_agree(seed: int) -> None:
    check_paths_agree(seed, wide=False)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_random_graphs_with_wide_types_agree(seed: int) -> None:
    check_paths_agree(seed, wide=True)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_inferred_types_never_overflow(seed: int) -> None:
    """With every type inferred (no narrower declarations), exact results fit their types."""
    gen = GraphGen(seed)
    gen.maybe_declared = lambda v: v  # type: ignore[method-assign]
    g = gen.build(n_steps=5)
    assert_results_fit(g, *gen.inputs(32))


def test_benchmark_network_paths_agree() -> None:
    """The dense/relu/quant chain the fused kernel was written for, on wild inputs."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[2] / "benchmarks" / "interp.py"
    spec = importlib.util.spec_from_file_location("bench_interp", path)
    bench = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(bench)  # type: ignore[union-attr]
    g = bench.build_network()
    x = np.random.default_rng(3).normal(0, 20, (2000, 16))
    with mantissa_paths(float_bits=0):
        slow = g.run(x)
    assert np.array_equal(g.run(x), slow)


def test_row_blocks_agree_even_when_kernels_change_between_blocks(monkeypatch) -> None:
    """Blocks of rows run separately; a block with huge inputs takes the generic path midway."""
    from hgqir.interp import Runner

    gen = GraphGen(11)
    x = gen.g.input("x", FixedType.uniform((3,), 1, 3, 40), round="RND", overflow="SAT")
    q = gen.block(gen.block(x))
    gen.g.output(q)
    data = np.random.default_rng(0).normal(0, 4, (50, 3))
    data[20:27] = 2.0**990  # the fast input kernel declines these rows (scaling would overflow)
    with mantissa_paths(float_bits=0):
        slow = gen.g.run(data)
    monkeypatch.setattr(Runner, "CHUNK_ROWS", 7)
    assert np.array_equal(gen.g.run(data), slow)


def test_concurrent_runs_agree(monkeypatch) -> None:
    """Several threads running blocked evaluations at once (the runner shares only its plans)."""
    import threading

    from hgqir.interp import Runner

    monkeypatch.setattr(Runner, "CHUNK_ROWS", 16)
    gen = GraphGen(21)
    g = gen.build(n_steps=6)
    xs = gen.inputs(300)
    want = _as_list(g.run(*xs))
    got: list[list[np.ndarray]] = []
    threads = [threading.Thread(target=lambda: got.append(_as_list(g.run(*xs)))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 4 and all(np.array_equal(a, b) for r in got for a, b in zip(r, want, strict=True))
