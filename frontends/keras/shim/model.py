"""The shim model: a Functional Keras model that carries the EBOPs regularizer.

:class:`ShimModel` adds ``beta * EBOPs`` through ``add_loss`` on every training call, shows the
current EBOPs as the ``ebops`` metric, refreshes table layers before inference, and calibrates
the integer bits of its WRAP quantizers from data (:meth:`ShimModel.calibrate`).
:class:`BetaScheduler` sets ``beta`` per epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np
from keras import ops

from ...calibration import GUARD_BITS
from . import accel
from .quant import Quantizer


@keras.saving.register_keras_serializable(package="hgqir")
class LatestValue(keras.metrics.Metric):
    """A metric that shows the last value given (EBOPs change along an epoch; show the current)."""

    def __init__(self, name: str = "ebops", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.value = self.add_variable(shape=(), initializer="zeros", name="value")

    def update_state(self, value: Any) -> None:
        self.value.assign(ops.cast(value, self.value.dtype))

    def result(self) -> Any:
        return ops.convert_to_tensor(self.value)

    def reset_state(self) -> None:
        """Kept on purpose: evaluation shows the EBOPs of the last training step."""


def _is_symbolic(inputs: Any) -> bool:
    return any(isinstance(t, keras.KerasTensor) for t in keras.tree.flatten(inputs))


def _executing_eagerly() -> bool:
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return bool(tf.executing_eagerly())
    return True


@keras.saving.register_keras_serializable(package="hgqir")
class ShimModel(keras.Model):
    """Quantized twin of a Keras model; built by :func:`hgqir.quantize_keras`."""

    def __init__(self, *args: Any, beta: float = 0.0, resource_scale: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resource_scale = float(resource_scale)
        """EBOPs -> regularized resource (``ShimConfig(resource="lut")``: LUTs per EBOP)."""
        self.beta = self.add_weight(
            name="beta", shape=(), trainable=False, initializer=keras.initializers.Constant(float(beta))
        )
        self.beta.assign(float(beta))  # the initializer rounds through float32
        self.ebops_metric = LatestValue(name="ebops")
        self._calibrating = False
        self._pool = accel.pool(self)
        self.fbank = self._pool.variable if self._pool is not None else None
        """The pooled fractional bits of every layer (None without :mod:`..fast`)."""
        self.beta_schedule: Callable[[int], float] | None = None
        """``beta(epoch)`` from ``ShimConfig.beta_schedule``: ``fit`` applies it (a BetaScheduler)."""

    def save_own_variables(self, store: Any) -> None:
        """Only ``beta``: the pooled bank's stretches are saved by the layers' banks (files as before)."""
        store["0"] = self.beta

    def load_own_variables(self, store: Any) -> None:
        self.beta.assign(store["0"])

    def costed_layers(self) -> list[Any]:
        """Layers with an EBOPs rule (dense, conv, batchnorm, merges)."""
        return [layer for layer in self.layers if hasattr(layer, "ebops")]

    def quantizers(self) -> Iterator[Quantizer]:
        for layer in self._flatten_layers(include_self=False):
            if isinstance(layer, Quantizer):
                yield layer

    def ebops_tensor(self, dtype: Any = None) -> Any:
        """Differentiable EBOPs of the current bit widths (the regularizer)."""
        terms = [layer.ebops(dtype) for layer in self.costed_layers()]
        if not terms:
            return ops.zeros((), dtype or self.compute_dtype)
        total = terms[0]
        for t in terms[1:]:
            total = total + t
        return total

    def _training_ebops(self) -> Any:
        """The EBOPs each costed layer computed in its training call (same trace)."""
        dtype = self.compute_dtype
        terms = [layer.ebops_now for layer in self.costed_layers()]
        terms = [t if keras.backend.standardize_dtype(t.dtype) == dtype else ops.cast(t, dtype) for t in terms]
        if not terms:
            return ops.zeros((), dtype)
        total = terms[0]
        for t in terms[1:]:
            total = total + t
        return total

    def ebops(self) -> float:
        """Current EBOPs, computed in float64 (equals ``hgqir.bops(g).total`` of the import)."""
        return float(ops.convert_to_numpy(self.ebops_tensor("float64")))

    def call(self, inputs: Any, training: Any = None, mask: Any = None) -> Any:
        if not training and not self._calibrating and not _is_symbolic(inputs) and _executing_eagerly():
            self.refresh_tables()
        if training and self._pool is not None:
            self._pool.unpack()
        try:
            outputs = super().call(inputs, training=training, mask=mask)
        finally:
            if self._pool is not None:
                self._pool.release()
        if training:
            e = self._training_ebops()
            # Functional.add_loss is symbolic-only; the eager Layer version is what call() needs
            keras.layers.Layer.add_loss(self, ops.cast(self.beta * self.resource_scale, e.dtype) * e)
            self.ebops_metric.update_state(e)
        return outputs

    def refresh_tables(self) -> None:
        """Rebuild every table layer's tables from its input quantizer's current type."""
        for layer in self.layers:
            if hasattr(layer, "refresh"):
                layer.refresh()

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        self.refresh_tables()
        return super().predict(*args, **kwargs)

    def predict_on_batch(self, *args: Any, **kwargs: Any) -> Any:
        self.refresh_tables()
        return super().predict_on_batch(*args, **kwargs)

    def evaluate(self, *args: Any, **kwargs: Any) -> Any:
        self.refresh_tables()
        return super().evaluate(*args, **kwargs)

    def test_on_batch(self, *args: Any, **kwargs: Any) -> Any:
        self.refresh_tables()
        return super().test_on_batch(*args, **kwargs)

    def calibrate(self, data: Any, batch_size: int = 1024, margin_bits: int = GUARD_BITS) -> None:
        """Set ``i`` (and ``k`` where unsigned is allowed) of every WRAP quantizer from ``data``.

        Runs the model in inference mode with WRAP quantizers rounding but not wrapping and
        records the range each one sees; afterwards no calibration sample wraps anywhere, and
        with ``margin_bits`` guard integer bits (default one, as plain imports: see
        ``frontends/calibration.py``) nor does new data up to ``2**margin_bits`` times the
        calibration range. ``margin_bits=0`` gives the tightest types.
        Table layers use their float function meanwhile; tables are rebuilt at the end.
        """
        if margin_bits < 0:
            raise ValueError(f"margin_bits must be >= 0, got {margin_bits}")
        arrays = [np.asarray(a) for a in (data if isinstance(data, (list, tuple)) else [data])]
        quantizers = [q for q in self.quantizers() if q.wraps]
        for q in quantizers:
            q.start_trace()
        self._calibrating = True
        try:
            for start in range(0, len(arrays[0]), batch_size):
                batch = [ops.convert_to_tensor(a[start : start + batch_size], self.compute_dtype) for a in arrays]
                self(batch if len(batch) > 1 else batch[0], training=False)
        finally:
            self._calibrating = False
            for q in quantizers:
                q.finish_trace(margin_bits)
        self.refresh_tables()

    def fit(self, *args: Any, **kwargs: Any) -> Any:
        """``keras.Model.fit``; with a ``beta_schedule`` and no :class:`BetaScheduler` among the
        callbacks, one is added so that beta follows the schedule epoch by epoch."""
        if self.beta_schedule is not None:
            callbacks = list(kwargs.get("callbacks") or [])
            if not any(isinstance(c, BetaScheduler) for c in callbacks):
                kwargs["callbacks"] = [*callbacks, BetaScheduler(self.beta_schedule)]
        return super().fit(*args, **kwargs)

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg["beta"] = float(ops.convert_to_numpy(self.beta))
        cfg["resource_scale"] = self.resource_scale
        return cfg


class BetaScheduler(keras.callbacks.Callback):
    """Set the shim's EBOPs weight ``beta`` at the start of every epoch from ``schedule(epoch)``."""

    def __init__(self, schedule: Callable[[int], float]) -> None:
        super().__init__()
        self.schedule = schedule

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.model.beta.assign(float(self.schedule(epoch)))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["beta"] = float(self.schedule(epoch))
