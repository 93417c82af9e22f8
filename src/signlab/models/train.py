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
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from signlab.data.labels import N_CLASSES, encode
from signlab.data.splits import scale
from signlab.models.augment import augment_dataset, augmented_copies
from signlab.models.classifier import LetterModel
from signlab.models.cnn import CNNSpec, build_cnn
from signlab.models.knn import KNNSpec, build_knn
from signlab.models.mlp import MLPSpec, build_mlp, train_one_epoch
from signlab.signals import held_interrupts, raise_held_interrupt

EpochHook = Callable[[int, dict[str, float]], None]
Arrays = tuple[np.ndarray, np.ndarray]  # uint8 images (N, 28, 28), labels 0-24


class NonFiniteLoss(FloatingPointError):
    """Training diverged: the loss became NaN or infinite."""


@dataclass
class FitResult:
    """A trained model, its per-epoch history and how long training took."""

    model: LetterModel
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0

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


def whole_file_problem(spec: CNNSpec | MLPSpec | KNNSpec) -> str | None:
    """Why `spec` cannot train without validation rows (its schedule reads validation loss),
    or None. A whole-file training runs exactly `spec.epochs` epochs at rates fixed in advance."""
    if isinstance(spec, KNNSpec):
        return None
    if isinstance(spec, CNNSpec) and spec.adaptive_lr and not spec.lr_schedule:
        return ("its learning rate adapts to validation loss (adaptive_lr); fix it in advance with "
                "--set 'lr_schedule=[...]' (one rate per epoch) or train with --no-adaptive-lr")
    if spec.early_stopping:
        return ("it stops early on validation (early_stopping); set the epochs it should run with "
                "--set early_stopping=false --epochs N")
    return None


def size_thread_pools() -> None:
    """TensorFlow's thread pools as the launcher of parallel trials sized them ($SIGNLAB_THREADS),
    before its runtime starts; a no-op otherwise, or once the runtime runs."""
    from signlab.config import worker_threads

    threads = worker_threads()
    if threads is None:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1 if threads == 1 else 2)
    except RuntimeError:  # the runtime already started (an earlier model in this process)
        pass


