"""Pass base class, registry, pipeline spec parser and the pass manager."""

from __future__ import annotations

import dataclasses
import enum
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, get_type_hints

from hgqir.errors import PipelineError, VerifyError
from hgqir.ir import Graph

from ._consts import atomic

PASSES: dict[str, type[Pass]] = {}
"""Every registered pass class by its kebab-case name."""


@dataclass(frozen=True)
class Pass:
    """Base of every pass: a frozen dataclass whose fields are its options."""

    name: ClassVar[str] = ""
    lossy: ClassVar[bool] = False
    """True when the pass may change the graph's results (the PassManager reports it)."""
    explicit: tuple[str, ...] = field(default=(), compare=False, repr=False, kw_only=True)
    """Options given explicitly in a spec, in order (so that the spec prints back as written)."""

    def apply(self, g: Graph) -> Any:
        raise NotImplementedError

    def __call__(self, g: Graph) -> Any:
        return self.apply(g)

    @classmethod
    def options(cls) -> list[dataclasses.Field[Any]]:
        return [f for f in dataclasses.fields(cls) if f.name != "explicit"]

    def __str__(self) -> str:
        opts = {f.name: f for f in self.options()}
        names = list(self.explicit) + [
            n for n, f in opts.items() if n not in self.explicit and getattr(self, n) != f.default
        ]
        if not names:
            return self.name
        body = ",".join(f"{_kebab(n)}={_format(getattr(self, n))}" for n in names)
        return f"{self.name}{{{body}}}"


def register(cls: type[Pass]) -> type[Pass]:
    """Class decorator: make a pass available by name in pipeline specs."""
    if not re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", cls.name or ""):
        raise ValueError(f"pass {cls.__name__} needs a kebab-case `name`, got {cls.name!r}")
    PASSES[cls.name] = cls
    return cls


def _kebab(name: str) -> str:
    return name.replace("_", "-")


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.name)
    return str(value)


def _convert(cls: type[Pass], key: str, raw: str) -> Any:
    hints = get_type_hints(cls)
    fields = {f.name: f for f in cls.options()}
    attr = key.replace("-", "_")
    if attr not in fields:
        valid = ", ".join(_kebab(f) for f in fields) or "none"
        raise PipelineError(f"pass '{cls.name}' has no option '{key}'; valid options: {valid}")
    typ = hints[attr]
    try:
        if typ is bool:
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError("expected true or false")
            return raw.lower() in ("true", "1")
        if isinstance(typ, type) and issubclass(typ, enum.Enum):
            return typ[raw.upper()]
        if typ in (int, float, str):
            return typ(raw)
    except (ValueError, KeyError) as e:
        raise PipelineError(f"pass '{cls.name}': bad value {raw!r} for option '{key}': {e}") from None
    raise PipelineError(f"pass '{cls.name}': option '{key}' has unsupported type {typ}")


def parse_pass(text: str) -> Pass:
    """One pass from ``name`` or ``name{key=value,...}``."""
    m = re.fullmatch(r"\s*([A-Za-z0-9_-]+)\s*(?:\{([^{}]*)\})?\s*", text)
    if not m:
        raise PipelineError(f"cannot parse pass spec {text!r}; expected name or name{{key=value,...}}")
    name, body = m.group(1), m.group(2)
    cls = PASSES.get(name)
    if cls is None:
        raise PipelineError(f"unknown pass '{name}'; valid passes: {', '.join(sorted(PASSES))}")
    kwargs: dict[str, Any] = {}
    order: list[str] = []
    for item in (body or "").split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise PipelineError(f"pass '{name}': option {item.strip()!r} needs a value (key=value)")
        key, raw = (s.strip() for s in item.split("=", 1))
        attr = key.replace("-", "_")
        if attr in kwargs:
            raise PipelineError(f"pass '{name}': option '{key}' given twice")
        kwargs[attr] = _convert(cls, key, raw)
        order.append(attr)
    return cls(**kwargs, explicit=tuple(order))


def split_spec(spec: str) -> list[str]:
    """Split a pipeline string at top-level commas."""
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in spec:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                raise PipelineError(f"unbalanced '}}' in pipeline {spec!r}")
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise PipelineError(f"unbalanced '{{' in pipeline {spec!r}")
    parts.append("".join(cur))
    if any(not p.strip() for p in parts) and spec.strip():
        raise PipelineError(f"empty pass name in pipeline {spec!r}")
    return [p for p in parts if p.strip()]


class PassManager:
    """Runs passes in order; names the failing pass and those before it; rolls back on failure.

    >>> pm = PassManager.parse("canonicalize,dce{keep-io=true}")
    >>> str(pm)
    'canonicalize,dce{keep-io=true}'
    """

    def __init__(
        self,
        passes: Sequence[Pass] = (),
        verify_each: bool = True,
        dump_dir: str | os.PathLike[str] | None = None,
        progress: bool = False,
    ) -> None:
        self.passes = list(passes)
        self.verify_each = verify_each
        self.dump_dir = Path(dump_dir) if dump_dir is not None else None
        self.progress = progress
        self.results: dict[str, Any] = {}
        """What each pass returned (analyses' data), by pass name."""

    @classmethod
    def parse(cls, spec: str, **kwargs: Any) -> PassManager:
        return cls([parse_pass(p) for p in split_spec(spec)], **kwargs)

    def __str__(self) -> str:
        return ",".join(str(p) for p in self.passes)

    @property
    def lossy(self) -> bool:
        return any(p.lossy for p in self.passes)

    def run(self, g: Graph) -> Graph:
        if self.dump_dir is not None:
            self.dump_dir.mkdir(parents=True, exist_ok=True)
            self._dump(g, 0, "input")
        items: Any = self.passes
        if self.progress:
            from tqdm.auto import tqdm

            items = tqdm(self.passes, desc="passes", unit="pass")
        for n, p in enumerate(items):
            before = [str(q) for q in self.passes[:n]]
            try:
                with atomic(g, None):  # the one rollback policy: one snapshot per pass
                    self.results[p.name] = p.apply(g)
                    if self.verify_each:
                        g.verify()
            except Exception as e:  # rolled back: name the pass and its predecessors
                ran = ", ".join(before) if before else "none"
                kind = "left an invalid graph" if isinstance(e, VerifyError) else "failed"
                err = PipelineError(f"pass '{p}' {kind}: {e}\n  passes run before it: {ran}")
                err.pass_name = p.name  # type: ignore[attr-defined]
                raise err from e
            if self.dump_dir is not None:
                self._dump(g, n + 1, p.name)
        return g

    def _dump(self, g: Graph, n: int, name: str) -> None:
        from hgqir.text import save

        assert self.dump_dir is not None
        save(g, self.dump_dir / f"{n:02d}-{name}.hgq")
