"""``hgqir emit FILE --backend {vitis,hls4ml,verilog} -o DIR``: write a project for a graph.

Vitis options: ``--top``, ``--reuse`` (an integer, or ``name=R`` pairs), ``--part``,
``--clock``, ``--tb-samples``; ``--compile`` also builds the C simulation with g++.
Verilog options: ``--top``, ``--pipeline`` (``auto`` or adder levels per stage),
``--tb-samples``; ``--compile`` also builds the Verilator simulation.
"""

from __future__ import annotations

import argparse
from typing import Any


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("emit", help="write a Vitis HLS, hls4ml or Verilog project for a .hgq graph")
    p.add_argument("file", help="a .hgq file")
    p.add_argument("-o", "--output", required=True, help="project folder")
    p.add_argument("--backend", choices=["vitis", "hls4ml", "verilog"], default="vitis")
    p.add_argument("--top", help="top function / module name (vitis: myproject, verilog: hgqir_top)")
    p.add_argument(
        "--pipeline",
        metavar="auto|N",
        help="verilog: register stages of at most N adder levels, or 'auto' (default: combinational)",
    )
    p.add_argument(
        "--reuse",
        nargs="+",
        metavar="R|NAME=R",
        help="vitis reuse factor: one integer for every dense/conv, or NAME=R per layer result",
    )
    p.add_argument("--part", help="FPGA part for build_prj.tcl (vitis)")
    p.add_argument("--clock", type=float, help="clock period in ns for build_prj.tcl (vitis)")
    p.add_argument("--tb-samples", type=int, help="random testbench samples (vitis: 32, verilog: 200)")
    p.add_argument("--compile", action="store_true", help="also build the C simulation (g++) or RTL simulation")
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
    from hgqir.errors import HgqirError

    opts: dict[str, Any] = {}
    if args.backend == "verilog":
        for name in ("top", "tb_samples"):
            if getattr(args, name) is not None:
                opts[name] = getattr(args, name)
        if args.pipeline is not None:
            if args.pipeline != "auto" and not args.pipeline.isdigit():
                raise HgqirError(f"--pipeline takes 'auto' or a number of adder levels, got {args.pipeline!r}")
            opts["pipeline"] = "auto" if args.pipeline == "auto" else int(args.pipeline)
        return opts
    if args.pipeline is not None:
        raise HgqirError("--pipeline applies to the verilog backend only")
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
    if args.backend == "verilog":
        print(f"latency {prj.latency} cycle(s), {prj.adders} adders")
    if args.compile:
        what = "RTL simulation (Verilator)" if args.backend == "verilog" else "C simulation"
        print(f"building the {what} of {args.output} ...", flush=True)
        prj.compile()
        print(f"compiled the {what} of {args.output}")
    return 0
