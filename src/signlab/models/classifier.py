"""A trained model of either family behind one interface: images in, 24 letter
probabilities out. Used by evaluation, the MLflow pyfunc, predict and serving."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from signlab.data.labels import LABELS, LETTERS, N_CLASSES
from signlab.data.splits import scale
from signlab.errors import UserError
from signlab.signals import held_interrupts

# Types skops must trust to load a scikit-learn MLPClassifier.
SKOPS_TRUSTED_TYPES = [
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
]


# Up to this many images go through the compiled call (one batch); more through Keras `predict`
# in batches of this size. `predict` costs tens of ms per call (data adapter, iterator) however
# few the images: 256 images took 3-4x longer through it than through the call.
PREDICT_BATCH = 1024


class PayloadError(UserError, ValueError):
    """Input that is not 28x28 grayscale images with values 0-255."""


def as_images(data: Any) -> np.ndarray:
    """Coerce rows of 784 pixels, (N, 28, 28[, 1]) arrays or one 28x28 image to uint8 (N, 28, 28)."""
    try:
        array = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"pixels must be numbers 0-255 ({exc})") from None
    if array.ndim == 2 and array.shape == (28, 28):
        array = array[None]
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2 and array.shape[1] == 784:
        array = array.reshape(-1, 28, 28)
    if array.ndim != 3 or array.shape[1:] != (28, 28):
        raise PayloadError(
            f"expected rows of 784 pixels or 28x28 images, got an array of shape {array.shape}"
        )
    if len(array) == 0:
        raise PayloadError("no images given")
    if np.isnan(array).any():
        row = int(np.argwhere(np.isnan(array))[0][0])
        raise PayloadError(f"image {row}: missing pixel values")
    bad = (array < 0) | (array > 255)
    if bad.any():
        row, y, x = (int(v) for v in np.argwhere(bad)[0])
        raise PayloadError(
            f"image {row}: pixel {y * 28 + x + 1} is {array[row, y, x]:g}, outside 0-255"
        )
    return np.rint(array).astype(np.uint8)


class LetterModel:
    """A Keras CNN or a scikit-learn MLP or KNN, with its input scaling and output mapping."""

    def __init__(self, family: str, estimator: Any, normalise: bool = True, n_outputs: int = N_CLASSES):
        self.family, self.estimator, self.normalise, self.n_outputs = family, estimator, normalise, n_outputs
        self._fast_call = None

    # -- prediction -------------------------------------------------------------------
    def predict_proba(self, images: Any) -> np.ndarray:
        """Probabilities (N, 24) over LETTERS for images as accepted by `as_images`."""
        x = scale(as_images(images), self.normalise)
        if self.family == "cnn":
            x = x[..., None]
            with held_interrupts():  # raised after TensorFlow's native code, not inside it (see models.train)
                if len(x) <= PREDICT_BATCH:
                    probs = np.asarray(self._call(x))
                else:
                    probs = self.estimator.predict(x, batch_size=PREDICT_BATCH, verbose=0)
        else:
            probs = self.estimator.predict_proba(x.reshape(len(x), -1))
        if self.n_outputs == 25:  # the tutorial's 25-way output: keep the 24 letters' units
            probs = probs[:, list(LABELS)]
            probs = probs / np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)
        return probs

    def _call(self, x: np.ndarray) -> Any:
        if self._fast_call is None:
            import tensorflow as tf

            self._fast_call = tf.function(lambda t: self.estimator(t, training=False), reduce_retracing=True)
        return self._fast_call(x)

    def predict_labels(self, images: Any) -> np.ndarray:
        """Data-set labels (0-24) of the most probable letters."""
        return np.asarray(LABELS)[self.predict_proba(images).argmax(axis=1)]

    @property
    def n_params(self) -> int:
        if self.family == "cnn":
            return int(self.estimator.count_params())
        if self.family == "knn":
            from signlab.models.knn import count_params as count_stored

            return count_stored(self.estimator)
        from signlab.models.mlp import count_params

        return count_params(self.estimator)

    # -- persistence ------------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        """Write the model and its settings into `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"family": self.family, "normalise": self.normalise, "n_outputs": self.n_outputs,
                "letters": list(LETTERS)}
        (folder / "signlab.json").write_text(json.dumps(meta, indent=2))
        if self.family == "cnn":
            self.estimator.save(folder / "model.keras")
        else:
            import skops.io as sio

            sio.dump(self.estimator, folder / "model.skops")
        return folder

    @classmethod
    def load(cls, folder: Path) -> LetterModel:
        """Read a model written by `save`, as data: settings from JSON, a Keras file in safe
        mode (no lambdas or other code in its config), a skops file trusting only the types
        scikit-learn's MLP needs beyond skops' defaults (never pickle)."""
        folder = Path(folder)
        meta = json.loads((folder / "signlab.json").read_text())
        family, normalise, n_outputs = meta["family"], meta["normalise"], meta["n_outputs"]
        if family not in ("cnn", "mlp", "knn") or not isinstance(normalise, bool) or n_outputs not in (24, 25):
            raise UserError(f"{folder}: not a signlab model ({str(meta)[:100]})")
        if family == "cnn":
            import keras

            estimator = keras.saving.load_model(folder / "model.keras", compile=False, safe_mode=True)
        else:
            import skops.io as sio

            estimator = sio.load(folder / "model.skops", trusted=SKOPS_TRUSTED_TYPES)
        return cls(family, estimator, normalise, n_outputs)
