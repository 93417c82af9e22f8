"""Benchmark: what Keras running several training steps a call of its compiled function
(`steps_per_execution`; signlab's `STEPS_PER_EXECUTION`) saves, against one step a call. Full
data; run on a quiet machine.

    python benchmarks/steps_per_call.py [--preset cnn3] [--steps 1 8] [--repeats 2] [--epochs 6]
        [--output benchmarks/results/steps_per_call.json]

Two measures. The cost of a call itself: milliseconds a step of a network with next to no
arithmetic (one softmax layer) on signlab's training pipeline of the 80/20 split, batch 128,
signlab's epoch callback on, 3 epochs after one to trace, the settings taking turns in one
process. And whole trainings of `--preset`: each (setting, repeat) in its own process, the
settings taking turns, `signlab.models.train.fit` (MLflow's logger off) validating every epoch;
seconds per epoch are the gaps between epoch ends, the first left out, the median of the rest.
The trained weights of every run are compared with those of the first: the setting changes how
steps are called, not what they compute.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def train_once(preset: str, steps: int, epochs: int) -> dict:
    """One training with `steps` training steps a call: its epoch gaps and a digest of its weights."""
    import hashlib

    from train_speed import epoch_seconds  # this folder's: the same epoch gaps as that benchmark's

    from signlab.data.dataset import load_split
    from signlab.data.splits import validation_split
    from signlab.models import keras_training
    from signlab.models.presets import make_spec
    from signlab.models.train import fit

    keras_training.STEPS_PER_EXECUTION = steps
    split = load_split("train")
    train, val = validation_split(split.images, split.labels, 0.2, seed=0)
    stamps: list[float] = []
    result = fit(make_spec(preset, epochs=epochs), train, val, seed=0,
                 hooks=[lambda e, m: stamps.append(time.perf_counter())])
    digest = hashlib.sha256(b"".join(w.tobytes() for w in result.model.estimator.get_weights())).hexdigest()
    return {"epoch_seconds": [round(gap, 3) for gap in epoch_seconds(stamps)],
            "weights_sha256": digest[:16]}


def call_cost(steps_settings: list[int], repeats: int, epochs: int = 3) -> dict[str, list[float]]:
    """Milliseconds a training step of a one-layer network, per setting and repeat."""
    import keras

    from signlab.data.dataset import load_split
    from signlab.data.splits import validation_split
    from signlab.models import keras_training as kt
    from signlab.models.train import FitResult

    split = load_split("train")
    train, _ = validation_split(split.images, split.labels, 0.2, seed=0)
    kt.size_thread_pools()
    data = kt._dataset(*train, 24, 128, shuffle_seed=0)
    batches = -(-len(train[0]) // 128)
    out: dict[str, list[float]] = {str(s): [] for s in steps_settings}
    for _ in range(repeats):
        for steps in steps_settings:
            model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                                      keras.layers.Dense(24, activation="softmax")])
            kt._compiled(model, keras.optimizers.Adam(1e-3))
            model.steps_per_execution = steps
            callbacks = [kt.EpochCallback(FitResult(None), [])]
            model.fit(data, epochs=1, verbose=0, callbacks=callbacks)  # tracing
            start = time.perf_counter()
            model.fit(data, epochs=epochs, verbose=0, callbacks=callbacks)
            out[str(steps)].append(round((time.perf_counter() - start) / epochs / batches * 1000, 3))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cnn3")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/steps_per_call.json"))
    parser.add_argument("--one", nargs=3, metavar=("PRESET", "STEPS", "EPOCHS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(train_once(args.one[0], int(args.one[1]), int(args.one[2]))), flush=True)
        return
    costs = call_cost(args.steps, args.repeats + 1)
    print("ms a step, one-layer network:", costs, flush=True)
    runs: dict[int, list[dict]] = {steps: [] for steps in args.steps}
    for _ in range(args.repeats):
        for steps in args.steps:
            out = subprocess.run([sys.executable, __file__, "--one", args.preset, str(steps), str(args.epochs)],
                                 capture_output=True, text=True, check=True, env=os.environ.copy()).stdout
            runs[steps].append(json.loads(out.split("RESULT ", 1)[1]))
            print(steps, runs[steps][-1], flush=True)
    first = runs[args.steps[0]][0]["weights_sha256"]
    result = {
        "preset": args.preset, "epochs": args.epochs, "cpu_count": os.cpu_count(),
        "one_layer_ms_per_step": costs,
        "median_seconds_per_epoch": {str(s): [statistics.median(r["epoch_seconds"]) for r in rs] for s, rs in runs.items()},
        "same_weights_as_first": all(r["weights_sha256"] == first for rs in runs.values() for r in rs),
        "runs": {str(s): rs for s, rs in runs.items()},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    for steps, ms in costs.items():
        print(f"{steps:>3} steps a call: {', '.join(f'{m:.3f}' for m in ms)} ms a step of a one-layer network")
    for steps, medians in result["median_seconds_per_epoch"].items():
        print(f"{steps:>3} steps a call: {', '.join(f'{m:.3f}' for m in medians)} s/epoch (median of each run)")
    print(f"same weights in every run: {result['same_weights_as_first']}; wrote {args.output}")


if __name__ == "__main__":
    main()
