"""``hgqir export FILE.hgq -o OUT.onnx``: write a graph in an interchange format (QONNX).

The output suffix picks the format; ``.onnx`` writes QONNX through
:func:`hgqir.frontends.qonnx.to_qonnx` (per-tensor / per-channel types only).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a .hgq graph as a QONNX (.onnx) model")
    p.add_argument("file", help="a .hgq file")
    p.add_argument("-o", "--output", required=True, help="output file (.onnx: QONNX)")
    p.add_argument("--batch-size", type=int, default=1, help="static batch axis of the ONNX model (default 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hgqir.errors import HgqirError
    from hgqir.text import load

    if Path(args.output).suffix.lower() != ".onnx":
        raise HgqirError(f"hgqir export writes QONNX: give an output ending in .onnx, not {args.output!r}")
    from hgqir.frontends.qonnx import to_qonnx

    g = load(args.file)
    model = to_qonnx(g, args.output, batch_size=args.batch_size)
    print(f"wrote {args.output}: {len(model.graph.node)} ONNX nodes")
    return 0
