"""The objective: each trial one MLflow run nested under the study's parent, with the trial's
params, per-epoch metrics (reported for pruning), validation and test figures and models;
its `trial_state` tag follows the trial. Trials are chosen on validation data only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlflow
import optuna
from optuna.trial import TrialState

from signlab.contract import (
    BEST_EPOCH_ATTR,
    FAMILY_TAG,
    LR_SCHEDULE_ATTR,
    N_PARAMS,
    OBJECTIVE_METRIC,
    PRUNED_ATTR,
    ROLE_TAG,
    ROLE_TRIAL,
    RUN_ATTR,
    RUN_URL_ATTR,
    SAME_AS_ATTR,
    STUDY_TAG,
    TEST_ACCURACY,
    TEST_AUG_ACCURACY,
    TEST_F1,
    TRIAL_NUMBER_TAG,
    TRIAL_STATE_TAG,
    VAL_ACCURACY,
    VAL_LOSS,
    WORKER_TAG,
)
from signlab.models.family import family_of
from signlab.models.presets import Spec
from signlab.models.train import EpochHook, free_graph
from signlab.runs import lifecycle, store
from signlab.runs.job import Data, train_and_log
from signlab.search.simulate import simulate_and_log
from signlab.search.space import trial_spec
from signlab.search.study_config import StudyConfig
from signlab.signals import held_interrupts


def pruning_hook(trial: optuna.Trial) -> Callable[[int, dict[str, float]], None]:
    """Report each epoch's validation accuracy; stop the trial when the pruner says so."""

    def hook(epoch: int, metrics: dict[str, float]) -> None:
        with held_interrupts():  # a write to the study's storage: not cut (see `records.log_metrics`)
            trial.report(metrics["val_accuracy"], epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1} (val_accuracy {metrics['val_accuracy']:.4f})")

    return hook


def make_objective(cfg: StudyConfig, data: Data,
                   progress: Callable[[optuna.Trial, int], EpochHook] | None = None) -> Callable[[optuna.Trial], Any]:
    """One trial: a nested MLflow run that trains, evaluates and logs the trial's spec;
    `progress(trial, epochs)` gives a hook that shows each epoch."""

    def objective(trial: optuna.Trial) -> float | tuple[float, ...]:
        spec = trial_spec(trial, cfg)
        earlier = same_params_as(trial)
        if earlier is not None:
            return _reuse(trial, earlier, cfg)
        too_big = _over_max_params(spec, cfg)
        if too_big:
            trial.set_user_attr(PRUNED_ATTR, too_big)
            raise optuna.TrialPruned(too_big)  # before any run: nothing was trained
        tags = {ROLE_TAG: ROLE_TRIAL, STUDY_TAG: cfg.study_name, TRIAL_NUMBER_TAG: str(trial.number),
                TRIAL_STATE_TAG: "RUNNING", FAMILY_TAG: cfg.family, WORKER_TAG: lifecycle.this_process()}
        name = f"trial {trial.number}"  # short, so the UI's runs list shows it whole; the parent names the study
        hooks = [] if cfg.multi_objective else [pruning_hook(trial)]
        if progress is not None:
            hooks.insert(0, progress(trial, spec.epochs))
        try:
            with lifecycle.tracked_run(killed_on=(optuna.TrialPruned,), nested=True, run_name=name,
                                      tags=tags) as run:
                trial.set_user_attr(RUN_ATTR, run.info.run_id)
                url = store.run_url(run)  # None for a SQLite store: its UI has no fixed address
                if url:
                    trial.set_user_attr(RUN_URL_ATTR, url)
                mlflow.log_params({f"optuna.{k}": v for k, v in trial.params.items()})
                try:
                    metrics, history = _train(spec, data, hooks, cfg)
                    for key in (VAL_ACCURACY, VAL_LOSS, TEST_ACCURACY, TEST_F1, TEST_AUG_ACCURACY, N_PARAMS):
                        if key in metrics:  # a simulated trial has no n_params
                            trial.set_user_attr(key, float(metrics[key]))
                    # what a refit needs to retrain this trial: its best epoch and LR schedule
                    trial.set_user_attr(BEST_EPOCH_ATTR, int(metrics[BEST_EPOCH_ATTR]))
                    trial.set_user_attr(LR_SCHEDULE_ATTR, [h["learning_rate"] for h in history])
                except optuna.TrialPruned:
                    _tag_state("PRUNED")
                    raise
                except BaseException:
                    _tag_state("FAIL")
                    raise
                mlflow.set_tag(TRIAL_STATE_TAG, "COMPLETE")
        except KeyboardInterrupt as exc:  # Optuna fails the trial and raises it again
            exc.add_note(f"trial {trial.number} ended FAIL")
            raise
        finally:
            free_graph(collect=False)  # Optuna collects after each trial (`gc_after_trial`)
        values = tuple(float(metrics[OBJECTIVE_METRIC[o]]) for o in cfg.objectives)
        return values if cfg.multi_objective else values[0]

    return objective


def _train(spec: Spec, data: Data, hooks: list[EpochHook],
           cfg: StudyConfig) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Train and log the trial, or simulate it (`simulate:`); (final metrics, per-epoch history)."""
    if cfg.simulate is not None:
        return simulate_and_log(spec, data, hooks, cfg.simulate)
    outcome = train_and_log(spec, data, hooks)
    return outcome.metrics, outcome.fit.history


def _over_max_params(spec: Spec, cfg: StudyConfig) -> str | None:
    """Why `spec` is over the study's `max_params` (built, not trained, to count), or None."""
    if cfg.max_params is None:
        return None
    size = family_of(spec).count_before_training(spec)
    free_graph(collect=False)  # within the trial: Optuna collects after it
    if size is None:
        return None
    return f"{size:,} parameters, over max_params {cfg.max_params:,}" if size > cfg.max_params else None


def same_params_as(trial: optuna.Trial) -> optuna.trial.FrozenTrial | None:
    """A finished (COMPLETE or PRUNED) trial that had this trial's params, unless this one
    was asked for: queued by `enqueue_trial` (system attribute `fixed_params`) or a retry
    of a dead worker's trial (`failed_trial`)."""
    trials = trial.study.get_trials(deepcopy=False)
    this = next(t for t in trials if t.number == trial.number)
    if {"fixed_params", "failed_trial"} & this.system_attrs.keys():
        return None
    return next((t for t in trials if t.number != trial.number and t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                 and t.params == trial.params), None)


def _reuse(trial: optuna.Trial, earlier: optuna.trial.FrozenTrial, cfg: StudyConfig) -> float | tuple[float, ...]:
    """The earlier trial's outcome, as Optuna's FAQ does for duplicates: not trained again,
    no run of its own; its user attributes (run id, metrics) are the earlier trial's."""
    for key, value in earlier.user_attrs.items():
        trial.set_user_attr(key, value)
    trial.set_user_attr(SAME_AS_ATTR, earlier.number)
    if earlier.state == TrialState.PRUNED:
        raise optuna.TrialPruned(f"same params as pruned trial {earlier.number}: not trained again")
    return tuple(earlier.values) if cfg.multi_objective else earlier.values[0]


def _tag_state(state: str) -> None:
    """Tag the trial run's end state; a failure to do so never replaces the exception that
    ended the trial (a SIGTERM, say)."""
    try:
        mlflow.set_tag(TRIAL_STATE_TAG, state)
    except Exception:  # noqa: BLE001
        pass
