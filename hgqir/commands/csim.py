"""``hgqir csim DIR``: build a Vitis project's C testbench with g++, run it, report the result.

The testbench compares every output element with the interpreter's golden mantissas written by
``hgqir emit``; the exit status is 0 when all match, 1 otherwise.
"""

from __future__ import annotations

import argparse


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("csim", help="run the C testbench of a Vitis project with g++ (pass/fail, mismatches)")
    p.add_argument("project", help="folder written by `hgqir emit --backend vitis`")
    p.add_argument("--ap-types", help="folder holding ap_fixed.h (default: the one in installed hls4ml)")
    p.add_argument("--cxx", help="C++ compiler (default g++)")
    p.add_argument("-v", "--verbose", action="store_true", help="print the testbench's own output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hgqir.backends.vitis import Toolchain, run_csim

    result = run_csim(args.project, Toolchain.find(args.cxx, args.ap_types))
    if args.verbose:
        print(result.output, end="")
    print(f"csim {args.project}: {result.summary()}")
    return 0 if result.passed else 1
