"""The hls4ml backend: an hls4ml model built from the IR, bit-exact with ``g.run``.

``hgqir.emit(g, "hls4ml", out_dir, backend="Vitis", io_type="io_parallel")`` builds the model
through hls4ml's Python API (``ModelGraph.from_layer_list``; no Keras model in between),
writes the project and returns an :class:`Hls4mlProject`::

    prj = hgqir.emit(g, "hls4ml", "prj/")
    prj.compile()
    assert np.array_equal(prj.predict(x), g.run(x))
    prj.hls_model.build(csim=False)      # hls4ml's own tools work on prj.hls_model

Every result, accumulator, weight and table type comes from the IR; per-element types are
kept by hls4ml's per-element ``FixedPointQuantizer`` layers. Ops hls4ml cannot express
exactly raise :class:`~hgqir.UnsupportedOpError` listing each op and the reason. See
``docs/hls4ml.md`` for the mapping of every op.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hgqir.ir import Graph

from .options import Hls4mlOptions
from .project import Hls4mlProject

__all__ = ["Hls4mlOptions", "Hls4mlProject", "emit", "to_hls_model"]


def to_hls_model(g: Graph, out_dir: str | os.PathLike[str], **options: Any) -> Any:
    """Only build hls4ml's ``ModelGraph`` for ``g`` (nothing written); see :func:`emit`."""
    from .convert import build_model

    return build_model(g, Path(out_dir), Hls4mlOptions.from_kwargs(options))


def emit(g: Graph, out_dir: str | os.PathLike[str], **options: Any) -> Hls4mlProject:
    """Build the hls4ml model of ``g``, write its project into ``out_dir`` and return it.

    Options (:class:`Hls4mlOptions`): ``backend`` (``"Vitis"``/``"Vivado"``), ``io_type``
    (``"io_parallel"``), ``project_name``, ``part``, ``clock_period``, ``reuse_factor``,
    ``strategy``. The graph's text form is saved next to the project as ``model.hgq``.
    """
    from hgqir.text import save

    from .convert import build_model

    opts = Hls4mlOptions.from_kwargs(options)
    out = Path(out_dir)
    model = build_model(g, out, opts)
    model.write()
    save(g, out / "model.hgq")
    return Hls4mlProject(g, out, model, opts)
