"""Validation splits of the training file (grouped or random, stratified by letter),
per-class subsets and pixel scaling."""

from __future__ import annotations

from typing import Literal

import numpy as np

from signlab import config

Strategy = Literal["grouped", "random"]
STRATEGIES: tuple[Strategy, ...] = ("grouped", "random")


def validation_split(
    images: np.ndarray, labels: np.ndarray, fraction: float = config.DEFAULT_VAL_FRACTION, seed: int = 0,
    groups: np.ndarray | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Hold out about `fraction` of (images, labels) per letter (whole `groups` if given):
    ((train), (validation))."""
    train_idx, val_idx = split_indices(labels, groups, fraction, seed)
    return (images[train_idx], labels[train_idx]), (images[val_idx], labels[val_idx])


def split_indices(labels: np.ndarray, groups: np.ndarray | None, fraction: float = config.DEFAULT_VAL_FRACTION,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, validation) row indices: per letter, about `fraction` of its images
    held out, as whole groups when `groups` is given (None: single images, at random).

    Every letter has images on both sides; no group is on both sides. Deterministic."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be between 0 and 1 (exclusive), not {fraction}")
    units = np.arange(len(labels)) if groups is None else np.asarray(groups)
    rng = np.random.default_rng(seed)
    val: list[np.ndarray] = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        names, sizes = np.unique(units[rows], return_counts=True)
        if len(names) < 2:
            raise ValueError(f"label {label}: {len(names)} group(s), cannot hold any out and keep some")
        order = rng.permutation(len(names))
        cumulative = np.cumsum(sizes[order])
        target = fraction * len(rows)
        # the cut nearest the target, holding out at least one group and keeping at least one
        cut = int(np.clip(np.argmin(np.abs(cumulative - target)) + 1, 1, len(names) - 1))
        val.append(rows[np.isin(units[rows], names[order[:cut]])])
    val_idx = np.sort(np.concatenate(val))
    train_idx = np.setdiff1d(np.arange(len(labels)), val_idx)
    return train_idx, val_idx


def subset_indices(labels: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of up to `per_class` images of every class, drawn at random; 0 or
    less keeps everything."""
    if per_class <= 0:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(labels == label))[:per_class] for label in np.unique(labels)]
    return np.sort(np.concatenate(keep))


def stratified_subset(
    images: np.ndarray, labels: np.ndarray, per_class: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Up to `per_class` images of every class, drawn at random; 0 or less keeps everything."""
    if per_class <= 0:
        return images, labels
    keep = subset_indices(labels, per_class, seed)
    return images[keep], labels[keep]


def normalise(images: np.ndarray) -> np.ndarray:
    """uint8 0-255 -> float32 0-1."""
    return np.asarray(images, dtype=np.float32) / np.float32(255.0)


def scale(images: np.ndarray, normalised: bool) -> np.ndarray:
    """float32 pixels, in [0, 1] when `normalised`, else the raw 0-255 values."""
    return normalise(images) if normalised else np.asarray(images, dtype=np.float32)
