"""``hgqir import MODEL -o OUT.hgq``: import a Keras, PyTorch or QONNX model into the text form.

Keras: a ``.keras`` (or ``.h5``) file. QONNX: a ``.onnx`` file. PyTorch: see
``hgqir.frontends.torch.load_for_cli``. Each frontend package offers
``load_for_cli(path, args) -> Graph``; the file suffix (:data:`FORMATS`) decides.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

FORMATS = {".keras": "keras", ".h5": "keras", ".onnx": "qonnx"}
"""File suffix -> frontend package under ``hgqir.frontends``; anything else is PyTorch."""


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="import a Keras, PyTorch or QONNX model into a .hgq graph")
    p.add_argument("model", help="a .keras or .onnx (QONNX) file, or a PyTorch model (see docs/cli.md)")
    p.add_argument("-o", "--output", required=True, help="output .hgq file")
    p.add_argument("--framework", choices=["auto", "keras", "torch", "qonnx"], default="auto")
    p.add_argument("--input-shape", help="PyTorch: comma-separated example input shape without batch, e.g. 1,28,28")
    p.add_argument("--calibration", help="a .npy file of calibration inputs (batch first)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hgqir.text import save

    framework = args.framework
    if framework == "auto":
        framework = FORMATS.get(Path(str(args.model)).suffix.lower(), "torch")
    frontend = importlib.import_module(f"hgqir.frontends.{framework}")
    g = frontend.load_for_cli(args.model, args)
    save(g, args.output)
    print(f"wrote {args.output}: {len(g.ops)} ops, inputs {[list(v.shape) for v in g.inputs]}")
    return 0
