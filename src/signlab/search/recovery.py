"""Crash safety: what a worker does about trials and runs that a dead worker left behind.

Optuna's heartbeats fail a trial whose worker stopped beating (SIGKILL, power loss); the
worker that notices calls `FailedTrialHandler`, which ends the trial's MLflow run FAILED
and, where the study file asks, re-queues the trial. `repair_runs` sweeps up any trial run
still RUNNING whose trial has already finished, whatever the reason.
"""

from __future__ import annotations

import warnings

import mlflow
import optuna
from mlflow.tracking import MlflowClient
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from signlab.contract import REPAIRED_TAG, ROLE_TAG, ROLE_TRIAL, RUN_ATTR, TRIAL_STATE_TAG

RUN_STATUS = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED", TrialState.FAIL: "FAILED"}


class FailedTrialHandler:
    """Optuna's stale-trial callback: the dead trial's run ends FAILED; retried if asked."""

    def __init__(self, retries: int, grace_period: int):
        self.retry = RetryHeartbeatStaleTrialCallback(max_retry=retries) if retries else None
        self.grace_period = grace_period

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        run_id = trial.user_attrs.get(RUN_ATTR)
        if run_id:
            end_run(run_id, TrialState.FAIL,
                    f"worker died: no heartbeat for {self.grace_period} s; failed by a later worker")
        if self.retry:
            self.retry(study, trial)


def end_run(run_id: str, state: TrialState, reason: str) -> bool:
    """End a trial's run that is still RUNNING as its trial ended; True if it was changed."""
    client = MlflowClient()
    try:
        if client.get_run(run_id).info.status != "RUNNING":
            return False
        client.set_tag(run_id, TRIAL_STATE_TAG, state.name)
        client.set_tag(run_id, REPAIRED_TAG, reason)
        client.set_terminated(run_id, RUN_STATUS[state])
        return True
    except mlflow.exceptions.MlflowException as exc:  # the study matters more than the run
        warnings.warn(f"could not end MLflow run {run_id}: {exc.message.splitlines()[0]}", stacklevel=2)
        return False


def repair_runs(study: optuna.Study, experiment_id: str) -> list[str]:
    """End every RUNNING trial run of this study whose trial is no longer running (its
    worker died, or was killed between the trial's end and the run's). Returns their ids."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # calls FailedTrialHandler for the newly dead
    finished = {t.user_attrs[RUN_ATTR]: t.state for t in study.get_trials(deepcopy=False)
                if RUN_ATTR in t.user_attrs and t.state in RUN_STATUS}
    if not finished:
        return []
    running = MlflowClient().search_runs(
        [experiment_id], filter_string=f"attributes.status = 'RUNNING' and tags.`{ROLE_TAG}` = '{ROLE_TRIAL}'",
        max_results=5000)
    return [r.info.run_id for r in running if r.info.run_id in finished
            and end_run(r.info.run_id, finished[r.info.run_id], "its trial had ended; run ended by a later worker")]


def live_trials(study: optuna.Study) -> int:
    """Trials running now (in this or another worker)."""
    return len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def keep_parent_running(study: optuna.Study, run_id: str) -> bool:
    """After a worker ends its session of the shared parent run: put it back to RUNNING
    while other workers still run trials (the last worker to finish ends it for good).
    Whether it did."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # a dead worker's trial is not a live one
        if live_trials(study):
            MlflowClient().update_run(run_id, status="RUNNING")
            return True
    except Exception as exc:  # noqa: BLE001 -- never mask the worker's own outcome
        warnings.warn(f"could not check the study's other workers: {exc}", stacklevel=2)
    return False
