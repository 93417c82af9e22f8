"""Parallel trials on one machine (`study run --parallel N`, the study file's `parallel: auto`):
local workers on one study, each trial one nested run under the one parent, the trial budget
held, resume numbering on, Ctrl-C ending every child cleanly. Real SQLite, real data (a subset)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import psutil
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


def test_ctrl_c_ends_every_child_and_leaves_nothing_running(tmp_path):
    """`parallel: auto` (the default) starts one worker per core, as memory allows, never more
    than the trials to run. Ctrl-C reaches each worker once (the launcher passes it on): every
    running trial ends FAIL and its run KILLED, the shared parent KILLED, not left RUNNING, and
    no traceback."""
    path = tiny_study(tmp_path, "stop", max_epochs=300, n_trials=4, high=512)
    by_memory = psutil.virtual_memory().available // config.TRIAL_MEMORY_BYTES
    n = min(config.machine_cores(), by_memory, 4)
    if n < 2:
        pytest.skip("one worker at most here: nothing to launch")
    proc = study_run(path, tmp_path)  # the file's parallel: auto
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    wait_for_running_trials(storage, "stop", proc, n)  # every worker mid-trial, each with its run
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "Traceback" not in out, out[-3000:]
    assert f"{n} workers on the study (0 trials so far, stopping at 4 in all)" in out, out[-3000:]
    assert out.count("exited with code") == n, out[-3000:]
    study = optuna.load_study(study_name="stop", storage=storage)
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,)), out[-3000:]
    assert len(study.get_trials(states=(optuna.trial.TrialState.FAIL,))) == n, out[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("stop")
    assert not client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'"), "nothing left RUNNING"
    (parent,) = runs_by_role(client, "stop")["study"]
    assert parent.info.status == "KILLED"
    for trial in study.trials:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        expected = {"COMPLETE": "FINISHED", "FAIL": "KILLED"}[trial.state.name]
        assert run.info.status == expected and run.data.tags["trial_state"] == trial.state.name


def test_parallel_option_is_checked_before_anything_starts(tmp_path):
    path = tiny_study(tmp_path, "bad")
    proc = study_run(path, tmp_path, "--parallel", "lots")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "--parallel 'lots': expected auto or a number from 1 to 64" in out
    assert not (tmp_path / "optuna.db").exists()
