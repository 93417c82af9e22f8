"""Fit a model of either family, one epoch at a time, reporting each epoch to hooks.

Hooks get (epoch, metrics) with loss, accuracy, val_loss, val_accuracy and learning_rate;
a hook may raise (optuna.TrialPruned, say) to stop training. A NaN loss raises.

One rule for which weights a fit returns: those of its epoch with the best validation
accuracy; between epochs of equal validation accuracy, the lower validation loss; between
epochs equal in both, the later one (`epoch_key`). It holds for both families. The figure
that ranks a run (`final_val_accuracy`, its model evaluated on the validation split) and the
model it logs therefore come from the same epoch, `best_epoch`. Without validation (a
training on the whole file) the last epoch is kept.
"""

from __future__ import annotations

import copy
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from signlab.data.labels import N_CLASSES, encode
from signlab.data.splits import scale
from signlab.models.augment import augmented_copies
from signlab.models.classifier import LetterModel
from signlab.models.family import Arrays, EpochHook, family_of
from signlab.models.knn import KNNSpec, build_knn
from signlab.models.mlp import MLPSpec, build_mlp, train_one_epoch
from signlab.signals import held_interrupts

if TYPE_CHECKING:
    from signlab.models.presets import Spec

__all__ = ["Arrays", "EpochHook", "FitResult", "NonFiniteLoss", "epoch_key", "fit", "free_graph", "set_seeds",
           "size_thread_pools", "whole_file_problem"]


class NonFiniteLoss(FloatingPointError):
    """Training diverged: the loss became NaN or infinite."""


@dataclass
class FitResult:
    """A trained model, its per-epoch history and how long training took."""

    model: LetterModel
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    threads: int = 0  # the threads the framework computed with (`Family.compute_threads`)

    @property
    def epochs_run(self) -> int:
        return len(self.history)

    @property
    def best_epoch(self) -> int:
        """1-based epoch whose weights the model holds (`epoch_key`; the last without validation)."""
        if not self.history:
            return 0
        if not any("val_accuracy" in h for h in self.history):
            return len(self.history)
        best = 0
        for i, metrics in enumerate(self.history):
            if epoch_key(metrics) >= epoch_key(self.history[best]):
                best = i
        return best + 1


def epoch_key(metrics: dict[str, float]) -> tuple[float, float]:
    """What ranks epochs: validation accuracy, then lower validation loss; an epoch whose key
    equals the best so far replaces it (the later epoch wins a full tie)."""
    return (metrics.get("val_accuracy", float("-inf")), -metrics.get("val_loss", float("inf")))


def whole_file_problem(spec: Spec) -> str | None:
    """Why `spec` cannot train without validation rows (its schedule reads validation loss),
    or None. A whole-file training runs exactly `spec.epochs` epochs at rates fixed in advance."""
    return family_of(spec).whole_file_problem(spec)


def size_thread_pools() -> None:
    """TensorFlow's thread pools as the launcher of parallel trials sized them ($SIGNLAB_THREADS),
    before its runtime starts; a no-op otherwise, once the runtime runs, or where TensorFlow is
    not loaded: a family that trains without it (scikit-learn's) never imports it for this
    (about 5 s of CPU a worker process; its BLAS pools follow the launcher's variables)."""
    from signlab.config import worker_threads

    threads = worker_threads()
    if threads is None or "tensorflow" not in sys.modules:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1 if threads == 1 else 2)
    except RuntimeError:  # the runtime already started (an earlier model in this process)
        pass


def set_seeds(seed: int, tensorflow: bool = True) -> None:
    """Seed Python and NumPy, and TensorFlow (through Keras) when `tensorflow`: a scikit-learn
    family leaves it out, so that its training never imports TensorFlow (seconds a process)."""
    if not tensorflow:
        random.seed(seed)
        np.random.seed(seed)
        return
    import keras

    keras.utils.set_random_seed(seed)


def free_graph(collect: bool = True) -> None:
    """Free Keras' graph between models trained in one process, never masking the caller's
    own outcome (a SIGTERM that lands inside an import can leave Keras half-imported). Keras
    not imported: no graph to free, and no import of several seconds in an interrupted
    trial's clean-up. `collect=False` skips Python's garbage collection (0.2-0.4 s in a process
    holding TensorFlow and MLflow): for a trial, after which Optuna collects anyway
    (`gc_after_trial`)."""
    keras = sys.modules.get("keras")
    if keras is None:
        return
    try:
        keras.backend.clear_session(free_memory=collect)
    except Exception:  # noqa: BLE001
        pass


