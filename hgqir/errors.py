"""Error classes. Every error hgqir raises on purpose derives from :class:`HgqirError`."""

from __future__ import annotations


class HgqirError(Exception):
    """Base class of every hgqir error."""


class VerifyError(HgqirError):
    """A graph or a value object breaks an invariant; the message names the op and shows its IR line."""


class ParseError(HgqirError):
    """Malformed ``.hgq`` text or pipeline spec; carries ``line`` and ``column`` (1-based)."""

    def __init__(self, message: str, line: int = 0, column: int = 0, source_line: str = "") -> None:
        self.line = line
        self.column = column
        self.source_line = source_line
        self.reason = message
        where = f"line {line}, column {column}: " if line else ""
        text = f"{where}{message}"
        if source_line:
            caret = " " * max(column - 1, 0) + "^"
            text += f"\n  {source_line}\n  {caret}"
        super().__init__(text)


class PipelineError(HgqirError):
    """Unknown pass or option in a pipeline spec, or a pass that failed while running."""


class UnsupportedOpError(HgqirError):
    """A frontend or backend met layers or ops it cannot handle exactly; lists every one of them."""

    def __init__(self, message: str, items: list[str] | None = None) -> None:
        self.items = list(items or [])
        text = message
        if self.items:
            text += "\n" + "\n".join(f"  - {item}" for item in self.items)
        super().__init__(text)
