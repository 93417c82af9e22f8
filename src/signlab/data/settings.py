"""The data settings of a run: which images train, validate and test it. One value object,
built once where the settings come in (the CLI's options, a study file) and handed down to
`runs.job.prepare_data`, so that the four settings never travel as loose parameters."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from signlab import config

if TYPE_CHECKING:  # the CLI builds settings before NumPy and pandas are imported
    from signlab.data.splits import Strategy


@dataclass(frozen=True)
class DataSettings:
    """Subset, validation split and seed of one run.

    Attributes:
        subset: images per letter taken from each file (0: all; more makes a quick run).
        val_strategy: `grouped` (whole photos held out) or `random` (single images).
        val_fraction: share of the training file held out; 0 trains on the whole file.
        seed: seeds the split, the subset, and the training (initialisation, shuffling,
            augmentation).
    """

    subset: int = 0
    val_strategy: Strategy = config.DEFAULT_VAL_STRATEGY  # type: ignore[assignment]
    val_fraction: float = config.DEFAULT_VAL_FRACTION
    seed: int = 0

    @property
    def whole_file(self) -> bool:
        """Nothing held out: the whole training file trains."""
        return self.val_fraction == 0

    def with_seed(self, seed: int) -> DataSettings:
        """The same settings with another seed (one reference row per seed)."""
        return replace(self, seed=seed)
