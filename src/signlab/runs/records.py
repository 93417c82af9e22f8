"""What a run records besides its models: params (nested specs flattened), metrics, the datasets
it saw, the git commit."""

from __future__ import annotations

import subprocess
import warnings
from typing import Any

import mlflow
import numpy as np

from signlab import config
from signlab.contract import EFFECTIVE_SUFFIX
from signlab.runs.store import retry_on_duplicate
from signlab.signals import held_interrupts


def git_commit() -> str | None:
    """The project's git commit, if it is a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=config.PROJ_ROOT,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def flatten(prefix: str, value: Any) -> dict[str, Any]:
    """Nested dicts and lists as flat MLflow params: blocks.1.filters -> 64."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), item))
        return out
    if isinstance(value, list) and value and isinstance(value[0], dict):
        out = {f"{prefix}.n": len(value)}
        for i, item in enumerate(value, start=1):
            out.update(flatten(f"{prefix}.{i}", item))
        return out
    if isinstance(value, bool):
        return {prefix: str(value).lower()}  # as MLproject parameters write them
    return {prefix: value}


def log_params(params: dict[str, Any]) -> None:
    """Log params; one that the run already has with another value (an MLproject entry
    point's parameter, say `epochs=0` for "the preset's") is logged as `<key>.effective`.
    Workers starting together log the study's params on its shared parent run at once
    (`store.retry_on_duplicate`). Like every write here, done with interrupts held (see
    `log_metrics`)."""
    with held_interrupts():
        retry_on_duplicate(lambda: _log_new_params(params))


def _log_new_params(params: dict[str, Any]) -> None:
    run = mlflow.active_run()
    existing = mlflow.get_run(run.info.run_id).data.params if run else {}
    fresh = {}
    for key, value in params.items():
        if key not in existing:
            fresh[key] = value
        elif existing[key] != str(value) and f"{key}{EFFECTIVE_SUFFIX}" not in existing:
            fresh[f"{key}{EFFECTIVE_SUFFIX}"] = value
    mlflow.log_params(fresh)


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    """Log metrics, waiting for the store.

    Synchronous on purpose: MLflow's asynchronous queue makes every run's end wait for its
    logging thread, which polls once a second (about 2 s a run, measured: 7.9 of a
    simulated 4-trial study's 14.5 s), far more than one write an epoch costs.

    A Ctrl-C or SIGTERM that arrives meanwhile is raised once the write is done: raised inside
    it, it can leave a SQLite transaction open and its lock held, and the clean-up that ends the
    run then waits on that lock (MLflow's busy timeout, 20 s) until the watchdog gives up."""
    with held_interrupts():
        mlflow.log_metrics(metrics, step=step)


def log_datasets(sources: dict[str, tuple[np.ndarray, np.ndarray, str, str]]) -> None:
    """Log each (images, labels, source path, name) as an MLflow dataset input with its digest."""
    for context, (images, labels, source, name) in sources.items():
        with warnings.catch_warnings():  # "source can be interpreted in multiple ways": a file
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_numpy(
                images.reshape(len(images), -1), targets=labels, source=source, name=name
            )
        _log_input(dataset, context)


def _log_input(dataset: Any, context: str) -> None:
    """`mlflow.log_input`, safe when another worker inserts the same dataset at the same moment
    (the store's unique key on experiment, name and digest)."""
    with held_interrupts():
        retry_on_duplicate(lambda: mlflow.log_input(dataset, context=context))
