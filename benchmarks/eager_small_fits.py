"""Traced against eager Keras training for trainings of a few batches (docs/benchmarks.md,
"Trainings of a few batches run eagerly"): CNN 3 built and fit for one epoch on random 28x28
images, batch 128, validation on 64 images, in one warm process; seconds per build-and-fit.

    OMP_NUM_THREADS=1 TF_NUM_INTRAOP_THREADS=1 python benchmarks/eager_small_fits.py
"""

from __future__ import annotations

import time

import keras
import numpy as np

from signlab.models.cnn import build_cnn
from signlab.models.presets import make_spec


def main() -> None:
    spec = make_spec("cnn3", epochs=1)
    rng = np.random.default_rng(0)
    for batches in (2, 10, 20):
        x = rng.random((batches * 128, 28, 28, 1), dtype=np.float32)
        y = rng.integers(0, 24, batches * 128)
        for eager in (False, True):
            keras.backend.clear_session(free_memory=False)
            start = time.perf_counter()
            model = build_cnn(spec)
            model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            model.run_eagerly = eager
            model.fit(x, y, validation_data=(x[:64], y[:64]), epochs=1, batch_size=128, verbose=0)
            print(f"{batches:3d} batches  {'eager' if eager else 'traced':6s}  {time.perf_counter() - start:.2f} s",
                  flush=True)


if __name__ == "__main__":
    main()
