"""Benchmark: 7,172 predictions (the test file's size) of the `tiny` CNN through Keras `predict`
against signlab's compiled call in batches (`models.keras_training.predict_proba`), 1 thread,
three times each. Run it alone, then beside a training, to see what Keras `predict`'s iterator
costs (docs/benchmarks.md, "The idle spells were tf.data's autotuning").

    OMP_NUM_THREADS=1 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 python benchmarks/predict_batches.py
"""

from __future__ import annotations

import time

import numpy as np

from signlab.models.cnn import build_cnn
from signlab.models.keras_training import PREDICT_BATCH, predict_proba
from signlab.models.presets import make_spec


def main() -> None:
    """Print the wall and CPU seconds of each way, three rounds."""
    model = build_cnn(make_spec("tiny"))
    x = np.random.default_rng(0).random((7172, 28, 28, 1), dtype=np.float32)
    ways = {"keras_predict": lambda: model.predict(x, batch_size=PREDICT_BATCH, verbose=0),
            "compiled_batches": lambda: predict_proba(model, x)}
    for way in ways.values():  # warm up: traces, first allocations
        way()
    for _ in range(3):
        for name, way in ways.items():
            wall, cpu = time.perf_counter(), time.process_time()
            way()
            print(f"{name:17s} wall {time.perf_counter() - wall:.2f} s  cpu {time.process_time() - cpu:.2f} s", flush=True)


if __name__ == "__main__":
    main()
