"""Parser of the ``.hgq`` text form (see :mod:`hgqir.text` for the grammar by example)."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from .errors import HgqirError, ParseError, VerifyError
from .fixed import FixedType
from .ir import Graph, OpKind, Value
from .lexer import Line, Tok, dims_ok, fast_ints

_KINDS = {k.value: k for k in OpKind}
_RESULT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
MAX_BITS = 2**24
"""Largest |i| and |f| the parser accepts (guards numpy's int64 arithmetic on types)."""


class Parser:
    def __init__(self, text: str, source: str = "<string>") -> None:
        self.source = source
        self.lines = text.split("\n")
        self.types: dict[str, FixedType] = {}
        self.data: dict[str, np.ndarray] = {}
        self.op_lines: dict[int, int] = {}
        """Line number of each parsed op, by ``id(op)``."""

    # -------------------------------------------------------------- entry
    def parse(self) -> Graph:
        if not self.lines or not self.lines[0].strip():
            raise ParseError("empty input: expected a header such as 'hgqir 1 @main'", 1, 1, "")
        g = self._header(self.lines[0])
        body_end = self._tables_start()
        self._parse_tables(body_end)
        for n in range(1, body_end):
            text = self.lines[n]
            if not text.strip() or text.lstrip().startswith("#"):
                continue
            if text.startswith("meta "):
                try:
                    g.meta = json.loads(text[5:])
                except json.JSONDecodeError as e:
                    raise ParseError(f"bad meta JSON: {e.msg}", n + 1, 6 + e.pos, text) from None
                continue
            self._op(g, Line(text, n + 1))
            self.op_lines[id(g.ops[-1])] = n + 1
        if not g.ops_of(OpKind.OUTPUT):
            last = max((n for n in range(body_end) if self.lines[n].strip()), default=0)
            raise ParseError(
                "no output op: the text ends before any 'output' line (truncated?)", last + 1, 1, self.lines[last]
            )
        self._verify(g)
        return g

    def _verify(self, g: Graph) -> None:
        """Whole-graph checks; a failure points at the offending op's line."""
        from .verify import verify

        try:
            verify(g)
        except VerifyError as e:
            op = getattr(e, "op", None)
            line = self.op_lines.get(id(op), len(self.lines)) if op is not None else len(self.lines)
            raise ParseError(str(e).split("\n")[0], line, 1, self.lines[line - 1]) from None

    def _header(self, text: str) -> Graph:
        m = re.match(r'^hgqir (\d+) @([A-Za-z0-9_.-]+|"(?:[^"\\]|\\.)*")( \(elided\))?$', text)
        if not m:
            raise ParseError("expected a header such as 'hgqir 1 @main'", 1, 1, text)
        if m.group(3):
            raise ParseError(
                "elided text (summaries instead of tables) cannot be loaded; dump without elide",
                1,
                m.start(3) + 2,
                text,
            )
        if int(m.group(1)) != 1:
            raise ParseError(f"unsupported format version {m.group(1)} (this hgqir reads 1)", 1, 7, text)
        name = m.group(2)
        return Graph(json.loads(name) if name.startswith('"') else name)

    def _tables_start(self) -> int:
        for n, text in enumerate(self.lines):
            if text.startswith("$"):
                return n
        return len(self.lines)

    # -------------------------------------------------------------- tables
    def _parse_tables(self, start: int) -> None:
        n = start
        while n < len(self.lines):
            text = self.lines[n]
            if not text.strip():
                n += 1
                continue
            m = re.match(r"^(\$[td]\d+) = (types|data) \[([0-9, ]*)\] \{$", text)
            if not m:
                raise ParseError("expected a table header such as '$t0 = types [4, 2] {'", n + 1, 1, text)
            name, kind = m.group(1), m.group(2)
            if (kind == "types") != name.startswith("$t"):
                raise ParseError(
                    f"{name} must be a {'types' if name.startswith('$t') else 'data'} table", n + 1, 1, text
                )
            shape = tuple(int(s) for s in m.group(3).replace(",", " ").split())
            if not dims_ok(shape):
                raise ParseError(f"bad table shape {list(shape)}: fewer than 2**40 elements please", n + 1, 1, text)
            rows = 3 if kind == "types" else 1
            body = self.lines[n + 1 : n + 1 + rows]
            close = n + 1 + rows
            if len(body) < rows or close >= len(self.lines) or self.lines[close] != "}":
                got = self.lines[close] if close < len(self.lines) else "end of file"
                raise ParseError(
                    f"table {name} needs {rows} row(s) then '}}', found {got!r} (truncated?)",
                    min(close, len(self.lines)) + 1 if close < len(self.lines) else len(self.lines),
                    1,
                    self.lines[min(close, len(self.lines) - 1)],
                )
            if kind == "types":
                self.types[name] = self._types_table(shape, body, n + 2)
            else:
                self.data[name] = self._ints_row(body[0].strip(), shape, n + 2, body[0], collapse=False)
            n = close + 1

    def _types_table(self, shape: tuple[int, ...], body: list[str], lineno: int) -> FixedType:
        arrays = []
        for off, (letter, text) in enumerate(zip("kif", body, strict=True)):
            prefix = f"  {letter}: "
            if not text.startswith(prefix) and text != prefix.rstrip():
                raise ParseError(f"expected row '{letter}: ...'", lineno + off, 1, text)
            arrays.append(self._ints_row(text[len(prefix) :], shape, lineno + off, text, collapse=True))
        if any(a.dtype == object or (a.size and np.abs(a).max() > MAX_BITS) for a in arrays):
            raise ParseError(f"bad type table: k, i and f must lie within +-{MAX_BITS}", lineno, 1, body[0])
        try:
            return FixedType(shape, *arrays)
        except VerifyError as e:
            raise ParseError(f"bad type table: {e}", lineno, 1, body[0]) from None

    def _ints_row(self, text: str, shape: tuple[int, ...], lineno: int, line: str, collapse: bool) -> np.ndarray:
        size = int(np.prod(shape, dtype=np.int64))
        fast = fast_ints(text, size)
        if fast is not None:
            return fast.reshape(shape)
        toks = text.split()
        if collapse and len(toks) == 1:
            toks_arr = self._to_int(toks, lineno, line)
            return np.broadcast_to(toks_arr[0], shape)
        if len(toks) != size:
            raise ParseError(
                f"expected {size} integers for shape {list(shape)}, found {len(toks)}", lineno, 1, line[:200]
            )
        return self._to_int(toks, lineno, line).reshape(shape)

    def _to_int(self, toks: list[str], lineno: int, line: str) -> np.ndarray:
        try:
            arr = np.array(toks, dtype=np.int64)
        except (ValueError, OverflowError):
            try:
                return np.array([int(t) for t in toks], dtype=object)
            except ValueError:
                bad = next(t for t in toks if not re.fullmatch(r"-?\d+", t))
                raise ParseError(
                    f"expected an integer, found {bad!r}", lineno, line.find(bad) + 1, line[:200]
                ) from None
        return arr

    # -------------------------------------------------------------- ops
    def _op(self, g: Graph, ln: Line) -> None:
        results: list[str] = []
        if ln.peek() is not None and ln.peek().kind == "value":  # type: ignore[union-attr]
            results.append(self._result_name(ln))
            while ln.accept(","):
                results.append(self._result_name(ln))
            ln.expect("=")
        tok = ln.next("an op name")
        kind = _KINDS.get(tok.text)
        if kind is None:
            valid = ", ".join(sorted(_KINDS))
            raise ln.error(f"unknown op '{tok.text}'; valid ops: {valid}", tok)
        operands: list[Value] = []
        if ln.peek() is not None and ln.peek().kind == "value":  # type: ignore[union-attr]
            operands.append(self._operand(g, ln))
            while ln.accept(","):
                operands.append(self._operand(g, ln))
        attrs = self._attrs(ln, kind) if ln.accept("{") else {}
        types: list[FixedType] = []
        if ln.accept(":"):
            types.append(self._type(ln))
            while ln.accept(","):
                types.append(self._type(ln))
        ln.done()
        if len(types) != len(results):
            raise ln.error(f"{len(results)} result(s) but {len(types)} type(s)", tok)
        self._build(g, ln, tok, kind, operands, attrs, types, results)

    def _build(
        self,
        g: Graph,
        ln: Line,
        tok: Tok,
        kind: OpKind,
        operands: list[Value],
        attrs: dict[str, Any],
        types: list[FixedType],
        results: list[str],
    ) -> None:
        """Add the op; any inconsistency (count, shapes, constants) points at the op name."""
        for name in results:
            if name in g._names:
                raise ln.error(f"value %{name} is defined twice", ln.toks[0])
        try:
            op = g.add(kind, operands, attrs, types)
            for v, name in zip(op.results, results, strict=True):
                g.rename(v, name)
            if kind.rule.check is not None:
                kind.rule.check(op)
        except HgqirError as e:
            raise ln.error(str(e).split("\n")[0], tok) from None
        except (ValueError, TypeError, IndexError, KeyError, ArithmeticError) as e:
            raise ln.error(f"invalid {kind.value} op: {e}", tok) from None

    def _result_name(self, ln: Line) -> str:
        tok = ln.peek()
        name = self._value_name(ln)
        if not _RESULT_NAME.match(name):
            raise ln.error(f"value name %{name} must start with a letter or '_' (e.g. %x0)", tok)
        return name

    def _value_name(self, ln: Line) -> str:
        tok = ln.next("a value name")
        if tok.kind != "value":
            raise ln.error(f"expected a value such as %x, found '{tok.text}'", tok)
        return tok.text[1:]

    def _operand(self, g: Graph, ln: Line) -> Value:
        tok = ln.peek()
        name = self._value_name(ln)
        if name not in g._names:
            raise ln.error(f"undefined value %{name} (operands must be defined on an earlier line)", tok)
        return g._names[name]

    def _attrs(self, ln: Line, kind: OpKind) -> dict[str, Any]:
        attrs: dict[str, Any] = {}
        schema = kind.rule.attrs
        while True:
            tok = ln.next("an attribute name")
            if tok.kind != "ident":
                raise ln.error(f"expected an attribute name, found '{tok.text}'", tok)
            if tok.text not in schema:
                valid = ", ".join(schema) or "none"
                raise ln.error(f"unknown attribute '{tok.text}' for {kind.value}; valid: {valid}", tok)
            if tok.text in attrs:
                raise ln.error(f"attribute '{tok.text}' given twice", tok)
            ln.expect("=")
            vtok = ln.peek()
            raw = self._attr_value(ln)
            try:
                attrs[tok.text] = schema[tok.text].normalize(tok.text, raw)
            except VerifyError as e:
                raise ln.error(str(e), vtok) from None
            if ln.accept("}"):
                return attrs
            ln.expect(",")

    def _attr_value(self, ln: Line) -> Any:
        tok = ln.next("an attribute value")
        if tok.kind == "int":
            return int(tok.text)
        if tok.kind == "str":
            return json.loads(tok.text)
        if tok.kind == "ident":
            return tok.text
        if tok.kind == "ref":
            if tok.text not in self.data:
                raise ln.error(f"undefined data table {tok.text}", tok)
            return self.data[tok.text]
        if tok.text == "[":
            items: list[Any] = []
            if ln.accept("]"):
                return items
            items.append(self._attr_value(ln))
            while ln.accept(","):
                items.append(self._attr_value(ln))
            ln.expect("]")
            return items
        if tok.text == "<":
            k = ln.int("k")
            ln.expect(",")
            i = ln.int("i")
            ln.expect(",")
            f = ln.int("f")
            ln.expect(">")
            return (k, i, f)
        raise ln.error(f"expected an attribute value, found '{tok.text}'", tok)

    def _type(self, ln: Line) -> FixedType:
        start = ln.expect("[")
        shape: list[int] = []
        if not ln.accept("]"):
            shape.append(ln.int("a dimension"))
            while ln.accept(","):
                shape.append(ln.int("a dimension"))
            ln.expect("]")
        if not dims_ok(shape):
            raise ln.error(f"bad shape {shape}: dimensions must be >= 0 with fewer than 2**40 elements", start)
        tok = ln.next("a type such as <1,3,4> or $t0")
        if tok.text == "<":
            k = ln.int("k")
            ln.expect(",")
            i = ln.int("i")
            ln.expect(",")
            f = ln.int("f")
            ln.expect(">")
            if k not in (0, 1):
                raise ln.error(f"k must be 0 or 1, got {k}", tok)
            if max(abs(i), abs(f)) > MAX_BITS:
                raise ln.error(f"i and f must lie within +-{MAX_BITS}, got i={i} f={f}", tok)
            return FixedType.uniform(shape, k, i, f)
        if tok.kind == "ref" and tok.text.startswith("$t"):
            t = self.types.get(tok.text)
            if t is None:
                raise ln.error(f"undefined type table {tok.text}", tok)
            if t.shape != tuple(shape):
                raise ln.error(f"type table {tok.text} has shape {list(t.shape)}, the value {shape}", tok)
            return t
        raise ln.error(f"expected a type such as <1,3,4> or $t0, found '{tok.text}'", tok)
