"""Benchmark: what each training option buys on the paper's CNN 3 (39,824 params, batch 128,
Adam), full data, one process: Keras `fit` on NumPy arrays (the baseline of
benchmarks/train_speed.py) against a cached `tf.data` pipeline (signlab's), and that pipeline
with XLA (`jit_compile=True`), `steps_per_execution=8`, mixed bfloat16, or validation in
batches of 128 instead of 1024. Run on a quiet machine.

    python benchmarks/epoch_options.py [--epochs 4] [--output benchmarks/results/epoch_options.json]

Seconds per epoch are the gaps between successive epoch ends (training plus validation), the
first epoch (tracing, compilation) left out; the figure is their median. Validation accuracy
after each epoch is kept, to see what an option costs in accuracy (one seed: a hint, not a
verdict).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import keras
import tensorflow as tf

from signlab.data.dataset import load_split
from signlab.data.labels import encode
from signlab.data.splits import normalise, validation_split
from signlab.models.cnn import build_cnn
from signlab.models.presets import make_spec

OPTIONS = {
    "keras_fit_numpy": dict(pipeline=False),
    "tf_data": dict(),
    "tf_data_xla": dict(jit_compile=True),
    "tf_data_steps_per_execution_8": dict(steps_per_execution=8),
    "tf_data_mixed_bfloat16": dict(policy="mixed_bfloat16"),
    "tf_data_val_batch_128": dict(val_batch=128),
}


def seconds_per_epoch(train, val, epochs: int, pipeline: bool = True, jit_compile: bool = False,
                      steps_per_execution: int = 1, policy: str = "float32",
                      val_batch: int = 1024) -> dict:
    """Train CNN 3 one way; the gaps between epoch ends and each epoch's validation accuracy."""
    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(0)
    model = build_cnn(make_spec("cnn3"))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=jit_compile, steps_per_execution=steps_per_execution)
    (x, y), (xv, yv) = train, val
    ends: list[tuple[float, float]] = []
    stamp = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda e, logs: ends.append((time.perf_counter(), float(logs["val_accuracy"]))))
    if pipeline:
        train_ds = (tf.data.Dataset.from_tensor_slices((x, y)).cache().shuffle(len(x), seed=0)
                    .batch(128).prefetch(tf.data.AUTOTUNE))
        val_ds = tf.data.Dataset.from_tensor_slices((xv, yv)).cache().batch(val_batch).prefetch(tf.data.AUTOTUNE)
        model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=[stamp], verbose=0)
    else:
        model.fit(x, y, batch_size=128, epochs=epochs, validation_data=(xv, yv), callbacks=[stamp], verbose=0)
    keras.config.set_dtype_policy("float32")
    gaps = [b[0] - a[0] for a, b in zip(ends, ends[1:], strict=False)]
    return {"seconds_per_epoch": round(statistics.median(gaps), 2), "gaps": [round(g, 2) for g in gaps],
            "val_accuracy": [round(e[1], 4) for e in ends]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--options", default=",".join(OPTIONS), help="comma-separated, of: " + ", ".join(OPTIONS))
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/epoch_options.json"))
    args = parser.parse_args()

    split = load_split("train")
    (xt, yt), (xv, yv) = validation_split(split.images, split.labels, 0.2, seed=0)
    train = normalise(xt)[..., None].astype("float32"), encode(yt)
    val = normalise(xv)[..., None].astype("float32"), encode(yv)
    results = {}
    for name in args.options.split(","):
        results[name] = seconds_per_epoch(train, val, args.epochs, **OPTIONS[name])
        print(name, json.dumps(results[name]), flush=True)
    base = results.get("keras_fit_numpy", {}).get("seconds_per_epoch")
    out = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
           "tensorflow": tf.__version__, "keras": keras.__version__, "epochs": args.epochs,
           "ratio_to_keras_fit": {k: round(v["seconds_per_epoch"] / base, 3) for k, v in results.items()} if base else {},
           "options": results}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
