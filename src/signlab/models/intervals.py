"""Intervals that respect photos: bootstrap over groups of variants, single and paired.

The test file holds about 20 variants of each of a few hundred source photos, so its images
are not independent: a model that fails one photo fails most of its variants. Resampling
single images would then give intervals several times too narrow. Here the unit resampled is
the group (`signlab.data.groups`): each replicate draws as many groups as there are, with
replacement, and scores every image of each drawn group. Accuracy is the ratio of correct
images to images over the drawn groups (groups differ in size).

A paired comparison scores two models on the same images and resamples the same groups for
both, so what the two share (hard photos) cancels: the interval of the difference is far
narrower than the two intervals side by side suggest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_BOOTSTRAP = 2000
LEVEL = 0.95
BOOTSTRAP_SEED = 0  # fixed: the same predictions always give the same interval


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval (fractions, like accuracy)."""

    estimate: float
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def text(self) -> str:
        """'99.65% (99.41-99.83)'."""
        return f"{100 * self.estimate:.2f}% ({100 * self.low:.2f}-{100 * self.high:.2f})"


def _group_sums(values: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per group: the sum of `values` and the number of images."""
    _, index = np.unique(np.asarray(groups), return_inverse=True)
    sums = np.bincount(index, weights=np.asarray(values, dtype=np.float64))
    sizes = np.bincount(index).astype(np.float64)
    return sums, sizes


def _replicate_weights(n_groups: int, n: int, seed: int) -> np.ndarray:
    """(n, n_groups): how often each replicate draws each group."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=n).astype(np.float64)


def _percentiles(replicates: np.ndarray, level: float) -> tuple[float, float]:
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return float(low), float(high)


def group_interval(correct: np.ndarray, groups: np.ndarray, n: int = N_BOOTSTRAP, level: float = LEVEL,
                   seed: int = BOOTSTRAP_SEED) -> Interval:
    """Accuracy and its `level` interval, resampling whole groups.

    Args:
        correct: per image, 1 if the model was right (or a fraction: the share of several
            seeds that were right, for a mean over seeds).
        groups: per image, its group (any integers; images of one photo share one).
    Returns:
        The accuracy over all images and the percentile interval of `n` group-resampled replicates.
    """
    correct = np.asarray(correct, dtype=np.float64)
    if correct.size == 0:
        raise ValueError("no images to score")
    sums, sizes = _group_sums(correct, groups)
    weights = _replicate_weights(len(sums), n, seed)
    replicates = (weights @ sums) / (weights @ sizes)
    return Interval(float(correct.mean()), *_percentiles(replicates, level))


def image_interval(correct: np.ndarray, level: float = LEVEL) -> Interval:
    """The per-image (binomial, Wilson) interval, as if every image were independent: for
    comparison only; too narrow on this data set."""
    correct = np.asarray(correct, dtype=np.float64)
    n, p = correct.size, float(correct.mean())
    from scipy.stats import norm

    z = float(norm.ppf(1 - (1 - level) / 2))
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Interval(p, float(centre - half), float(centre + half))


@dataclass(frozen=True)
class Comparison:
    """Model A minus model B on the same images: the difference in accuracy (fraction) and
    its paired, group-resampled interval."""

    difference: Interval
    n_images: int
    n_groups: int

    @property
    def verdict(self) -> str:
        """'better', 'worse' (A against B), or 'no measurable difference' (the interval holds 0)."""
        if self.difference.low > 0:
            return "better"
        if self.difference.high < 0:
            return "worse"
        return "no measurable difference"

    def text(self) -> str:
        """'+0.42 points (+0.10 to +0.80): better'."""
        d = self.difference
        return f"{100 * d.estimate:+.2f} points ({100 * d.low:+.2f} to {100 * d.high:+.2f}): {self.verdict}"


def paired_comparison(correct_a: np.ndarray, correct_b: np.ndarray, groups: np.ndarray, n: int = N_BOOTSTRAP,
                      level: float = LEVEL, seed: int = BOOTSTRAP_SEED) -> Comparison:
    """A against B on the same images (same order), resampling whole groups for both at once.

    Args:
        correct_a, correct_b: per image, 1/0 (or the share of seeds right) for each model.
        groups: per image, its group.
    """
    a, b = np.asarray(correct_a, dtype=np.float64), np.asarray(correct_b, dtype=np.float64)
    if a.shape != b.shape or a.shape != np.shape(groups):
        raise ValueError(f"paired images differ in number: {a.shape}, {b.shape}, groups {np.shape(groups)}")
    sums, sizes = _group_sums(a - b, groups)
    weights = _replicate_weights(len(sums), n, seed)
    replicates = (weights @ sums) / (weights @ sizes)
    low, high = _percentiles(replicates, level)
    return Comparison(Interval(float((a - b).mean()), low, high), int(a.size), len(sums))
