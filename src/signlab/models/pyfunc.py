"""The MLflow pyfunc that predict and `mlflow models serve` use: pixels in, letters out.

Input (INPUT_DOC): a table whose columns are named pixel1..pixel784 in any order (as in the
data set's CSV; a `label` column is ignored), matched by name; or unnamed input, used by
position: arrays of 784-pixel rows, 28x28 or 28x28x1 images, or a frame whose columns are
the default 0..783. Values 0-255, ints or floats.
Output: one row per image with `letter`, `probability` and `prob_A` ... `prob_Y`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from signlab.data.dataset import HEADER
from signlab.data.labels import LETTERS
from signlab.models.classifier import LetterModel, PayloadError

LABEL_COLUMN, PIXEL_COLUMNS = HEADER[0], HEADER[1:]
PIXEL_POSITION = {name: i for i, name in enumerate(PIXEL_COLUMNS)}  # constant-time name look-ups
INPUT_DOC = ("columns pixel1..pixel784 (any order, `label` ignored) or unnamed rows of 784 pixels, "
             "28x28 or 28x28x1 images; values 0-255")


def _few(names: list[str], limit: int = 5) -> str:
    """`n (a, b, c, ...)`: how many names and the first few."""
    shown = ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")
    return f"{len(names)} ({shown})"


def named_pixels(frame: pd.DataFrame) -> pd.DataFrame:
    """The pixel columns of a frame with named columns, in pixel1..pixel784 order.

    Names must be exactly pixel1..pixel784 plus an optional `label`; anything else is refused
    with the missing and unknown names, never read by position. Columns already in that order
    (the data set's, less `label`) are returned as they are: this runs on every served request.
    """
    names = [str(c) for c in frame.columns]
    if names == PIXEL_COLUMNS:
        return frame
    counts = Counter(names)
    missing = [c for c in PIXEL_COLUMNS if c not in counts]
    unknown = [c for c in counts if c not in PIXEL_POSITION and c != LABEL_COLUMN]
    repeated = [c for c, n in counts.items() if n > 1]
    if missing or unknown or repeated:
        problems = [f"{what} {_few(group)}" for what, group in
                    (("missing", missing), ("unknown", unknown), ("repeated", repeated)) if group]
        raise PayloadError(f"expected columns pixel1..pixel784 (any order, optional label): {'; '.join(problems)}")
    position = {name: i for i, name in enumerate(names)}
    return frame.iloc[:, [position[c] for c in PIXEL_COLUMNS]]


def pixels_of(model_input: Any) -> np.ndarray:
    """The pixel values of a pyfunc input, as an array for `as_images`: named columns by name,
    unnamed input (arrays, columns 0..n-1) by position."""
    if isinstance(model_input, dict):  # served `inputs`/`instances` with named columns
        try:
            model_input = pd.DataFrame({k: np.atleast_1d(v) for k, v in model_input.items()})
        except ValueError as exc:
            raise PayloadError(f"named inputs must be columns of equal length ({exc})") from None
    if not isinstance(model_input, pd.DataFrame):
        return np.asarray(model_input)
    unnamed = model_input.shape[1] > 0 and list(model_input.columns) == list(range(model_input.shape[1]))
    frame = model_input if unnamed else named_pixels(model_input)
    try:
        return frame.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"pixels must be numbers 0-255 ({exc})") from None


def predictions_frame(probs: np.ndarray) -> pd.DataFrame:
    """letter, probability, prob_A..prob_Y for each row of probabilities."""
    best = probs.argmax(axis=1)
    columns = {"letter": [LETTERS[i] for i in best], "probability": probs.max(axis=1)}
    columns.update({f"prob_{letter}": probs[:, i] for i, letter in enumerate(LETTERS)})
    return pd.DataFrame(columns)  # one constructor: adding 24 columns one by one cost ~4 ms a request


class LetterPyfunc(mlflow.pyfunc.PythonModel):
    """Wraps a saved LetterModel (artifact `letter_model`)."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.model = LetterModel.load(context.artifacts["letter_model"])

    # A DataFrame hint is one MLflow takes as is: no schema inferred from it, no coercion, and
    # no warning about a missing hint. Models logged since the input rules (no input schema)
    # get frames, arrays and dicts untouched and `pixels_of` checks them; older models' column
    # schema still turns arrays into frames and refuses int frames before this runs.
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        try:
            probs = self.model.predict_proba(pixels_of(model_input))
        except PayloadError as exc:
            from mlflow.exceptions import MlflowException
            from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

            raise MlflowException(f"bad input: {exc}", error_code=INVALID_PARAMETER_VALUE) from None
        return predictions_frame(probs)
