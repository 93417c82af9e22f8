"""A scikit-learn MLPClassifier from a spec, trained one epoch at a time by signlab.models.train."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from sklearn.neural_network import MLPClassifier


class MLPSpec(BaseModel):
    """Architecture and training settings of one MLP."""

    model_config = ConfigDict(extra="forbid")
    family: Literal["mlp"] = "mlp"
    hidden_layers: list[Annotated[int, Field(ge=1, le=8192)]] = Field(
        default_factory=lambda: [256, 128], min_length=1, max_length=6)
    activation: Literal["relu", "tanh", "logistic"] = "relu"
    alpha: float = Field(1e-4, ge=0.0)
    learning_rate: float = Field(1e-3, gt=0.0, le=1.0)
    batch_size: int = Field(200, ge=1, le=8192)
    epochs: int = Field(200, ge=1, le=5000, description="max_iter: most passes over the data")
    early_stopping: bool = True
    patience: int = Field(10, ge=1, description="n_iter_no_change")
    tol: float = Field(1e-4, ge=0.0)
    normalise: bool = True
    augment: bool = False
    augment_copies: int = Field(3, ge=1, le=10)


def build_mlp(spec: MLPSpec, seed: int = 0) -> MLPClassifier:
    """An MLPClassifier (Adam) ready for `partial_fit`, one pass over the data per call."""
    return MLPClassifier(
        hidden_layer_sizes=tuple(spec.hidden_layers),
        activation=spec.activation,
        solver="adam",
        alpha=spec.alpha,
        batch_size=spec.batch_size,
        learning_rate_init=spec.learning_rate,
        max_iter=spec.epochs,
        shuffle=True,
        random_state=seed,
    )


def count_params(clf: MLPClassifier) -> int:
    """Weights and biases of a fitted MLP."""
    return int(sum(w.size for w in clf.coefs_) + sum(b.size for b in clf.intercepts_))
