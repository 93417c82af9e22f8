"""How far an MLP gets when it sees freshly augmented images every epoch (issue 12's MLP target).

The `mlp` family (scikit-learn) trains on fixed perturbed copies of the training rows. This
checks whether fresh augmentation each epoch (what the CNN rows get) lifts an MLP towards the
99% target: a Keras MLP (Flatten -> units -> units -> units/2 -> 24, ReLU, dropout 0.2) on the
grouped split, the CNN rows' augmentation pipeline, Adam 1e-3 halved on plateaus of validation
loss. The epoch with the best validation accuracy is reported, with its test accuracy (test
is reported, never used to choose). Not a product model: a measurement.

    python benchmarks/keras_mlp.py --units 1024 --epochs 120 --json benchmarks/results/keras_mlp.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from signlab.data.dataset import load_files
from signlab.data.labels import encode
from signlab.data.settings import DataSettings
from signlab.data.splits import scale
from signlab.models.augment import augment_dataset
from signlab.models.train import set_seeds
from signlab.runs.job import prepare_data


def dataset(images: np.ndarray, labels: np.ndarray, batch: int, seed: int | None = None):  # noqa: ANN201
    """Scaled images in batches; with `seed`, shuffled and freshly augmented every epoch."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((scale(images, normalised=True)[..., None], encode(labels))).cache()
    if seed is not None:
        ds = augment_dataset(ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True).batch(batch), seed)
    else:
        ds = ds.batch(batch)
    return ds.prefetch(tf.data.AUTOTUNE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", type=Path, default=None, help="write the result here")
    args = parser.parse_args()

    import keras

    data = prepare_data(load_files(args.data_dir), DataSettings(seed=args.seed))
    set_seeds(args.seed)
    model = keras.Sequential([
        keras.Input((28, 28, 1)), keras.layers.Flatten(),
        keras.layers.Dense(args.units, activation="relu"), keras.layers.Dropout(0.2),
        keras.layers.Dense(args.units, activation="relu"), keras.layers.Dropout(0.2),
        keras.layers.Dense(args.units // 2, activation="relu"), keras.layers.Dense(24, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    train, val, test = (dataset(*data.train, 128, args.seed), dataset(*data.val, 1024), dataset(*data.test, 1024))
    best: dict[str, float] = {"val_accuracy": -1.0}
    start = time.perf_counter()

    class Best(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            logs = logs or {}
            if logs["val_accuracy"] > best["val_accuracy"]:  # the test figure of the epoch validation chose
                best.update(epoch=epoch + 1, val_accuracy=logs["val_accuracy"],
                            test_accuracy=model.evaluate(test, verbose=0)[1])
            print(f"epoch {epoch + 1}: acc {logs['accuracy']:.4f} val_acc {logs['val_accuracy']:.4f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)

    plateau = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_lr=1e-5)
    model.fit(train, validation_data=val, epochs=args.epochs, callbacks=[plateau, Best()], verbose=0)
    result = {"units": args.units, "epochs": args.epochs, "seed": args.seed, "params": model.count_params(),
              "seconds": round(time.perf_counter() - start, 1), **best}
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
