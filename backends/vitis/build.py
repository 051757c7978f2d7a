"""Building the C simulation with g++: one process per source file, objects cached by content.

``shared_library`` links the firmware with the batch entry point (``Project.predict``);
``run_csim`` builds and runs the C testbench (``hgqir csim``). Both read the project's manifest,
so they work on any emitted project folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from hgqir.errors import HgqirError
from hgqir.toolchain import ToolchainError, ap_types_include, find_cxx

from .render import MANIFEST

STD = "-std=c++14"


@dataclass(frozen=True)
class Toolchain:
    cxx: str
    include: Path
    opt_level: str = "-O1"
    jobs: int = 0
    cflags: tuple[str, ...] = ()

    @classmethod
    def find(
        cls,
        cxx: str | None = None,
        ap_types: str | None = None,
        opt_level: str = "-O1",
        jobs: int | None = None,
        cflags: tuple[str, ...] = (),
    ) -> Toolchain:
        """g++ and the ap_types headers, or a ToolchainError saying what to install."""
        return cls(find_cxx(cxx), ap_types_include(ap_types), opt_level, jobs or os.cpu_count() or 1, tuple(cflags))


def load_manifest(prj: Path) -> dict[str, object]:
    path = Path(prj) / MANIFEST
    if not path.is_file():
        raise HgqirError(f"{prj} is not a vitis project written by hgqir (no {MANIFEST}); run `hgqir emit` first")
    return json.loads(path.read_text())


ISOLATE = ["-fvisibility=hidden", "-fvisibility-inlines-hidden", "-fno-gnu-unique"]
"""Keep every symbol of a design private to its library: libraries of several designs loaded into
one process must not share functions or static tables that happen to have the same names."""


def _includes(manifest: dict[str, object]) -> list[str]:
    inc = manifest["include"]
    assert isinstance(inc, list)
    return [str(p) for p in inc]


def _flags(prj: Path, tc: Toolchain, manifest: dict[str, object]) -> list[str]:
    flags = [STD, tc.opt_level, "-fPIC", "-pthread", *ISOLATE, *tc.cflags, "-I", str(tc.include)]
    for inc in _includes(manifest):
        flags += ["-I", str(prj / inc)]
    return flags


def compile_objects(prj: Path, sources: list[str], tc: Toolchain, manifest: dict[str, object]) -> list[Path]:
    """Compile ``sources`` (relative to ``prj``) in parallel; unchanged sources reuse their object."""
    build = prj / "build"
    build.mkdir(exist_ok=True)
    flags = _flags(prj, tc, manifest)
    headers = sorted(p.read_bytes() for sub in _includes(manifest) for p in (prj / sub).glob("*.h"))
    jobs = []
    for src in sources:
        digest = hashlib.sha256((prj / src).read_bytes() + b"".join(headers) + " ".join([tc.cxx, *flags]).encode())
        obj = build / f"{Path(src).stem}-{digest.hexdigest()[:16]}.o"
        jobs.append((src, obj))
    todo = [(src, obj) for src, obj in jobs if not obj.is_file()]
    with ThreadPoolExecutor(max_workers=max(1, min(tc.jobs, len(todo) or 1))) as pool:
        for error in pool.map(lambda job: _compile_one(prj, job[0], job[1], tc, flags), todo):
            if error:
                raise ToolchainError(error)
    return [obj for _, obj in jobs]


def _compile_one(prj: Path, src: str, obj: Path, tc: Toolchain, flags: list[str]) -> str:
    tmp = obj.with_suffix(".tmp.o")
    cmd = [tc.cxx, *flags, "-c", str(prj / src), "-o", str(tmp)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.splitlines()[-30:])
        return f"g++ failed on {src} ({' '.join(cmd)}):\n{tail}"
    tmp.replace(obj)
    return ""


def link(objects: list[Path], output: Path, tc: Toolchain, shared: bool) -> Path:
    cmd = [tc.cxx, *(["-shared"] if shared else []), "-pthread", *map(str, objects), "-o", str(output)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ToolchainError(f"linking {output.name} failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
    return output


def shared_library(prj: Path, tc: Toolchain) -> Path:
    """The firmware and the batch entry point as one shared library (named by content)."""
    manifest = load_manifest(prj)
    sources = [*manifest["firmware"], manifest["bridge"]]  # type: ignore[misc]
    objects = compile_objects(prj, sources, tc, manifest)
    key = hashlib.sha256("".join(o.name for o in objects).encode()).hexdigest()[:16]
    lib = prj / "build" / f"lib{manifest['top']}-{key}.so"
    return lib if lib.is_file() else link(objects, lib, tc, shared=True)


@dataclass
class CsimResult:
    """Outcome of the C testbench."""

    passed: bool
    samples: int
    mismatched_samples: int
    mismatched_elements: int
    output: str

    def summary(self) -> str:
        state = "PASS" if self.passed else "FAIL"
        return (
            f"{state}: {self.samples} samples, {self.mismatched_samples} mismatched samples, "
            f"{self.mismatched_elements} mismatched output elements"
        )


def run_csim(prj: Path, tc: Toolchain) -> CsimResult:
    """Build the C testbench with g++ and run it on the project's golden data."""
    prj = Path(prj)
    manifest = load_manifest(prj)
    sources = [*manifest["firmware"], manifest["testbench"]]  # type: ignore[misc]
    objects = compile_objects(prj, sources, tc, manifest)
    exe = link(objects, prj / "build" / f"{manifest['top']}_csim", tc, shared=False)
    proc = subprocess.run([str(exe), str(prj / str(manifest["tb_data"]))], capture_output=True, text=True)
    found = re.search(r"HGQIR-CSIM samples=(\d+) mismatched_samples=(\d+) mismatched_elements=(\d+)", proc.stdout)
    if found is None:
        raise HgqirError(f"the testbench did not report (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    samples, bad, elements = (int(v) for v in found.groups())
    return CsimResult(proc.returncode == 0 and bad == 0, samples, bad, elements, proc.stdout)
