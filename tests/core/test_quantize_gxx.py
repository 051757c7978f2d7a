"""``hgqir.quantize`` against real ``ap_fixed`` casts compiled with g++.

One C++ program (``quantize_gxx.cpp.j2``) casts the same doubles into ``ap_fixed`` /
``ap_ufixed`` for every type configuration below and every (rounding, overflow) mode pair,
and prints the raw bit patterns. The test compares them bit for bit with the mantissas of
``hgqir.quantize``. Each mode pair sees ``len(CONFIGS) * N_PER_CONFIG`` (> 10,000) values:
exact ties, exact representable values, range edges, random values in and far outside the
range, and extreme magnitudes.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np
import pytest

import hgqir
from hgqir.fixed import OverflowMode, RoundMode
from hgqir.toolchain import ToolchainError, ap_types_include, compile_cxx

ROUNDS = [m.name for m in RoundMode]
OVERFLOWS = [m.name for m in OverflowMode]
N_PER_CONFIG = 320


@dataclass(frozen=True)
class Config:
    k: int
    i: int
    f: int

    @property
    def width(self) -> int:
        return self.k + self.i + self.f

    @property
    def integer(self) -> int:
        """ap_fixed's I parameter (sign bit included)."""
        return self.k + self.i

    @property
    def signed(self) -> bool:
        return bool(self.k)


HAND_PICKED = [
    (1, 3, 4),
    (0, 4, 4),
    (1, 0, 7),
    (0, 0, 8),
    (1, 2, 1),
    (0, 3, 0),
    # one-bit types
    (1, 0, 0),
    (0, 0, 1),
    (0, 1, 0),
    (1, -1, 1),
    # ap_fixed's I below 0 (negative i)
    (1, -2, 6),
    (0, -3, 7),
    (1, -10, 20),
    (1, -8, 39),
    (0, -5, 9),
    # I above W (negative f)
    (1, 5, -2),
    (0, 6, -3),
    (0, 20, -10),
    (1, 10, -9),
    (0, 40, -8),
    (1, 3, -3),
    # 32 bits wide
    (1, 15, 16),
    (0, 16, 16),
    (1, 31, 0),
    (0, 32, 0),
    (1, 0, 31),
    (0, 0, 32),
]


