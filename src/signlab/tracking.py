"""MLflow: tracking URI, runs that always end with a status, artifacts."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow

from signlab import config


def setup(tracking_uri: str | None = None) -> str:
    """Point MLflow at `tracking_uri`, $MLFLOW_TRACKING_URI or sqlite:///mlflow.db."""
    uri = config.tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    return uri


def log_to_active_run(paths: list[Path], artifact_path: str | None = None) -> str | None:
    """Log files to the current run (or the one `mlflow run` started); its id, or None."""
    run = mlflow.active_run()
    if run is None and not os.environ.get("MLFLOW_RUN_ID"):
        return None
    setup()
    with mlflow.start_run(run_id=run.info.run_id if run else None, nested=False) as active:
        for path in paths:
            mlflow.log_artifact(str(path), artifact_path=artifact_path)
        return active.info.run_id
