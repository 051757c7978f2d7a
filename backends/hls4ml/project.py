"""The emitted hls4ml project: ``compile()`` and ``predict(x)`` in the graph's own layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hgqir.errors import HgqirError
from hgqir.interp import prepare_inputs
from hgqir.ir import Graph

from .. import Project
from .options import Hls4mlOptions


class Hls4mlProject(Project):
    """An hls4ml project written to ``out_dir``; ``hls_model`` is hls4ml's ``ModelGraph``.

    Use ``hls_model`` for hls4ml's own tools, e.g. ``prj.hls_model.build(csim=False)`` runs
    Vitis HLS synthesis.
    """

    def __init__(self, graph: Graph, out_dir: Path, hls_model: Any, options: Hls4mlOptions) -> None:
        super().__init__(graph, out_dir)
        self.hls_model = hls_model
        self.options = options
        self.compiled = False

    def compile(self) -> Hls4mlProject:
        """Write the project and build its C++ into a library (hls4ml calls g++)."""
        self.hls_model.compile()
        self.compiled = True
        return self

    def predict(self, x: Any, *more: Any) -> Any:
        """Run the compiled C++ on ``x`` (one array per graph input); same layout as ``g.run``."""
        if not self.compiled:
            raise HgqirError("the hls4ml project is not compiled yet; call compile() first")
        arrays, batched = prepare_inputs(self.graph, (x, *more), flatten=True)
        n = len(arrays[0])
        raw = self.hls_model.predict(arrays[0] if len(arrays) == 1 else arrays)
        outs = self.graph.outputs
        raw = [raw] if len(outs) == 1 else list(raw)
        results = []
        for y, v in zip(raw, outs, strict=True):
            y = np.asarray(y, dtype=np.float64).reshape(n, *v.shape)
            results.append(y if batched else y[0])
        return results[0] if len(results) == 1 else results

    def __repr__(self) -> str:
        state = "compiled" if self.compiled else "written"
        return f"Hls4mlProject({self.graph.name!r}, {str(self.out_dir)!r}, {state})"
