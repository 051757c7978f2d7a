"""How a calibration range becomes an activation type when a plain float model is imported.

Both frameworks' plain importers (``keras/importer/plain.py``, ``torch/importer/plain.py``)
give every live activation element **one guard integer bit** above what its calibration range
needs, with WRAP overflow: a new value up to twice the calibration range is still represented,
so data slightly beyond the calibration maximum never wraps. Chosen by measurement
(``benchmarks/calibration.py``, results in ``benchmarks/results/calibration.json``):

Held-out data / inputs 5 % above the calibration maximum: largest output error against the
float model and the share of outputs a wrap changed; EBOPs of the imported graph:

=============  ===========================  =======================  ==========================
policy         keras jet MLP (acc, EBOPs)   torch.add                torch LeakyReLU/PReLU digits
=============  ===========================  =======================  ==========================
exact-wrap     14.6 / 26.1, 0.48 % / 100 %  2.00 / 2.01, 0.01 % /    1.26 / 26.6, 0.25 % /
               wrapped; 0.7046, 414,750     90.6 % wrapped; 288      99.98 % wrapped; 120,975
guard-wrap     0.037 / 0.035, none wrapped  0.012 / 0.012, none;     0.76 / 0.83, none;
               0.7067, 447,822              320                      0.9698, 134,691
exact-sat      1.00 / 8.95; 0.7067, 414,750 0.012 / 0.115; 288      0.76 / 1.06; 120,975
=============  ===========================  =======================  ==========================

(float accuracies 0.7068 and 0.9698; the digits model's 0.76 is its rounding error: its logits
are large.)

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

The guard bit costs 8 % more EBOPs on the MLP (11 % on the digits model) and keeps accuracy
equal to the float model's (0.7067 vs 0.7068; 0.9698 on digits); the sign guard adds 0.1 % on
the digits model (134,529 without it); saturating instead costs nothing but leaves large errors when many
features exceed the range at once. WRAP without the guard bit stays available and exact
(``CalibrationPolicy(margin_bits=0)`` in either importer). Elements that stayed zero on all
calibration data keep width 0 (pruned): the guard bit goes to live elements only.
"""

from __future__ import annotations

GUARD_BITS = 1
"""Integer bits above the calibration range given to every live activation element on plain import."""

SIGN_GUARD = True
"""Whether the guard covers the sign (the default; ``False`` only to measure it, see
``benchmarks/calibration.py``)."""

NONNEG_TABLES = frozenset({"sigmoid", "hard_sigmoid", "relu6", "softplus", "softmax"})
"""Table functions whose values are never negative (a value they make needs no sign bit)."""
