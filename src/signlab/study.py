"""Optuna studies as MLflow runs: our own small bridge.

The study is one parent MLflow run; each trial is a nested child run with the trial's
params, per-epoch metrics, final validation and test metrics, its model, and the tags
`study`, `trial_number` and `trial_state`. The trial keeps its run id as the user attribute
`mlflow_run_id`; the study keeps its parent run id as `mlflow_parent_run_id`, so running the
same study again finds the same parent. Trials are chosen on validation data only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import optuna
from mlflow.tracking import MlflowClient
from tqdm import tqdm

from signlab import tracking
from signlab.errors import UserError
from signlab.job import Data, prepare_data, train_and_log
from signlab.space import check_buildable, trial_spec
from signlab.storage import open_storage, redact
from signlab.study_config import StudyConfig, load_study_config
from signlab.study_outputs import log_study_outputs, summary_lines

PARENT_ATTR = "mlflow_parent_run_id"
RUN_ATTR = "mlflow_run_id"
OBJECTIVE_METRIC = {"val_accuracy": "final_val_accuracy", "val_aug_accuracy": "final_val_aug_accuracy",
                    "n_params": "n_params"}


@dataclass
class Overrides:
    """Command-line values that replace the study file's (None: keep the file's)."""

    n_trials: int | None = None
    timeout: float | None = None
    max_epochs: int | None = None
    subset: int | None = None
    study_name: str | None = None
    seed: int | None = None

    def apply(self, cfg: StudyConfig) -> StudyConfig:
        changes = {k: v for k, v in vars(self).items() if v is not None}
        return cfg.model_copy(update=changes)


def make_sampler(cfg: StudyConfig) -> optuna.samplers.BaseSampler:
    s = cfg.sampler
    if s.type == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    if s.type == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=s.seed)
    return optuna.samplers.TPESampler(seed=s.seed, n_startup_trials=s.n_startup_trials,
                                      multivariate=True, constant_liar=True)


def make_pruner(cfg: StudyConfig) -> optuna.pruners.BasePruner:
    p = cfg.pruner
    if p.type == "none" or cfg.multi_objective:  # Optuna prunes single-objective studies only
        return optuna.pruners.NopPruner()
    if p.type == "threshold":
        return optuna.pruners.ThresholdPruner(lower=p.lower, n_warmup_steps=p.n_warmup_steps)
    if p.type == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=p.min_resource, max_resource=cfg.max_epochs,
                                              reduction_factor=p.reduction_factor)
    return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps)


def load_or_create(cfg: StudyConfig, storage_url: str) -> optuna.Study:
    """The study named in `cfg`, created or resumed; refuses one with other directions."""
    storage = open_storage(storage_url, retries=cfg.retry_failed_trials)
    try:
        existing = optuna.load_study(study_name=cfg.study_name, storage=storage)
    except KeyError:
        existing = None
    if existing is not None:
        have = [d.name.lower() for d in existing.directions]
        if have != cfg.directions:
            raise UserError(
                f"study {cfg.study_name!r} in {redact(storage_url)} has directions {have}, the study file "
                f"asks for {cfg.directions}; use another study_name (the stored study is untouched)")
    return optuna.create_study(study_name=cfg.study_name, storage=storage, directions=cfg.directions,
                               sampler=make_sampler(cfg), pruner=make_pruner(cfg), load_if_exists=True)


def parent_run_id(study: optuna.Study, cfg: StudyConfig, experiment_id: str,
                  launched: str | None) -> tuple[str, str | None]:
    """The study's parent run (found again on resume) and, under a second `mlflow run`, the
    run MLflow made for this session (`launched`), filed under the parent as a 'session'."""
    client = MlflowClient()
    if launched and not _exists(client, launched):
        launched = None  # --tracking-uri points elsewhere than `mlflow run` logged
    known = study.user_attrs.get(PARENT_ATTR)
    if known and _exists(client, known):
        parent = known
    else:
        tags = {"signlab.role": "study", "study": cfg.study_name, "family": cfg.family}
        if launched:
            parent = launched
            for key, value in tags.items():
                client.set_tag(parent, key, value)
        else:
            parent = client.create_run(experiment_id, run_name=cfg.study_name, tags=tags).info.run_id
        study.set_user_attr(PARENT_ATTR, parent)
    session = launched if launched and launched != parent else None
    if session:
        client.set_tag(session, "mlflow.parentRunId", parent)
        client.set_tag(session, "signlab.role", "session")
        client.set_tag(session, "study", cfg.study_name)
    return parent, session


def _exists(client: MlflowClient, run_id: str) -> bool:
    try:
        return client.get_run(run_id).info.lifecycle_stage == "active"
    except mlflow.exceptions.MlflowException:
        return False


def pruning_hook(trial: optuna.Trial) -> Callable[[int, dict[str, float]], None]:
    """Report each epoch's validation accuracy; stop the trial when the pruner says so."""

    def hook(epoch: int, metrics: dict[str, float]) -> None:
        trial.report(metrics["val_accuracy"], epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1} (val_accuracy {metrics['val_accuracy']:.4f})")

    return hook


