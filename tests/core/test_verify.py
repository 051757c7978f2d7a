"""verify(): broken invariants are rejected with the op's line of IR text; Graph editing API."""

from __future__ import annotations

import numpy as np
import pytest

import hgqir
from hgqir import FixedType, Graph, OpKind, Value, VerifyError


def small() -> tuple[Graph, Value, Value, Value]:
    g = Graph("v")
    x = g.input("x", FixedType.uniform((4,), 1, 2, 3))
    r = g.add(OpKind.RELU, [x], name="r").result
    q = g.add(
        OpKind.QUANT, [r], {"round": "RND", "overflow": "SAT"}, [FixedType.uniform((4,), 0, 2, 2)], name="q"
    ).result
    g.output(q)
    g.verify()
    return g, x, r, q


def verify_error(g: Graph) -> str:
    with pytest.raises(VerifyError) as info:
        hgqir.verify(g)
    return str(info.value)


def test_dangling_value() -> None:
    g, x, r, q = small()
    g.ops.remove(r.producer)  # bypasses Graph.erase, as a buggy pass might
    msg = verify_error(g)
    assert "operand 0 %r has no producer in this graph (dangling value" in msg
    assert "in op: %q = quant %r {round = RND, overflow = SAT} : [4] <0,2,2>" in msg
    n_ops = len(g.ops)
    g.toposort()  # must not pull the removed op back in
    assert len(g.ops) == n_ops
    g.set_operand(q.producer, 0, x)
    assert "lists a user Op(%r = relu %x) that is not in the graph" in verify_error(g)


def test_wrong_shape() -> None:
    g, x, r, q = small()
    r._type = FixedType.uniform((5,), 0, 2, 3)  # bypasses the type setter's shape check
    msg = verify_error(g)
    assert "result %r has shape [5], the op produces [4]" in msg and "in op: %r = relu %x" in msg
    with pytest.raises(VerifyError, match="reshape with an op instead"):
        r.type = FixedType.uniform((3,), 0, 2, 3)


def test_constant_not_representable() -> None:
    g, x, r, q = small()
    c = g.const_mantissa(np.array([1, 2, 3, -4]), FixedType.uniform((4,), 1, 1, 1), name="c")
    g.output(c, name="c")
    c.producer.attrs["data"] = np.array([1, 2, 3, 5])
    msg = verify_error(g)
    assert "constant element [3] has mantissa 5 outside k=1 i=1 f=1 (allowed -4..3)" in msg
    assert "in op: %c = const {data = <4 values>} : [4] <1,1,1>" in msg


def test_cycle() -> None:
    g, x, r, q = small()
    g.set_operand(r.producer, 0, q)  # relu now reads the quant that reads the relu
    msg = verify_error(g)
    assert "has a cycle" in msg and "SSA graphs must be acyclic" in msg
    with pytest.raises(VerifyError, match="no topological order exists"):
        g.toposort()


def test_out_of_order_ops_and_toposort() -> None:
    g, x, r, q = small()
    g.ops[1], g.ops[2] = g.ops[2], g.ops[1]
    msg = verify_error(g)
    assert "operand 0 %r is defined later (ops are out of order: call g.toposort())" in msg
    g.toposort()
    g.verify()
    assert [op.kind for op in g.ops] == [OpKind.INPUT, OpKind.RELU, OpKind.QUANT, OpKind.OUTPUT]


def test_use_lists_names_and_outputs() -> None:
    g, x, r, q = small()
    r._users.clear()  # corrupt the use-list behind the graph's back
    assert "does not list this op as a user" in verify_error(g)
    g, x, r, q = small()
    q.name = "r"
    assert "value name %r is defined twice" in verify_error(g)
    g, x, r, q = small()
    g.ops.pop()
    q._users.clear()
    assert "has no output op; add one with g.output(value)" in verify_error(g)
    g, x, r, q = small()
    r.producer.attrs["bogus"] = 1
    assert "unknown attribute(s) ['bogus']" in verify_error(g)


