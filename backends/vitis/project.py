"""The emitted Vitis HLS project: ``compile()`` builds the C simulation with g++, ``predict(x)``
runs a whole batch in one call, ``csim()`` runs the C testbench."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any

import numpy as np

from hgqir.errors import HgqirError
from hgqir.interp import prepare_inputs
from hgqir.ir import Graph

from .. import Project
from .build import CsimResult, Toolchain, run_csim, shared_library
from .lowering import Port
from .options import VitisOptions
from .testdata import from_words

SMALL_BATCH = 64
"""Below this many samples predict runs on one thread."""


class VitisProject(Project):
    """A standalone Vitis HLS project written to ``out_dir``.

    >>> prj = hgqir.emit(g, "vitis", "prj")          # doctest: +SKIP
    >>> prj.compile().predict(x) == g.run(x)          # doctest: +SKIP
    """

    def __init__(
        self,
        graph: Graph,
        out_dir: Path,
        options: VitisOptions,
        inputs: list[Port],
        outputs: list[Port],
        stack_bytes: int,
    ) -> None:
        super().__init__(graph, out_dir)
        self.options = options
        self.inputs = inputs
        self.outputs = outputs
        self.stack_bytes = stack_bytes
        self.library: Path | None = None
        self._entry: Any = None
        self._decode = [_decoder(p) for p in outputs]

    def toolchain(self) -> Toolchain:
        o = self.options
        return Toolchain.find(o.cxx, o.ap_types, o.opt_level, o.jobs, o.cflags)

    def compile(self) -> VitisProject:
        """Build the firmware and the batch entry point into a shared library with g++."""
        self.library = shared_library(self.out_dir, self.toolchain())
        lib = ctypes.CDLL(str(self.library))
        entry = getattr(lib, f"{self.options.top}_batch")
        entry.restype = ctypes.c_int
        entry.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long, ctypes.c_int, ctypes.c_long]
        self._entry = entry
        return self

    def predict(self, x: Any, *more: Any) -> Any:
        """Run the compiled C simulation on a batch; same layout and values as ``g.run(x)``."""
        if self._entry is None:
            raise HgqirError("the vitis project is not compiled yet; call compile() first")
        arrays, batched = prepare_inputs(self.graph, (x, *more), flatten=True)
        n = len(arrays[0]) if arrays else 1
        bufs = [np.zeros((n, p.slots), dtype=np.int64) for p in self.outputs]
        ins = (ctypes.c_void_p * max(1, len(arrays)))(*[a.ctypes.data for a in arrays])
        outs = (ctypes.c_void_p * max(1, len(bufs)))(*[b.ctypes.data for b in bufs])
        threads = 1 if n < SMALL_BATCH else (self.options.threads or os.cpu_count() or 1)
        status = self._entry(ins, outs, n, threads, self.stack_bytes)
        if status != 0:
            raise HgqirError(f"the C simulation could not start its threads (status {status})")
        results = []
        for buf, decode, p in zip(bufs, self._decode, self.outputs, strict=True):
            y = decode(buf).reshape(n, *p.value.shape)
            results.append(y if batched else y[0])
        return results[0] if len(results) == 1 else results

    def csim(self) -> CsimResult:
        """Build and run the C testbench on the golden data in ``tb_data/``."""
        return run_csim(self.out_dir, self.toolchain())

    def __repr__(self) -> str:
        state = "compiled" if self._entry is not None else "written"
        return f"VitisProject({self.graph.name!r}, {str(self.out_dir)!r}, {state})"


def _decoder(p: Port) -> Any:
    """Mantissa words -> float64 values, rounding as the interpreter's float conversion does."""
    f = -np.asarray(p.value.type.f).reshape(-1)
    live = ~np.asarray(p.value.type.zero_mask).reshape(-1)
    exp = np.where(live, f, 0)

    def decode(buf: np.ndarray) -> np.ndarray:
        m = from_words(buf, p.words)
        if m.dtype != object:
            return np.ldexp(m.astype(np.float64), exp) + 0.0
        vals = np.array([float(v) for v in m.reshape(-1)], dtype=np.float64).reshape(m.shape)
        return np.ldexp(vals, exp) + 0.0

    return decode
