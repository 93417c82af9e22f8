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
from signlab.models.family import FAMILIES, family


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
    """A trained model of any family (`models.family`), with its input scaling and output mapping."""

    def __init__(self, family_name: str, estimator: Any, normalise: bool = True, n_outputs: int = N_CLASSES):
        self.family, self.estimator, self.normalise, self.n_outputs = family_name, estimator, normalise, n_outputs
        self.kind = family(family_name)

    # -- prediction -------------------------------------------------------------------
    def predict_proba(self, images: Any) -> np.ndarray:
        """Probabilities (N, 24) over LETTERS for images as accepted by `as_images`."""
        probs = self.kind.predict_proba(self.estimator, scale(as_images(images), self.normalise))
        if self.n_outputs == 25:  # the tutorial's 25-way output: keep the 24 letters' units
            probs = probs[:, list(LABELS)]
            probs = probs / np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)
        return probs

    def predict_labels(self, images: Any) -> np.ndarray:
        """Data-set labels (0-24) of the most probable letters."""
        return np.asarray(LABELS)[self.predict_proba(images).argmax(axis=1)]

    @property
    def n_params(self) -> int:
        return self.kind.n_params(self.estimator)

    # -- persistence ------------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        """Write the model and its settings into `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"family": self.family, "normalise": self.normalise, "n_outputs": self.n_outputs,
                "letters": list(LETTERS)}
        (folder / "signlab.json").write_text(json.dumps(meta, indent=2))
        self.kind.save(self.estimator, folder / self.kind.file)
        return folder

    @classmethod
    def load(cls, folder: Path) -> LetterModel:
        """Read a model written by `save`, as data: settings from JSON, the model by its family
        (a Keras file in safe mode: no lambdas or other code in its config; a skops file
        trusting only the types scikit-learn's MLP needs beyond skops' defaults; never pickle)."""
        folder = Path(folder)
        meta = json.loads((folder / "signlab.json").read_text())
        name, normalise, n_outputs = meta["family"], meta["normalise"], meta["n_outputs"]
        if name not in FAMILIES or not isinstance(normalise, bool) or n_outputs not in (24, 25):
            raise UserError(f"{folder}: not a signlab model ({str(meta)[:100]})")
        kind = family(name)
        return cls(name, kind.load(folder / kind.file), normalise, n_outputs)
