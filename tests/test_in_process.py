"""Studies, refits and simulated studies in this process, on synthetic 28x28 data passed in
(no CSVs), with SQLite stores in a temporary folder: the data is the caller's, so the search,
tracking and refit machinery is tested in seconds."""

from __future__ import annotations

import optuna
from helpers import mlflow_store, runs_by_role, synthetic_files, tiny_study
from mlflow.tracking import MlflowClient

from signlab.contract import PARENT_ATTR, REFIT_RUNS_TAG, REFIT_SEED, VAL_ACCURACY
from signlab.search.setup import Overrides
from signlab.search.study import refit_study, run_study

CNN_SPACE = {"filters": {"type": "int", "low": 4, "high": 8}, "learning_rate": {"type": "float", "low": 3e-3, "high": 1e-2}}


def test_a_cnn_study_and_its_refit_run_on_data_the_caller_passes(tmp_path):
    files = synthetic_files()
    path = tiny_study(tmp_path, "synthetic", family="cnn", subset=0, max_epochs=2, n_trials=2, space=CNN_SPACE,
                      fixed={"n_blocks": 2, "dense_units": 16}, refit={"seeds": 1},
                      validation={"strategy": "random", "fraction": 0.25})
    storage, uri = f"sqlite:///{tmp_path / 'optuna.db'}", mlflow_store(tmp_path)
    lines: list[str] = []
    study = run_study(path, Overrides(seed=5), storage=storage, tracking_uri=uri, files=files, progress=False,
                      echo=lines.append)  # `--seed 5`: the split's and the trainings', not the file's
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert all(0.0 <= t.user_attrs[VAL_ACCURACY] <= 1.0 for t in study.trials)
    client = MlflowClient(uri)
    parent = client.get_run(study.user_attrs[PARENT_ATTR])
    assert parent.info.status == "FINISHED" and len(parent.data.tags[REFIT_RUNS_TAG].split(",")) == 1
    roles = runs_by_role(client, "synthetic")
    assert len(roles["trial"]) == 2 and len(roles["refit"]) == 1
    sources = {i.dataset.source for r in roles["trial"] for i in r.inputs.dataset_inputs}
    assert sources == {"{\"uri\": \"memory/train\"}", "{\"uri\": \"memory/test\"}"}  # the caller's data, by name
    # the stored study refit again with another seed, on the same data passed in; no --seed: the
    # study's own (5), so seed 5's refit is found done and seed 6 added
    refit_study(path, Overrides(refit_seeds=2), storage, uri, files=files, echo=lines.append)
    refits = runs_by_role(client, "synthetic")["refit"]
    assert sorted(r.data.tags[REFIT_SEED] for r in refits) == ["5", "6"]


def test_a_simulated_study_runs_on_data_passed_in(tmp_path):
    path = tiny_study(tmp_path, "simulated", family="cnn", subset=0, max_epochs=3, n_trials=4, space=CNN_SPACE,
                      simulate={"epoch_seconds": 0.0}, validation={"strategy": "random", "fraction": 0.25})
    storage, uri = f"sqlite:///{tmp_path / 'optuna.db'}", mlflow_store(tmp_path)
    study = run_study(path, storage=storage, tracking_uri=uri, files=synthetic_files(per_letter=4), progress=False,
                      echo=lambda line: None)
    assert len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]) == 4
    assert len(runs_by_role(MlflowClient(uri), "simulated")["trial"]) == 4
