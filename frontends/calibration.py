"""How a calibration range becomes an activation type when a plain float model is imported.

Both frameworks' plain importers (``keras/importer/plain.py``, ``torch/importer/plain.py``)
give every live activation element **one guard integer bit** above what its calibration range
needs, with WRAP overflow: a new value up to twice the calibration range is still represented,
so data slightly beyond the calibration maximum never wraps. Chosen by measurement
(``benchmarks/calibration.py``, results in ``benchmarks/results/calibration.json``):

==========  ==============================  ===========================  ==========
policy      jet MLP held-out / +5 % inputs  torch.add held-out / +5 %    MLP EBOPs
==========  ==============================  ===========================  ==========
exact-wrap  0.46 % / 99.4 % outputs wrapped 0.01 % / 90.6 % wrapped      414,750
guard-wrap  0 / 0 wrapped, acc = float      0 / 0 wrapped                447,822
exact-sat   0.16 % / 90.6 % off > 1/8       0 / 0 off > 1/8              414,750
==========  ==============================  ===========================  ==========

The trained shims calibrate the same way: ``ShimModel.calibrate(x, margin_bits=1)`` (Keras)
and ``calibrate(qmod, x, margin_bits=1)`` (PyTorch; both what ``from_keras`` / ``from_torch``
run for ``calibration=x``) widen every recorded WRAP range by ``2**margin_bits`` before the
integer bits are taken from it; ``margin_bits=0`` gives the tightest types. (The PyTorch shim's
own start-of-training calibration in ``quantize_torch`` uses no margin: it only seeds the
learned bits.)

**Sign.** An element whose calibration values were all non-negative is still given a sign bit
when it *can* be negative (its value is not made non-negative by construction: a relu, sigmoid,
softmax or a max-pool / reshape of such): a dense output that happened to stay positive on the
calibration data would otherwise wrap on the first negative fresh value (seen: 2 of 800 values
of a PReLU model's quantizer, outputs off by 1.3). Model inputs keep the sign of their data
(images in ``[0, 1]`` stay unsigned).

The guard bit costs 8 % more EBOPs on the MLP and keeps its accuracy equal to the float
model's (0.7067 vs 0.7068); saturating instead costs nothing but leaves large errors when many
features exceed the range at once. WRAP without the guard bit stays available and exact
(``CalibrationPolicy(margin_bits=0)`` in either importer). Elements that stayed zero on all
calibration data keep width 0 (pruned): the guard bit goes to live elements only.
"""

from __future__ import annotations

GUARD_BITS = 1
"""Integer bits above the calibration range given to every live activation element on plain import."""

NONNEG_TABLES = frozenset({"sigmoid", "hard_sigmoid", "relu6", "softplus", "softmax"})
"""Table functions whose values are never negative (a value they make needs no sign bit)."""
