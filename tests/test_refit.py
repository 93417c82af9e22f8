"""Best epoch, batch-norm statistics, and a study's confirmed choice and its refits (one shared study; subsets, few epochs)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
from helpers import mlflow_store, runs_by_role
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from signlab.cli import app
from signlab.data import DataSettings
from signlab.errors import UserError
from signlab.models.presets import make_spec
from signlab.models.train import fit
from signlab.runs.job import prepare_data
from signlab.search.outputs import ranked_trials
from signlab.search.setup import Overrides
from signlab.search.study import refit_study, run_study

STUDY = """\
study_name: refit
family: cnn
max_epochs: 2
subset: 10
refit: {{seeds: {seeds}}}
sampler: {{type: tpe, seed: 1}}
pruner: {{type: none}}
fixed: {{adaptive_lr: true}}
space:
  n_blocks: {{type: int, low: 2, high: 2}}
  filters: {{type: int, low: 4, high: 8}}
"""


def chosen(study):
    """The trial the study chose (by its confirm runs), which its refits retrain."""
    return study.trials[study.user_attrs["chosen_trial"]]


@pytest.fixture(scope="module")
def small_data(data_files):
    return prepare_data(data_files, DataSettings(subset=100))


@pytest.mark.slow
def test_fit_keeps_the_best_epoch_by_validation(small_data):
    from signlab.models.evaluate import evaluate

    # a small CNN at a high rate (validation accuracy wobbles early), four epochs
    spec = make_spec("cnn2", epochs=4, learning_rate=0.01, blocks=[{"filters": 8}, {"filters": 8}], dense_units=[32])
    result = fit(spec, small_data.train, small_data.val, seed=0)
    scores = [h["val_accuracy"] for h in result.history]
    assert scores[result.best_epoch - 1] == max(scores)
    assert evaluate(result.model, *small_data.val).accuracy == pytest.approx(max(scores), abs=1e-6)


@pytest.mark.slow
def test_batch_norm_statistics_follow_the_data_within_a_few_dozen_steps(small_data):
    """The moving mean of the first batch-norm layer after ~40 steps (one epoch of batches of
    48), against the mean of its inputs on the training images: Keras' default momentum
    (0.99) leaves it ~65% short."""
    import keras

    from signlab.data.splits import scale

    spec = make_spec("cnn3", epochs=1, batch_size=48)
    result = fit(spec, small_data.train, small_data.val, seed=0)
    model = result.model.estimator
    bn = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    before = keras.Model(model.inputs, model.layers[model.layers.index(bn) - 1].output)
    inputs = np.asarray(before(scale(small_data.train[0], True)[..., None], training=False))
    data_mean = inputs.reshape(-1, inputs.shape[-1]).mean(axis=0)
    moving = np.asarray(bn.moving_mean)
    assert np.abs(moving - data_mean).sum() / np.abs(data_mean).sum() < 0.2


@dataclass
class Confirmed:
    """A 3-trial study with `confirm: {top_k: 2, seeds: 2}` and two refits, as it ended (the
    tests that resume it read these copies, so the order the tests run in does not matter)."""

    path: Path
    storage: str
    uri: str
    study: optuna.Study  # a copy in memory: the stored study goes on when resumed
    lines: list[str]
    roles: dict[str, list]


@pytest.fixture(scope="module")
def confirmed(tmp_path_factory, data_files) -> Confirmed:
    """The study every refit and confirm check below shares: its trials, the confirm runs of
    the two best (seeds 4 and 5), and the refit of the confirmed choice with seeds 3 and 4."""
    tmp_path = tmp_path_factory.mktemp("refit")
    storage, uri = f"sqlite:///{tmp_path / 'optuna.db'}", mlflow_store(tmp_path)
    path = tmp_path / "refit.yaml"
    path.write_text(STUDY.format(seeds=2) + "confirm: {top_k: 2, seeds: 2}\nseed: 3\n")
    lines: list[str] = []
    run_study(path, Overrides(n_trials=3), storage=storage, tracking_uri=uri, files=data_files, progress=False,
              echo=lines.append)
    memory = optuna.storages.InMemoryStorage()
    optuna.copy_study(from_study_name="refit", from_storage=storage, to_storage=memory)
    study = optuna.load_study(study_name="refit", storage=memory)
    return Confirmed(path, storage, uri, study, lines, runs_by_role(MlflowClient(uri), "refit"))


@pytest.mark.slow
def test_confirm_retrains_the_top_trials_and_chooses_by_their_mean(confirmed):
    """`confirm: {top_k: 2, seeds: 2}`: the two best trials by validation each trained twice more
    with new seeds, as runs nested under the parent; the choice, the parent's best trial and
    the refit follow the best mean validation accuracy of those new runs."""
    import statistics

    from signlab.search.confirm import confirmed_choice
    from signlab.search.study_config import load_study_config

    study, roles = confirmed.study, confirmed.roles
    cfg = load_study_config(confirmed.path)
    parent = roles["study"][0]
    confirms = roles["confirm"]
    top = [t for t in ranked_trials(study) if "same_params_as" not in t.user_attrs][:2]
    assert len(study.trials) == 3 and len(confirms) == 4
    assert sorted((r.data.tags["trial_number"], r.data.tags["confirm_seed"]) for r in confirms) == sorted(
        (str(t.number), str(seed)) for t in top for seed in (4, 5))
    means = {}
    for trial in top:
        runs = [r for r in confirms if r.data.tags["trial_number"] == str(trial.number)]
        for run in runs:
            assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == parent.info.run_id
            assert run.data.params["confirm_seed"] == run.data.tags["confirm_seed"] and "final_val_accuracy" in run.data.metrics
        values = [r.data.metrics["final_val_accuracy"] for r in runs]
        means[trial.number] = statistics.fmean(values)
        assert study.user_attrs[f"confirm.{trial.number}"] == {r.data.tags["confirm_seed"]: pytest.approx(
            r.data.metrics["final_val_accuracy"]) for r in runs}
        logged = parent.data.metrics
        assert logged[f"confirm_val_accuracy_mean.{trial.number}"] == pytest.approx(means[trial.number])
    choice = max(top, key=lambda t: (means[t.number], -top.index(t)))
    assert confirmed_choice(study, cfg, ranked_trials(study)).number == choice.number
    tags = parent.data.tags
    assert tags["best.trial_number"] == tags["refit.trial_number"] == str(choice.number)
    assert study.user_attrs["chosen_trial"] == choice.number
    assert {r.data.tags["trial_number"] for r in roles["refit"]} == {str(choice.number)}
    assert any(line.startswith(f"  confirmed trial {choice.number}: ") for line in confirmed.lines)


@pytest.mark.slow
def test_refit_runs_nested_tagged_and_summarised(confirmed):
    """The chosen trial retrained on the whole training file once per `refit.seeds` (seeds
    seed, seed+1), nested under the parent, which holds their summary."""
    study, roles = confirmed.study, confirmed.roles
    parent = roles["study"][0]
    refits = sorted(roles["refit"], key=lambda r: r.data.tags["refit_seed"])
    best = chosen(study)
    assert [r.data.tags["refit_seed"] for r in refits] == ["3", "4"]
    assert [r.data.tags["refit_primary"] for r in refits] == ["true", "false"]
    assert len({r.data.tags["refit.spec"] for r in refits}) == 1  # what a later refit matches to skip a seed
    for run in refits:
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["trial_number"] == str(best.number)
        assert run.data.params["n_val"] == "0" and int(run.data.params["n_train"]) == 10 * 24
        assert run.data.params["epochs"] == str(best.user_attrs["best_epoch"])
        assert "final_val_accuracy" not in run.data.metrics and "test_accuracy" in run.data.metrics
        assert "signlab.classifier_uri" in run.data.tags
    accuracies = [r.data.metrics["test_accuracy"] for r in refits]
    metrics = parent.data.metrics
    assert metrics["refit_test_accuracy_mean"] == pytest.approx(np.mean(accuracies))
    assert metrics["refit_test_accuracy_std"] == pytest.approx(np.std(accuracies, ddof=1))
    assert metrics["refit_n"] == 2
    assert any(line.startswith(f"refit of trial {best.number}, seed 3") for line in confirmed.lines)


@pytest.mark.slow
def test_a_resumed_study_confirms_and_refits_nothing_twice(confirmed, data_files, data_dir):
    """Resumed: a trial confirmed or refitted before is not trained again (a new trial in the
    top two is confirmed; a new choice is refitted); `study refit` skips the seeds already
    refitted (an interrupted refit resumes) and runs a new one."""
    path, storage, uri = confirmed.path, confirmed.storage, confirmed.uri
    client = MlflowClient(uri)
    parent = confirmed.roles["study"][0]
    before_top = [t for t in ranked_trials(confirmed.study) if "same_params_as" not in t.user_attrs][:2]
    lines: list[str] = []
    run_study(path, Overrides(n_trials=1), storage=storage, tracking_uri=uri, files=data_files, progress=False,
              echo=lines.append)
    study = optuna.load_study(study_name="refit", storage=storage)
    roles = runs_by_role(client, "refit")
    new_top = [t for t in ranked_trials(study) if "same_params_as" not in t.user_attrs][:2]
    assert len(roles["confirm"]) == 2 * len({t.number for t in before_top} | {t.number for t in new_top})
    expected = 2 if chosen(study).number == chosen(confirmed.study).number else 4
    assert len(roles["refit"]) == expected
    # `signlab study refit` with the Default experiment active (as in a fresh process, where no
    # experiment is chosen yet): into the study's experiment, the seeds done skipped, a third run
    before = {r.data.tags["refit_seed"]: r.info.run_id for r in roles["refit"]
              if r.data.tags["trial_number"] == str(chosen(study).number)}
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment_id="0")
    result = CliRunner().invoke(app, ["study", "refit", str(path), "--seeds", "3", "--storage", storage,
                                      "--tracking-uri", uri, "--data-dir", str(data_dir), "--no-system-metrics"])
    assert result.exit_code == 0, result.output[-3000:]
    for seed in ("3", "4"):
        assert f"seed {seed}: skipped, run {before[seed]} already FINISHED" in result.output
    refits = runs_by_role(client, "refit")["refit"]
    assert len(refits) == expected + 1 and sorted(r.data.tags["refit_seed"] for r in refits)[-1] == "5"
    assert client.get_run(parent.info.run_id).data.metrics["refit_n"] == 3
    assert not client.search_runs(["0"]), "nothing in the Default experiment"


@pytest.mark.slow
def test_refit_needs_seeds_and_a_study(tmp_path, data_files):
    path = tmp_path / "refit.yaml"
    path.write_text(STUDY.format(seeds=0))
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    with pytest.raises(UserError, match="refit.seeds is 0"):
        refit_study(path, storage=storage, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", files=data_files)
    with pytest.raises(UserError, match="no study 'refit'"):
        refit_study(path, Overrides(refit_seeds=1), storage=storage, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                    files=data_files)
