"""Passes: analyses return data, transformations rewrite a graph in place.

How to write a transformation
-----------------------------
A pass is a frozen dataclass that derives from :class:`Pass`. Its dataclass fields are its
options (with defaults), its ``name`` class variable is its kebab-case command-line name, and
``apply(g)`` rewrites the graph::

    from dataclasses import dataclass
    from typing import ClassVar

    from hgqir.passes import Pass, register

    @register
    @dataclass(frozen=True)
    class DropRelu(Pass):
        '''Remove relu ops whose input can never be negative.'''

        name: ClassVar[str] = "drop-relu"
        only_unsigned: bool = True
        '''Option `only-unsigned`: remove only relus of unsigned inputs.'''

        def apply(self, g):
            for op in g.ops_of(OpKind.RELU):
                x = op.operands[0]
                if not x.type.k.any():
                    g.replace_uses(op.result, x)
                    g.erase(op)

Rules of the house:

* Edit the graph only through its methods (``add``, ``set_operand``, ``replace_uses``,
  ``erase``, ``toposort``): they keep use-lists right. Leave the graph valid: the
  :class:`PassManager` runs ``verify`` after every pass when ``verify_each`` is set.
* Decide first, then mutate: if a pass must give up, raise before changing anything. (The
  :class:`PassManager` also restores the graph when a pass raises half-way.)
* A pass that changes results (rounding, observed ranges) sets ``lossy = True``; every other
  pass must keep ``g.run`` bit-identical, and its tests check that with the interpreter.
* Options are typed (bool, int, float, str, enums); the spec ``name{opt-a=1,opt-b=true}``
  sets them, and ``str(pass)`` prints them back.

Pipelines are strings such as ``"fold-batchnorm,infer-bitwidth,prune-zero-bits{keep-io=false},dce"``
(:meth:`PassManager.parse`), or built from pass objects in Python.
"""

from __future__ import annotations

from . import annotate_bops, bops, canonicalize, dce, fold_batchnorm, fuse_quant, infer_bitwidth, prune_zero_bits  # noqa: F401  (registration)  # noqa: F401
from .base import PASSES, Pass, PassManager, register

__all__ = ["PASSES", "Pass", "PassManager", "register"]
