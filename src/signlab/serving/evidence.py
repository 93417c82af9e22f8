"""What the report and `promote` can tell apart: intervals over photos and paired comparisons,
from the runs' test predictions (`test_predictions.csv`).

A model of several runs (a refit's seeds, a reference row's seeds) is scored per image as the
share of its runs that were right: its interval is then the interval of the mean over seeds,
and a paired comparison sets two such models against each other on the images both scored.
A run logged before predictions existed has no evidence; it is shown without an interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from signlab.contract import CI_HIGH, CI_LOW, QUICK_TAG, SUBSET_PARAM, TEST_ACCURACY
from signlab.models.intervals import Comparison, Interval, group_interval, paired_comparison
from signlab.runs.predictions import correct_by_row, read_predictions


@dataclass
class Evidence:
    """Per test image (indexed by test-file row): its group and the share of the model's runs right."""

    scored: pd.DataFrame

    @property
    def n_images(self) -> int:
        return len(self.scored)

    @property
    def n_groups(self) -> int:
        return int(self.scored["group"].nunique())

    def interval(self) -> Interval:
        return group_interval(self.scored["correct"].to_numpy(), self.scored["group"].to_numpy())


class EvidenceCache:
    """Predictions downloaded once per run."""

    def __init__(self, client: MlflowClient):
        self.client = client
        self._frames: dict[str, pd.DataFrame | None] = {}

    def frame(self, run_id: str) -> pd.DataFrame | None:
        if run_id not in self._frames:
            self._frames[run_id] = read_predictions(self.client, run_id)
        return self._frames[run_id]

    def evidence(self, runs: list[Run]) -> Evidence | None:
        """The runs' joint evidence, or None where any run has no predictions."""
        frames = [self.frame(r.info.run_id) for r in runs]
        if not frames or any(f is None for f in frames):
            return None
        scored = correct_by_row(frames)  # type: ignore[arg-type]
        return Evidence(scored) if len(scored) else None


def run_interval(run: Run) -> Interval | None:
    """A single run's logged interval of test accuracy (None for a run logged before intervals)."""
    m = run.data.metrics
    low, high = m.get(TEST_ACCURACY + CI_LOW), m.get(TEST_ACCURACY + CI_HIGH)
    if TEST_ACCURACY not in m or low is None or high is None:
        return None
    return Interval(m[TEST_ACCURACY], low, high)


def compare(a: Evidence | None, b: Evidence | None) -> Comparison | None:
    """A against B on the test images both scored (same rows of the test file); None where either
    has no evidence or they share no image."""
    if a is None or b is None:
        return None
    common = a.scored.index.intersection(b.scored.index).sort_values()
    if not len(common):
        return None
    return paired_comparison(a.scored.loc[common, "correct"].to_numpy(), b.scored.loc[common, "correct"].to_numpy(),
                             a.scored.loc[common, "group"].to_numpy())


def is_quick(run: Run) -> bool:
    """Trained on a subset or tested on a capped test split (the tag, or an older run's `subset` param)."""
    if run.data.tags.get(QUICK_TAG) == "true":
        return True
    try:
        return int(run.data.params.get(SUBSET_PARAM, "0") or 0) > 0
    except ValueError:
        return False
