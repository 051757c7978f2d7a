"""Standalone Vitis HLS backend: a complete HLS project from jinja2 templates, simulated with g++.

>>> prj = hgqir.emit(g, "vitis", "prj/", top="myproject", reuse=1)   # doctest: +SKIP
>>> y = prj.compile().predict(x)                                      # doctest: +SKIP
>>> prj.csim().passed                                                 # doctest: +SKIP
True

All C++ text lives in ``templates/*.j2``; the Python modules only compute what the templates
render: arrays, integer weight tables, index tables. See ``docs/vitis.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hgqir.ir import Graph
from hgqir.ops.depthwise import expand as expand_depthwise

from ..testbench import testbench_inputs
from . import lower_basic, lower_linear, lower_pool, lower_table  # noqa: F401  (register lowerings)
from .build import CsimResult, Toolchain, run_csim
from .lowering import LOWERINGS, Lowering
from .options import VitisOptions
from .project import VitisProject
from .render import write_project
from .testdata import golden, write

__all__ = ["CsimResult", "LOWERINGS", "Toolchain", "VitisOptions", "VitisProject", "emit", "run_csim"]

STACK_MIN = 64 << 20
"""Smallest stack given to each predict thread (bytes); large designs get more."""


def emit(g: Graph, out_dir: Path, **options: Any) -> VitisProject:
    """Write the Vitis HLS project of ``g`` into ``out_dir`` and return it (not compiled yet).

    Raises ``UnsupportedOpError`` (naming every offending op) before writing anything when the
    graph holds an op the backend cannot emit exactly.
    """
    opts = VitisOptions.from_kwargs(options)
    g.verify()
    lw = Lowering(expand_depthwise(g), opts).run()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    inputs = testbench_inputs(g, opts.tb_inputs, opts.tb_samples, opts.seed)
    n = write(out / "tb_data", inputs, golden(g, inputs, lw.outputs))
    write_project(lw, out, n)
    return VitisProject(g, out, opts, lw.inputs, lw.outputs, _stack_bytes(lw, opts))


def _stack_bytes(lw: Lowering, opts: VitisOptions) -> int:
    if opts.stack_mb:
        return opts.stack_mb << 20
    elements = sum(a.size for a in lw.storage.arrays)
    elements += sum(g.size for layer in lw.layers for g in layer.gathers)
    return max(STACK_MIN, 64 * elements)
