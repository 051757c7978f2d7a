"""``hgqir opt FILE -p SPEC -o OUT``: run a pass pipeline on a graph."""

from __future__ import annotations

import argparse


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("opt", help="run a pass pipeline on a .hgq graph")
    p.add_argument("file", help="input .hgq file")
    p.add_argument("-p", "--pipeline", required=True, help="e.g. 'infer-bitwidth,prune-zero-bits,dce'")
    p.add_argument("-o", "--output", help="output .hgq file (default: print to stdout)")
    p.add_argument("--no-verify", action="store_true", help="do not verify after every pass")
    p.add_argument("--dump-dir", help="write the graph after every pass into this folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from hgqir.passes import PassManager
    from hgqir.text import dumps, load, save

    g = load(args.file)
    pm = PassManager.parse(args.pipeline, verify_each=not args.no_verify, dump_dir=args.dump_dir)
    pm.run(g)
    if args.output:
        save(g, args.output)
        print(f"wrote {args.output} after {pm}" + (" (lossy passes ran)" if pm.lossy else ""), file=sys.stderr)
    else:
        print(dumps(g), end="")
    return 0
