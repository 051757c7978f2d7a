"""The ``.hgq`` text form: one op per line, a type on every value, tables at the end.

Example::

    hgqir 1 @tiny
    %x = input {round = TRN, overflow = WRAP} : [4] <1,2,3>
    %w = const {data = $d0} : [4, 2] $t0
    %dense = dense %x, %w : [2] <1,5,5>
    output %dense {name = "out"}

    $t0 = types [4, 2] {
      k: 1
      i: 0 1 0 1 0 1 0 1
      f: 2 2 3 3 2 2 3 3
    }
    $d0 = data [4, 2] {
      1 -2 3 0 1 1 -1 2
    }

A uniform type prints inline as ``<k,i,f>``; a per-element type refers to a ``$t`` table whose
``k``/``i``/``f`` rows are flat row-major lists (a single number when constant). Constants are
integer mantissas (value = mantissa * 2**-f). ``loads(dumps(g))`` rebuilds ``g`` exactly and
``dumps(loads(s)) == s`` for canonical text. ``dumps(g, elide=True)`` replaces tables with
summaries such as ``{k=1 i=0..7 f=2..6 zero=3/64}``: for humans and golden tests, not loadable.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import numpy as np

from .errors import ParseError, VerifyError
from .fixed import FixedType, summary
from .ir import Graph, Op, OpKind

VERSION = 1


class _Tables:
    """Numbering of the per-element types and constant data referenced by op lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.n_types = 0
        self.n_data = 0

    def type_ref(self, t: FixedType) -> str:
        name = f"$t{self.n_types}"
        self.n_types += 1
        self.lines.append(f"{name} = types {_shape(t.shape)} {{")
        for n in "kif":
            self.lines.append(f"  {n}: {_ints(np.asarray(getattr(t, n)))}")
        self.lines.append("}")
        return name

    def data_ref(self, data: np.ndarray) -> str:
        name = f"$d{self.n_data}"
        self.n_data += 1
        self.lines.append(f"{name} = data {_shape(data.shape)} {{")
        self.lines.append(f"  {_ints(data, collapse=False)}")
        self.lines.append("}")
        return name


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _ints(a: np.ndarray, collapse: bool = True) -> str:
    """Space-separated integers (one number when ``collapse`` and all equal)."""
    flat = a.reshape(-1)
    if flat.size == 0:
        return ""
    if collapse and (a.strides == (0,) * a.ndim or bool(np.all(flat == flat[0]))):
        return str(int(flat[0]))
    if flat.dtype != object and flat.size > 256:
        lo, hi = int(flat.min()), int(flat.max())
        if hi - lo < 1 << 16:  # narrow range: format each distinct number once
            table = np.array([str(v) for v in range(lo, hi + 1)], dtype=object)
            return " ".join(table[flat - lo].tolist())
    return " ".join(map(str, flat.tolist()))


def _type_text(t: FixedType, tables: _Tables | None) -> str:
    if t.is_uniform:
        k, i, f = t.scalar()
        return f"{_shape(t.shape)} <{k},{i},{f}>"
    if tables is None:
        return f"{_shape(t.shape)} {{{summary(t)}}}"
    return f"{_shape(t.shape)} {tables.type_ref(t)}"


def _attr_text(kind: str, value: Any, tables: _Tables | None) -> str:
    if kind == "array":
        if tables is None:
            return f"<{value.size} values>"
        return tables.data_ref(value)
    if kind in ("round", "overflow"):
        return value.name
    if kind == "bool":
        return "true" if value else "false"
    if kind == "str":
        return json.dumps(value)
    if kind == "ints":
        return "[" + ", ".join(map(str, value)) + "]"
    if kind == "pads":
        return "[" + ", ".join(f"[{a}, {b}]" for a, b in value) + "]"
    if kind == "kif":
        return "<{},{},{}>".format(*value)
    return str(value)


def op_line(op: Op, elide: bool = False, tables: _Tables | None = None) -> str:
    """One op as a line of text (tables collect per-element types and data unless eliding)."""
    tables = None if elide else (tables or _Tables())
    parts = []
    if op.results:
        parts.append(", ".join(f"%{v.name}" for v in op.results) + " =")
    parts.append(op.kind.value)
    if op.operands:
        parts.append(", ".join(f"%{v.name}" for v in op.operands))
    schema = op.rule.attrs
    attrs = [f"{k} = {_attr_text(schema[k].kind, op.attrs[k], tables)}" for k in schema if k in op.attrs]
    if attrs:
        parts.append("{" + ", ".join(attrs) + "}")
    line = " ".join(parts)
    if op.results:
        line += " : " + ", ".join(_type_text(v.type, tables) for v in op.results)
    return line


def dumps(g: Graph, elide: bool = False) -> str:
    """The text form of ``g``; ``elide=True`` gives the human summary form."""
    tables = _Tables()
    name = g.name if re.fullmatch(r"[A-Za-z0-9_.-]+", g.name) else json.dumps(g.name)
    head = f"hgqir {VERSION} @{name}"
    lines = [head + (" (elided)" if elide else "")]
    if g.meta:
        lines.append("meta " + json.dumps(g.meta, sort_keys=True))
    for op in g.ops:
        lines.append(op_line(op, elide=elide, tables=tables))
    if tables.lines:
        lines.append("")
        lines.extend(tables.lines)
    return "\n".join(lines) + "\n"


def save(g: Graph, path: str | os.PathLike[str]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(dumps(g))


def load(path: str | os.PathLike[str]) -> Graph:
    with open(path, encoding="utf-8") as fh:
        return loads(fh.read(), source=str(path))


def loads(text: str, source: str = "<string>") -> Graph:
    """Parse ``.hgq`` text; errors are :class:`ParseError` with line and column."""
    from .parser import Parser

    return Parser(text, source).parse()


__all__ = ["dumps", "loads", "save", "load", "op_line", "VerifyError", "ParseError", "OpKind"]
