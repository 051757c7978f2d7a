"""Constant matrix-vector multiplication as a shared shift-add adder graph.

Every weight becomes canonical signed digits; output ``o`` is the sum of the terms
``sign * x[j] * 2**P`` of its column. Common subexpressions are then extracted greedily across
the whole matrix: the pair of terms ``(x[a] * 2**p, ±x[b] * 2**(p + d))`` that occurs in the most
places becomes one adder ``t = x[a] ± x[b] * 2**d`` used everywhere, until no pair occurs twice.
Each extraction of a pair occurring ``c`` times saves ``c - 1`` adders. Terms are in value space
(exponents of weights included), so one solution serves every position of a convolution even when
the inputs' own types differ per position.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from .netlist import Netlist, Ref, csd

Term = tuple[int, int]
"""``(source, P)``: source is an input index or ``n_in + node``; ``P`` the power of two."""
Key = tuple[int, int, int, int]
"""A pair pattern ``(source a, source b, d, sign)``: ``x[a] + sign * x[b] * 2**d``."""


@dataclass
class Program:
    """The adder graph of a constant matrix: shared nodes, then one list of terms per output."""

    n_in: int
    nodes: list[Key]
    columns: list[dict[Term, int]]

    @property
    def adders(self) -> int:
        """Adders of the symbolic solution (shared nodes plus each column's sum of its terms)."""
        return len(self.nodes) + sum(max(len(c) - 1, 0) for c in self.columns)


def digits(w: np.ndarray, e: np.ndarray) -> list[dict[Term, int]]:
    """The columns' terms: ``w[j, o] * 2**e[j, o]`` as signed digits of input ``j``."""
    cols: list[dict[Term, int]] = [{} for _ in range(w.shape[1])]
    for j, o in zip(*np.nonzero(w), strict=True):
        for pos, sign in csd(int(w[j, o])):
            cols[o][(int(j), pos + int(e[j, o]))] = sign
    return cols


def _key(t1: Term, s1: int, t2: Term, s2: int) -> tuple[Key, Term, int]:
    """The pattern of two terms and where it sits: (key, anchor term, anchor sign)."""
    if t2 < t1:
        t1, s1, t2, s2 = t2, s2, t1, s1
    return (t1[0], t2[0], t2[1] - t1[1], s1 * s2), t1, s1


class _Counts:
    """Occurrences of every pair pattern and the columns holding it, with a lazy max-heap."""

    def __init__(self) -> None:
        self.count: dict[Key, int] = defaultdict(int)
        self.where: dict[Key, set[int]] = defaultdict(set)
        self.heap: list[tuple[int, Key]] = []

    def bump(self, key: Key, col: int, by: int) -> None:
        c = self.count[key] + by
        self.count[key] = c
        if by > 0:
            self.where[key].add(col)
            if c >= 2:
                heapq.heappush(self.heap, (-c, key))

    def best(self) -> tuple[Key, int] | None:
        while self.heap:
            c, key = heapq.heappop(self.heap)
            if -c == self.count[key] and -c >= 2:
                return key, -c
        return None


def solve(w: np.ndarray, e: np.ndarray) -> Program:
    """Adder graph of ``y[o] = sum_j x[j] * w[j, o] * 2**e[j, o]`` (``w`` integer mantissas)."""
    n_in = w.shape[0]
    cols = digits(w, e)
    counts = _Counts()
    for c, col in enumerate(cols):
        items = sorted(col.items())
        for a in range(len(items)):
            for b in range(a + 1, len(items)):
                key, _, _ = _key(items[a][0], items[a][1], items[b][0], items[b][1])
                counts.bump(key, c, 1)
    nodes: list[Key] = []
    made: dict[Key, int] = {}
    while (found := counts.best()) is not None:
        key, _ = found
        if key not in made:
            made[key] = n_in + len(nodes)
            nodes.append(key)
        src = made[key]
        for c in sorted(counts.where[key]):
            _substitute(cols[c], c, key, src, counts)
    return Program(n_in, nodes, cols)


def _substitute(col: dict[Term, int], c: int, key: Key, src: int, counts: _Counts) -> None:
    a, b, d, sign = key
    for t1 in sorted(col):
        if t1[0] != a or t1 not in col:
            continue
        t2 = (b, t1[1] + d)
        if t2 == t1 or t2 not in col or col[t1] * col[t2] != sign:
            continue
        s1 = col[t1]
        for t in (t1, t2):
            st = col.pop(t)
            for u, su in col.items():
                counts.bump(_key(t, st, u, su)[0], c, -1)
        new = (src, t1[1])
        for u, su in col.items():
            counts.bump(_key(new, s1, u, su)[0], c, 1)
        col[new] = s1


def instantiate(net: Netlist, prog: Program, xs: list[Ref], bias: list[Ref] | None = None) -> list[Ref]:
    """The outputs of ``prog`` for input refs ``xs`` (each output a balanced sum of its terms)."""
    vals = list(xs)
    for a, b, d, sign in prog.nodes:
        vals.append(net.add(vals[a], net.shifted(vals[b], d), sub=sign < 0))
    outs = []
    for o, col in enumerate(prog.columns):
        terms = [net.shifted(vals[s], p, sign < 0) for (s, p), sign in col.items()]
        if bias is not None:
            terms.append(bias[o])
        outs.append(net.total(terms))
    return outs
