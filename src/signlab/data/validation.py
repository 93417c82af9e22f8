"""The validation split that every training, reference run and study takes from the
training file: `grouped` (whole groups of variants held out, the default) or `random`
(single images; kept for comparison: it leaks), with its leakage diagnostic.

`signlab data split` writes the same rows that a run with the same settings uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from signlab.data.dataset import Split
from signlab.data.groups import DEFAULT_THRESHOLD, Leakage, cached_groups, leakage
from signlab.data.splits import Strategy, split_indices, subset_indices

DEFAULT_STRATEGY: Strategy = "grouped"
DEFAULT_FRACTION = 0.2


@dataclass(frozen=True)
class ValidationRows:
    """Which rows of the training file train and which validate, and their groups."""

    strategy: Strategy
    fraction: float
    seed: int
    train: np.ndarray  # sorted row indices (0-based, header not counted)
    val: np.ndarray
    groups: np.ndarray  # a group per training-file row (every row its own group for `random`)

    def params(self) -> dict[str, object]:
        """What a run logs about its split."""
        params: dict[str, object] = {"val_strategy": self.strategy, "val_fraction": self.fraction}
        if self.strategy == "grouped":
            params["group_threshold"] = DEFAULT_THRESHOLD
        return params


def validation_rows(train_file: Split, strategy: Strategy = DEFAULT_STRATEGY, fraction: float = DEFAULT_FRACTION,
                    seed: int = 0, subset: int = 0) -> ValidationRows:
    """The split of `train_file`; with `subset` (images per letter, 0 = all), each side is
    cut to its share of `subset` per letter after the split, so no group is on both sides
    and a quick run validates on images the full run with the same seed also holds out.
    Within a side, images are drawn at random rather than group by group: a quick run then
    sees many source photos per letter, not one or two."""
    if strategy == "grouped":
        groups = cached_groups(train_file.images, train_file.labels, train_file.sha256)
    elif strategy == "random":
        groups = np.arange(len(train_file.labels))
    else:
        raise ValueError(f"validation strategy must be grouped or random, not {strategy!r}")
    train, val = split_indices(train_file.labels, None if strategy == "random" else groups, fraction, seed)
    if subset > 0:
        n_val = max(1, round(subset * fraction))
        val = val[subset_indices(train_file.labels[val], n_val, seed)]
        train = train[subset_indices(train_file.labels[train], max(1, subset - n_val), seed)]
    return ValidationRows(strategy, fraction, seed, train, val, groups)


def split_leakage(train_file: Split, rows: ValidationRows) -> Leakage:
    """The leakage diagnostic of the validation rows against the training rows."""
    return leakage(train_file.images[rows.train], train_file.labels[rows.train],
                   train_file.images[rows.val], train_file.labels[rows.val])
