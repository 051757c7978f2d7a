"""``hgqir synth DIR``: synthesize a Verilog project with Yosys and print LUT/FF/CARRY/DSP per layer.

The report is also written to ``DIR/synth/report_<family>.json``; results are cached by a digest
of the design, so running it again is instant.
"""

from __future__ import annotations

import argparse


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="synthesize a Verilog project with Yosys (LUT, FF, CARRY, DSP per layer)")
    p.add_argument("project", help="folder written by `hgqir emit --backend verilog`")
    p.add_argument("--family", default="xcup", choices=["xcup", "xcu", "xc7"], help="Xilinx family (default xcup)")
    p.add_argument("--no-dsp", action="store_true", help="map multipliers to LUTs instead of DSP blocks")
    p.add_argument(
        "--flatten",
        action="store_true",
        help="synthesize as one module: whole-design counts only, cross-layer optimizations",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hgqir.backends.verilog.synth import synth

    rep = synth(args.project, family=args.family, dsp=not args.no_dsp, progress=not args.quiet, flatten=args.flatten)
    print(rep.table())
    how = "cached" if rep.cached else f"{rep.seconds:.1f} s"
    print(
        f"{rep.yosys}, synth_xilinx -family {rep.family}{'' if rep.dsp_enabled else ' -nodsp'}{' -flatten' if rep.flattened else ''} ({how})"
    )
    return 0
