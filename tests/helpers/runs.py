"""Reading back what a test's runs logged."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from signlab.contract import ROLE_TAG
from signlab.search.outputs import ranked_trials


def runs_by_role(client: MlflowClient, experiment: str) -> dict[str, list]:
    """An experiment's runs grouped by their `signlab.role` tag (study, trial, session...)."""
    exp = client.get_experiment_by_name(experiment)
    roles: dict[str, list] = {}
    for run in client.search_runs([exp.experiment_id], max_results=1000):
        roles.setdefault(run.data.tags.get(ROLE_TAG, "other"), []).append(run)
    return roles


def check_study(client: MlflowClient, storage: str, experiment: str, study_name: str, n: int) -> None:
    """One parent, n trial runs nested under it, matching trials both ways, stepped metrics."""
    roles = runs_by_role(client, experiment)
    assert len(roles["study"]) == 1
    parent = roles["study"][0]
    trials = roles["trial"]
    assert len(trials) == n
    study = optuna.load_study(study_name=study_name, storage=storage)
    assert len(study.trials) == n and study.user_attrs["mlflow_parent_run_id"] == parent.info.run_id
    by_number = {int(r.data.tags["trial_number"]): r for r in trials}
    assert sorted(by_number) == list(range(n)), "each trial number exactly once"
    for trial in study.trials:
        run = by_number[trial.number]
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["study"] == study_name
        assert run.data.tags["trial_state"] == trial.state.name
        assert {k: str(v) for k, v in trial.params.items()} == {
            k.removeprefix("optuna."): v for k, v in run.data.params.items() if k.startswith("optuna.")}
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert run.info.status == "FINISHED"
            steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
            assert steps == list(range(len(steps))) and len(steps) >= 1
            assert trial.value == pytest.approx(run.data.metrics["final_val_accuracy"])
            assert "test_accuracy" in run.data.metrics
    best = ranked_trials(study)[0]  # no `confirm:` here: the first by the tie rules
    assert parent.data.tags["best.trial_number"] == str(best.number)
    assert parent.data.metrics["best_value"] == pytest.approx(best.value)
    for key, value in best.params.items():
        assert parent.data.tags[f"best.{key}"] == str(value)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"plots/optimization_history.png", "plots/slice.png", "plots/parallel_coordinate.png",
            "plots/study_plots.html"} <= artifacts
    top = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"best_trial.json", "trials.csv"} <= top


PNG = b"\x89PNG\r\n\x1a\n"
NETWORK_SCRIPT = '<script src="http'


def _artifacts(client: MlflowClient, run_id: str, folder: str | None = None) -> list[str]:
    found = []
    for entry in client.list_artifacts(run_id, folder):
        found += _artifacts(client, run_id, entry.path) if entry.is_dir else [entry.path]
    return found


def check_offline_charts(client: MlflowClient) -> None:
    """Every chart every run logged is a PNG (trained models: the confusion matrix and the
    learning curves), and no HTML loads a script from the network (a machine without a browser,
    offline: the parent's study_plots.html at least)."""
    html_seen = 0
    for run in client.search_runs([e.experiment_id for e in client.search_experiments()]):
        names = _artifacts(client, run.info.run_id)
        if run.data.tags.get(ROLE_TAG) != "study" and "model_summary.txt" in names:  # a trained model
            assert {"confusion_matrix.png", "learning_curves.png"} <= set(names), run.data.tags
        for name in names:
            path = Path(client.download_artifacts(run.info.run_id, name))
            if name.endswith(".png"):
                assert path.read_bytes()[:8] == PNG, name
            elif name.endswith(".html"):
                html_seen += 1
                assert NETWORK_SCRIPT not in path.read_text(), f"{name} of {run.info.run_id} needs the network"
    assert html_seen, "the parent's study_plots.html at least"
