"""`mlflow run . -e cnn_study --env-manager uv`: the MLproject's own environment, built from
conda.yaml, on a machine without a browser (a file of its own, so that the two test processes
can run it beside tests/test_mlflow_ui.py's long study)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import check_offline_charts, subprocess_env, without_browser
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_mlflow_run_builds_the_mlprojects_own_environment_with_uv(tmp_path, data_dir):
    """`--env-manager uv`: MLflow turns conda.yaml into a virtualenv (cached under ~/.mlflow/envs,
    shared by every project with the same requirements) and runs the study in it; the entry
    point runs this project's own code (PYTHONPATH=src), not whichever clone built the env."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [sys.executable, "-m", "mlflow", "run", str(ROOT), "-e", "cnn_study", "--env-manager", "uv",
            "--experiment-name", "uv_env", "-P", "study_name=uv_env", "-P", "n_trials=1", "-P", "max_epochs=1",
            "-P", "subset=6", "-P", "refit_seeds=0", "-P", f"storage=sqlite:///{tmp_path / 'optuna.db'}"]
    # uv: the dev extra's, on PATH; MLflow's INFO lines on (they name the environment it built)
    env = subprocess_env(MLFLOW_TRACKING_URI=uri, SIGNLAB_DATA_DIR=str(data_dir), MLFLOW_LOGGING_LEVEL="INFO")
    proc = subprocess.run(without_browser(args), capture_output=True, text=True, env=env, timeout=1200, cwd=tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "/.mlflow/envs/mlflow-" in output and "/bin/activate && PYTHONPATH=src" in output
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("uv_env").experiment_id])
    assert {r.data.tags.get("signlab.role"): r.info.status for r in runs} == {"study": "FINISHED", "trial": "FINISHED"}
    check_offline_charts(client)  # a CNN's charts too: PNG, nothing from the network
