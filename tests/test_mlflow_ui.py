"""What the MLflow UI shows of a study started as the quick start does (`mlflow run` with no
--experiment-name): the experiment marked as classic ML, the parent run named after the study."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import subprocess_env
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_mlflow_run_study_reads_as_a_study(tmp_path, data_dir):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [sys.executable, "-m", "mlflow", "run", str(ROOT), "-e", "mlp_study", "--env-manager", "local",
            "-P", "study_name=ui_study", "-P", "n_trials=2", "-P", "max_epochs=2", "-P", "subset=10",
            "-P", f"storage=sqlite:///{tmp_path / 'optuna.db'}"]
    env = subprocess_env(MLFLOW_TRACKING_URI=uri, SIGNLAB_DATA_DIR=str(data_dir))
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client = MlflowClient(uri)
    default = client.get_experiment("0")  # where `mlflow run` files runs without --experiment-name
    assert default.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs(["0"], max_results=100)
    parents = [r for r in runs if r.data.tags.get("signlab.role") == "study"]
    assert [p.info.run_name for p in parents] == ["ui_study"]
    assert parents[0].data.tags["mlflow.runName"] == "ui_study"
    trials = [r for r in runs if r.data.tags.get("signlab.role") == "trial"]
    assert sorted(r.info.run_name for r in trials) == ["trial 0", "trial 1"]
    assert "?workflowType=machine_learning" in proc.stdout + proc.stderr  # the link the summary prints
