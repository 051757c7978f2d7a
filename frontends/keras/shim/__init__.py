"""The Keras shim: the trainable quantized twin of a float model.

:mod:`.qmath` (quantizer math, exact inference and fused training ops), :mod:`.quant`
(learnable quantizers), :mod:`.bank` (one variable for all fractional bits of a layer),
:mod:`.layers` / :mod:`.merge` / :mod:`.tables` (shim layers), :mod:`.model` (``ShimModel``:
EBOPs loss, beta schedule, calibration) and :mod:`.build` (``quantize_keras``).
"""