def fit(spec: Spec, train: Arrays, val: Arrays | None, seed: int = 0, hooks: Sequence[EpochHook] = ()) -> FitResult:
    """Train `spec` on `train`, validating on `val` after every epoch. Without `val` (a
    refit on the whole training file) it trains exactly `spec.epochs` epochs and keeps the
    last; nothing then depends on validation (a CNN needs `lr_schedule` for a varying rate).

    Args:
        spec: a CNN, MLP or KNN spec; its family (`models.family`) trains it.
        train: training images (uint8, N x 28 x 28) and labels 0-24.
        val: validation images and labels, or None for the whole file.
        seed: seeds initialisation, shuffling and augmentation.
        hooks: called as hook(epoch, metrics) after each epoch; one may raise to stop.

    Returns:
        The model with the kept epoch's weights, the per-epoch history, the training time and
        the threads it computed with.
    """
    family = family_of(spec)
    result = family.fit(spec, train, val, seed, [check_finite, *hooks])
    result.threads = family.compute_threads()
    return result


def check_finite(epoch: int, metrics: dict[str, float]) -> None:
    if not math.isfinite(metrics.get("loss", 0.0)):
        raise NonFiniteLoss(f"loss is {metrics['loss']} at epoch {epoch}: training diverged")


def fit_mlp(spec: MLPSpec, train: Arrays, val: Arrays | None, seed: int, hooks: list[EpochHook]) -> FitResult:
    from sklearn.metrics import log_loss

    set_seeds(seed, tensorflow=False)
    images, labels = train
    if spec.augment:
        images, labels = augmented_copies(images, labels, spec.augment_copies, seed)
    x = scale(images, spec.normalise).reshape(len(images), -1)
    y = encode(labels)
    if val is not None:
        x_val = scale(val[0], spec.normalise).reshape(len(val[0]), -1)
        y_val = encode(val[1])
    rng = np.random.default_rng(seed)
    probe = rng.choice(len(x), size=min(len(x), 10_000), replace=False)
    clf = build_mlp(spec, seed)
    classes = np.arange(N_CLASSES)
    result = FitResult(LetterModel("mlp", clf, spec.normalise))
    best_score, best_key, best_state, stale = -np.inf, (-np.inf, -np.inf), None, 0
    start = time.perf_counter()
    for epoch in range(spec.epochs):
        # scikit-learn catches KeyboardInterrupt inside partial_fit ("Training interrupted by
        # user") and goes on; and the hooks write to the stores (an interrupt inside a SQLite
        # transaction can leave its lock held, so that the clean-up waits on it): a Ctrl-C or
        # SIGTERM is held until the epoch and its hooks are done, then raised here.
        with held_interrupts():
            loss = train_one_epoch(clf, x, y, classes, rng)
            metrics = {"loss": loss, "accuracy": float((clf.predict(x[probe]) == y[probe]).mean()),
                       "learning_rate": spec.learning_rate}
            if val is None:  # a refit: exactly spec.epochs epochs, the last kept
                result.history.append(metrics)
                for hook in hooks:
                    hook(epoch, metrics)
                continue
            proba = clf.predict_proba(x_val)
            metrics["val_loss"] = float(log_loss(y_val, proba, labels=classes))
            metrics["val_accuracy"] = float((proba.argmax(axis=1) == y_val).mean())
            result.history.append(metrics)
            for hook in hooks:
                hook(epoch, metrics)
            if epoch_key(metrics) >= best_key:  # the module's rule: keep the best epoch's weights
                best_key, best_state = epoch_key(metrics), copy.deepcopy((clf.coefs_, clf.intercepts_))
            # scikit-learn's stopping rules: with early stopping, the validation score must
            # improve by tol; without it, the training loss must fall by tol; else stop after
            # `patience` epochs.
            score = metrics["val_accuracy"] if spec.early_stopping else -metrics["loss"]
            if score > best_score + spec.tol:
                best_score, stale = score, 0
            else:
                stale += 1
            if stale >= spec.patience:
                break
    if best_state is not None:
        clf.coefs_, clf.intercepts_ = best_state
    result.train_seconds = time.perf_counter() - start
    return result


def fit_knn(spec: KNNSpec, train: Arrays, val: Arrays | None, hooks: list[EpochHook]) -> FitResult:
    """One "epoch": store the training images, then score the validation split (no training
    loss or learning rate: a KNN has neither)."""
    from sklearn.metrics import log_loss

    start = time.perf_counter()
    clf = build_knn(spec).fit(scale(train[0], spec.normalise).reshape(len(train[0]), -1), encode(train[1]))
    if len(clf.classes_) != N_CLASSES:  # predict_proba's columns must be the 24 letters
        raise ValueError(f"a KNN needs training images of all {N_CLASSES} letters, got {len(clf.classes_)}")
    result = FitResult(LetterModel("knn", clf, spec.normalise))
    if val is None:  # the whole file: nothing to score it on
        result.train_seconds = time.perf_counter() - start
        result.history.append({})
        for hook in hooks:
            hook(0, {})
        return result
    proba = result.model.predict_proba(val[0])
    y_val = encode(val[1])
    metrics = {"val_loss": float(log_loss(y_val, proba, labels=np.arange(N_CLASSES))),
               "val_accuracy": float((proba.argmax(axis=1) == y_val).mean())}
    result.train_seconds = time.perf_counter() - start
    result.history.append(metrics)
    for hook in hooks:
        hook(0, metrics)
    return result
