"""``hgqir show FILE``: print a graph in the elided human form."""

from __future__ import annotations

import argparse


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show", help="print a .hgq graph in the elided human form")
    p.add_argument("file", help="a .hgq file")
    p.add_argument("--full", action="store_true", help="print the full text form with tables")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hgqir.text import dumps, load

    g = load(args.file)
    print(dumps(g, elide=not args.full), end="")
    return 0
