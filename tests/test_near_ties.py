"""Near ties: the trials validation does not tell from a study's choice (inside the choice's 95%
interval over validation photos), named on the console, on the parent run and in the report."""

from __future__ import annotations

import optuna
from helpers import mlflow_store, tiny_study
from mlflow.tracking import MlflowClient

from signlab.search.outputs import best_trial, near_ties, near_ties_line, summary_lines
from signlab.search.study_config import load_study_config

DIST = {"units": optuna.distributions.IntDistribution(16, 64)}


def _study_with_runs(client: MlflowClient, trials: list[tuple[float, float, dict]]) -> optuna.Study:
    """A single-objective study whose complete trials have these (validation accuracy, its
    validation loss, more user attributes), each with a run that logged the validation interval
    the accuracy's run would: +-0.004 around it."""
    study = optuna.create_study(direction="maximize")
    experiment = client.create_experiment("ties")
    for i, (value, loss, attrs) in enumerate(trials):
        run = client.create_run(experiment)
        client.log_metric(run.info.run_id, "final_val_accuracy_ci_low", value - 0.004)
        client.log_metric(run.info.run_id, "final_val_accuracy_ci_high", min(1.0, value + 0.004))
        client.set_terminated(run.info.run_id)
        study.add_trial(optuna.trial.create_trial(
            params={"units": 16 + i}, distributions=DIST, value=value,
            user_attrs={"mlflow_run_id": run.info.run_id, "final_val_loss": loss} | attrs))
    return study


def test_near_ties_are_the_trials_inside_the_choices_validation_interval(tmp_path):
    uri = mlflow_store(tmp_path)
    client = MlflowClient(uri)
    cfg = load_study_config(tiny_study(tmp_path))
    study = _study_with_runs(client, [
        (0.9950, 0.05, {}),                      # 0: the choice (ties at 0.9950 go to the lower loss)
        (0.9950, 0.09, {}),                      # 1: tied exactly, higher loss
        (0.9930, 0.01, {}),                      # 2: inside 0.9910-0.9990
        (0.9911, 0.01, {}),                      # 3: inside, near its low end
        (0.9905, 0.01, {}),                      # 4: below it
        (0.9930, 0.01, {"same_params_as": 2}),   # 5: trial 2's params again, not trained again
    ])
    best = best_trial(study, cfg)
    assert best.number == 0
    tied, interval = near_ties(study, cfg, best, client)
    assert [t.number for t in tied] == [1, 2, 3] and interval == (0.9950 - 0.004, 0.9950 + 0.004)
    line = near_ties_line(tied, interval)
    assert line == ("validation does not tell it from trials 1 (0.9950), 2 (0.9930), 3 (0.9911): inside its 95% "
                    "interval over validation photos (0.9910-0.9990); `confirm: {top_k: 4, seeds: 2}` in the "
                    "study file trains the top trials again and chooses by their mean")
    summary = summary_lines(study, cfg, uri, "0", "parent", 6)
    assert "  " + line in summary and summary.index("  " + line) == 3  # after the choice and its params


def test_no_near_ties_without_an_interval_or_when_the_study_settles_them(tmp_path):
    uri = mlflow_store(tmp_path)
    client = MlflowClient(uri)
    study = _study_with_runs(client, [(0.9950, 0.05, {}), (0.9949, 0.05, {})])
    cfg = load_study_config(tiny_study(tmp_path))
    assert [t.number for t in near_ties(study, cfg, best_trial(study, cfg), client)[0]] == [1]
    # `confirm:` trains the top trials again: it settles them, so nothing is flagged
    confirming = load_study_config(tiny_study(tmp_path, "confirming", confirm={"top_k": 2, "seeds": 1}))
    assert near_ties(study, confirming, best_trial(study, confirming), client) == ([], None)
    # a run logged before validation intervals existed (or a simulated trial): nothing to compare with
    old = optuna.create_study(direction="maximize")
    run = client.create_run(client.create_experiment("old"))
    for value in (0.99, 0.99):
        old.add_trial(optuna.trial.create_trial(params={"units": 16}, distributions=DIST, value=value,
                                                user_attrs={"mlflow_run_id": run.info.run_id}))
    assert near_ties(old, cfg, best_trial(old, cfg), client) == ([], None)
    assert not any("does not tell" in line for line in summary_lines(old, cfg, uri, "0", "parent", 2))
