"""`max_params` in a CNN study file: networks over it are pruned before they train (no run, a
reason on the trial), the others train; refused for MLP studies."""

from __future__ import annotations

import optuna
import pytest
from helpers import mlflow_store
from mlflow.tracking import MlflowClient

from signlab.contract import N_PARAMS, PRUNED_ATTR, RUN_ATTR
from signlab.errors import UserError
from signlab.search.study import run_study
from signlab.search.study_config import load_study_config

STUDY = """\
study_name: capped
family: cnn
max_epochs: 1
subset: 10
max_params: {max_params}
pruner: {{type: none}}
sampler: {{type: random, seed: 3}}
n_trials: 6
fixed: {{batch_norm: true}}
space:
  n_blocks: {{type: int, low: 2, high: 3}}
  filters: {{type: int, low: 4, high: 48, log: true}}
  dense_units: {{type: int, low: 8, high: 128, log: true}}
"""


@pytest.mark.slow
def test_networks_over_max_params_are_pruned_before_training(tmp_path, data_files):
    path = tmp_path / "capped.yaml"
    path.write_text(STUDY.format(max_params=12000))
    study = run_study(path, storage=f"sqlite:///{tmp_path / 'optuna.db'}",
                      tracking_uri=mlflow_store(tmp_path), files=data_files, progress=False)
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert pruned and complete, "the seeded draws hold networks on both sides of the cap"
    for trial in pruned:
        assert "over max_params 12,000" in trial.user_attrs[PRUNED_ATTR]
        assert RUN_ATTR not in trial.user_attrs, "nothing was trained, so no run was made"
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    for trial in complete:
        run = client.get_run(trial.user_attrs[RUN_ATTR])
        assert run.data.metrics[N_PARAMS] <= 12000


def test_max_params_is_for_cnn_studies(tmp_path):
    path = tmp_path / "mlp.yaml"
    path.write_text("study_name: m\nfamily: mlp\nmax_params: 1000\nspace:\n  alpha: {type: float, low: 0.001, high: 0.1}\n")
    with pytest.raises(UserError, match="max_params: only CNN studies count parameters before training"):
        load_study_config(path)
