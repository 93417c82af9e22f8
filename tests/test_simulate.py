"""`simulate:` in a study file: trials that train nothing but make a real trial's storage and
tracking calls (nested runs, params, per-epoch metrics, Optuna reports and heartbeats, final
metrics, user attributes), on real SQLite stores; bad values get one clear line."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys

import optuna
import pytest
from helpers import mlflow_store, tiny_study
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from signlab.cli import app
from signlab.contract import PARENT_ATTR, RUN_ATTR, SIMULATED_TAG, TRIAL_STATE_TAG, VAL_ACCURACY
from signlab.errors import UserError
from signlab.search.study_config import load_study_config

SPACE = {"n_blocks": {"type": "int", "low": 2, "high": 3},
         "filters": {"type": "int", "low": 8, "high": 64, "log": True},
         "learning_rate": {"type": "float", "low": 3e-4, "high": 3e-3, "log": True}}
# runs the study in its own process, then says which heavy modules that process imported
RUN = """
import json, sys
from signlab.search.study import run_study
run_study(sys.argv[1], storage=sys.argv[2], tracking_uri=sys.argv[3], progress=False)
print(json.dumps([m for m in ("tensorflow", "keras") if m in sys.modules]))
"""


@pytest.mark.slow
def test_simulated_trials_log_like_real_ones_without_training(tmp_path, data_dir):
    path = tiny_study(tmp_path, "sim", family="cnn", max_epochs=3, subset=10, n_trials=5, space=SPACE,
                      simulate={"epoch_seconds": 0.0}, sampler={"type": "tpe", "seed": 1, "n_startup_trials": 2},
                      pruner={"type": "median", "n_startup_trials": 2, "n_warmup_steps": 0})
    storage, tracking = f"sqlite:///{tmp_path / 'optuna.db'}", mlflow_store(tmp_path)
    out = subprocess.run([sys.executable, "-c", RUN, str(path), storage, tracking], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [], "a simulated study imports no TensorFlow"

    study = optuna.load_study(study_name="sim", storage=storage)
    client = MlflowClient(tracking_uri=tracking)
    parent = study.user_attrs[PARENT_ATTR]
    assert len(study.trials) == 5 and all(t.state.is_finished() for t in study.trials)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete
    for trial in study.trials:
        run = client.get_run(trial.user_attrs[RUN_ATTR])
        tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
        assert tags["mlflow.parentRunId"] == parent, "each trial is a run nested under the study's"
        assert tags[SIMULATED_TAG] == "true" and tags[TRIAL_STATE_TAG] == trial.state.name
        assert params["blocks.1.filters"] == str(trial.params["filters_1"])
        assert params["optuna.learning_rate"] == str(trial.params["learning_rate"])
        curve = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [m.step for m in curve] == sorted(trial.intermediate_values), "per-epoch metrics = Optuna's reports"
        assert [m.value for m in curve] == [trial.intermediate_values[s] for s in sorted(trial.intermediate_values)]
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert not artifacts & {"model", "classifier", "confusion_matrix.png"}, "no model, no figures"
        if trial in complete:
            assert run.info.status == "FINISHED" and len(curve) == 3
            assert metrics[VAL_ACCURACY] == trial.value == trial.user_attrs[VAL_ACCURACY]
            assert {"test_accuracy", "best_epoch", "train_seconds", "report_seconds"} <= metrics.keys()
            assert artifacts == {"history.json", "simulated.json"}
        else:
            assert run.info.status == "KILLED"
    with sqlite3.connect(tmp_path / "optuna.db") as db:  # every trial sent its heartbeat
        beats = {row[0] for row in db.execute("SELECT trial_id FROM trial_heartbeats")}
    assert beats == {t._trial_id for t in study.trials}


BAD = {
    "negative sleep": ({"epoch_seconds": -1}, {}, "simulate.epoch_seconds: Input should be greater than or equal to 0"),
    "unknown key": ({"epochs": 2}, {}, "simulate.epochs: Extra inputs are not permitted"),
    "not a mapping": (True, {}, "simulate: Input should be a valid dictionary"),
    "n_params objective": ({}, {"objectives": ["val_accuracy", "n_params"]},
                           "simulate: a simulated trial builds no model, so it has no n_params"),
    "refit": ({}, {"refit": {"seeds": 2}}, "simulate: a simulated study has no model to refit (refit.seeds is 2"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_simulate_values_get_one_clear_line(tmp_path, case):
    simulate, settings, message = BAD[case]
    path = tiny_study(tmp_path, simulate=simulate, **settings)
    with pytest.raises(UserError, match=f"^{re.escape(str(path))}: .*{re.escape(message)}"):
        load_study_config(path)
    result = CliRunner().invoke(app, ["study", "check", str(path)])
    assert result.exit_code == 2 and message in result.output
