"""Groups of near-duplicate images (variants of one source photo) and the leakage diagnostic.

Sign Language MNIST expanded each of about 1,700 photos into ~20 variants (filters, 5%
pixelation, brightness/contrast, small rotations). A validation split that puts variants of
one photo on both sides measures memory, not generalisation. Groups are the connected
components of the graph "cosine similarity >= threshold" between images of the same letter
(pixels mean-centred and scaled to unit length: brightness and contrast changes drop out).
Variants of a photo share its label by construction, so the graph is built per letter: 24
small products instead of one 27k x 27k one (under a second instead of ~20 s on 2 cores);
`tests/test_groups.py` checks on real letters that no pair across letters reaches the threshold.

Groups are cached beside the parsed data, under the training file's SHA-256.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from signlab import config

GROUPS_FORMAT = "g1"
DEFAULT_THRESHOLD = 0.98  # chosen on the training file alone: docs/results.md, "Honest validation"


def unit_vectors(images: np.ndarray) -> np.ndarray:
    """float32 (N, 784): each image mean-centred and scaled to unit length."""
    x = images.reshape(len(images), -1).astype(np.float32)
    x -= x.mean(axis=1, keepdims=True)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.float32(1e-6))
    return x


def variant_groups(images: np.ndarray, labels: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """A group number per image (0..G-1, numbered in order of first appearance): connected
    components of "same letter and cosine >= threshold". Deterministic."""
    x = unit_vectors(images)
    groups = np.empty(len(labels), dtype=np.int64)
    next_id = 0
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        sims = x[idx] @ x[idx].T
        rows, cols = np.nonzero(np.triu(sims >= threshold, k=1))
        graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(len(idx), len(idx)))
        count, component = connected_components(graph, directed=False)
        groups[idx] = component + next_id
        next_id += count
    _, first = np.unique(groups, return_index=True)
    renumber = np.empty(next_id, dtype=np.int64)
    renumber[groups[np.sort(first)]] = np.arange(next_id)
    return renumber[groups]


def cached_groups(images: np.ndarray, labels: np.ndarray, sha256: str,
                  threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """`variant_groups` of the training file with this SHA-256, computed once and cached."""
    path = config.cache_dir() / f"{GROUPS_FORMAT}-{sha256}-{threshold:g}.npy"
    if path.is_file():
        try:
            groups = np.load(path)
            if groups.shape == labels.shape:
                return groups
        except (OSError, ValueError):
            pass  # a damaged entry is rebuilt
    groups = variant_groups(images, labels, threshold)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    try:
        np.save(tmp, groups)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return groups


@dataclass(frozen=True)
class Leakage:
    """How close held-out images are to the training side: the median cosine similarity of
    each to its nearest training image, and the accuracy of that neighbour's label (1-NN)."""

    nn_similarity: float
    nn_accuracy: float

    def metrics(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}_nn_similarity": self.nn_similarity, f"{prefix}_1nn_accuracy": self.nn_accuracy}

    def __str__(self) -> str:
        return f"median nearest-neighbour similarity {self.nn_similarity:.3f}, 1-NN accuracy {self.nn_accuracy:.1%}"


def leakage(train_images: np.ndarray, train_labels: np.ndarray, images: np.ndarray, labels: np.ndarray,
            block: int = 1024) -> Leakage:
    """The leakage diagnostic of (images, labels) against a training side."""
    reference = unit_vectors(train_images)
    query = unit_vectors(images)
    best = np.empty(len(query), dtype=np.float32)
    nearest = np.empty(len(query), dtype=np.int64)
    for start in range(0, len(query), block):
        sims = query[start:start + block] @ reference.T
        nearest[start:start + block] = sims.argmax(axis=1)
        best[start:start + block] = sims[np.arange(len(sims)), nearest[start:start + block]]
    return Leakage(float(np.median(best)), float((train_labels[nearest] == labels).mean()))
