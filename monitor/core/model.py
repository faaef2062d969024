"""Keras autoencoders: the dense bottleneck network of the seed articles and an LSTM sequence autoencoder.

This is the only module that imports TensorFlow/Keras, and only once a model is built or loaded: the import
takes seconds that a command needing no model should not wait. It knows shapes, not tokens: a model takes a
flat float32 matrix and returns its reconstruction; the LSTM variant reshapes it into ``steps`` rows internally.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from monitor.errors import BundleError, ConfigError

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

# What TensorFlow's libraries print while they load, whatever TF_CPP_MIN_LOG_LEVEL says (absl logs written
# before absl is initialised go straight to stderr): start-up notes, not problems.
_START_UP_CHATTER = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)|"
                               r"[IW]\d{4} [\d:.]+ +\d+ \S+\.cc:\d+\] )")


def _verbose_native() -> bool:
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL") in ("0", "1")


@contextmanager
def _quiet_native_start_up() -> Iterator[None]:
    """Hold back the native libraries' start-up lines on file descriptor 2 while they load, then pass on
    every other line. ``--verbose`` (``TF_CPP_MIN_LOG_LEVEL`` 0 or 1) shows everything."""
    if _verbose_native():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode("utf-8", "replace").splitlines()
                    if not _START_UP_CHATTER.match(line)]
    if kept:
        sys.stderr.write("\n".join(kept) + "\n")


_FIRST_IMPORT = threading.Lock()  # the retraining thread may build a model while the main one loads one


def _libraries() -> tuple[ModuleType, ModuleType]:
    """Keras and TensorFlow, imported on first use; the environment (``--verbose``) is read then."""
    with _FIRST_IMPORT:
        return _import_libraries()


@cache
def _import_libraries() -> tuple[ModuleType, ModuleType]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ chatter is not ours to show
    with _quiet_native_start_up():
        import keras
        import tensorflow as tf
    if not _verbose_native():
        tf.get_logger().setLevel(logging.ERROR)  # e.g. "tf.function retracing" warnings: tuning notes, not errors
    return keras, tf


def _keras() -> ModuleType:
    return _libraries()[0]


def _tf() -> ModuleType:
    return _libraries()[1]

MODEL_KINDS = ("dense", "lstm")
LOSSES = ("mse", "binary_crossentropy")


@dataclass(frozen=True)
class ModelSettings:
    """Network and training settings; the defaults train a usable model with no tuning.

    ``kind``: ``dense`` (input → hidden → bottleneck → hidden → input) or ``lstm`` (encoder LSTM, repeated
    bottleneck, decoder LSTM, per-step dense output). ``hidden``: widths of the encoder layers before the
    bottleneck (mirrored by the decoder). ``loss``: what training minimizes; the score is always the mean
    squared reconstruction error. Training stops early when the validation loss has not improved for
    ``patience`` epochs and keeps the best weights. ``seed`` makes a run repeatable.
    """

    kind: str = "dense"
    hidden: tuple[int, ...] = (64,)
    bottleneck: int = 32
    loss: str = "binary_crossentropy"
    epochs: int = 40
    batch_size: int = 256
    learning_rate: float = 2e-3
    validation_split: float = 0.1
    patience: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ConfigError(f"model kind must be one of {MODEL_KINDS}, got {self.kind!r}")
        if self.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.bottleneck < 1 or any(h < 1 for h in self.hidden):
            raise ConfigError(f"layer widths must be positive, got hidden={self.hidden} bottleneck={self.bottleneck}")
        if not 0 <= self.validation_split < 0.5:
            raise ConfigError(f"validation_split must be in [0, 0.5), got {self.validation_split}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"epochs and batch_size must be positive, got {self.epochs} and {self.batch_size}")


def build(settings: ModelSettings, width: int, steps: int = 1) -> keras.Model:
    """An uncompiled autoencoder for ``width`` features (``steps`` equal rows of them for the LSTM)."""
    keras = _keras()
    keras.utils.set_random_seed(settings.seed)
    if settings.kind == "lstm":
        return _build_lstm(settings, width, steps)
    inputs = keras.Input(shape=(width,), name="sequence")
    x = inputs
    for units in settings.hidden:
        x = keras.layers.Dense(units, activation="relu")(x)
    x = keras.layers.Dense(settings.bottleneck, activation="relu", name="bottleneck")(x)
    for units in reversed(settings.hidden):
        x = keras.layers.Dense(units, activation="relu")(x)
    outputs = keras.layers.Dense(width, activation="sigmoid", name="reconstruction")(x)
    return keras.Model(inputs, outputs, name="dense_autoencoder")


def _build_lstm(settings: ModelSettings, width: int, steps: int) -> keras.Model:
    if width % steps:
        raise ConfigError(f"the LSTM needs equal steps: {width} features do not split into {steps} steps")
    keras = _keras()
    per_step = width // steps
    inputs = keras.Input(shape=(width,), name="sequence")
    x = keras.layers.Reshape((steps, per_step))(inputs)
    for units in settings.hidden:
        x = keras.layers.LSTM(units, return_sequences=True)(x)
    x = keras.layers.LSTM(settings.bottleneck, name="bottleneck")(x)
    x = keras.layers.RepeatVector(steps)(x)
    for units in reversed(settings.hidden):
        x = keras.layers.LSTM(units, return_sequences=True)(x)
    x = keras.layers.TimeDistributed(keras.layers.Dense(per_step, activation="sigmoid"))(x)
    outputs = keras.layers.Reshape((width,), name="reconstruction")(x)
    return keras.Model(inputs, outputs, name="lstm_autoencoder")


def fit(model: keras.Model, x: np.ndarray, settings: ModelSettings, verbose: int | None = None) -> dict[str, Any]:
    """Train ``model`` to reconstruct ``x``; returns the history (loss per epoch, epochs run)."""
    keras = _keras()
    keras.utils.set_random_seed(settings.seed)
    model.compile(optimizer=keras.optimizers.Adam(settings.learning_rate), loss=settings.loss)
    callbacks = []
    if settings.validation_split > 0:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=settings.patience, restore_best_weights=True, min_delta=1e-5))
    # Keras' validation_split takes the *last* rows; shuffle once (seeded) so it is a fair sample.
    order = _shuffled(len(x), settings)
    history = model.fit(
        x[order], x[order], epochs=settings.epochs, batch_size=settings.batch_size,
        validation_split=settings.validation_split, shuffle=True, callbacks=callbacks,
        verbose=_progress_style() if verbose is None else verbose,
    )
    return {"loss": [float(v) for v in history.history["loss"]],
            "val_loss": [float(v) for v in history.history.get("val_loss", [])],
            "epochs": len(history.history["loss"])}


def _shuffled(count: int, settings: ModelSettings) -> np.ndarray:
    return np.random.default_rng(settings.seed).permutation(count)


def held_out_rows(count: int, settings: ModelSettings) -> np.ndarray:
    """The rows (indices into the ``count`` rows given to ``fit``) the network was never fitted on: Keras'
    validation rows, the last ``validation_split`` of the seeded shuffle, split where Keras splits it."""
    if settings.validation_split <= 0:
        return np.empty(0, dtype=np.int64)
    order = _shuffled(count, settings)
    return order[int(math.floor(count * (1.0 - settings.validation_split))):]


def _progress_style() -> int:
    return 1 if sys.stderr.isatty() else 2  # a bar on a terminal, one line per epoch in logs


class Reconstructor:
    """Runs a trained model over batches without Keras' ``predict`` overhead per call."""

    def __init__(self, model: keras.Model, batch_size: int = 8192) -> None:
        self.model = model
        self.batch_size = batch_size
        # One signature for every batch size: a shape-specialised trace per batch size would retrace often.
        tf = _tf()
        spec = tf.TensorSpec(shape=(None, model.input_shape[-1]), dtype=tf.float32)
        self._call = tf.function(lambda x: model(x, training=False), input_signature=[spec])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if len(x) == 0:
            return np.zeros_like(x)
        parts = [self._call(x[i: i + self.batch_size]).numpy() for i in range(0, len(x), self.batch_size)]
        return np.concatenate(parts) if len(parts) > 1 else parts[0]


