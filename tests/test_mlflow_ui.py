"""What the MLflow UI shows of a study started as the quick start does (`mlflow run` with no
--experiment-name, two trials at once as the default study runs them): the experiment marked
as classic ML, the parent run named after the study,
no parameter shown as ''; the study's runs and Optuna's trials in step; and the MLproject's
own environment (`--env-manager uv`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import check_study, subprocess_env
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_mlflow_run_study_reads_as_a_study(tmp_path, data_dir):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [sys.executable, "-m", "mlflow", "run", str(ROOT), "-e", "mlp_study", "--env-manager", "local",
            "-P", "study_name=ui_study", "-P", "n_trials=2", "-P", "max_epochs=1", "-P", "subset=6",
            "-P", "refit_seeds=0", "-P", "parallel=2",  # no refit: trials only; workers, as `cnn_study`'s auto
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
    # `mlflow run` logs every entry-point parameter as given: the defaults are words, never ''.
    params = parents[0].data.params
    assert params["seed"] == "file" and params["tracking_uri"] == "default"
    assert "" not in params.values()
    # the study as a whole: parent, trials and Optuna agreeing both ways, charts, the choice
    check_study(client, f"sqlite:///{tmp_path / 'optuna.db'}", "Default", "ui_study", 2)


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
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=1200, cwd=tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "/.mlflow/envs/mlflow-" in output and "/bin/activate && PYTHONPATH=src" in output
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("uv_env").experiment_id])
    assert {r.data.tags.get("signlab.role"): r.info.status for r in runs} == {"study": "FINISHED", "trial": "FINISHED"}