def test_graph_editing_keeps_use_lists() -> None:
    g, x, r, q = small()
    r2 = g.add(OpKind.RELU, [x], name="r", before=q.producer).result
    assert r2.name == "r_1" and g.ops.index(r2.producer) == 2
    g.replace_uses(r, r2)
    assert r.users == () and q.producer in r2.users
    g.erase(r.producer)
    g.verify()
    with pytest.raises(VerifyError, match="still used by quant"):
        g.erase(r2.producer)
    g.rename(r2, "act")
    assert g.value("%act") is r2 and "act" in hgqir.dumps(g)
    with pytest.raises(KeyError, match="no value %r"):
        g.value("r")


def test_use_lists_are_read_only_to_callers() -> None:
    g, x, r, q = small()
    assert isinstance(x.users, tuple) and isinstance(r.producer.operands, tuple)
    with pytest.raises(AttributeError):
        x.users = ()  # type: ignore[misc]
    with pytest.raises(AttributeError):
        q.producer.operands = (x,)  # type: ignore[misc]
    g.set_operand(q.producer, 0, x)  # the graph's own edit keeps both sides
    assert q.producer.operands == (x,) and q.producer in x.users and not r.users


def test_add_checks_before_changing_the_graph() -> None:
    g, x, r, q = small()
    n = len(g.ops)
    with pytest.raises(VerifyError, match="input ops need an explicit type"):
        g.add(OpKind.INPUT, [])
    with pytest.raises(VerifyError, match="relu has 1 result"):
        g.add(OpKind.RELU, [x], types=[])
    other = Graph("other")
    y = other.input("y", FixedType.uniform((4,), 1, 2, 3))
    with pytest.raises(VerifyError, match="not in graph 'v'"):
        g.add(OpKind.RELU, [y])
    assert len(g.ops) == n and len(x.users) == 1


def test_clone_is_independent_and_restore_rolls_back() -> None:
    g, x, r, q = small()
    before = hgqir.dumps(g)
    snap = g.clone()
    g.erase(g.ops[-1])
    g.erase(q.producer)
    assert hgqir.dumps(g) != before
    g.restore(snap)
    assert hgqir.dumps(g) == before
    g.verify()


def test_fixed_type_is_frozen_and_self_verifying() -> None:
    t = FixedType((2, 2), 1, [[1, 2], [3, 4]], 0)
    with pytest.raises(ValueError):
        t.i[0, 0] = 7
    with pytest.raises(AttributeError):
        t.k = np.zeros((2, 2))  # type: ignore[misc]
    with pytest.raises(VerifyError, match="k must be 0 or 1"):
        FixedType((2,), [0, 2], 1, 1)
    with pytest.raises(VerifyError, match="does not broadcast"):
        FixedType((2,), 1, [1, 2, 3], 1)
    with pytest.raises(VerifyError, match="must hold integers"):
        FixedType((2,), 1, [1.5, 2], 1)
    assert FixedType.uniform((3,), 1, 2, 3).is_uniform and not t.is_uniform
    assert t == FixedType((2, 2), 1, np.array([[1, 2], [3, 4]]), 0) and hash(t) == hash(t.canonical())
    assert FixedType.from_ap((2,), 8, 3) == FixedType.uniform((2,), 1, 2, 5)
    assert hgqir.ap_type_name(1, 2, 5) == "ap_fixed<8,3>" and hgqir.ap_type_name(0, -2, 6) == "ap_ufixed<4,-2>"
    assert hgqir.ap_type_name(1, 3, -4) == "0"


def test_covering_is_minimal() -> None:
    lo = np.array([-4.0, -4.25, 0.0, -0.5, 0.0, 3.0])
    hi = np.array([3.75, 0.0, 4.0, 0.0, 0.0, 3.0])
    t = FixedType.covering(lo, hi, np.array([2, 2, 0, 1, 5, -1]))
    assert t.k.tolist() == [1, 1, 0, 1, 0, 0]
    assert t.i.tolist() == [2, 3, 3, -1, 0, 2]
    assert t.f.tolist() == [2, 2, 0, 1, 0, -1]
    contained = FixedType.uniform((6,), 1, 5, 2)
    assert contained.contains(t) and not t.contains(contained)