@dataclass(frozen=True)
class DenseLayer:
    """One dense layer's weights ``(inputs, units)``, biases and activation (``relu``, ``sigmoid``, ...)."""

    weights: np.ndarray
    bias: np.ndarray
    activation: str


def dense_layers(model: keras.Model) -> list[DenseLayer] | None:
    """The layers of a model that is nothing but dense layers one after another (the ``dense`` kind), as float32
    arrays; ``None`` for any other model (the LSTM, a layer without biases, a model of other layer types)."""
    keras = _keras()
    layers = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        values = layer.get_weights()
        if type(layer) is not keras.layers.Dense or len(values) != 2:  # no bias, or LoRA's or quantized weights
            return None
        weights, bias = values
        layers.append(DenseLayer(np.ascontiguousarray(weights, dtype=np.float32),
                                 np.ascontiguousarray(bias, dtype=np.float32),
                                 keras.activations.serialize(layer.activation)))
    return layers or None


def save(model: keras.Model, path: Path) -> None:
    """Save in Keras' native ``.keras`` format."""
    model.save(path)


def load(path: Path) -> keras.Model:
    """Load a ``.keras`` file with safe mode on (no arbitrary code in lambdas is run)."""
    if Path(path).is_file() and not zipfile.is_zipfile(path):  # Keras says "File not found" for these
        raise BundleError(f"{path} is not a Keras archive (a .keras file is a zip archive; this one's "
                          f"{Path(path).stat().st_size} bytes are not)")
    try:
        return _keras().saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a damaged archive; one message for all
        raise BundleError(f"{path} is not a loadable Keras model: {exc}") from exc


def library_versions() -> dict[str, str]:
    keras, tf = _libraries()
    return {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__,
            "python": sys.version.split()[0]}
