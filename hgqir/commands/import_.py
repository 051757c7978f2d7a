"""``hgqir import MODEL -o OUT.hgq``: import a Keras or PyTorch model into the text form.

Keras: a ``.keras`` (or ``.h5``) file. PyTorch: see ``hgqir.frontends.torch.load_for_cli``.
Each frontend module offers ``load_for_cli(path, args) -> Graph``; the file kind decides.
"""

from __future__ import annotations

import argparse

KERAS_SUFFIXES = (".keras", ".h5")


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="import a Keras or PyTorch model into a .hgq graph")
    p.add_argument("model", help="a .keras file, or a PyTorch model (see docs/cli.md)")
    p.add_argument("-o", "--output", required=True, help="output .hgq file")
    p.add_argument("--framework", choices=["auto", "keras", "torch"], default="auto")
    p.add_argument("--input-shape", help="PyTorch: comma-separated example input shape without batch, e.g. 1,28,28")
    p.add_argument("--calibration", help="a .npy file of calibration inputs (batch first)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hgqir.text import save

    framework = args.framework
    if framework == "auto":
        framework = "keras" if str(args.model).endswith(KERAS_SUFFIXES) else "torch"
    if framework == "keras":
        from hgqir.frontends.keras import load_for_cli
    else:
        from hgqir.frontends.torch import load_for_cli
    g = load_for_cli(args.model, args)
    save(g, args.output)
    print(f"wrote {args.output}: {len(g.ops)} ops, inputs {[list(v.shape) for v in g.inputs]}")
    return 0
