"""Keras model -> IR: converters per layer class (:mod:`.convert`), HGQ2 layers (:mod:`.hgq`)
and the shim's own layers (:mod:`.shim_ir`), driven by :class:`.convert.Emitter`."""

from . import movers  # noqa: E402, F401  (registers the padding / cropping / upsampling converters)
