"""Render the project's files from the jinja2 templates (StrictUndefined: a missing field fails)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from .lowering import Layer, Lowering, Param

TEMPLATES = Path(__file__).parent / "templates"
PART_WEIGHT = 60_000
"""Rough size of one compiled file of layer functions (g++ runs one process per file)."""
MAX_PARTS = 8
MANIFEST = "hgqir_vitis.json"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.globals["zip"] = zip
    return env


@dataclass
class Written:
    """What ``write_project`` put where (paths relative to the project folder)."""

    firmware: list[str]
    bridge: str
    testbench: str
    manifest: str


def split_layers(layers: list[Layer]) -> list[list[Layer]]:
    """Consecutive groups of layers of about ``PART_WEIGHT`` each (at most ``MAX_PARTS``)."""
    total = sum(layer.weight for layer in layers)
    parts = min(MAX_PARTS, max(1, -(-total // PART_WEIGHT)), max(1, len(layers)))
    target = total / parts
    groups: list[list[Layer]] = [[]]
    if not layers:
        return groups
    acc = 0.0
    for layer in layers:
        if groups[-1] and acc >= target * len(groups) and len(groups) < parts:
            groups.append([])
        groups[-1].append(layer)
        acc += layer.weight
    return groups


def context(lw: Lowering, n_samples: int) -> dict[str, Any]:
    """What every template may use (one dict; StrictUndefined catches anything missing)."""
    o = lw.options
    ports = [a for p in lw.inputs + lw.outputs for a in p.arrays]
    port_names = {a.name for a in ports}
    locals_ = [Param(a.name, a.type, a.size, False) for a in lw.storage.arrays if a.name not in port_names]
    return {
        "top": o.top,
        "guard": o.top.upper(),
        "graph": lw.g.name,
        "inputs": lw.inputs,
        "outputs": lw.outputs,
        "ports": ports,
        "locals": locals_,
        "layers": lw.layers,
        "ii": max([1] + [la.reuse for la in lw.layers]),
        "steps": {k: int(getattr(o, k)) for k in ("csim", "csynth", "cosim", "export")},
        "part": o.part,
        "clock_ns": o.clock_ns,
        "n_samples": n_samples,
        "reuse": [f"{layer.fn}: {layer.reuse}" for layer in lw.layers if layer.reuse > 1],
        "n_layers": len(lw.layers),
        "n_arrays": len(lw.storage.arrays),
        "n_terms": sum(len(getattr(la.body, "val", [])) for la in lw.layers),
    }


def write_firmware(env: jinja2.Environment, lw: Lowering, out: Path, ctx: dict[str, Any]) -> list[str]:
    """Layer functions in files of balanced size; the last group shares the top function's file
    (one g++ process less). Returns the file names in ``firmware/``."""
    top = lw.options.top
    groups = split_layers(lw.layers)
    firmware = []
    for n, group in enumerate(groups):
        last = n == len(groups) - 1
        name = f"{top}.cpp" if last else f"{top}_layers_{n}.cpp"
        part = {"layers": group, "part": n + 1, "parts": len(groups)}
        if last:
            part = {"own": group, "part": n + 1, "parts": len(groups)}
        _render(env, "top.cpp.j2" if last else "layers.cpp.j2", out / "firmware" / name, {**ctx, **part})
        firmware.append(name)
    return firmware


def write_project(lw: Lowering, out: Path, n_samples: int) -> Written:
    """Render every file of the project into ``out`` and write its manifest."""
    env = environment()
    ctx = context(lw, n_samples)
    top = lw.options.top
    for sub in ("firmware", "sim", "tb"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    firmware = write_firmware(env, lw, out, ctx)
    files = {
        "hgq_fixed.h.j2": out / "firmware" / "hgq_fixed.h",
        "top.h.j2": out / "firmware" / f"{top}.h",
        "layers.h.j2": out / "firmware" / f"{top}_layers.h",
        "io.h.j2": out / "sim" / f"{top}_io.h",
        "bridge.cpp.j2": out / "sim" / f"{top}_bridge.cpp",
        "testbench.cpp.j2": out / "tb" / f"{top}_test.cpp",
        "build_prj.tcl.j2": out / "build_prj.tcl",
        "README.md.j2": out / "README.md",
    }
    for template, path in files.items():
        _render(env, template, path, {**ctx, "firmware": firmware})
    written = Written(firmware, f"sim/{top}_bridge.cpp", f"tb/{top}_test.cpp", MANIFEST)
    manifest = {
        "top": top,
        "firmware": [f"firmware/{f}" for f in firmware],
        "bridge": written.bridge,
        "testbench": written.testbench,
        "include": ["firmware", "sim"],
        "tb_data": "tb_data",
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return written


def _render(env: jinja2.Environment, template: str, path: Path, ctx: dict[str, Any]) -> None:
    path.write_text(env.get_template(template).render(**ctx))
