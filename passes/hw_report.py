"""Estimate vs synthesis: the cost model's per-layer LUT / FF beside a Yosys report.

``hgqir report model.hgq --synth prj/`` reads ``prj/synth/report_<family>.json`` (written by
``hgqir synth`` / ``prj.synth()``) and the project's pipelining, estimates the same design,
prints one row per layer and, with ``--png``, plots estimate vs Yosys (one point per layer)
and per-layer bars.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hgqir.errors import HgqirError
from hgqir.ir import Graph

from .bops import bops


@dataclass
class Compared:
    layer: str
    est_lut: float
    lut: int
    est_ff: float
    ff: int

    @property
    def error(self) -> float:
        return (self.est_lut - self.lut) / self.lut if self.lut else 0.0


def load_synth(path: str | Path) -> tuple[dict[str, Any], Any]:
    """A synthesis report (a project folder or the JSON file) and the project's pipeline option."""
    p = Path(path)
    pipeline = None
    if p.is_dir():
        meta = p / "project.json"
        if meta.exists():
            pipeline = json.loads(meta.read_text()).get("pipeline")
        found = sorted((p / "synth").glob("report_*.json")) if (p / "synth").exists() else []
        found.sort(key=lambda f: f.stem.endswith("_flat"))  # per-layer counts first
        if not found:
            raise HgqirError(f"no synthesis report in {p}/synth: run `hgqir synth {p}` first")
        p = found[0]
    try:
        return json.loads(p.read_text()), pipeline
    except (OSError, ValueError) as e:
        raise HgqirError(f"cannot read the synthesis report {p}: {e}") from None


def compare(g: Graph, synth: dict[str, Any], pipeline: Any = None) -> list[Compared]:
    """One row per synthesized layer that the estimate also has (the glue as ``(top)``)."""
    est = {r.name: r for r in bops(g, pipeline=pipeline).rows}
    rows = []
    for layer, counts in synth["per_layer"].items():
        r = est.get(layer)
        if r is None or not (counts["lut"] or r.lut):
            continue
        rows.append(Compared(layer, r.lut, counts["lut"], r.ff, counts["ff"]))
    return rows


def format_compare(rows: list[Compared], synth: dict[str, Any]) -> str:
    width = max([len(r.layer) for r in rows] + [5])
    lines = [f"{'layer':<{width}} {'LUT est':>9} {'LUT yosys':>10} {'error':>7} {'FF est':>8} {'FF yosys':>9}"]
    for r in rows:
        lines.append(f"{r.layer:<{width}} {r.est_lut:>9.0f} {r.lut:>10} {r.error:>7.1%} {r.est_ff:>8.0f} {r.ff:>9}")
    est, real = sum(r.est_lut for r in rows), synth["total"]["lut"]
    err = (est - real) / real if real else 0.0
    lines.append(f"{'total':<{width}} {est:>9.0f} {real:>10} {err:>7.1%}")
    lines.append(f"synthesized with {synth.get('yosys', 'Yosys')} ({synth.get('family', '?')})")
    return "\n".join(lines)


def plot_compare(rows: list[Compared], path: str | Path, title: str = "") -> Path:
    """Estimate vs Yosys LUTs: a scatter (one point per layer, y = x line) and per-layer bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    xs, ys = [r.lut for r in rows], [r.est_lut for r in rows]
    ax1.scatter(xs, ys)
    top = max(xs + ys + [1]) * 1.1
    ax1.plot([0, top], [0, top], "k--", linewidth=0.8)
    for r in rows:
        ax1.annotate(r.layer, (r.lut, r.est_lut), fontsize=6)
    ax1.set_xlabel("LUT (Yosys)")
    ax1.set_ylabel("LUT (estimate)")
    ax1.set_title("estimate vs synthesis, per layer", fontsize=9)
    idx = range(len(rows))
    ax2.bar([i - 0.2 for i in idx], xs, width=0.4, label="Yosys")
    ax2.bar([i + 0.2 for i in idx], ys, width=0.4, label="estimate")
    ax2.set_xticks(list(idx), [r.layer for r in rows], rotation=60, fontsize=7)
    ax2.legend(fontsize=8)
    ax2.set_title("LUT per layer", fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
