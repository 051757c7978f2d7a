"""Random small graphs with per-element types for the interpreter's property tests."""

from __future__ import annotations

import numpy as np

from hgqir import FixedType, Graph, OpKind, OverflowMode, RoundMode, Value

from .helpers import rand_type, rand_values

ROUNDS = list(RoundMode)
OVERFLOWS = list(OverflowMode)


class GraphGen:
    """Builds a random graph step by step from one numpy generator."""

    def __init__(self, seed: int, wide: bool = False) -> None:
        self.rng = np.random.default_rng(seed)
        self.wide = wide
        self.g = Graph(f"random{seed}")
        self.values: list[Value] = []

    def bits(self) -> tuple[int, int]:
        return (1, 60) if self.wide and self.rng.random() < 0.3 else (1, 10)

    def type_for(self, shape: tuple[int, ...], pruned: float = 0.1) -> FixedType:
        return rand_type(self.rng, shape, bits=self.bits(), i_range=(-3, 6), pruned=pruned)

    def modes(self) -> dict[str, object]:
        return {"round": self.rng.choice(ROUNDS), "overflow": self.rng.choice(OVERFLOWS)}

    def const_like(self, shape: tuple[int, ...], name: str) -> Value:
        t = rand_type(self.rng, shape, bits=(1, 8), i_range=(-2, 3), pruned=0.2)
        data = np.ldexp(rand_values(self.rng, t, 1, corners=False)[0], t.f).astype(np.int64)
        return self.g.const_mantissa(data, t, name=name)

    def maybe_declared(self, v: Value) -> Value:
        """Sometimes give a result a narrower random type (the interpreter then casts TRN/WRAP)."""
        if self.rng.random() < 0.25 and v.producer is not None and v.producer.kind is not OpKind.QUANT:
            v.type = self.type_for(v.shape)
        return v

    def step(self) -> None:
        x = self.values[int(self.rng.integers(len(self.values)))]
        choice = self.rng.choice(["dense", "block", "relu", "quant", "binary", "const_binary", "bn", "concat"])
        if choice == "block" and len(x.shape) == 1:
            y = self.block(x)
        elif choice == "dense" and len(x.shape) == 1:
            n_out = int(self.rng.integers(1, 6))
            w = self.const_like((x.shape[0], n_out), "w")
            ops = [x, w, self.const_like((n_out,), "b")] if self.rng.random() < 0.7 else [x, w]
            y = self.g.add(OpKind.DENSE, ops).result
        elif choice == "relu":
            y = self.g.add(OpKind.RELU, [x]).result
        elif choice == "binary":
            same = [v for v in self.values if v.shape == x.shape]
            other = same[int(self.rng.integers(len(same)))]
            kind = self.rng.choice([OpKind.ADD, OpKind.SUB, OpKind.MUL])
            y = self.g.add(kind, [x, other]).result
        elif choice == "const_binary":
            y = self.g.add(self.rng.choice([OpKind.ADD, OpKind.MUL]), [x, self.const_like(x.shape, "c")]).result
        elif choice == "bn":
            c = x.shape[-1]
            y = self.g.add(OpKind.BATCHNORM, [x, self.const_like((c,), "s"), self.const_like((c,), "o")]).result
        elif choice == "concat":
            y = self.g.add(OpKind.CONCAT, [x, x], {"axis": len(x.shape) - 1}).result
        else:
            y = self.g.add(OpKind.QUANT, [x], self.modes(), [self.type_for(x.shape, pruned=0.15)]).result
        self.values.append(self.maybe_declared(y))

    def block(self, x: Value) -> Value:
        """dense -> (relu) -> quant: the chain the interpreter fuses into one kernel."""
        n_out = int(self.rng.integers(1, 6))
        w = self.const_like((x.shape[0], n_out), "w")
        y = self.g.add(OpKind.DENSE, [x, w, self.const_like((n_out,), "b")]).result
        if self.rng.random() < 0.6:
            y = self.g.add(OpKind.RELU, [y]).result
        return self.g.add(OpKind.QUANT, [y], self.modes(), [self.type_for(y.shape, pruned=0.15)]).result

    def build(self, n_steps: int) -> Graph:
        for n in range(int(self.rng.integers(1, 3))):
            shape = (int(self.rng.integers(1, 7)),)
            self.values.append(self.g.input(f"x{n}", self.type_for(shape, pruned=0.1), **self.modes()))
        for _ in range(n_steps):
            self.step()
        self.g.output(self.values[-1], name="last")
        if len(self.values) > 2:
            self.g.output(self.values[len(self.values) // 2], name="middle")
        self.g.verify()
        return self.g

    def inputs(self, n: int) -> list[np.ndarray]:
        """Data partly inside, partly far outside each input's range (wrap/saturation)."""
        return [
            np.concatenate([rand_values(self.rng, v.type, n // 2), self.rng.normal(0, 50, (n - n // 2, *v.shape))])
            for v in self.g.inputs
        ]
