"""The Keras shim: the trainable quantized twin of a float model.

:mod:`.qmath` (quantizer math, exact inference and fused training ops), :mod:`.quant`
(learnable quantizers), :mod:`.accel` (the interface the optional :mod:`..fast` banks attach to),
:mod:`.layers` / :mod:`.merge` / :mod:`.tables` (shim layers), :mod:`.model` (``ShimModel``:
EBOPs loss, beta schedule, calibration) and :mod:`.build` (``quantize_keras``).
"""
