"""Simulated trials (`simulate:` in a study file): nothing is trained, and every storage and
tracking call of a real trial is made, so that many workers' coordination path can be
measured (`benchmarks/many_workers.py`, docs/distributed.md).

A simulated trial logs what `runs.job.train_and_log` logs (params, leakage figures,
datasets, per-epoch metrics through the same hooks, so Optuna's reports and pruning happen,
final metrics and an artifact upload) with made-up, seeded figures, after sleeping
`epoch_seconds` per epoch. It skips what needs a model: evaluation, the figures (confusion
matrix, learning curves) and the two logged models, and so never imports TensorFlow.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import mlflow
import numpy as np

from signlab.contract import (
    BEST_EPOCH_ATTR,
    EPOCHS_RUN,
    SIMULATED_TAG,
    TEST_AUG_ACCURACY,
    TRAIN_SECONDS,
    VAL_AUG_ACCURACY,
    VAL_LOSS,
)
from signlab.models.presets import Spec, spec_digest
from signlab.models.train import EpochHook, FitResult
from signlab.runs import records
from signlab.runs.job import Data, log_inputs
from signlab.search.study_config import SimulateConfig


def simulated_history(spec: Spec, seed: int) -> list[dict[str, float]]:
    """Made-up learning curves for `spec`, the same for the same spec and seed: validation
    accuracy rising towards a drawn ceiling, a loss that falls with it."""
    digest = int(spec_digest(spec), 16)
    rng = np.random.default_rng([seed, digest])
    ceiling, rate = rng.uniform(0.5, 0.99), rng.uniform(0.2, 0.8)
    history = []
    for epoch in range(spec.epochs):
        val = ceiling * (1.0 - (1.0 - rate) ** (epoch + 1)) + rng.normal(0.0, 0.005)
        val = float(min(max(val, 1.0 / 24), 1.0))
        train = min(1.0, val + float(rng.uniform(0.0, 0.03)))
        history.append({"loss": -math.log(train), "accuracy": train, "val_loss": -math.log(val),
                        "val_accuracy": val, "learning_rate": float(spec.learning_rate)})
    return history


def simulate_and_log(spec: Spec, data: Data, hooks: Sequence[EpochHook],
                     settings: SimulateConfig) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Log a simulated training of `spec` to the active run; (final metrics, per-epoch history).
    A hook may stop it (optuna.TrialPruned) as it stops a real training."""
    mlflow.set_tag(SIMULATED_TAG, "true")
    log_inputs(spec, data)
    curves = simulated_history(spec, data.seed)
    started, report_seconds = time.perf_counter(), 0.0
    history: list[dict[str, float]] = []
    for epoch, metrics in enumerate(curves):
        time.sleep(settings.epoch_seconds)
        history.append(metrics)
        records.log_metrics(metrics, step=epoch)
        before = time.perf_counter()
        for hook in hooks:  # Optuna's report and should_prune: storage calls
            hook(epoch, metrics)
        report_seconds += time.perf_counter() - before
    best = FitResult(None, history).best_epoch - 1  # type: ignore[arg-type]  # the same rule as a real fit
    val = history[best]["val_accuracy"]
    test = val - 0.02
    metrics = {
        **_scores("test", test), TEST_AUG_ACCURACY: test - 0.05, "test_aug_f1_macro": test - 0.05,
        **_scores("final_val", val), VAL_AUG_ACCURACY: val - 0.05, BEST_EPOCH_ATTR: best + 1,
        VAL_LOSS: history[best]["val_loss"],
        TRAIN_SECONDS: time.perf_counter() - started, EPOCHS_RUN: len(history),
        "report_seconds": report_seconds,
    }
    records.log_metrics(metrics)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "history.json").write_text(json.dumps(history))
        (folder / "simulated.json").write_text(json.dumps({"simulate": settings.model_dump(),
                                                           "spec": spec.model_dump()}, indent=1))
        mlflow.log_artifacts(str(folder))
    timings = {"log_artifacts_seconds": time.perf_counter() - started}
    records.log_metrics(timings)
    return {**metrics, **timings}, history


def _scores(prefix: str, accuracy: float) -> dict[str, float]:
    """A simulated split's headline numbers, named as `Evaluation.metrics` names them."""
    return {f"{prefix}_accuracy": accuracy, f"{prefix}_f1_macro": accuracy, f"{prefix}_f1_weighted": accuracy}
