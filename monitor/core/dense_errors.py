"""A dense autoencoder's reconstruction errors straight from each sequence's feature indices.

The network's input is a row of zeros and ones, about 20 ones in 148 columns for a user id. Building that
float32 matrix and running TensorFlow over it cost more than preparing the strings did; here the first layer
sums the weight rows of the ones, the other layers multiply one row at a time, and the error is taken from the
output layer's logits where the ones are (``monitor.core.dense_kernel``). No matrix of inputs or
reconstruction is built, and a string's error is the same to the bit in any batch (TensorFlow's and BLAS's
products differ in their last bits with a row's batch and place in it). Figures: docs/benchmarks.md, "The
error from feature indices".

Only a model that is dense layers with ReLU between and a sigmoid at the end takes this path (the ``dense``
kind, the default); every other model keeps TensorFlow's. ``agrees_with`` checks the two on a model, which is
how a ``Scorer`` decides: the arithmetic is float32 either way, summed in another order, so the errors agree to
about 1e-6 relative on large errors, and to 2e-5 at the median (up to 8e-4) on a well-trained model's errors
below 1e-7, where TensorFlow's own ``1 - r`` has few digits left and this path is the closer to float64's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from monitor.core import dense_kernel as kernel
from monitor.core.model import DenseLayer

AGREEMENT = 1e-4  # the largest relative difference from TensorFlow ``agrees_with`` accepts (the rows it makes
# have errors of 0.01 or more, where both are good to about 1e-6; a wrong activation or layer is off by far more)
_CHECK_ROWS = 256


class DenseErrors:
    """``errors(active)``: each row's mean squared reconstruction error, as ``reconstruction_errors`` of the
    model on the rows of ones that ``active`` (``(n, k)`` feature indices) names. Build with ``of``."""

    def __init__(self, layers: Sequence[DenseLayer], repeats: bool, batch_size: int = 8192) -> None:
        self.first, *self.middle, self.last = layers
        # The layers after the first multiply a row by the transpose's rows (``kernel.dense_layer``).
        self.transposed = [np.ascontiguousarray(layer.weights.T) for layer in layers[1:]]
        self.width = self.first.weights.shape[0]
        self.repeats = repeats
        self.batch_size = batch_size

    @classmethod
    def of(cls, layers: Sequence[DenseLayer] | None, repeats: bool, batch_size: int = 8192) -> DenseErrors | None:
        """The errors of a model of ``layers`` (``monitor.core.model.dense_layers``), or ``None`` when this path
        cannot compute them: not a ReLU network with a sigmoid output reconstructing its own input.
        ``repeats``: a sequence's indices may name one feature twice (the ``bag`` encoding)."""
        if not layers or len(layers) < 2 or layers[-1].activation != "sigmoid" or \
                any(layer.activation != "relu" for layer in layers[:-1]) or \
                layers[0].weights.shape[0] != layers[-1].weights.shape[1]:
            return None
        return cls(layers, repeats, batch_size)

    def errors(self, active: np.ndarray) -> np.ndarray:
        """Mean squared reconstruction error of each row (float64)."""
        active = np.ascontiguousarray(active, dtype=np.int32)
        if active.size and (active.min() < 0 or active.max() >= self.width):
            raise ValueError(f"feature indices must be in [0, {self.width}), got {active.min()}..{active.max()}")
        out = np.empty(len(active), dtype=np.float64)
        for start in range(0, len(active), self.batch_size):  # bounds the float32 matrices a call holds
            part = active[start: start + self.batch_size]
            hidden = np.empty((len(part), self.first.bias.shape[0]), dtype=np.float32)
            kernel.first_layer(part, self.repeats, self.first.weights, self.first.bias, hidden)
            for layer, weights_t in zip(self.middle, self.transposed):
                hidden, previous = np.empty((len(part), layer.bias.shape[0]), dtype=np.float32), hidden
                kernel.dense_layer(previous, weights_t, layer.bias, True, hidden)
            logits = np.empty((len(part), self.width), dtype=np.float32)
            kernel.dense_layer(hidden, self.transposed[-1], self.last.bias, False, logits)
            kernel.squared_error_means(logits, part, self.repeats, out[start: start + len(part)])
        return out

    def agrees_with(self, reference: Callable[[np.ndarray], np.ndarray], features: int, seed: int = 0) -> float:
        """The largest relative difference between these errors and ``reference``'s (the errors of the model
        through TensorFlow, given the input matrix) on rows of ``features`` random ones; at most ``AGREEMENT``
        where the two are the same model."""
        rng = np.random.default_rng(seed)
        features = max(1, min(features, self.width))
        active = np.stack([rng.choice(self.width, features, replace=self.repeats) for _ in range(_CHECK_ROWS)])
        x = np.zeros((len(active), self.width), dtype=np.float32)
        np.put_along_axis(x, active.astype(np.intp), 1.0, axis=1)
        expected = reference(x)
        got = self.errors(active)
        return float(np.max(np.abs(got - expected) / np.maximum(np.abs(expected), 1e-30)))
