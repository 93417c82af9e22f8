"""What a run records besides its models: params (nested specs flattened), metrics, the datasets
it saw, the git commit."""

from __future__ import annotations

import subprocess
import warnings
from typing import Any

import mlflow
import numpy as np

from signlab import config


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


def log_params(params: dict[str, Any], attempts: int = 5) -> None:
    """Log params; one that the run already has with another value (an MLproject entry
    point's parameter, say `epochs=0` for "the preset's") is logged as `<key>.effective`.
    Workers starting together log the study's params on its shared parent run at once; the
    store checks, then inserts, so all but one can fail on a key: those read again and retry."""
    import time

    for attempt in range(attempts):
        try:
            _log_new_params(params)
            return
        except mlflow.exceptions.MlflowException as exc:
            if not _duplicate(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def _duplicate(exc: Exception) -> bool:
    """Whether the store refused a row another client inserted at the same moment."""
    return any(s in str(exc) for s in ("UniqueViolation", "UNIQUE constraint", "Duplicate entry"))


def _log_new_params(params: dict[str, Any]) -> None:
    run = mlflow.active_run()
    existing = mlflow.get_run(run.info.run_id).data.params if run else {}
    fresh = {}
    for key, value in params.items():
        if key not in existing:
            fresh[key] = value
        elif existing[key] != str(value) and f"{key}.effective" not in existing:
            fresh[f"{key}.effective"] = value
    mlflow.log_params(fresh)


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    """Log metrics without waiting for the store (flushed when the run ends)."""
    mlflow.log_metrics(metrics, step=step, synchronous=False)


def log_datasets(sources: dict[str, tuple[np.ndarray, np.ndarray, str, str]]) -> None:
    """Log each (images, labels, source path, name) as an MLflow dataset input with its digest."""
    for context, (images, labels, source, name) in sources.items():
        with warnings.catch_warnings():  # "source can be interpreted in multiple ways": a file
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_numpy(
                images.reshape(len(images), -1), targets=labels, source=source, name=name
            )
        _log_input(dataset, context)


def _log_input(dataset: Any, context: str, attempts: int = 5) -> None:
    """`mlflow.log_input`, tried again when another worker inserted the same dataset at the
    same moment (the store's unique key on experiment, name and digest; the retry finds it)."""
    import time

    for attempt in range(attempts):
        try:
            mlflow.log_input(dataset, context=context)
            return
        except mlflow.exceptions.MlflowException as exc:
            if not _duplicate(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
