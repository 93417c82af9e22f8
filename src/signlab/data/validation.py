"""The validation split that every training, reference run and study takes from the
training file: `grouped` (whole groups of variants held out, the default) or `random`
(single images; kept for comparison: it leaks), with its leakage diagnostic.

`signlab data split` writes the same rows that a run with the same settings uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from signlab import config
from signlab.contract import VAL_FRACTION_PARAM, VAL_STRATEGY_PARAM
from signlab.data.dataset import Split
from signlab.data.groups import DEFAULT_THRESHOLD, Leakage, cached_groups, leakage
from signlab.data.splits import Strategy, split_indices, subset_indices

DEFAULT_STRATEGY: Strategy = config.DEFAULT_VAL_STRATEGY  # type: ignore[assignment]
DEFAULT_FRACTION = config.DEFAULT_VAL_FRACTION
NO_VALIDATION = "none"  # the strategy a run logs when it trains on the whole file (fraction 0)


@dataclass(frozen=True)
class ValidationRows:
    """Which rows of the training file train and which validate, and their groups."""

    strategy: str  # grouped, random, or none (fraction 0: the whole file trains)
    fraction: float
    seed: int
    train: np.ndarray  # sorted row indices (0-based, header not counted)
    val: np.ndarray
    groups: np.ndarray  # a group per training-file row (every row its own group for `random`)

    @property
    def holds_out(self) -> bool:
        """Whether any row validates (fraction above 0)."""
        return len(self.val) > 0

    def whole_file(self) -> ValidationRows:
        """The same rows with nothing held out: training and validation rows train (a refit)."""
        rows = np.union1d(self.train, self.val)
        return ValidationRows(NO_VALIDATION, 0.0, self.seed, rows, np.array([], dtype=np.int64), self.groups)

    def params(self) -> dict[str, object]:
        """What a run logs about its split."""
        params: dict[str, object] = {VAL_STRATEGY_PARAM: self.strategy, VAL_FRACTION_PARAM: self.fraction}
        if self.strategy != NO_VALIDATION:
            params["group_threshold"] = DEFAULT_THRESHOLD
        return params


def validation_rows(train_file: Split, strategy: Strategy = DEFAULT_STRATEGY, fraction: float = DEFAULT_FRACTION,
                    seed: int = 0, subset: int = 0) -> ValidationRows:
    """The split of `train_file`; with `subset` (images per letter, 0 = all), each side is
    cut to its share of `subset` per letter after the split, so no group is on both sides
    and a quick run validates on images the full run with the same seed also holds out.
    Within a side, images are drawn at random rather than group by group: a quick run then
    sees many source photos per letter, not one or two.

    `fraction` 0 holds nothing out: every row (or `subset` per letter) trains, the strategy
    becomes `none`, and the groups are still those of `strategy` (for intervals elsewhere)."""
    if strategy not in ("grouped", "random"):
        raise ValueError(f"validation strategy must be grouped or random, not {strategy!r}")
    if fraction == 0:
        groups = cached_groups(train_file.images, train_file.labels, train_file.sha256)
        train = subset_indices(train_file.labels, subset, seed)
        return ValidationRows(NO_VALIDATION, 0.0, seed, train, np.array([], dtype=np.int64), groups)
    if strategy == "grouped":
        groups = cached_groups(train_file.images, train_file.labels, train_file.sha256)
    else:
        groups = np.arange(len(train_file.labels))
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
