"""The graph: SSA values, ops and the graph that owns them.

Use-lists are kept right by the graph's own methods (``add``, ``set_operand``,
``replace_uses``, ``erase``); never edit ``Value.users`` or ``Op.operands`` by hand.

>>> from hgqir import Graph, FixedType, OpKind
>>> g = Graph("tiny")
>>> x = g.input("x", FixedType.uniform((4,), 1, 2, 3))
>>> y = g.add(OpKind.RELU, [x]).result
>>> _ = g.output(y)
>>> [op.kind.value for op in g.ops]
['input', 'relu', 'output']
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import VerifyError
from .fixed import FixedType, OverflowMode, RoundMode, Shape

if TYPE_CHECKING:
    from .ops.base import OpRule


class OpKind(enum.Enum):
    """Every op kind of the IR; each has one rule entry in :mod:`hgqir.ops`."""

    INPUT = "input"
    CONST = "const"
    QUANT = "quant"
    DENSE = "dense"
    CONV1D = "conv1d"
    CONV2D = "conv2d"
    DEPTHWISE_CONV1D = "depthwise_conv1d"
    DEPTHWISE_CONV2D = "depthwise_conv2d"
    ADD = "add"
    SUB = "sub"
    MUL = "mul"
    CONCAT = "concat"
    RESHAPE = "reshape"
    TRANSPOSE = "transpose"
    SLICE = "slice"
    RELU = "relu"
    PRELU = "prelu"
    MAXIMUM = "maximum"
    MINIMUM = "minimum"
    MAXPOOL1D = "maxpool1d"
    MAXPOOL2D = "maxpool2d"
    AVGPOOL1D = "avgpool1d"
    AVGPOOL2D = "avgpool2d"
    GLOBAL_MAXPOOL = "global_maxpool"
    GLOBAL_AVGPOOL = "global_avgpool"
    BATCHNORM = "batchnorm"
    LUT = "lut"
    SOFTMAX = "softmax"
    OUTPUT = "output"

    @property
    def rule(self) -> OpRule:
        from .ops import RULES

        return RULES[self]


_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


@dataclass(eq=False)
class Value:
    """An SSA tensor: one producer, any number of users, a shape (no batch dim) and a type."""

    name: str
    _type: FixedType = field(repr=False)
    producer: Op | None = field(default=None, repr=False)
    _users: list[Op] = field(default_factory=list, repr=False)

    @property
    def users(self) -> tuple[Op, ...]:
        """The ops that read this value (read-only: the graph's edit methods keep it right)."""
        return tuple(self._users)

    @property
    def type(self) -> FixedType:
        return self._type

    @type.setter
    def type(self, new: FixedType) -> None:
        if new.shape != self._type.shape:
            raise VerifyError(
                f"%{self.name}: new type has shape {list(new.shape)}, the value has "
                f"{list(self._type.shape)}; reshape with an op instead"
            )
        self._type = new

    @property
    def shape(self) -> Shape:
        return self._type.shape

    def __repr__(self) -> str:
        return f"Value(%{self.name}, {list(self.shape)})"


@dataclass(eq=False)
class Op:
    """One operation: an :class:`OpKind`, operand values, result values, typed attributes."""

    kind: OpKind
    _operands: tuple[Value, ...]
    results: tuple[Value, ...]
    attrs: dict[str, Any]
    graph: Graph | None = field(default=None, repr=False)

    @property
    def operands(self) -> tuple[Value, ...]:
        """The values this op reads (read-only: change them with ``Graph.set_operand(s)``)."""
        return self._operands

    @property
    def result(self) -> Value:
        if len(self.results) != 1:
            raise ValueError(f"{self.kind.value} op has {len(self.results)} results, not 1")
        return self.results[0]

    @property
    def rule(self) -> OpRule:
        return self.kind.rule

    def __repr__(self) -> str:
        res = ", ".join(f"%{v.name}" for v in self.results)
        ops = ", ".join(f"%{v.name}" for v in self.operands)
        return f"Op({res} = {self.kind.value} {ops})"


class Graph:
    """A dataflow graph: ops in topological order; inputs and outputs are ops of their own."""

    def __init__(self, name: str = "main") -> None:
        self.name = name
        self.ops: list[Op] = []
        self._names: dict[str, Value] = {}
        self.meta: dict[str, Any] = {}
        """Free-form metadata (frontend, layout notes); printed in the text form header."""

    # ------------------------------------------------------------------ queries
    @property
    def inputs(self) -> list[Value]:
        return [op.result for op in self.ops if op.kind is OpKind.INPUT]

    @property
    def outputs(self) -> list[Value]:
        return [op.operands[0] for op in self.ops if op.kind is OpKind.OUTPUT]

    def values(self) -> Iterable[Value]:
        for op in self.ops:
            yield from op.results

    def value(self, name: str) -> Value:
        try:
            return self._names[name.lstrip("%")]
        except KeyError:
            raise KeyError(f"no value %{name.lstrip('%')} in graph {self.name!r}") from None

    def ops_of(self, *kinds: OpKind) -> list[Op]:
        return [op for op in self.ops if op.kind in kinds]

    # ------------------------------------------------------------------ building
    def unique_name(self, base: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_.]", "_", base) or "v"
        if not _NAME_RE.match(base):
            base = "v" + base if base[0].isdigit() else "v_" + base
        if base not in self._names:
            return base
        n = 1
        while f"{base}_{n}" in self._names:
            n += 1
        return f"{base}_{n}"

    def add(
        self,
        kind: OpKind,
        operands: Sequence[Value] = (),
        attrs: dict[str, Any] | None = None,
        types: Sequence[FixedType] | None = None,
        name: str | None = None,
        before: Op | None = None,
    ) -> Op:
        """Create an op and place it at the end (or before ``before``).

        Result types default to the exact types the op's rule infers from its operands.
        Raises :class:`VerifyError` (and leaves the graph unchanged) when the operand count,
        attributes, shapes or types do not fit the op kind.
        """
        for v in operands:
            if v.producer is None or v.producer.graph is not self:
                raise VerifyError(f"operand %{v.name} of new {kind.value} op is not in graph {self.name!r}")
        rule = kind.rule
        lo, hi = rule.operands
        if len(operands) < lo or (hi >= 0 and len(operands) > hi):
            want = str(lo) if lo == hi else f"{lo}..{'any' if hi < 0 else hi}"
            raise VerifyError(f"{kind.value} takes {want} operand(s), got {len(operands)}")
        attrs = rule.normalize_attrs(dict(attrs or {}))
        op = Op(kind, tuple(operands), (), attrs, self)
        op.results = tuple(Value("", t, op) for t in self._result_types(op, types))
        base = name or kind.value
        for n, v in enumerate(op.results):
            v.name = self.unique_name(base if len(op.results) == 1 else f"{base}.{n}")
            self._names[v.name] = v
        for v in operands:
            v._users.append(op)
        if before is None:
            self.ops.append(op)
        else:
            self.ops.insert(self.ops.index(before), op)
        return op

    def _result_types(self, op: Op, types: Sequence[FixedType] | None) -> list[FixedType]:
        """Given or inferred result types, checked against the rule's result count and shapes."""
        rule, what = op.rule, op.kind.value
        try:
            if types is None:
                if op.kind in (OpKind.INPUT, OpKind.CONST):
                    raise VerifyError(f"{what} ops need an explicit type (use Graph.input / Graph.const)")
                rule.shapes(op)  # raises a clear error before inference meets bad shapes
                types = rule.infer(op)
            types = list(types)
            if len(types) != rule.results:
                raise VerifyError(f"{what} has {rule.results} result(s), got {len(types)} type(s)")
            op.results = tuple(Value("", t, op) for t in types)
            shapes = rule.shapes(op)
        except VerifyError:
            raise
        except (ValueError, TypeError, IndexError, KeyError, ArithmeticError) as e:
            raise VerifyError(f"{what}: operands or attributes do not fit: {type(e).__name__}: {e}") from None
        for t, shape in zip(types, shapes, strict=False):
            if t.shape != tuple(shape):
                raise VerifyError(f"{what} gives shape {list(shape)}, but the result type has shape {list(t.shape)}")
        return types

    def input(
        self,
        name: str,
        type: FixedType,
        round: RoundMode | str = RoundMode.TRN,
        overflow: OverflowMode | str = OverflowMode.WRAP,
    ) -> Value:
        """A graph input; external float data is converted into ``type`` with these modes."""
        attrs = {"round": RoundMode.parse(round), "overflow": OverflowMode.parse(overflow)}
        n_inputs = len(self.inputs)
        op = self.add(OpKind.INPUT, [], attrs, [type], name=name)
        self.ops.remove(op)
        self.ops.insert(n_inputs, op)
        return op.result

    def const(self, values: Any, type: FixedType, name: str = "const", before: Op | None = None) -> Value:
        """A constant from float ``values`` that must be exactly representable in ``type``."""
        from .numbers import mantissas_of

        data = mantissas_of(np.asarray(values, dtype=np.float64), type, what=f"constant %{name}")
        return self.add(OpKind.CONST, [], {"data": data}, [type], name=name, before=before).result

    def const_mantissa(self, data: np.ndarray, type: FixedType, name: str = "const", before: Op | None = None) -> Value:
        """A constant from integer mantissas: value = ``data * 2**-f`` per element.

        Raises :class:`VerifyError` when a mantissa does not fit its element's type.
        """
        op = self.add(OpKind.CONST, [], {"data": data}, [type], name=name, before=before)
        try:
            op.rule.check(op)  # type: ignore[misc]
        except VerifyError:
            self.erase(op)
            raise
        return op.result

    def output(self, value: Value, name: str = "out") -> Op:
        return self.add(OpKind.OUTPUT, [value], {"name": name}, [])

    # ------------------------------------------------------------------ mutation
    def set_operand(self, op: Op, index: int, value: Value) -> None:
        old = op.operands[index]
        old._users.remove(op)
        ops = list(op.operands)
        ops[index] = value
        op._operands = tuple(ops)
        value._users.append(op)

    def set_operands(self, op: Op, values: Sequence[Value]) -> None:
        for v in op.operands:
            v._users.remove(op)
        op._operands = tuple(values)
        for v in values:
            v._users.append(op)

    def replace_uses(self, old: Value, new: Value, except_op: Op | None = None) -> None:
        """Make every user of ``old`` (but ``except_op``) use ``new`` instead."""
        for user in old.users:
            if user is except_op:
                continue
            for idx, v in enumerate(user.operands):
                if v is old:
                    self.set_operand(user, idx, new)

    def erase(self, op: Op) -> None:
        """Remove an op whose results have no users."""
        for v in op.results:
            if v.users:
                users = ", ".join(f"{u.kind.value}" for u in v.users)
                raise VerifyError(f"cannot erase {op!r}: %{v.name} is still used by {users}")
        for v in op.operands:
            v._users.remove(op)
        for v in op.results:
            self._names.pop(v.name, None)
        self.ops.remove(op)
        op.graph = None

    def rename(self, value: Value, name: str) -> None:
        self._names.pop(value.name, None)
        value.name = self.unique_name(name)
        self._names[value.name] = value

    def toposort(self) -> None:
        """Reorder ``ops`` topologically (stable: keeps the current order where it can)."""
        import networkx as nx

        nxg = self.to_networkx()
        pos = {op: n for n, op in enumerate(self.ops)}
        try:
            order = list(nx.lexicographical_topological_sort(nxg, key=lambda op: pos[op]))
        except nx.NetworkXUnfeasible:
            raise VerifyError(f"graph {self.name!r} has a cycle: no topological order exists") from None
        self.ops = order

    def to_networkx(self) -> Any:
        """A networkx MultiDiGraph: the graph's ops as nodes, an edge per producer-user pair.

        Producers outside ``ops`` (dangling operands) are left out; ``verify`` reports them.
        """
        import networkx as nx

        nxg = nx.MultiDiGraph()
        nxg.add_nodes_from(self.ops)
        for op in self.ops:
            for v in op.operands:
                if v.producer is not None and v.producer in nxg:
                    nxg.add_edge(v.producer, op)
        return nxg

    def clone(self) -> Graph:
        """Structural copy; constant data and types (immutable) are shared, not copied."""
        new = Graph(self.name)
        new.meta = dict(self.meta)
        vmap: dict[int, Value] = {}
        for op in self.ops:
            nop = Op(op.kind, tuple(vmap[id(v)] for v in op.operands), (), dict(op.attrs), new)
            res = []
            for v in op.results:
                nv = Value(v.name, v.type, nop)
                vmap[id(v)] = nv
                new._names[nv.name] = nv
                res.append(nv)
            nop.results = tuple(res)
            for v in nop.operands:
                v._users.append(nop)
            new.ops.append(nop)
        return new

    def restore(self, other: Graph) -> None:
        """Become ``other`` (used to roll back a failed pass)."""
        self.name, self.ops, self._names, self.meta = other.name, other.ops, other._names, other.meta
        for op in self.ops:
            op.graph = self

    # ------------------------------------------------------------------ running
    def run(self, *inputs: Any, batch: bool | None = None) -> Any:
        """Evaluate exactly. Takes and returns float64 numpy arrays (batch first).

        One array per graph input; returns one array, or a list for several outputs.
        """
        from .interp import run_graph

        return run_graph(self, list(inputs), batch=batch)

    def verify(self) -> None:
        from .verify import verify

        verify(self)

    def __str__(self) -> str:
        from .text import dumps

        return dumps(self, elide=True)

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, {len(self.ops)} ops)"
