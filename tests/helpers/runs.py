"""Reading back what a test's runs logged."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from signlab.contract import ROLE_TAG


def runs_by_role(client: MlflowClient, experiment: str) -> dict[str, list]:
    """An experiment's runs grouped by their `signlab.role` tag (study, trial, session...)."""
    exp = client.get_experiment_by_name(experiment)
    roles: dict[str, list] = {}
    for run in client.search_runs([exp.experiment_id], max_results=1000):
        roles.setdefault(run.data.tags.get(ROLE_TAG, "other"), []).append(run)
    return roles
