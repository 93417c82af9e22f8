"""The MLflow pyfunc that predict and `mlflow models serve` use: pixels in, letters out.

Input: a DataFrame of 784 pixel columns (pixel1..pixel784, as in the data set's CSV; a
`label` column is ignored), or any array of 784-pixel rows or 28x28 images, values 0-255.
Output: one row per image with `letter`, `probability` and `prob_A` ... `prob_Y`.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from signlab.classifier import LetterModel, PayloadError
from signlab.data import HEADER
from signlab.labels import LETTERS

PIXEL_COLUMNS = HEADER[1:]


def pixels_of(model_input: Any) -> np.ndarray:
    """The pixel values of a pyfunc input, as an array for `as_images`."""
    if isinstance(model_input, pd.DataFrame):
        frame = model_input.drop(columns=["label"], errors="ignore")
        if set(PIXEL_COLUMNS) <= set(map(str, frame.columns)):
            frame = frame[PIXEL_COLUMNS]
        elif frame.shape[1] != 784:
            raise PayloadError(
                f"expected 784 pixel columns (pixel1..pixel784), got {frame.shape[1]} columns"
            )
        try:
            return frame.to_numpy(dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise PayloadError(f"pixels must be numbers 0-255 ({exc})") from None
    return np.asarray(model_input)


def predictions_frame(probs: np.ndarray) -> pd.DataFrame:
    """letter, probability, prob_A..prob_Y for each row of probabilities."""
    best = probs.argmax(axis=1)
    frame = pd.DataFrame({"letter": [LETTERS[i] for i in best], "probability": probs.max(axis=1)})
    for i, letter in enumerate(LETTERS):
        frame[f"prob_{letter}"] = probs[:, i]
    return frame


class LetterPyfunc(mlflow.pyfunc.PythonModel):
    """Wraps a saved LetterModel (artifact `letter_model`)."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.model = LetterModel.load(context.artifacts["letter_model"])

    # A DataFrame hint is one MLflow takes as is: no schema inferred from it, no coercion
    # (the logged signature does the checking), and no warning about a missing hint.
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        try:
            probs = self.model.predict_proba(pixels_of(model_input))
        except PayloadError as exc:
            from mlflow.exceptions import MlflowException
            from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

            raise MlflowException(f"bad input: {exc}", error_code=INVALID_PARAMETER_VALUE) from None
        return predictions_frame(probs)
