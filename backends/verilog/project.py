"""The emitted Verilog project: files on disk, ``compile()`` (Verilator) and ``predict(x)``."""

from __future__ import annotations

import json
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hgqir.passes.netlist.lower import Port
from hgqir.passes.netlist.netlist import Netlist

from hgqir.errors import HgqirError
from hgqir.interp import prepare_inputs, run_exact
from hgqir.ir import Graph

from .. import Project
from .rtl import Design
from .sim import build, simulate
from .vectors import input_mantissas, pack, to_values, unpack


@dataclass
class RtlsimResult:
    passed: bool
    samples: int
    mismatches: int
    output: str


class VerilogProject(Project):
    """A synthesizable Verilog project written to ``out_dir``.

    >>> prj = hgqir.emit(g, "verilog", "prj", pipeline="auto")   # doctest: +SKIP
    >>> prj.latency, prj.adders                                   # doctest: +SKIP
    >>> np.array_equal(prj.compile().predict(x), g.run(x))        # doctest: +SKIP
    True
    """

    def __init__(
        self,
        graph: Graph,
        out_dir: Path,
        design: Design,
        net: Netlist,
        inputs: list[Port],
        outputs: list[Port],
        sources: list[Path],
    ) -> None:
        super().__init__(graph, out_dir)
        self.design = design
        self.netlist = net
        self.inputs = inputs
        self.outputs = outputs
        self.sources = sources
        self.binary: Path | None = None
        self.build_seconds: float | None = None

    @property
    def latency(self) -> int:
        """Clock cycles from a sample in to its result out (0: combinational)."""
        return self.design.latency

    @property
    def top(self) -> str:
        return self.design.top

    @property
    def adders(self) -> int:
        """Carry chains in the design: adders, subtractors, negations and rounding increments."""
        c = self.design.counts
        return c.get("add", 0) + c.get("neg", 0) + self._rounding_adders()

    def _rounding_adders(self) -> int:
        return sum(
            1
            for m in [self.design.glue, *self.design.modules]
            for s in m.stmts
            if s["kind"] == "shr" and s["mode"] != "TRN"
        )

    def compile(self) -> VerilogProject:
        """Build the Verilator simulation of the testbench (reused while the sources are unchanged)."""
        start = time.perf_counter()
        self.binary = ensure_built(self.out_dir, self.sources)
        self.build_seconds = time.perf_counter() - start
        return self

    def predict(self, x: Any, *more: Any) -> Any:
        """Run samples through the RTL (one per clock); same layout and values as ``g.run(x)``."""
        if self.binary is None:
            raise HgqirError("the verilog project is not compiled yet; call compile() first")
        arrays, batched = prepare_inputs(self.graph, (x, *more), flatten=True)
        n = len(arrays[0]) if arrays else 1
        mant = [input_mantissas(p, a) for p, a in zip(self.inputs, arrays, strict=True)]
        with tempfile.TemporaryDirectory(dir=self.out_dir) as tmp:
            fin, fout = Path(tmp) / "in.hex", Path(tmp) / "out.hex"
            lines = pack(self.inputs, mant) if self.inputs else ["0"] * n
            fin.write_text("\n".join(lines) + "\n")
            simulate(self.out_dir, self.binary, [f"+in={fin}", f"+out={fout}", f"+n={n}"])
            got = [ln for ln in fout.read_text().split("\n") if ln.strip()]
        if len(got) != n:
            raise HgqirError(f"the RTL simulation returned {len(got)} samples for {n} inputs")
        results = []
        for p, m in zip(self.outputs, unpack(self.outputs, got), strict=True):
            y = to_values(p, m).reshape(n, *p.value.shape)
            results.append(y if batched else y[0])
        return results[0] if len(results) == 1 else results

    def synth(self, family: str = "xcup", dsp: bool = True, progress: bool = True, flatten: bool = False) -> Any:
        """Synthesize with Yosys (``synth_xilinx``, classic ``abc`` LUT mapping): a SynthReport with
        LUT, FF, CARRY, DSP, SRL and BRAM counts, whole and per layer (``flatten=True``: one module,
        whole design only); cached by design digest."""
        from .synth import synth

        return synth(self.out_dir, family=family, dsp=dsp, progress=progress, flatten=flatten)

    def rtlsim(self) -> RtlsimResult:
        """Build if needed and run the self-checking testbench on the golden vectors in ``tb_data/``."""
        if self.binary is None:
            self.compile()
        assert self.binary is not None
        return run_testbench(self.out_dir, self.binary)

    def __repr__(self) -> str:
        state = "compiled" if self.binary is not None else "written"
        return f"VerilogProject({self.graph.name!r}, {str(self.out_dir)!r}, latency={self.latency}, {state})"


