"""The ``hgqir`` command line. Each subcommand lives in a module of :mod:`hgqir.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import HgqirError

COMMANDS = ["show", "opt", "import_", "export", "report", "emit", "csim", "rtlsim", "synth", "demo"]
"""Modules of hgqir.commands; each defines ``add(subparsers)`` and registers its handler."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hgqir",
        description="Compiler for high-granularity quantized neural networks on FPGAs.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"hgqir.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"hgqir.commands.{name}":
                continue  # command not built yet
            raise
        module.add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (HgqirError, OSError) as e:  # user errors and unreadable files: one message, no traceback
        print(f"hgqir {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
