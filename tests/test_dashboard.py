"""`signlab dashboard`: optuna-dashboard serving a real study, each trial carrying its MLflow run."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest
from conftest import assert_one_line_error, free_port, run_cli, subprocess_env, wait_for_http
from mlflow.tracking import MlflowClient

from signlab.search.setup import Overrides
from signlab.search.study import run_study

STUDY = """\
study_name: browse
family: mlp
max_epochs: 2
subset: 6
sampler: {type: tpe, seed: 1}
pruner: {type: none}
space:
  units: {type: int, low: 16, high: 32}
"""


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.load(answer)


@pytest.fixture()
def mlflow_server(tmp_path):
    """`mlflow server` on 127.0.0.1 (a SQLite store): run URLs exist only for a server."""
    port = free_port()
    log = tmp_path / "mlflow-server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--artifacts-destination",
             str(tmp_path / "artifacts")], stdout=out, stderr=subprocess.STDOUT, env=subprocess_env(), cwd=tmp_path)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(url + "/health", proc, 120, log)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.mark.slow
def test_dashboard_shows_the_study_and_each_trials_run(tmp_path, mlflow_server):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    (tmp_path / "study.yaml").write_text(STUDY)
    study = run_study(tmp_path / "study.yaml", Overrides(n_trials=2), storage=storage, tracking_uri=mlflow_server,
                      progress=False)
    port = free_port()
    log = tmp_path / "dashboard.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "signlab", "dashboard", "--storage", storage, "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env=subprocess_env(), cwd=tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(base + "/api/studies", proc, 60, log)
        summaries = _get(base + "/api/studies")["study_summaries"]
        assert [s["study_name"] for s in summaries] == ["browse"]  # no parent-lock study left behind
        detail = _get(f"{base}/api/studies/{summaries[0]['study_id']}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert f"optuna-dashboard for {storage} on {base}/" in log.read_text()
    assert detail["objective_names"] == ["val_accuracy"]
    assert len(detail["trials"]) == len(study.trials) == 2
    client = MlflowClient(mlflow_server)
    for trial in detail["trials"]:
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        run = client.get_run(attrs["mlflow_run_id"])
        assert run.data.tags["trial_number"] == str(trial["number"])
        assert attrs["mlflow_run_url"] == (f"{mlflow_server}/#/experiments/{run.info.experiment_id}/runs/"
                                           f"{run.info.run_id}?workflowType=machine_learning")


def test_dashboard_refuses_a_missing_sqlite_file_without_creating_it(tmp_path):
    proc = run_cli("dashboard", "--storage", f"sqlite:///{tmp_path / 'none.db'}", timeout=60)
    assert_one_line_error(proc, f"no study storage at {tmp_path / 'none.db'} (SQLite file not found)")
    assert not (tmp_path / "none.db").exists()
