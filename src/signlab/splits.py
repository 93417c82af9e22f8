"""Stratified validation splits, per-class subsets and pixel scaling."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split


def validation_split(
    images: np.ndarray, labels: np.ndarray, fraction: float = 0.2, seed: int = 0
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Hold out a stratified `fraction` of (images, labels): ((train), (validation))."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be between 0 and 1 (exclusive), not {fraction}")
    x_tr, x_val, y_tr, y_val = train_test_split(
        images, labels, test_size=fraction, stratify=labels, random_state=seed
    )
    return (x_tr, y_tr), (x_val, y_val)


def stratified_subset(
    images: np.ndarray, labels: np.ndarray, per_class: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Up to `per_class` images of every class, drawn at random; 0 or less keeps everything."""
    if per_class <= 0:
        return images, labels
    rng = np.random.default_rng(seed)
    keep = np.concatenate(
        [
            rng.permutation(np.flatnonzero(labels == label))[:per_class]
            for label in np.unique(labels)
        ]
    )
    keep = np.sort(keep)
    return images[keep], labels[keep]


def normalise(images: np.ndarray) -> np.ndarray:
    """uint8 0-255 -> float32 0-1."""
    return np.asarray(images, dtype=np.float32) / np.float32(255.0)


def scale(images: np.ndarray, normalised: bool) -> np.ndarray:
    """float32 pixels, in [0, 1] when `normalised`, else the raw 0-255 values."""
    return normalise(images) if normalised else np.asarray(images, dtype=np.float32)
