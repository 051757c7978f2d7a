"""``hgqir import MODEL -o OUT.hgq``: import a Keras, PyTorch, QONNX or HGQ v1 model into the text form.

The file suffix decides (:data:`FORMATS`): Keras 3 ``.keras``; QONNX ``.onnx``; ``.h5`` is an
HGQ v1 (Keras 2) file when it holds HGQ v1 layers, else a Keras model; anything else is a
PyTorch model (see ``hgqir.frontends.torch.load_for_cli``). Each frontend package offers
``load_for_cli(path, args) -> Graph``.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

FORMATS = {".keras": "keras", ".h5": "keras", ".onnx": "qonnx"}
"""File suffix -> frontend package under ``hgqir.frontends`` (``.h5`` files with HGQ v1 layers
go to ``hgq1``); anything else is PyTorch."""
FRAMEWORKS = ("keras", "torch", "qonnx", "hgq1")


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="import a Keras, PyTorch, QONNX or HGQ v1 model into a .hgq graph")
    p.add_argument("model", help="a .keras, .onnx (QONNX) or HGQ v1 .h5 file, or a PyTorch model (see docs/cli.md)")
    p.add_argument("-o", "--output", required=True, help="output .hgq file")
    p.add_argument("--framework", choices=["auto", *FRAMEWORKS], default="auto")
    p.add_argument("--input-shape", help="PyTorch: comma-separated example input shape without batch, e.g. 1,28,28")
    p.add_argument("--calibration", help="a .npy file of calibration inputs (batch first); needed for raw HGQ v1 files")
    p.set_defaults(func=run)


def frontend_of(path: str) -> str:
    """The frontend that reads ``path``, from its suffix (and, for ``.h5``, its layers)."""
    suffix = Path(str(path)).suffix.lower()
    if suffix == ".h5":
        from hgqir.frontends.hgq1 import is_hgq1_file

        if is_hgq1_file(path):
            return "hgq1"
    return FORMATS.get(suffix, "torch")


def run(args: argparse.Namespace) -> int:
    from hgqir.text import save

    framework = frontend_of(args.model) if args.framework == "auto" else args.framework
    frontend = importlib.import_module(f"hgqir.frontends.{framework}")
    g = frontend.load_for_cli(args.model, args)
    save(g, args.output)
    print(f"wrote {args.output}: {len(g.ops)} ops, inputs {[list(v.shape) for v in g.inputs]}")
    return 0
