"""Training and prediction of Keras CNNs: the tf.data pipeline, the fit with its callbacks, and
the compiled call for small batches. Imported when a CNN is first trained or used (it imports
TensorFlow), never by commands that only check their input."""

from __future__ import annotations

import time
import weakref
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from signlab.data.labels import encode
from signlab.data.splits import scale
from signlab.models.augment import augment_dataset
from signlab.models.classifier import LetterModel
from signlab.models.cnn import CNNSpec, build_cnn
from signlab.models.family import Arrays, EpochHook
from signlab.models.train import FitResult, epoch_key, set_seeds, size_thread_pools
from signlab.signals import held_interrupts, raise_held_interrupt

# Images go through one compiled call in batches of this size. Keras `predict` costs tens of ms
# per call (data adapter, iterator) however few the images: 256 images took 3-4x longer through
# it than through the call; and for 7,172 images (1 thread), 0.72-0.75 s alone against 0.67-0.71 s,
# 0.78-1.35 s beside a training against 0.72-0.75 s (its iterator's end waits for tf.data's
# autotuning: `_pipeline_options`; benchmarks/predict_batches.py).
PREDICT_BATCH = 1024
# Keras traces its training and validation steps into graphs once per model: about 1 s here
# (2 cores), more than a few batches cost. A training of at most this many batches in all (a
# quick run on a few images per letter, as tests make) runs them step by step instead:
# measured on CNN 3 (1 thread, benchmarks/eager_small_fits.py), 2 batches 0.82 s eager against
# 1.84 s traced, 10 batches even, 20 batches 5.1 s against 3.5 s. Predictions after training
# always run traced.
EAGER_MAX_BATCHES = 8
# Training steps Keras runs in one call of its compiled training function (a loop inside the
# graph; `steps_per_execution`), not one: each call from Python costs about half a millisecond
# more than a step inside the loop. Measured (benchmarks/steps_per_call.py, 2 cores): a
# one-layer network on this pipeline, 1.10-1.13 ms a step one a call, 0.58-0.62 eight a call;
# about 0.1 s of a CNN 3 epoch (1-2%, within the epoch-to-epoch spread of whole trainings),
# more for small networks and batches. The weights come out the same bit for bit. A held
# Ctrl-C or SIGTERM is raised at the end of a call, so at most this many steps later.
STEPS_PER_EXECUTION = 8
PREFETCH_BATCHES = 2  # batches made ahead of the training step (tf.data's autotuning is off)
_COMPILED: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()  # model -> its compiled call


