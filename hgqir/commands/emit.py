"""``hgqir emit FILE --backend {vitis,hls4ml} -o DIR``: write a project for a graph.

Vitis options: ``--top``, ``--reuse`` (an integer, or ``name=R`` pairs), ``--part``,
``--clock``, ``--tb-samples``; ``--compile`` also builds the C simulation with g++.
"""

from __future__ import annotations

import argparse
from typing import Any


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("emit", help="write a Vitis HLS or hls4ml project for a .hgq graph")
    p.add_argument("file", help="a .hgq file")
    p.add_argument("-o", "--output", required=True, help="project folder")
    p.add_argument("--backend", choices=["vitis", "hls4ml"], default="vitis")
    p.add_argument("--top", help="top function name (vitis; default myproject)")
    p.add_argument(
        "--reuse",
        nargs="+",
        metavar="R|NAME=R",
        help="vitis reuse factor: one integer for every dense/conv, or NAME=R per layer result",
    )
    p.add_argument("--part", help="FPGA part for build_prj.tcl (vitis)")
    p.add_argument("--clock", type=float, help="clock period in ns for build_prj.tcl (vitis)")
    p.add_argument("--tb-samples", type=int, help="random testbench samples (vitis; default 32)")
    p.add_argument("--compile", action="store_true", help="also build the C simulation with g++")
    p.set_defaults(func=run)


def parse_reuse(items: list[str]) -> int | dict[str, int]:
    """``["4"]`` -> 4; ``["dense0=4", "*=2"]`` -> {"dense0": 4, "*": 2}."""
    from hgqir.errors import HgqirError

    try:
        if len(items) == 1 and "=" not in items[0]:
            return int(items[0])
        pairs = [item.split("=", 1) for item in items]
        return {name.lstrip("%"): int(value) for name, value in pairs}
    except ValueError:
        raise HgqirError(f"--reuse takes an integer or NAME=INTEGER pairs, got {' '.join(items)}") from None


def options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if args.backend != "vitis":
        return opts
    for name, key in (("top", "top"), ("part", "part"), ("clock", "clock_ns"), ("tb_samples", "tb_samples")):
        if getattr(args, name) is not None:
            opts[key] = getattr(args, name)
    if args.reuse:
        opts["reuse"] = parse_reuse(args.reuse)
    return opts


def run(args: argparse.Namespace) -> int:
    import hgqir
    from hgqir.text import load

    g = load(args.file)
    prj = hgqir.emit(g, args.backend, args.output, **options(args))
    print(f"wrote {args.backend} project {args.output} for graph {g.name!r}")
    if args.compile:
        prj.compile()
        print(f"compiled the C simulation of {args.output}")
    return 0
