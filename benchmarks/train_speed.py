"""Benchmark: seconds per epoch of cnn3 through signlab (MLflow tracking on; augmentation
off and on) against plain Keras `model.fit` on NumPy arrays (same model, batch size and
validation data), and MLP seconds per iteration. Full data; run on a quiet machine.

    python benchmarks/train_speed.py [--epochs 6] [--output benchmarks/results/train_speed.json]

Per-epoch times are the gaps between successive epoch ends (training + validation), the
first epoch (graph tracing) left out; the figure is the median of the rest. For scale, the
arithmetic limit: CNN 3's multiply-adds counted layer by layer (a training step about three
times the forward pass) over the float32 matrix-multiply rate NumPy reaches on this machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

from signlab.data.dataset import load_split
from signlab.data.labels import encode
from signlab.data.splits import normalise, validation_split
from signlab.models.cnn import build_cnn
from signlab.models.presets import make_spec
from signlab.models.train import fit
from signlab.runs import lifecycle, records, store


def epoch_seconds(stamps: list[float]) -> list[float]:
    """Gaps between successive epoch ends (the first epoch is left out)."""
    return [b - a for a, b in zip(stamps, stamps[1:], strict=False)]


def forward_flops(model: keras.Model) -> int:
    """Floating-point operations of one image's forward pass through the convolutions and dense
    layers (2 per multiply-add; pooling, normalisation and activations left out)."""
    flops = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            h, w, c_out = layer.output.shape[1:]
            k_h, k_w, c_in, _ = layer.kernel.shape
            flops += 2 * h * w * c_out * k_h * k_w * c_in
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * int(np.prod(layer.kernel.shape))
    return flops


def matmul_gflops(size: int = 2000, repeats: int = 10) -> float:
    """The float32 matrix-multiply rate NumPy's BLAS reaches here (best of 3), in GFLOP/s."""
    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ a
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 * repeats / best / 1e9


def plain_keras(train, val, epochs: int, batch: int) -> list[float]:
    """cnn3 with model.fit on NumPy arrays: the baseline."""
    keras.utils.set_random_seed(0)
    model = build_cnn(make_spec("cnn3"))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x, y = normalise(train[0])[..., None], encode(train[1])
    xv, yv = normalise(val[0])[..., None], encode(val[1])
    stamps: list[float] = []
    stamp = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: stamps.append(time.perf_counter()))
    model.fit(x, y, batch_size=batch, epochs=epochs, validation_data=(xv, yv), callbacks=[stamp], verbose=0)
    return epoch_seconds(stamps)


def through_signlab(train, val, epochs: int, preset: str, **fields) -> list[float]:
    """signlab.models.train.fit with the per-epoch MLflow logger, inside a tracked run."""
    stamps: list[float] = []
    spec = make_spec(preset, epochs=epochs, **fields)
    with lifecycle.tracked_run(run_name=f"bench-{preset}-{fields}"):
        logger = lambda e, m: records.log_metrics(m, step=e)  # noqa: E731 (as signlab.runs.job does)
        fit(spec, train, val, seed=0, hooks=[logger, lambda e, m: stamps.append(time.perf_counter())])
    return epoch_seconds(stamps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    # 30: float32 weights turning subnormal slowed MLP iterations ~5x from the sixth on (fixed in 00930c4)
    parser.add_argument("--mlp-iterations", type=int, default=30)
    parser.add_argument("--mlp-only", action="store_true", help="only the MLP (e.g. to compare two versions)")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/train_speed.json"))
    args = parser.parse_args()

    split = load_split("train")
    train, val = validation_split(split.images, split.labels, 0.2, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        store.setup(f"sqlite:///{tmp}/bench.db", "benchmark")
        runs = {} if args.mlp_only else {
            "keras_fit_numpy": plain_keras(train, val, args.epochs, 128),
            "signlab_tracked": through_signlab(train, val, args.epochs, "cnn3"),
            "signlab_tracked_augment": through_signlab(train, val, args.epochs, "cnn3", augment=True),
        }
        runs["signlab_mlp_nn2"] = through_signlab(train, val, args.mlp_iterations + 1, "nn2", patience=1000)
    medians = {name: statistics.median(times) for name, times in runs.items()}
    base = medians.get("keras_fit_numpy", float("nan"))
    fwd = forward_flops(build_cnn(make_spec("cnn3")))
    epoch_flops = 3 * fwd * len(train[1]) + fwd * len(val[1])
    gflops = matmul_gflops()
    result = {
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, {platform.python_version()}",
        "keras": keras.__version__, "n_train": len(train[1]), "n_val": len(val[1]), "batch_size": 128,
        "seconds_per_epoch": {k: round(v, 3) for k, v in medians.items()},
        "ratio_to_keras_fit": {k: round(v / base, 3) for k, v in medians.items() if not k.endswith("nn2")},
        "all_epochs": {k: [round(t, 3) for t in v] for k, v in runs.items()},
        "cnn3_forward_mflop_per_image": round(fwd / 1e6, 2), "epoch_tflop": round(epoch_flops / 1e12, 3),
        "matmul_gflops": round(gflops, 1), "arithmetic_limit_seconds_per_epoch": round(epoch_flops / gflops / 1e9, 2),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'configuration':<26} {'s/epoch':>8} {'ratio':>6}")
    for name, value in medians.items():
        ratio = f"{value / base:6.3f}" if not name.endswith("nn2") else "   -  "
        print(f"{name:<26} {value:8.3f} {ratio}")
    print(f"arithmetic limit: {epoch_flops / 1e12:.3f} TFLOP an epoch at {gflops:.0f} GFLOP/s (NumPy matmul) "
          f"= {epoch_flops / gflops / 1e9:.2f} s")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