def rtlsim(folder: str | Path) -> RtlsimResult:
    """Build (when the sources changed) and run the testbench of a project folder on disk."""
    folder = Path(folder)
    listing = folder / "files.f"
    if not listing.exists() or not (folder / "project.json").exists():
        raise HgqirError(f"{folder} is not a Verilog project written by hgqir (no files.f / project.json)")
    sources = [folder / line.strip() for line in listing.read_text().splitlines() if line.strip()]
    sources += [folder / "tb" / "tb.v", folder / "tb" / "main.cpp"]
    missing = [str(s) for s in sources if not s.exists()]
    if missing:
        raise HgqirError(f"missing project files: {', '.join(missing)}")
    return run_testbench(folder, ensure_built(folder, sources))


def ensure_built(folder: Path, sources: list[Path]) -> Path:
    """The simulator binary, rebuilt only when the sources' digest changed."""
    binary = folder / "obj_dir" / "Vtb"
    stamp = folder / "obj_dir" / "hgqir.stamp"
    digest = _digest(sources)
    if binary.exists() and stamp.exists() and stamp.read_text() == digest:
        return binary
    binary, _ = build(folder, sources)
    stamp.write_text(digest)
    return binary


def run_testbench(folder: Path, binary: Path) -> RtlsimResult:
    meta = json.loads((folder / "project.json").read_text())
    out = simulate(
        folder,
        binary,
        [
            "+in=tb_data/inputs.hex",
            "+out=tb_data/rtl_outputs.hex",
            "+golden=tb_data/golden.hex",
            f"+n={meta['samples']}",
        ],
    )
    m = re.search(r"RTLSIM (PASS|FAIL) samples=(\d+) mismatches=(\d+)", out)
    if m is None:
        raise HgqirError(f"the testbench printed no result:\n{out[-2000:]}")
    return RtlsimResult(m.group(1) == "PASS", int(m.group(2)), int(m.group(3)), out)


def _digest(paths: list[Path]) -> str:
    import hashlib

    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


def golden_lines(
    inputs: list[Port], outputs: list[Port], graph: Graph, xs: list[np.ndarray]
) -> tuple[list[str], list[str]]:
    """Input and expected-output hex lines from the interpreter (the oracle)."""
    mant = [input_mantissas(p, x.reshape(len(x), -1)) for p, x in zip(inputs, xs, strict=True)]
    exact = run_exact(graph, xs)
    outs = []
    for p in outputs:
        e = exact[p.value.name]
        _, _, f = p.kif
        flat = np.asarray(e.m).reshape(len(e.m), -1)
        m = np.zeros(flat.shape, dtype=object)
        for j, w in enumerate(p.widths):
            if w > 0:
                sh = int(f[j]) - e.scale
                m[:, j] = [int(v) << sh if sh >= 0 else int(v) >> -sh for v in flat[:, j]]
        outs.append(m)
    n = len(xs[0]) if xs else 1
    ins = pack(inputs, mant) if inputs else ["0"] * n
    return ins, pack(outputs, outs)
