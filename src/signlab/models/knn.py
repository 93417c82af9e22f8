"""A scikit-learn k-nearest-neighbours classifier on the 784 pixels (the paper's reference [3])."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # imported where a model is built: checking a spec needs no scikit-learn
    from sklearn.neighbors import KNeighborsClassifier


class KNNSpec(BaseModel):
    """A KNN on the pixels: fitting stores the training images, nothing is learned per epoch."""

    model_config = ConfigDict(extra="forbid")
    family: Literal["knn"] = "knn"
    n_neighbors: int = Field(1, ge=1, le=50)
    weights: Literal["uniform", "distance"] = "uniform"
    normalise: bool = True
    epochs: Literal[1] = Field(1, description="one pass: store the training images")
    augment: Literal[False] = False


def build_knn(spec: KNNSpec) -> KNeighborsClassifier:
    """Brute-force Euclidean KNN (on 784 dimensions trees do not help)."""
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(n_neighbors=spec.n_neighbors, weights=spec.weights, algorithm="brute")


def count_params(clf: KNeighborsClassifier) -> int:
    """The stored values a fitted KNN predicts from: every training image's pixels and label."""
    n_samples, n_features = clf.n_samples_fit_, clf.n_features_in_
    return int(n_samples * (n_features + 1))
