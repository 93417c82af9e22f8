"""Small synthetic 28x28 data sets, for studies and refits tested in-process without the CSVs."""

from __future__ import annotations

import numpy as np

from signlab.data.dataset import DataFiles, in_memory_split
from signlab.data.labels import LABELS


def synthetic_files(per_letter: int = 8, seed: int = 0) -> DataFiles:
    """A training and a test file of `per_letter` images per letter: each letter a bright
    square in its own place on noise, so a network has something to learn within an epoch."""
    rng = np.random.default_rng(seed)

    def split(name: str) -> tuple[str, np.ndarray, np.ndarray]:
        labels = np.repeat(np.asarray(LABELS, dtype=np.int64), per_letter)
        images = rng.integers(0, 96, size=(len(labels), 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            row, col = divmod(int(np.searchsorted(LABELS, label)), 5)
            images[i, 2 + 5 * row:6 + 5 * row, 2 + 5 * col:6 + 5 * col] = 255
        return name, images, labels

    return DataFiles(in_memory_split(*split("train")), in_memory_split(*split("test")))
