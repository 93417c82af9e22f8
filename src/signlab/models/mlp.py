"""A scikit-learn MLPClassifier from a spec, trained one epoch at a time by signlab.models.train."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # imported where a model is built: checking a spec needs no scikit-learn
    from sklearn.neural_network import MLPClassifier

# Batches per `partial_fit` call in `train_one_epoch`: between calls, weights and Adam moments
# that decayed into float32's subnormal range are set to zero.
BATCHES_PER_CALL = 50


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
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(
        hidden_layer_sizes=tuple(spec.hidden_layers),
        activation=spec.activation,
        solver="adam",
        alpha=spec.alpha,
        batch_size=spec.batch_size,
        learning_rate_init=spec.learning_rate,
        max_iter=spec.epochs,
        shuffle=False,  # train_one_epoch shuffles each epoch itself, then feeds it in slices
        random_state=seed,
    )


def train_one_epoch(clf: MLPClassifier, x: np.ndarray, y: np.ndarray, classes: np.ndarray,
                    rng: np.random.Generator) -> float:
    """One pass over (x, y) in shuffled mini-batches; returns the mean training loss.

    scikit-learn trains in the input's dtype (float32 here). The weights of units that stop
    firing, and their Adam moments, decay towards zero and reach float32's subnormal range
    after a few epochs; arithmetic on subnormals is slow on x86, and a full-data MLP epoch went
    from 2 s to 12 s by the tenth epoch. scikit-learn has no hook inside an epoch and NumPy no
    flush-to-zero switch, so the epoch runs as several `partial_fit` calls (the same batches,
    the same Adam state) with subnormals set to zero between them.
    """
    order = rng.permutation(len(x))
    step = clf.batch_size * BATCHES_PER_CALL
    total = 0.0
    for start in range(0, len(x), step):
        rows = order[start:start + step]
        with warnings.catch_warnings():  # a last call of fewer rows than a batch is one smaller batch, as meant
            warnings.filterwarnings("ignore", message="Got `batch_size` less than 1 or larger than sample size",
                                    category=UserWarning)
            clf.partial_fit(x[rows], y[rows], classes=classes)
        total += float(clf.loss_) * len(rows)
        _flush_subnormals(clf)
    return total / len(x)


def _flush_subnormals(clf: MLPClassifier) -> None:
    """Set the weights and Adam moments smaller than the dtype's smallest normal number to zero."""
    optimizer = getattr(clf, "_optimizer", None)
    arrays = [*clf.coefs_, *clf.intercepts_, *getattr(optimizer, "ms", []), *getattr(optimizer, "vs", [])]
    for array in arrays:
        array[np.abs(array) < np.finfo(array.dtype).tiny] = 0


def count_params(clf: MLPClassifier) -> int:
    """Weights and biases of a fitted MLP."""
    return int(sum(w.size for w in clf.coefs_) + sum(b.size for b in clf.intercepts_))
