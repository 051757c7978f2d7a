"""Backends: turn a graph into a project that compiles and predicts bit-exactly.

``hgqir.emit(g, "vitis", out_dir, ...)`` and ``hgqir.emit(g, "hls4ml", out_dir, ...)`` both
return a :class:`Project`: ``compile()``, then ``predict(x)`` in the graph's own layout.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hgqir.errors import HgqirError
from hgqir.ir import Graph

BACKENDS = {
    "vitis": "hgqir.backends.vitis",
    "hls4ml": "hgqir.backends.hls4ml",
    "verilog": "hgqir.backends.verilog",
}


class Project:
    """What every backend returns: a written project that can be compiled and run."""

    def __init__(self, graph: Graph, out_dir: Path) -> None:
        self.graph = graph
        self.out_dir = Path(out_dir)

    def compile(self) -> Project:
        raise NotImplementedError

    def predict(self, x: Any) -> Any:
        raise NotImplementedError


def emit(g: Graph, backend: str, out_dir: str | os.PathLike[str], /, **options: Any) -> Project:
    """Write the project for ``backend`` into ``out_dir``; each backend module has ``emit``."""
    import importlib

    if backend not in BACKENDS:
        raise HgqirError(f"unknown backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
    module = importlib.import_module(BACKENDS[backend])
    return module.emit(g, Path(out_dir), **options)