def set_seeds(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow (through Keras)."""
    import keras

    keras.utils.set_random_seed(seed)


def free_graph() -> None:
    """Free Keras' graph between models trained in one process, never masking the caller's
    own outcome (a SIGTERM that lands inside an import can leave Keras half-imported). Keras
    not imported: no graph to free, and no import of several seconds in an interrupted
    trial's clean-up."""
    keras = sys.modules.get("keras")
    if keras is None:
        return
    try:
        keras.backend.clear_session()
    except Exception:  # noqa: BLE001
        pass


def fit(
    spec: CNNSpec | MLPSpec | KNNSpec, train: Arrays, val: Arrays | None, seed: int = 0, hooks: Sequence[EpochHook] = ()
) -> FitResult:
    """Train `spec` on `train`, validating on `val` after every epoch. Without `val` (a
    refit on the whole training file) it trains exactly `spec.epochs` epochs and keeps the
    last; nothing then depends on validation (a CNN needs `lr_schedule` for a varying rate)."""
    hooks = [_check_finite, *hooks]
    if isinstance(spec, CNNSpec):
        return _fit_cnn(spec, train, val, seed, hooks)
    if isinstance(spec, KNNSpec):
        return _fit_knn(spec, train, val, hooks)
    return _fit_mlp(spec, train, val, seed, hooks)


def _check_finite(epoch: int, metrics: dict[str, float]) -> None:
    if not math.isfinite(metrics.get("loss", 0.0)):
        raise NonFiniteLoss(f"loss is {metrics['loss']} at epoch {epoch}: training diverged")


def _dataset(images: np.ndarray, labels: np.ndarray, n_outputs: int, batch: int,
             shuffle_seed: int | None = None, augment_seed: int | None = None):
    """A cached tf.data pipeline: scale, [shuffle], batch, [augment], prefetch."""
    import tensorflow as tf

    x = scale(images, normalised=True)[..., None]
    ds = tf.data.Dataset.from_tensor_slices((x, encode(labels, n_outputs))).cache()
    if shuffle_seed is not None:
        ds = ds.shuffle(len(x), seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch)
    if augment_seed is not None:
        ds = augment_dataset(ds, augment_seed)
    return ds.prefetch(tf.data.AUTOTUNE)


def _fit_cnn(spec: CNNSpec, train: Arrays, val: Arrays, seed: int, hooks: list[EpochHook]) -> FitResult:
    # An exception raised by the signal handler inside TensorFlow's native code can come out
    # as a SystemError ("bad argument to internal function": a trial failed, the study went
    # on, Ctrl-C lost): Ctrl-C and SIGTERM wait for the next batch's end and are raised there.
    with held_interrupts():
        return _fit_cnn_held(spec, train, val, seed, hooks)


def _fit_cnn_held(spec: CNNSpec, train: Arrays, val: Arrays, seed: int, hooks: list[EpochHook]) -> FitResult:
    import keras
    import tensorflow as tf

    size_thread_pools()
    keras.config.disable_interactive_logging()  # no progress bars from predict() calls
    tf.get_logger().setLevel("ERROR")  # retracing notes when many models train in one process
    set_seeds(seed)
    model = build_cnn(spec)
    model.compile(
        optimizer=keras.optimizers.Adam(spec.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    train_ds = _dataset(*train, spec.n_classes, spec.batch_size, shuffle_seed=seed,
                        augment_seed=seed if spec.augment else None)
    val_ds = None if val is None else _dataset(*val, spec.n_classes, 1024)
    result = FitResult(LetterModel("cnn", model, True, spec.n_classes))
    callbacks: list[keras.callbacks.Callback] = [_KerasHooks(result, hooks)]
    if spec.lr_schedule:
        schedule = spec.lr_schedule
        callbacks.append(keras.callbacks.LearningRateScheduler(lambda epoch: schedule[min(epoch, len(schedule) - 1)]))
    elif spec.adaptive_lr and val is not None:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.5, patience=2, min_lr=1e-5))
    if spec.early_stopping and val is not None:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=spec.patience))
    start = time.perf_counter()
    model.fit(train_ds, validation_data=val_ds, epochs=spec.epochs, callbacks=callbacks, verbose=0,
              shuffle=False)  # the pipeline shuffles
    result.train_seconds = time.perf_counter() - start
    return result


class _KerasHooks:
    """Adapter: a Keras callback that hands each epoch's logs to signlab hooks, keeps the
    weights of the best epoch by validation accuracy, restored when training ends, and
    raises a held Ctrl-C or SIGTERM at the end of a batch."""

    def __new__(cls, result: FitResult, hooks: list[EpochHook]):
        import keras

        class Hooks(keras.callbacks.Callback):
            best: tuple[float, float] = (float("-inf"), float("-inf"))
            weights: list | None = None

            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                logs = dict(logs or {})
                metrics = {k: float(logs[k]) for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in logs}
                metrics["learning_rate"] = float(self.model.optimizer.learning_rate.numpy())
                result.history.append(metrics)
                if "val_accuracy" in metrics and epoch_key(metrics) >= self.best:
                    self.best, self.weights = epoch_key(metrics), self.model.get_weights()
                for hook in hooks:
                    hook(epoch, metrics)

            def on_train_end(self, logs: dict | None = None) -> None:
                if self.weights is not None:
                    self.model.set_weights(self.weights)

            def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
                raise_held_interrupt()

            def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
                raise_held_interrupt()

        return Hooks()


def _fit_mlp(spec: MLPSpec, train: Arrays, val: Arrays | None, seed: int, hooks: list[EpochHook]) -> FitResult:
    from sklearn.metrics import log_loss

    set_seeds(seed)
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
        # user") and goes on: a Ctrl-C or SIGTERM is held until the epoch ends, then raised here.
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


def _fit_knn(spec: KNNSpec, train: Arrays, val: Arrays | None, hooks: list[EpochHook]) -> FitResult:
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
