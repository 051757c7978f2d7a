"""Verilog backend: synthesizable RTL written directly from the IR, simulated with Verilator.

>>> prj = hgqir.emit(g, "verilog", "prj/", pipeline="auto")   # doctest: +SKIP
>>> prj.compile().predict(x)                                   # doctest: +SKIP

The graph is lowered to an element netlist (:mod:`.netlist`): every element an exact-width
integer wire, constant matrices as shared shift-add adder graphs (:mod:`.cmvm`), quantizers as
bit slices, rounding increments and comparators. The netlist is optionally pipelined
(:mod:`.pipeline`) and rendered from jinja2 templates, one module per layer. See
``docs/verilog.md``.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from hgqir.passes.netlist import hardware
from hgqir.passes.netlist.lower import LOWERINGS, check_supported
from hgqir.passes.netlist.netlist import Netlist

from hgqir.errors import HgqirError
from hgqir.ir import Graph

from ..testbench import testbench_inputs
from .project import RtlsimResult, VerilogProject, golden_lines, rtlsim, run_testbench
from .rtl import Design, design, safe
from .sim import SimulatorError, Verilator

__all__ = [
    "LOWERINGS",
    "Netlist",
    "RtlsimResult",
    "SimulatorError",
    "Verilator",
    "VerilogOptions",
    "VerilogProject",
    "check_supported",
    "emit",
    "rtlsim",
    "run_testbench",
]


@dataclass(frozen=True)
class VerilogOptions:
    top: str = "hgqir_top"
    pipeline: Any = None
    """None: combinational; ``"auto"``: stages of about AUTO_BUDGET adder levels; an int ``n``: at most
    ``n`` adder levels per stage."""
    tb_samples: int = 200
    seed: int = 0
    tb_inputs: Any = None

    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> VerilogOptions:
        valid = set(cls.__dataclass_fields__)
        unknown = sorted(set(options) - valid)
        if unknown:
            raise HgqirError(f"verilog backend: unknown option(s) {unknown}; valid: {', '.join(sorted(valid))}")
        opts = cls(**options)
        p = opts.pipeline
        if not (p is None or p == "auto" or (isinstance(p, int) and not isinstance(p, bool) and p >= 1)):
            raise HgqirError(f"verilog backend: pipeline must be None, 'auto' or an int >= 1, got {p!r}")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", opts.top):
            raise HgqirError(f"verilog backend: top {opts.top!r} is not a Verilog identifier")
        return opts


def emit(g: Graph, out_dir: Path, **options: Any) -> VerilogProject:
    """Write the Verilog project of ``g`` into ``out_dir`` and return it (not compiled yet).

    Raises ``UnsupportedOpError`` naming every op the backend cannot build, before writing anything.
    """

    opts = VerilogOptions.from_kwargs(options)
    g.verify()
    lw, latency = hardware(g, opts.pipeline)
    d = design(lw.net, lw.inputs, lw.outputs, safe(opts.top), latency)
    ports = {(p["tensor"], p["index"]): p["name"] for p in d.in_ports}
    for s in d.glue.stmts:
        if s["kind"] == "input":
            pi, j = s["port"]
            s["src"] = ports[(lw.inputs[pi].name, j)]
    xs = testbench_inputs(g, opts.tb_inputs, opts.tb_samples, opts.seed)
    ins, gold = golden_lines(lw.inputs, lw.outputs, g, xs)
    out = Path(out_dir)
    sources = _write(out, g, d, ins, gold, _version(), opts.pipeline)
    return VerilogProject(g, out, d, lw.net, lw.inputs, lw.outputs, sources)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hgqir")
    except PackageNotFoundError:
        return "unknown"


def _write(out: Path, g: Graph, d: Design, ins: list[str], gold: list[str], version: str, pipeline: Any) -> list[Path]:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("hgqir.backends.verilog", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    rtl = out / "rtl"
    if rtl.exists():
        shutil.rmtree(rtl)
    for sub in ("rtl", "tb", "tb_data"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    files = [rtl / f"{d.top}.v"]
    files[0].write_text(env.get_template("top.v.j2").render(d=d, graph=g.name, version=version))
    for m in d.modules:
        path = rtl / f"{m.name}.v"
        path.write_text(env.get_template("layer.v.j2").render(module=m, version=version))
        files.append(path)
    in_w = max(sum(p["w"] for p in d.in_ports), 1)
    out_w = max(sum(p["w"] for p in d.out_ports), 1)
    ctx = {"d": d, "version": version, "in_w": in_w, "out_w": out_w, "samples": len(ins), "graph": g.name}
    (out / "tb" / "tb.v").write_text(env.get_template("tb.v.j2").render(**ctx))
    (out / "tb" / "main.cpp").write_text(env.get_template("main.cpp.j2").render(**ctx))
    (out / "tb_data" / "inputs.hex").write_text("\n".join(ins) + "\n")
    (out / "tb_data" / "golden.hex").write_text("\n".join(gold) + "\n")
    (out / "files.f").write_text("\n".join(str(f.relative_to(out)) for f in files) + "\n")
    (out / "README.md").write_text(
        env.get_template("README.md.j2").render(files=[f.relative_to(out) for f in files], **ctx)
    )
    meta = {
        "top": d.top,
        "graph": g.name,
        "latency": d.latency,
        "pipeline": pipeline,
        "samples": len(ins),
        "inputs": d.in_ports,
        "outputs": [{k: v for k, v in p.items() if k != "a"} for p in d.out_ports],
        "primitives": d.counts,
    }
    (out / "project.json").write_text(json.dumps(meta, indent=1) + "\n")
    return [*files, out / "tb" / "tb.v", out / "tb" / "main.cpp"]