def make_objective(cfg: StudyConfig, data: Data) -> Callable[[optuna.Trial], Any]:
    """One trial: a nested MLflow run that trains, evaluates and logs the trial's spec."""

    def objective(trial: optuna.Trial) -> float | tuple[float, ...]:
        spec = trial_spec(trial, cfg)
        tags = {"signlab.role": "trial", "study": cfg.study_name, "trial_number": str(trial.number),
                "trial_state": "RUNNING", "family": cfg.family, "preset": "study"}
        name = f"{cfg.study_name}-trial-{trial.number}"
        hooks = [] if cfg.multi_objective else [pruning_hook(trial)]
        try:
            with tracking.tracked_run(killed_on=(optuna.TrialPruned,), nested=True, run_name=name,
                                      tags=tags) as run:
                trial.set_user_attr(RUN_ATTR, run.info.run_id)
                mlflow.log_params({f"optuna.{k}": v for k, v in trial.params.items()})
                try:
                    outcome = train_and_log(spec, data, hooks)
                except optuna.TrialPruned:
                    mlflow.set_tag("trial_state", "PRUNED")
                    raise
                except BaseException:
                    mlflow.set_tag("trial_state", "FAIL")
                    raise
                mlflow.set_tag("trial_state", "COMPLETE")
        finally:
            import keras

            keras.backend.clear_session()  # free the graph between trials
        for key in ("final_val_accuracy", "test_accuracy", "test_f1_macro", "test_aug_accuracy", "n_params"):
            trial.set_user_attr(key, float(outcome.metrics[key]))
        values = tuple(float(outcome.metrics[OBJECTIVE_METRIC[o]]) for o in cfg.objectives)
        return values if cfg.multi_objective else values[0]

    return objective


class Progress:
    """A progress bar over trials, with one line per finished trial."""

    def __init__(self, total: int, enabled: bool):
        self.bar = tqdm(total=total, unit="trial", disable=not enabled, dynamic_ncols=True)
        self.started = time.perf_counter()

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.bar.update(1)
        value = "" if trial.values is None else " ".join(f"{v:.4g}" for v in trial.values)
        seconds = trial.duration.total_seconds() if trial.duration else 0.0
        tqdm.write(f"trial {trial.number} {trial.state.name} {value} ({seconds:.0f} s)")

    def close(self) -> None:
        self.bar.close()


def run_study(config: str | Path, overrides: Overrides | None = None, storage: str | None = None,
              tracking_uri: str | None = None, data_dir: str | None = None, progress: bool = True,
              echo: Callable[[str], None] = print) -> optuna.Study:
    """Run (or resume) the study described by a study file; returns the Optuna study."""
    from signlab import config as paths

    cfg = (overrides or Overrides()).apply(load_study_config(config))
    check_buildable(cfg, str(config))
    storage_url = storage or paths.DEFAULT_STORAGE
    data = prepare_data(data_dir, cfg.subset, cfg.val_fraction, cfg.seed)
    study = load_or_create(cfg, storage_url)
    check_same_data(study, cfg, storage_url)
    uri = tracking.setup(tracking_uri)
    # `mlflow run` passes its run in MLFLOW_RUN_ID; taken out of the environment, or every
    # nested start_run() would resume it instead of starting a trial's own run.
    launched = os.environ.pop("MLFLOW_RUN_ID", None)
    experiment_id = _experiment(cfg, launched)
    parent, session = parent_run_id(study, cfg, experiment_id, launched)
    before = len(study.trials)
    bar = Progress(cfg.n_trials, progress)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tracking.tracked_run(run_id=parent):
        tracking.log_params(_study_params(cfg, storage_url))
        try:
            study.optimize(make_objective(cfg, data), n_trials=cfg.n_trials, timeout=cfg.timeout,
                           catch=(Exception,), callbacks=[bar], gc_after_trial=True)
        finally:
            bar.close()
        log_study_outputs(study, cfg)
    if session:
        MlflowClient().log_metric(session, "trials_added", len(study.trials) - before)
    for line in summary_lines(study, cfg, uri, experiment_id, parent, len(study.trials) - before):
        echo(line)
    return study


def check_same_data(study: optuna.Study, cfg: StudyConfig, storage_url: str) -> None:
    """A resumed study must see the same validation data, or its trials don't compare."""
    settings = {"subset": cfg.subset, "val_fraction": cfg.val_fraction, "seed": cfg.seed}
    stored = study.user_attrs.get("data")
    if stored is None:
        study.set_user_attr("data", settings)
    elif stored != settings:
        diff = ", ".join(f"{k} {stored[k]} (now {settings[k]})" for k in settings if stored.get(k) != settings[k])
        raise UserError(f"study {cfg.study_name!r} in {redact(storage_url)} was run with {diff}: its trials "
                        "would not compare; resume with the same settings or use another study_name")


def _experiment(cfg: StudyConfig, launched: str | None) -> str:
    """The experiment id: that of `mlflow run`'s run, else the study file's `experiment`
    (default: the study name)."""
    client = MlflowClient()
    if launched and _exists(client, launched):
        experiment_id = client.get_run(launched).info.experiment_id
        mlflow.set_experiment(experiment_id=experiment_id)
        return experiment_id
    return mlflow.set_experiment(cfg.experiment or cfg.study_name).experiment_id


def _study_params(cfg: StudyConfig, storage_url: str) -> dict[str, Any]:
    import json

    return {
        "study_name": cfg.study_name, "family": cfg.family, "objectives": ",".join(cfg.objectives),
        "directions": ",".join(cfg.directions or []), "sampler": cfg.sampler.type,
        "sampler_seed": cfg.sampler.seed, "pruner": cfg.pruner.type, "max_epochs": cfg.max_epochs,
        "val_fraction": cfg.val_fraction, "subset": cfg.subset, "seed": cfg.seed,
        "storage": redact(storage_url), "space": json.dumps({k: v.model_dump() for k, v in cfg.space.items()})[:6000],
        "fixed": json.dumps(cfg.fixed)[:6000],
    }
