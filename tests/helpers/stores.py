"""Fresh MLflow SQLite stores for tests, without MLflow's schema migrations each time."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

_TEMPLATE: list[Path] = []  # the empty store MLflow made in this test process, once


def _template() -> Path:
    if not _TEMPLATE:
        from mlflow.tracking import MlflowClient

        folder = Path(tempfile.mkdtemp(prefix="mlflow-template-", dir=os.environ.get("SIGNLAB_CACHE_DIR")))
        MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").search_experiments()  # MLflow creates and migrates it
        _TEMPLATE.append(folder / "mlflow.db")
    return _TEMPLATE[0]


def mlflow_store(folder: Path, name: str = "mlflow.db") -> str:
    """`sqlite:///<folder>/<name>`: an empty MLflow store, a copy of one MLflow created in this
    test process (creating one runs some 50 schema migrations: 2-7 s a store on 2 cores, much of
    it waiting on fsync), its Default experiment's artifacts under `folder/mlruns/0` as MLflow
    would put them for a store made there; a store already there is left as it is. Tests of
    making a store leave it to MLflow."""
    path = Path(folder) / name
    if path.exists():
        return f"sqlite:///{path}"
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_template(), path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                   (str(Path(folder).resolve() / "mlruns" / "0"),))
    db.close()
    return f"sqlite:///{path}"