def _random_configs(n: int, seed: int = 7) -> list[tuple[int, int, int]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = int(rng.integers(0, 2))
        width = int(rng.integers(1, 33))
        i = int(rng.integers(-12, 37))
        out.append((k, i, width - k - i))
    return out


CONFIGS = [Config(*c) for c in HAND_PICKED + _random_configs(9)]
assert all(c.width >= 1 for c in CONFIGS), "ap_fixed has no width-0 type"
assert len(CONFIGS) * N_PER_CONFIG >= 10_000


def sample_values(c: Config, n: int, rng: np.random.Generator) -> np.ndarray:
    """Values that stress one type: ties, exact values, edges, overflow, extremes."""
    lsb = 2.0**-c.f
    lo_m = -c.k * 2 ** (c.i + c.f)
    hi_m = 2 ** (c.i + c.f) - 1
    span = hi_m - lo_m + 1
    m = rng.integers(lo_m - 2 * span, hi_m + 2 * span + 1, size=n // 4)
    ties = (m + 0.5) * lsb
    exact = rng.integers(lo_m - span, hi_m + span + 1, size=n // 8) * lsb
    quarter = (rng.integers(lo_m - span, hi_m + span + 1, size=n // 8) + rng.choice([0.25, 0.75], n // 8)) * lsb
    edges_m = np.array([lo_m, hi_m, lo_m - 1, hi_m + 1, lo_m + 1, hi_m - 1, 0, 1, -1, 2 * lo_m, 2 * hi_m])
    edges = np.concatenate([edges_m, edges_m + 0.5, edges_m - 0.5, edges_m + 0.25]) * lsb
    extremes = np.array([2.0**100, -(2.0**100), 1e300, -1e300, 5e-324, -5e-324, 1e-30, -1e-30, 0.0, -0.0])
    # just below half an LSB: 1 - 0.4999... is not a float, a careless remainder looks like a tie
    near_half = np.array([1, -1, 1, -1]) * np.array([np.nextafter(0.5, 0), np.nextafter(0.5, 0), 0.5, 0.5]) * lsb
    extremes = np.concatenate([extremes, near_half, -np.nextafter(1.0, 0) * np.array([lsb, -lsb])])
    top = 2.0 ** (c.i + 1)
    uniform = rng.uniform(-3 * top, 3 * top, size=n // 4)
    rest = n - sum(map(len, (ties, exact, quarter, edges, extremes, uniform)))
    wide = rng.choice([-1.0, 1.0], rest) * np.exp2(rng.uniform(-60, 60, size=rest))
    out = np.concatenate([ties, exact, quarter, edges, extremes, uniform, wide])
    assert out.shape == (n,) and np.all(np.isfinite(out))
    return out


@pytest.fixture(scope="module")
def gxx_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray]:
    """(inputs [config, n], raw C++ bit patterns [config, mode, n])."""
    try:
        include = ap_types_include()
    except ToolchainError as e:
        pytest.fail(f"ap_types headers are required for this test: {e}")
    template_dir = Path(__file__).parent
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(template_dir), undefined=jinja2.StrictUndefined)
    source = env.get_template("quantize_gxx.cpp.j2").render(
        configs=CONFIGS, n=N_PER_CONFIG, rounds=ROUNDS, overflows=OVERFLOWS
    )
    work = tmp_path_factory.mktemp("quantize_gxx")
    (work / "casts.cpp").write_text(source)
    exe = compile_cxx([work / "casts.cpp"], work / "casts", include=[include], flags=["-O0", "-w"])
    rng = np.random.default_rng(2024)
    inputs = np.stack([sample_values(c, N_PER_CONFIG, rng) for c in CONFIGS])
    proc = subprocess.run([str(exe)], input=inputs.astype("<f8").tobytes(), capture_output=True, check=True)
    raw = np.frombuffer(proc.stdout, dtype="<u8").reshape(len(CONFIGS), len(ROUNDS) * len(OVERFLOWS), -1)
    return inputs, raw


def _raw_bits(q: np.ndarray, c: Config) -> np.ndarray:
    """Two's complement bit patterns (low W bits) of quantized values of type ``c``."""
    m = np.ldexp(q, c.f)
    assert np.all(m == np.round(m)), "quantize returned a value off the type's grid"
    return (m.astype(np.int64) & ((1 << c.width) - 1)).astype(np.uint64)


@pytest.mark.slow
@pytest.mark.parametrize("round_mode", ROUNDS)
@pytest.mark.parametrize("overflow_mode", OVERFLOWS)
def test_quantize_matches_ap_fixed(gxx_results, round_mode: str, overflow_mode: str) -> None:
    inputs, raw = gxx_results
    mode = ROUNDS.index(round_mode) * len(OVERFLOWS) + OVERFLOWS.index(overflow_mode)
    checked = 0
    for n, c in enumerate(CONFIGS):
        got = hgqir.quantize(inputs[n], c.k, c.i, c.f, round=round_mode, overflow=overflow_mode)
        expected = raw[n, mode]
        mine = _raw_bits(got, c)
        if not np.array_equal(mine, expected):
            bad = np.flatnonzero(mine != expected)[:5]
            rows = [f"x={inputs[n, j]!r}: hgqir bits {mine[j]}, ap_fixed bits {expected[j]}" for j in bad]
            pytest.fail(f"{c} ({round_mode}, {overflow_mode}) disagrees with ap_fixed:\n" + "\n".join(rows))
        checked += inputs.shape[1]
    assert checked >= 10_000


@pytest.mark.parametrize("kif", [(0, 0, 0), (1, -1, 0), (1, 3, -4), (0, -2, -5), (1, -6, 2), (0, 0, -1)])
def test_width_zero_or_less_is_always_zero(kif: tuple[int, int, int]) -> None:
    """ap_fixed has no width-0 type; hgqir defines such (pruned) elements as the constant 0."""
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(0, 100, 2000), [0.5, -0.5, 2.0**-7, -1e300, 1e300]])
    for r in ROUNDS:
        for o in OVERFLOWS:
            q = hgqir.quantize(x, *kif, round=r, overflow=o)
            assert np.array_equal(q, np.zeros_like(x)) and not np.signbit(q).any()