def predict_proba(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Probabilities for scaled images `x` (N, 28, 28, 1)."""
    with held_interrupts():  # raised after TensorFlow's native code, not inside it (see models.train)
        call = _COMPILED.get(model)
        if call is None:
            # one trace for every batch size (evaluation, latency probe and serving each bring their own)
            spec = tf.TensorSpec([None, *x.shape[1:]], tf.float32)
            call = _COMPILED[model] = tf.function(lambda t: model(t, training=False), input_signature=[spec])
        x = np.asarray(x, dtype=np.float32)
        batches = [np.asarray(call(x[i:i + PREDICT_BATCH])) for i in range(0, len(x), PREDICT_BATCH)]
        return np.concatenate(batches) if batches else np.zeros((0, model.output_shape[-1]), np.float32)


def _dataset(images: np.ndarray, labels: np.ndarray, n_outputs: int, batch: int,
             shuffle_seed: int | None = None, augment_seed: int | None = None):
    """A cached tf.data pipeline: scale, [shuffle], batch, [augment], prefetch; tf.data's
    autotuning off (`_pipeline_options`)."""
    x = scale(images, normalised=True)[..., None]
    ds = tf.data.Dataset.from_tensor_slices((x, encode(labels, n_outputs))).cache()
    if shuffle_seed is not None:
        ds = ds.shuffle(len(x), seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch)
    if augment_seed is not None:
        ds = augment_dataset(ds, augment_seed)
    return ds.prefetch(PREFETCH_BATCHES).with_options(_pipeline_options())


def _pipeline_options() -> tf.data.Options:
    """tf.data options of every pipeline signlab trains or validates on: autotuning off.

    Keras makes a new iterator over each pipeline every epoch (training and validation), and
    destroying the last one waits for tf.data's autotuning thread to wake from its sleep
    between optimisations (`Model::OptimizeLoop`, up to seconds; seen with gdb in
    `RootDataset::Iterator::~Iterator`), the whole process idle meanwhile. Measured here
    (TensorFlow 2.21, 2 cores; docs/benchmarks.md, "The idle spells were tf.data's autotuning"): two
    1-thread trainings side by side (`tiny`, 5 epochs) took 75 s of training each with it,
    58 s without, the same CPU seconds and the same accuracy; one `cnn3` training alone,
    4 epochs, 55-74 s with it, 46 s without. Without it, the prefetch buffer is
    `PREFETCH_BATCHES` and the augmentation map's AUTOTUNE calls are tf.data's default
    (its thread pool's size)."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def fit_cnn(spec: CNNSpec, train: Arrays, val: Arrays | None, seed: int, hooks: list[EpochHook]) -> FitResult:
    """Train a CNN (see `models.train.fit`)."""
    # An exception raised by the signal handler inside TensorFlow's native code can come out
    # as a SystemError ("bad argument to internal function": a trial failed, the study went
    # on, Ctrl-C lost): Ctrl-C and SIGTERM wait for the next batch's end and are raised there.
    with held_interrupts():
        return _fit_cnn_held(spec, train, val, seed, hooks)


def _fit_cnn_held(spec: CNNSpec, train: Arrays, val: Arrays | None, seed: int, hooks: list[EpochHook]) -> FitResult:
    size_thread_pools()
    keras.config.disable_interactive_logging()  # no progress bars from Keras
    tf.get_logger().setLevel("ERROR")  # retracing notes when many models train in one process
    set_seeds(seed)
    model = _compiled(build_cnn(spec, fused_batch_norm=True), keras.optimizers.Adam(spec.learning_rate))
    train_ds = _dataset(*train, spec.n_classes, spec.batch_size, shuffle_seed=seed,
                        augment_seed=seed if spec.augment else None)
    val_ds = None if val is None else _dataset(*val, spec.n_classes, 1024)
    result = FitResult(LetterModel("cnn", model, True, spec.n_classes))
    callbacks: list[keras.callbacks.Callback] = [EpochCallback(result, hooks)]
    if spec.lr_schedule:
        schedule = spec.lr_schedule
        callbacks.append(keras.callbacks.LearningRateScheduler(lambda epoch: schedule[min(epoch, len(schedule) - 1)]))
    elif spec.adaptive_lr and val is not None:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.5, patience=2, min_lr=1e-5))
    if spec.early_stopping and val is not None:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=spec.patience))
    # not compile(run_eagerly=...): that would be saved with the model and slow its serving
    model.run_eagerly = spec.epochs * -(-len(train[0]) // spec.batch_size) <= EAGER_MAX_BATCHES
    # set here, not in compile(): the saved model's compile config stays as it was
    model.steps_per_execution = 1 if model.run_eagerly else STEPS_PER_EXECUTION
    start = time.perf_counter()
    model.fit(train_ds, validation_data=val_ds, epochs=spec.epochs, callbacks=callbacks, verbose=0,
              shuffle=False)  # the pipeline shuffles
    result.train_seconds = time.perf_counter() - start
    model.run_eagerly, model.steps_per_execution = False, 1
    model.train_function = model.test_function = None  # traced for those settings
    if any(block.batch_norm for block in spec.blocks):  # the fused layer is for training only
        result.model = LetterModel("cnn", plain_copy(spec, model), True, spec.n_classes)
    return result


def _compiled(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> keras.Model:
    """`model` compiled as every signlab CNN trains (one place for its loss and metrics)."""
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def plain_copy(spec: CNNSpec, trained: keras.Model) -> keras.Model:
    """The network `trained` rebuilt with Keras's own layers (no fused batch norm), compiled
    alike, with its weights and optimizer state: what is evaluated, logged and served, saved
    as a model trained with Keras's layers would be and loadable without signlab."""
    optimizer = trained.optimizer.__class__.from_config(trained.optimizer.get_config())
    model = _compiled(build_cnn(spec, name=trained.name), optimizer)
    model.set_weights(trained.get_weights())
    optimizer.build(model.trainable_variables)
    for copy, source in zip(optimizer.variables, trained.optimizer.variables, strict=True):
        copy.assign(source)
    return model


class EpochCallback(keras.callbacks.Callback):
    """Hands each epoch's logs to signlab hooks, keeps the weights of the best epoch by
    `epoch_key` (restored when training ends), and raises a held Ctrl-C or SIGTERM at the end
    of a batch."""

    def __init__(self, result: FitResult, hooks: list[EpochHook]) -> None:
        super().__init__()
        self.result, self.hooks = result, hooks
        self.best: tuple[float, float] = (float("-inf"), float("-inf"))
        self.weights: list | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = dict(logs or {})
        metrics = {k: float(logs[k]) for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in logs}
        metrics["learning_rate"] = float(self.model.optimizer.learning_rate.numpy())
        self.result.history.append(metrics)
        if "val_accuracy" in metrics and epoch_key(metrics) >= self.best:
            self.best, self.weights = epoch_key(metrics), self.model.get_weights()
        for hook in self.hooks:
            hook(epoch, metrics)

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.weights is not None:
            self.model.set_weights(self.weights)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        raise_held_interrupt()

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        raise_held_interrupt()
