"""Labels 0-24 map to letters A-Y; J (9) and Z (25) need motion and never occur."""

from __future__ import annotations

import string

import numpy as np

MISSING_LABELS = frozenset({9, 25})
LABELS: tuple[int, ...] = tuple(i for i in range(25) if i not in MISSING_LABELS)
LETTERS: tuple[str, ...] = tuple(string.ascii_uppercase[i] for i in LABELS)
N_CLASSES = len(LABELS)  # 24

_INDEX_OF_LABEL = {label: i for i, label in enumerate(LABELS)}


def label_to_letter(label: int) -> str:
    """The letter for a data-set label (0 -> 'A', 24 -> 'Y')."""
    if int(label) not in _INDEX_OF_LABEL:
        raise ValueError(f"label {label!r} is not a Sign Language MNIST class (0-24, not 9)")
    return string.ascii_uppercase[int(label)]


def letter_to_label(letter: str) -> int:
    """The data-set label for a letter ('A' -> 0, 'Y' -> 24); case-insensitive."""
    key = letter.strip().upper()
    if len(key) != 1 or key not in LETTERS:
        raise ValueError(f"letter {letter!r} is not a Sign Language MNIST class (A-Y, not J)")
    return string.ascii_uppercase.index(key)


def encode(labels: np.ndarray, n_outputs: int = N_CLASSES) -> np.ndarray:
    """Labels -> output indices: 0-23 for a 24-way model, the raw label for a 25-way one."""
    labels = np.asarray(labels)
    if n_outputs == 25:
        return labels.astype(np.int64)
    if n_outputs != N_CLASSES:
        raise ValueError(f"models have 24 or 25 outputs, not {n_outputs}")
    lookup = np.full(26, -1, dtype=np.int64)
    lookup[list(LABELS)] = np.arange(N_CLASSES)
    out = lookup[labels]
    if (out < 0).any():
        raise ValueError(f"labels {sorted(set(labels[out < 0].tolist()))} are not classes")
    return out


def decode(indices: np.ndarray, n_outputs: int = N_CLASSES) -> np.ndarray:
    """Output indices -> labels (inverse of `encode`)."""
    indices = np.asarray(indices, dtype=np.int64)
    if n_outputs == 25:
        return indices
    return np.asarray(LABELS, dtype=np.int64)[indices]
