"""Graph verification: SSA form, use-lists, acyclicity, shapes, attributes, constants."""

from __future__ import annotations

from .errors import HgqirError, VerifyError
from .ir import Graph, Op, OpKind


def _line(g: Graph, op: Op) -> str:
    from .text import op_line

    try:
        return op_line(op, elide=True)
    except Exception:  # a broken op may not print; fall back to repr
        return repr(op)


def _fail(g: Graph, op: Op, message: str) -> None:
    err = VerifyError(f"{message}\n  in op: {_line(g, op)}")
    err.op = op  # type: ignore[attr-defined]  # lets the parser point at the op's line
    raise err


def verify(g: Graph) -> None:
    """Raise :class:`VerifyError` naming the op (with its IR line) if ``g`` breaks an invariant."""
    _check_acyclic(g)
    seen: set[int] = set()
    names: dict[str, int] = {}
    in_graph = {id(op) for op in g.ops}
    for op in g.ops:
        if op.graph is not g:
            _fail(g, op, "op does not belong to this graph (op.graph differs)")
        for n, v in enumerate(op.operands):
            if id(v) not in seen:
                producer = v.producer
                where = (
                    "is defined later (ops are out of order: call g.toposort())"
                    if (producer is not None and id(producer) in in_graph)
                    else "has no producer in this graph (dangling value: erased or foreign)"
                )
                _fail(g, op, f"operand {n} %{v.name} {where}")
            if op not in v.users:
                _fail(g, op, f"operand %{v.name} does not list this op as a user (edit with Graph methods)")
        for v in op.results:
            if v.producer is not op:
                _fail(g, op, f"result %{v.name} names another producer")
            if v.name in names:
                _fail(g, op, f"value name %{v.name} is defined twice")
            names[v.name] = 1
            seen.add(id(v))
        _check_op(g, op)
    for op in g.ops:
        for v in op.results:
            for u in v.users:
                if id(u) not in in_graph:
                    _fail(
                        g,
                        op,
                        f"%{v.name} lists a user {u!r} that is not in the graph "
                        "(remove ops with Graph.erase, which keeps use-lists right)",
                    )
    if not g.ops_of(OpKind.OUTPUT):
        raise VerifyError(f"graph {g.name!r} has no output op; add one with g.output(value)")


def _check_acyclic(g: Graph) -> None:
    import networkx as nx

    nxg = g.to_networkx()
    try:
        cycle = nx.find_cycle(nxg)
    except nx.NetworkXNoCycle:
        return
    ops = " -> ".join(repr(edge[0]) for edge in cycle)
    raise VerifyError(f"graph {g.name!r} has a cycle: {ops}; SSA graphs must be acyclic")


def _check_op(g: Graph, op: Op) -> None:
    rule = op.rule
    lo, hi = rule.operands
    n = len(op.operands)
    if n < lo or (hi >= 0 and n > hi):
        want = f"{lo}" if lo == hi else f"{lo}..{'any' if hi < 0 else hi}"
        _fail(g, op, f"{op.kind.value} takes {want} operands, has {n}")
    if len(op.results) != rule.results:
        _fail(g, op, f"{op.kind.value} has {rule.results} result(s), has {len(op.results)}")
    try:
        attrs = rule.normalize_attrs(dict(op.attrs))
        if set(attrs) != set(op.attrs):
            _fail(g, op, f"attributes {sorted(op.attrs)} differ from the schema {sorted(attrs)}")
        if rule.check is not None:
            rule.check(op)
        shapes = rule.shapes(op)
    except VerifyError as e:
        _fail(g, op, str(e))
        return
    except HgqirError:
        raise
    except Exception as e:
        _fail(g, op, f"{op.kind.value} could not be checked: {type(e).__name__}: {e}")
        return
    for v, shape in zip(op.results, shapes, strict=False):
        if v.shape != tuple(shape):
            _fail(g, op, f"result %{v.name} has shape {list(v.shape)}, the op produces {list(shape)}")
