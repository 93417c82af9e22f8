"""Optuna studies as MLflow runs, in this process: pruning, failures, multi-objective, and
refusals that leave a stored study untouched (`mlflow run` of the studies, resumed, and the
report without a browser: tests/test_mlflow_ui.py)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from helpers import mlflow_store
from mlflow.tracking import MlflowClient

from signlab.errors import UserError
from signlab.search.setup import Overrides
from signlab.search.study import run_study
from signlab.search.study_config import load_study_config


def _study_file(tmp_path: Path, text: str, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


BASE = """\
study_name: {name}
family: mlp
max_epochs: 3
subset: 8
sampler: {{type: tpe, seed: 1}}
{extra}
space:
  units: {{type: int, low: 16, high: 32}}
"""


@pytest.fixture()
def stores(tmp_path, data_dir):
    return f"sqlite:///{tmp_path / 'optuna.db'}", mlflow_store(tmp_path)


@pytest.mark.slow
def test_pruned_trials_end_killed(tmp_path, stores, capsys):
    storage, uri = stores
    path = _study_file(tmp_path, BASE.format(name="prune", extra="pruner: {type: threshold, lower: 1.01, n_warmup_steps: 0}"))
    study = run_study(path, Overrides(n_trials=2), storage=storage, tracking_uri=uri, progress=False)
    assert [t.state.name for t in study.trials] == ["PRUNED", "PRUNED"]
    client = MlflowClient(uri)
    for trial in study.trials:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.info.status == "KILLED" and run.data.tags["trial_state"] == "PRUNED"
        assert len(client.get_metric_history(run.info.run_id, "val_accuracy")) == 1  # stopped after epoch 1
    assert "2 pruned" in capsys.readouterr().out


@pytest.mark.slow
def test_failing_trial_ends_failed_and_study_goes_on(tmp_path, stores):
    storage, uri = stores
    text = BASE.format(name="fails", extra="pruner: {type: none}").replace(
        "  units:", "  alpha: {type: categorical, choices: [0.0001, 1.0e+300]}\n  units:")
    path = _study_file(tmp_path, text)
    cfg = load_study_config(path)
    queued = optuna.create_study(study_name=cfg.study_name, storage=storage, direction="maximize")
    queued.enqueue_trial({"alpha": 1.0e300, "units": 16})  # the L2 term overflows: NaN loss
    queued.enqueue_trial({"alpha": 0.0001, "units": 16})
    study = run_study(path, Overrides(n_trials=2), storage=storage, tracking_uri=uri, progress=False)
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE"]
    client = MlflowClient(uri)
    failed = client.get_run(study.trials[0].user_attrs["mlflow_run_id"])
    assert failed.info.status == "FAILED" and failed.data.tags["trial_state"] == "FAIL"
    done = client.get_run(study.trials[1].user_attrs["mlflow_run_id"])
    assert done.info.status == "FINISHED" and done.data.tags["trial_state"] == "COMPLETE"
    parent = client.get_run(study.user_attrs["mlflow_parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.metrics["n_failed"] == 1


@pytest.mark.slow
def test_multi_objective_logs_pareto_front(tmp_path, stores):
    storage, uri = stores
    path = _study_file(tmp_path, BASE.format(
        name="small", extra="objectives: [val_accuracy, n_params]\ntarget_val_accuracy: 0.5"))
    study = run_study(path, Overrides(n_trials=3), storage=storage, tracking_uri=uri, progress=False)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    client = MlflowClient(uri)
    parent = study.user_attrs["mlflow_parent_run_id"]
    names = {a.path for a in client.list_artifacts(parent)} | {a.path for a in client.list_artifacts(parent, "plots")}
    assert {"pareto_front.csv", "plots/pareto_front.png", "plots/study_plots.html"} <= names
    table = Path(client.download_artifacts(parent, "pareto_front.csv")).read_text().splitlines()
    assert table[0].startswith("trial,val_accuracy,n_params,test_accuracy")
    assert len(table) - 1 == len(study.best_trials) == client.get_run(parent).data.metrics["pareto_size"]
    # which hyperparameters mattered, as numbers: JSON and parent metrics agree
    import json

    shown = json.loads(Path(client.download_artifacts(parent, "importances.json")).read_text())
    metrics = client.get_run(parent).data.metrics
    assert shown["evaluator"] == "fanova" and set(shown["importances"]) == {"units_1", "units_2"}
    assert {k: v for k, v in metrics.items() if k.startswith("importance.")} == pytest.approx(
        {f"importance.{k}": v for k, v in shown["importances"].items()})


@pytest.mark.slow
def test_resume_refuses_other_directions_or_data(tmp_path, stores):
    storage, uri = stores
    path = _study_file(tmp_path, BASE.format(name="same", extra=""))
    run_study(path, Overrides(n_trials=1), storage=storage, tracking_uri=uri, progress=False)
    other = _study_file(tmp_path, BASE.format(name="same", extra="objectives: [n_params]"), "other.yaml")
    with pytest.raises(UserError, match=r"has directions \['maximize'\], the study file asks for \['minimize'\]"):
        run_study(other, storage=storage, tracking_uri=uri, progress=False)
    with pytest.raises(UserError, match=r"was run with subset 8 \(now 9\)"):
        run_study(path, Overrides(n_trials=1, subset=9), storage=storage, tracking_uri=uri, progress=False)
    random = _study_file(tmp_path, BASE.format(name="same", extra="validation: {strategy: random}"), "random.yaml")
    with pytest.raises(UserError, match=r"was run with val_strategy grouped \(now random\)"):
        run_study(random, Overrides(n_trials=1), storage=storage, tracking_uri=uri, progress=False)
    assert len(optuna.load_study(study_name="same", storage=storage).trials) == 1


@pytest.mark.slow
@pytest.mark.usefixtures("data_dir")  # the data is checked before the storage
def test_bad_storage_url_is_named_without_password(tmp_path):
    path = _study_file(tmp_path, BASE.format(name="x", extra=""))
    with pytest.raises(UserError) as info:
        run_study(path, storage="sqlite:////nonexistent/dir/optuna.db", progress=False)
    assert ("cannot open study storage SQLite file /nonexistent/dir/optuna.db: unable to open database file"
            in str(info.value))
    with pytest.raises(UserError) as info:
        run_study(path, storage="postgresql+psycopg2://bob:s3cret@127.0.0.1:1/db", progress=False)
    assert "s3cret" not in str(info.value) and "bob:***@127.0.0.1:1" in str(info.value)
    assert "no database driver for 'postgresql+psycopg2' is installed" in str(info.value)
