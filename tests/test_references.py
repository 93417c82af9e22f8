"""`signlab reference`: one run per row and seed, finished ones skipped, an interrupted
session resumed, the KNN row, and the MLproject entry point with several runs."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from helpers import mlflow_store, subprocess_env
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from signlab.cli import app
from signlab.contract import REFERENCE_SETTINGS_TAG as SETTINGS_TAG
from signlab.contract import ROLE_REFERENCES as ROLE
from signlab.contract import SEED_TAG
from signlab.data.labels import label_to_letter

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--epochs", "1", "--subset", "5"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return mlflow_store(tmp_path_factory.mktemp('mlflow'))


def _reference(store: str, experiment: str, *args: str) -> str:
    result = CliRunner().invoke(app, ["reference", *args, *QUICK, "--tracking-uri", store, "--experiment", experiment])
    assert result.exit_code == 0, result.output
    return result.output


def _runs(store: str, experiment: str) -> list:
    client = MlflowClient(store)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], max_results=100) if found else []


@pytest.mark.slow
@pytest.mark.usefixtures("data_dir")
def test_seeds_make_one_run_each_and_a_second_call_skips_them(store):
    out = _reference(store, "seeds", "nn1", "--seeds", "0,1")
    runs = _runs(store, "seeds")
    assert sorted(r.data.tags[SEED_TAG] for r in runs) == ["0", "1"]
    for run in runs:
        assert run.info.status == "FINISHED" and run.data.tags["reference"] == "nn1"
        assert run.data.params["seed"] == run.data.tags[SEED_TAG]
        assert run.data.params["val_strategy"] == "grouped" and run.data.params["val_fraction"] == "0.2"
        assert f"seed={run.data.params['seed']} epochs=1 subset=5 val_strategy=grouped" in run.data.tags[SETTINGS_TAG]
        assert run.info.run_id in out

    again = _reference(store, "seeds", "nn1", "--seeds", "0,1")
    for run in runs:
        assert f"reference nn1 seed {run.data.tags[SEED_TAG]}: skipped, run {run.info.run_id} already FINISHED" in again
    assert len(_runs(store, "seeds")) == 2
    # --seed N is --seeds N; other settings are other runs
    assert "skipped" in _reference(store, "seeds", "nn1", "--seed", "1")
    other = _reference(store, "seeds", "nn1", "--seed", "1", "--val-strategy", "random")
    assert "skipped" not in other and len(_runs(store, "seeds")) == 3


@pytest.mark.parametrize("args, message", [
    (["nn1", "--seed", "0", "--seeds", "1"], "give --seed or --seeds, not both"),
    (["nn1", "--seeds", "0,one"], "--seeds: expected integers >= 0"),
    (["nn1", "--all"], "give reference NAMEs or --all, not both"),
    (["nn1", "nn9"], "unknown reference 'nn9'"),
])
def test_bad_reference_arguments_are_one_line_and_run_nothing(store, args, message):
    result = CliRunner().invoke(app, ["reference", *args, "--tracking-uri", store, "--experiment", "bad"])
    assert result.exit_code == 2 and message in result.output, result.output
    assert _runs(store, "bad") == []


def _wait_for_finished(store: str, experiment: str, proc: subprocess.Popen, limit: float = 240) -> str:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        finished = [r for r in _runs(store, experiment) if r.info.status == "FINISHED"]
        if finished:
            return finished[0].data.tags["reference"]
        time.sleep(0.2)
    raise AssertionError(f"no run finished (exit code {proc.poll()})")


@pytest.mark.slow
def test_an_interrupted_session_resumes(store, data_dir):
    rows = ["nn1", "cnn2", "nn2"]  # cnn2 second: it starts TensorFlow, so SIGTERM lands mid-session
    command = [sys.executable, "-m", "signlab", "reference", *rows, "--seeds", "0", *QUICK,
               "--tracking-uri", store, "--experiment", "resume"]
    proc = subprocess.Popen(command, env=subprocess_env(SIGNLAB_DATA_DIR=str(data_dir)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = _wait_for_finished(store, "resume", proc)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert first == "nn1" and proc.returncode != 0
    before = {r.data.tags["reference"]: r for r in _runs(store, "resume") if r.info.status == "FINISHED"}
    assert set(before) < set(rows)  # stopped before the end
    assert all(r.info.status in {"FINISHED", "KILLED"} for r in _runs(store, "resume"))

    out = _reference(store, "resume", *rows, "--seeds", "0")
    for row in rows:
        skipped = f"reference {row} seed 0: skipped, run " in out
        assert skipped == (row in before), out
    finished = [r for r in _runs(store, "resume") if r.info.status == "FINISHED"]
    assert sorted(r.data.tags["reference"] for r in finished) == sorted(rows)  # each row once


@pytest.mark.slow
def test_knn_row_logs_a_classifier_like_the_others(store, test_split):
    from signlab.data.splits import stratified_subset

    _reference(store, "knn", "knn", "--seed", "2")
    (run,) = _runs(store, "knn")
    assert run.info.status == "FINISHED" and run.data.tags["family"] == "knn"
    assert run.data.params["n_neighbors"] == "1" and run.data.params["val_strategy"] == "grouped"
    n_train = int(run.data.params["n_train"])
    assert run.data.metrics["n_params"] == n_train * 785  # stored pixels and labels
    mlflow.set_tracking_uri(store)
    classifier = mlflow.pyfunc.load_model(run.data.tags["signlab.classifier_uri"])
    images, labels = stratified_subset(test_split.images, test_split.labels, 5, seed=2)
    frame = pd.DataFrame(images.reshape(len(images), -1), columns=[f"pixel{i}" for i in range(1, 785)])
    predicted = classifier.predict(frame)["letter"].to_numpy()
    accuracy = float(np.mean(predicted == np.array([label_to_letter(v) for v in labels])))
    assert accuracy == pytest.approx(run.data.metrics["test_accuracy"], abs=1e-9)


@pytest.mark.slow
def test_mlproject_several_runs_nest_under_the_entry_run(tmp_path, data_dir):
    uri = mlflow_store(tmp_path)
    env = subprocess_env(MLFLOW_TRACKING_URI=uri, SIGNLAB_DATA_DIR=str(data_dir))
    proc = subprocess.run(
        [sys.executable, "-m", "mlflow", "run", str(ROOT), "-e", "reference", "--env-manager", "local",
         "--experiment-name", "ref", "-P", "model=nn1,knn", "-P", "seeds=0,1", "-P", "epochs=1", "-P", "subset=5"],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = _runs(uri, "ref")
    (parent,) = [r for r in runs if r.data.tags.get("signlab.role") == ROLE]
    children = [r for r in runs if r is not parent]
    assert parent.info.status == "FINISHED" and "reference" not in parent.data.tags
    assert sorted((r.data.tags["reference"], r.data.tags[SEED_TAG]) for r in children) == [
        ("knn", "0"), ("knn", "1"), ("nn1", "0"), ("nn1", "1")]
    for run in children:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id and run.info.status == "FINISHED"
        assert run.data.params["seed"] == run.data.tags[SEED_TAG]
