"""Each run's test predictions, image by image (`test_predictions.csv`), so that any two runs
can be compared on the same images later, and the intervals computed from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from signlab.contract import PREDICTIONS_ARTIFACT
from signlab.data.labels import LABELS, LETTERS
from signlab.models.evaluate import Evaluation

_LETTER = dict(zip(LABELS, LETTERS, strict=True))
COLUMNS = ["row", "group", "true", "predicted", "probability"]


def predictions_frame(evaluation: Evaluation, rows: np.ndarray, groups: np.ndarray) -> pd.DataFrame:
    """One line per test image: its row in the test file, its group of variants, the true and
    the predicted letter, and the probability the model gave its prediction."""
    return pd.DataFrame({
        "row": np.asarray(rows, dtype=np.int64), "group": np.asarray(groups, dtype=np.int64),
        "true": [_LETTER[int(v)] for v in evaluation.labels],
        "predicted": [_LETTER[int(v)] for v in evaluation.predicted],
        "probability": np.round(evaluation.probability.astype(np.float64), 5),
    })


def write_predictions(folder: Path, evaluation: Evaluation, rows: np.ndarray, groups: np.ndarray) -> Path:
    path = folder / PREDICTIONS_ARTIFACT
    predictions_frame(evaluation, rows, groups).to_csv(path, index=False)
    return path


def read_predictions(client: MlflowClient, run_id: str) -> pd.DataFrame | None:
    """A run's test predictions, or None for a run that has none (logged before they existed)."""
    try:
        path = client.download_artifacts(run_id, PREDICTIONS_ARTIFACT)
        frame = pd.read_csv(path)
    except Exception:  # noqa: BLE001 - an older run, or its artifacts gone: no predictions
        return None
    if list(frame.columns) != COLUMNS:
        return None
    return frame


def correct_by_row(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Several runs' predictions on the same images (seeds of one model): per row, its group
    and the share of runs that were right, over the rows every run scored."""
    scored = [f.assign(correct=(f["true"] == f["predicted"]).astype(float)).set_index("row") for f in frames]
    common = scored[0].index
    for frame in scored[1:]:
        common = common.intersection(frame.index)
    common = common.sort_values()
    share = np.mean([f.loc[common, "correct"].to_numpy() for f in scored], axis=0)
    return pd.DataFrame({"group": scored[0].loc[common, "group"].to_numpy(), "correct": share}, index=common)
