"""Benchmark: a CNN 3 training step with Keras's batch norm, with TensorFlow's fused kernel
(signlab's, `models.fused_batch_norm`), without batch norm, and under mixed bfloat16; with
--breakdown, where a fused step's time goes among oneDNN's kernels; with --channels, one
batch-norm layer's training step (forward and backward) both ways for several channel counts.
Run on a quiet machine.

    python benchmarks/batch_norm_step.py [--steps 40] [--repeats 3] [--breakdown] [--channels]
        [--output benchmarks/results/batch_norm_step.json]

Each variant runs in its own process (the dtype policy is process-wide): CNN 3 (batch 128,
Adam), a cached `tf.data` pipeline of random images (a step's cost does not depend on their
values) with tf.data's autotuning off as in signlab, one epoch of `--steps` steps to trace,
then `--repeats` epochs timed; the figure is milliseconds a step, each repeat kept.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {
    "keras_batch_norm": dict(fused=False),
    "fused_batch_norm": dict(fused=True),
    "no_batch_norm": dict(fused=False, batch_norm=False),
    "keras_batch_norm_bfloat16": dict(fused=False, policy="mixed_bfloat16"),
    "fused_batch_norm_bfloat16": dict(fused=True, policy="mixed_bfloat16"),  # bfloat16 inputs: Keras's path
}


def time_steps(variant: str, steps: int, repeats: int) -> list[float]:
    """Milliseconds a step of CNN 3 built and trained as `variant` says, one per repeat."""
    import keras
    import numpy as np
    import tensorflow as tf

    from signlab.models.cnn import build_cnn
    from signlab.models.presets import make_spec

    settings = VARIANTS[variant]
    keras.config.set_dtype_policy(settings.get("policy", "float32"))
    spec = make_spec("cnn3")
    if not settings.get("batch_norm", True):
        spec = spec.model_copy(update={"blocks": [b.model_copy(update={"batch_norm": False}) for b in spec.blocks]})
    model = build_cnn(spec, fused_batch_norm=settings["fused"])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.random((128 * steps, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 24, 128 * steps)
    options = tf.data.Options()
    options.autotune.enabled = False
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(128).cache().with_options(options)
    model.fit(ds, epochs=1, verbose=0)  # tracing
    print("TIMED", flush=True)  # --breakdown reads oneDNN's lines after this mark
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.fit(ds, epochs=1, verbose=0)
        times.append(round((time.perf_counter() - start) / steps * 1000, 1))
    return times


CHANNEL_SHAPES = [(28, c) for c in (4, 8, 12, 16, 18, 20, 22, 24, 28, 30, 32, 36, 40, 44, 48, 52, 57, 60, 64)] \
    + [(14, c) for c in (16, 32, 46, 48, 64)] + [(7, c) for c in (17, 20, 46, 48)]


def channel_sweep(repeats: int = 20) -> list[dict]:
    """ms for one batch-norm training step on 128 images of each (size, channels), Keras's layer
    against the fused kernel (forced on for every count, which signlab does not do)."""
    import keras
    import tensorflow as tf

    from signlab.models import fused_batch_norm

    fused_batch_norm.CHANNEL_MULTIPLE = 1  # the kernel for every count, to see where it is fast

    def timed(layer: keras.layers.Layer, x: tf.Tensor) -> float:
        @tf.function
        def step(x: tf.Tensor) -> list:
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=True)
                loss = tf.reduce_sum(y * y)
            return tape.gradient(loss, [x, layer.gamma, layer.beta])

        step(x)
        start = time.perf_counter()
        for _ in range(repeats):
            step(x)
        return round((time.perf_counter() - start) / repeats * 1000, 2)

    rows = []
    for size, channels in CHANNEL_SHAPES:
        x = tf.random.uniform((128, size, size, channels))
        keras_layer, fused = keras.layers.BatchNormalization(), fused_batch_norm.FusedBatchNormalization()
        rows.append({"shape": f"{size}x{size}x{channels}", "keras_ms": timed(keras_layer, x), "fused_ms": timed(fused, x)})
    return rows


def breakdown(steps: int) -> list[dict]:
    """oneDNN's kernels in a fused step, by total time: ms a step, calls a step, kernel, shape."""
    env = dict(os.environ, ONEDNN_VERBOSE="1")
    out = subprocess.run([sys.executable, __file__, "--one", "fused_batch_norm", "--steps", str(steps),
                          "--repeats", "1"], env=env, capture_output=True, text=True, check=True).stdout
    total: dict[tuple[str, str, str], float] = collections.defaultdict(float)
    calls: collections.Counter = collections.Counter()
    for line in out.split("TIMED", 1)[1].splitlines():
        fields = line.split(",")
        if line.startswith("onednn_verbose") and len(fields) > 8 and fields[3] == "exec":
            key = (fields[5], fields[6], fields[7], fields[-2])  # primitive, implementation, direction, shape
            total[key] += float(fields[-1])
            calls[key] += 1
    ranked = sorted(total, key=total.get, reverse=True)
    return [{"ms_per_step": round(total[k] / steps, 2), "calls_per_step": calls[k] // steps,
             "primitive": k[0], "implementation": k[1], "direction": k[2], "shape": k[3]} for k in ranked[:12]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, of: " + ", ".join(VARIANTS))
    parser.add_argument("--breakdown", action="store_true", help="also oneDNN's kernels in a fused step")
    parser.add_argument("--channels", action="store_true", help="also one layer's step for several channel counts")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a variant, in this process (the runs below)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/batch_norm_step.json"))
    args = parser.parse_args()
    if args.one:
        print("RESULT", json.dumps(time_steps(args.one, args.steps, args.repeats)), flush=True)
        return
    results = {}
    for variant in args.variants.split(","):
        out = subprocess.run([sys.executable, __file__, "--one", variant, "--steps", str(args.steps),
                              "--repeats", str(args.repeats)], capture_output=True, text=True, check=True).stdout
        results[variant] = json.loads(out.split("RESULT", 1)[1])
        print(f"{variant:28s} ms/step {results[variant]}", flush=True)
    record = {"machine": f"{os.uname().machine}, {os.cpu_count()} cores", "steps": args.steps,
              "ms_per_step": results}
    if args.breakdown:
        record["onednn_fused_step"] = breakdown(args.steps)
        for row in record["onednn_fused_step"]:
            print(json.dumps(row))
    if args.channels:
        record["one_layer_by_channels"] = channel_sweep()
        for row in record["one_layer_by_channels"]:
            print(json.dumps(row))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
