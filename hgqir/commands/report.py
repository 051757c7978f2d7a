"""``hgqir report FILE [--png OUT.png]``: per-op types, zero fraction and EBOPs of a graph.

``--pipeline`` runs passes first (e.g. ``infer-bitwidth,prune-zero-bits,dce``);
``--explain VALUE`` (or ``all``) prints why ``infer-bitwidth`` gives each value its width.
"""

from __future__ import annotations

import argparse


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="per-op table (types, zeros, EBOPs) and an optional PNG")
    p.add_argument("file", help="a .hgq file")
    p.add_argument("--png", help="write bitwidth histograms and EBOPs per layer to this PNG")
    p.add_argument("-p", "--pipeline", help="run this pass pipeline before reporting")
    p.add_argument("--explain", metavar="VALUE", help="why infer-bitwidth chose VALUE's width ('all': every value)")
    p.add_argument("--dsp-bits", type=int, default=None, help="DSP threshold of the LUT/DSP estimate (default 10)")
    p.add_argument(
        "--synth",
        metavar="PROJECT|REPORT",
        help="compare the LUT/FF estimate per layer with a Yosys report (a verilog project after `hgqir synth`)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hgqir.passes import PassManager
    from hgqir.passes.bops import DSP_BITS
    from hgqir.passes.infer_bitwidth import infer_bitwidth
    from hgqir.passes.report import format_table, plot, report_rows
    from hgqir.text import load

    g = load(args.file)
    if args.pipeline:
        pm = PassManager.parse(args.pipeline)
        pm.run(g)
        print(f"after {pm}" + (" (lossy passes ran)" if pm.lossy else ""))
    print(format_table(report_rows(g, args.dsp_bits if args.dsp_bits is not None else DSP_BITS)))
    if args.explain:
        reasons = infer_bitwidth(g.clone())
        names = list(reasons.reasons) if args.explain == "all" else [args.explain]
        print()
        for name in names:
            try:
                print(reasons.explain(name))
            except KeyError as e:
                print(f"hgqir report: {e.args[0]}")
                return 1
    if args.png:
        print(f"wrote {plot(g, args.png)}")
    if args.synth:
        from pathlib import Path

        from hgqir.passes.hw_report import compare, format_compare, load_synth, plot_compare

        synth, pipeline = load_synth(args.synth)
        rows = compare(g, synth, pipeline)
        print()
        print(format_compare(rows, synth))
        if args.png:
            out = Path(args.png)
            print(f"wrote {plot_compare(rows, out.with_name(out.stem + '_synth.png'), f'@{g.name}')}")
    return 0
