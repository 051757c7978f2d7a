"""``hgqir rtlsim DIR``: build a Verilog project's testbench with Verilator, run it, report.

The testbench feeds one sample per clock and compares every output with the interpreter's
golden vectors written by ``hgqir emit --backend verilog``; exit status 0 when all match.
"""

from __future__ import annotations

import argparse


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rtlsim", help="run the testbench of a Verilog project under Verilator (pass/fail)")
    p.add_argument("project", help="folder written by `hgqir emit --backend verilog`")
    p.add_argument("-v", "--verbose", action="store_true", help="print the testbench's own output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hgqir.backends.verilog import rtlsim

    print(f"building and running the RTL simulation of {args.project} ...", flush=True)
    result = rtlsim(args.project)
    if args.verbose:
        print(result.output, end="")
    verdict = "PASS" if result.passed else "FAIL"
    print(f"rtlsim {args.project}: {verdict}, {result.samples} samples, {result.mismatches} mismatches")
    return 0 if result.passed else 1
