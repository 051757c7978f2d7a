"""Tokens of the ``.hgq`` text form: one op line at a time, and long integer rows in bulk."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np

from .errors import ParseError

_TOKEN = re.compile(
    r"""(?P<ws>\s+)
    |(?P<value>%[A-Za-z0-9_.]+)
    |(?P<ref>\$[td]\d+)
    |(?P<int>-?\d+)
    |(?P<str>"(?:[^"\\]|\\.)*")
    |(?P<ident>[A-Za-z_][A-Za-z0-9_-]*)
    |(?P<punct>[=,:{}\[\]<>])""",
    re.VERBOSE,
)
_INT_CHARS = re.compile(r"[-0-9 ]*")
_INT64 = np.iinfo(np.int64)


def fast_ints(text: str, size: int) -> np.ndarray | None:
    """A long row of int64 numbers parsed in C; None to take the careful path (which reports errors).

    ``np.fromstring`` is lenient in a few spots ("- 5" reads as -5, a trailing "-" as 0,
    huge numbers saturate), so such text never gets here.
    """
    if size < 256 or not _INT_CHARS.fullmatch(text) or "- " in text or text.rstrip().endswith("-"):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            arr = np.fromstring(text, dtype=np.int64, sep=" ")
        except ValueError:
            return None
    if arr.size != size or arr.max() == _INT64.max or arr.min() == _INT64.min:
        return None
    return arr


def dims_ok(shape: list[int] | tuple[int, ...]) -> bool:
    """Non-negative dimensions, fewer than 2**40 elements in all (no int64 overflow later)."""
    return all(d >= 0 for d in shape) and int(np.prod([float(d) for d in shape])) < 2**40


@dataclass
class Tok:
    """One token: its regex group name, its text and its 1-based column."""

    kind: str
    text: str
    col: int


class Line:
    """Tokens of one line with a cursor; every error points at a column of that line."""

    def __init__(self, text: str, lineno: int) -> None:
        self.text, self.lineno = text, lineno
        self.toks: list[Tok] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                raise ParseError(f"unexpected character {text[pos]!r}", lineno, pos + 1, text)
            if m.lastgroup != "ws":
                self.toks.append(Tok(m.lastgroup or "", m.group(), pos + 1))
            pos = m.end()
        self.pos = 0

    def error(self, message: str, tok: Tok | None = None) -> ParseError:
        nxt = self.peek()
        col = tok.col if tok else (nxt.col if nxt else len(self.text) + 1)
        return ParseError(message, self.lineno, col, self.text)

    def peek(self) -> Tok | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def next(self, what: str) -> Tok:
        tok = self.peek()
        if tok is None:
            raise ParseError(f"expected {what}, found end of line", self.lineno, len(self.text) + 1, self.text)
        self.pos += 1
        return tok

    def expect(self, text: str) -> Tok:
        tok = self.next(f"'{text}'")
        if tok.text != text:
            raise self.error(f"expected '{text}', found '{tok.text}'", tok)
        return tok

    def accept(self, text: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.text == text:
            self.pos += 1
            return True
        return False

    def int(self, what: str = "an integer") -> int:
        tok = self.next(what)
        if tok.kind != "int":
            raise self.error(f"expected {what}, found '{tok.text}'", tok)
        return int(tok.text)

    def done(self) -> None:
        tok = self.peek()
        if tok is not None:
            raise self.error(f"unexpected '{tok.text}' at end of op", tok)
