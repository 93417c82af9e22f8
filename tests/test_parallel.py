"""Parallel trials on one machine (`study run --parallel N`, the study file's `parallel: auto`):
local workers on one study, each trial one nested run under the one parent, the trial budget
held, resume numbering on, Ctrl-C ending every child cleanly. Real SQLite, real data (a subset)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from helpers import mlflow_store, runs_by_role, subprocess_env, tiny_study, wait_for_running_trials
from mlflow.tracking import MlflowClient

from signlab import config

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("data_dir")]


def study_run(path: Path, tmp: Path, *args: str) -> subprocess.Popen:
    """`signlab study run` with the two stores in `tmp`, $SIGNLAB_PARALLEL unset (the suite sets it to 1)."""
    env = subprocess_env()
    env.pop(config.PARALLEL_ENV, None)
    return subprocess.Popen([sys.executable, "-m", "signlab", "study", "run", str(path), "--storage",
                             f"sqlite:///{tmp / 'optuna.db'}", "--tracking-uri", mlflow_store(tmp),
                             "--no-system-metrics", *args], env=env, cwd=tmp, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_two_trials_at_once_share_one_parent_and_the_budget(tmp_path):
    path = tiny_study(tmp_path, "par", max_epochs=1, n_trials=4, refit={"seeds": 1})
    proc = study_run(path, tmp_path, "--parallel", "2")
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-4000:]
    assert "2 workers on the study (0 trials so far, stopping at 4 in all)" in out
    assert "worker 1: done: " in out and "worker 2: done: " in out
    assert out.count("study par: ") == 1 and "study par: 4 new trials, 4 in all" in out, "one summary, the launcher's"
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.load_study(study_name="par", storage=storage)
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3], "the budget held: 4 trials, not 2 x 4"
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    roles = runs_by_role(client, "par")
    (parent,) = roles["study"]
    assert parent.info.status == "FINISHED"
    trials = roles["trial"]
    assert len(trials) == 4 and {r.data.tags["mlflow.parentRunId"] for r in trials} == {parent.info.run_id}
    assert sorted(int(r.data.tags["trial_number"]) for r in trials) == [0, 1, 2, 3]
    assert len({r.data.tags["signlab.worker"] for r in trials}) == 2, "two processes ran the trials"
    assert {t.user_attrs["mlflow_run_id"] for t in study.trials} == {r.info.run_id for r in trials}
    (refit,) = roles["refit"]  # once, however close together the two workers ended
    assert refit.data.tags["trial_number"] == parent.data.tags["best.trial_number"]
    assert refit.data.tags["signlab.worker"] == f"{socket.gethostname()}:{proc.pid}", "by the launcher: every core"
    assert "refit of trial" in out and "worker 1: refit" not in out and "worker 2: refit" not in out
    # resumed in parallel: numbering goes on, still one parent
    proc = study_run(path, tmp_path, "--parallel", "2", "--n-trials", "2")
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-4000:]
    study = optuna.load_study(study_name="par", storage=storage)
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3, 4, 5]
    roles = runs_by_role(client, "par")
    assert len(roles["study"]) == 1 and len(roles["trial"]) == 6
    refit_of = [r.data.tags["trial_number"] for r in roles["refit"]]
    assert len(refit_of) == len(set(refit_of)), "no trial refit twice with one seed"


def test_ctrl_c_ends_every_child_and_leaves_nothing_running(tmp_path):
    path = tiny_study(tmp_path, "stop", max_epochs=300, n_trials=4, high=512)
    proc = study_run(path, tmp_path, "--parallel", "2")
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    wait_for_running_trials(storage, "stop", proc, 2)  # both workers mid-trial, each with its run
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "Traceback" not in out, out[-3000:]
    study = optuna.load_study(study_name="stop", storage=storage)
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,)), out[-3000:]
    assert len(study.get_trials(states=(optuna.trial.TrialState.FAIL,))) == 2, out[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("stop")
    assert not client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'"), "nothing left RUNNING"
    for trial in study.trials:
        assert client.get_run(trial.user_attrs["mlflow_run_id"]).info.status in ("KILLED", "FINISHED")


def test_parallel_option_is_checked_before_anything_starts(tmp_path):
    path = tiny_study(tmp_path, "bad")
    proc = study_run(path, tmp_path, "--parallel", "lots")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "--parallel 'lots': expected auto or a number from 1 to 64" in out
    assert not (tmp_path / "optuna.db").exists()
