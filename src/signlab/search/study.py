"""Optuna studies as MLflow runs: our own small bridge.

The study is one parent MLflow run; each trial is a nested child run with the trial's
params, per-epoch metrics, final validation and test metrics, its model, and the tags
`study`, `trial_number` and `trial_state`. The trial keeps its run id as the user attribute
`mlflow_run_id`; the study keeps its parent run id as `mlflow_parent_run_id`, so running the
same study again finds the same parent. Trials are chosen on validation data only.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
import sqlalchemy
from mlflow.tracking import MlflowClient
from optuna.storages import RDBStorage
from optuna.trial import TrialState
from tqdm import tqdm

from signlab.contract import (
    FAMILY_TAG,
    N_PARAMS,
    OBJECTIVE_METRIC,
    PARENT_ATTR,
    PRESET_TAG,
    ROLE_SESSION,
    ROLE_STUDY,
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
    WORKER_TAG,
)
from signlab.errors import UserError, describe_error
from signlab.models.train import EpochHook, free_graph
from signlab.runs import lifecycle, records, store
from signlab.runs.job import Data, prepare_data, train_and_log
from signlab.search import recovery
from signlab.search.outputs import best_trial, log_study_outputs, summary_lines
from signlab.search.refit import needs_refit, run_refits
from signlab.search.space import check_buildable, trial_spec
from signlab.search.storage import TrialCapReached, open_storage, study_lock, unusable_storage
from signlab.search.study_config import StudyConfig, load_study_config
from signlab.stores import normalise, redact

WORKER = f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Overrides:
    """Command-line values that replace the study file's (None: keep the file's)."""

    n_trials: int | None = None
    timeout: float | None = None
    max_epochs: int | None = None
    subset: int | None = None
    study_name: str | None = None
    seed: int | None = None
    max_total_trials: int | None = None  # all workers together: no trial starts past this total

    def apply(self, cfg: StudyConfig) -> StudyConfig:
        """The study file's settings with these values, checked as the file's are (a UserError
        names the option: `--seed -1: ...`)."""
        from pydantic import ValidationError

        changes = {k: v for k, v in vars(self).items() if v is not None and k in StudyConfig.model_fields}
        try:
            return StudyConfig.model_validate({**cfg.model_dump(), **changes})
        except ValidationError as exc:
            raise UserError("; ".join(describe_error(err, option=True) for err in exc.errors())) from None


def make_sampler(cfg: StudyConfig) -> optuna.samplers.BaseSampler:
    """The study file's sampler; with a seed, seeded afresh for each trial (`TrialSeeded`)."""
    seed = cfg.sampler.seed
    if seed is None:
        return _sampler(cfg, None)
    return TrialSeeded(lambda trial_seed: _sampler(cfg, trial_seed), seed)


def _sampler(cfg: StudyConfig, seed: int | None) -> optuna.samplers.BaseSampler:
    s = cfg.sampler
    if s.type == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if s.type == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=s.n_startup_trials,
                                      multivariate=True, constant_liar=True)


def trial_seed(seed: int, number: int) -> int:
    """The sampler seed of trial `number` of a study whose file says `seed`."""
    return int(np.random.SeedSequence([seed % 2**64, number]).generate_state(1)[0])


class TrialSeeded(optuna.samplers.BaseSampler):
    """A sampler built again before each trial, seeded with `trial_seed(seed, trial number)`.

    The rule: trial n draws with a seed derived from the study file's seed and n alone.
    The storage gives each trial its own number, so a resumed study (its new trials have
    new numbers) and workers started at the same moment, with or without --worker, draw
    new trials; the same study run again from scratch in one process draws the same ones
    (TPE's later draws also follow the results so far, as reproducible as training is).
    Everything else a sampler keeps (the trials so far) is read from the storage."""

    def __init__(self, build: Callable[[int], optuna.samplers.BaseSampler], seed: int):
        self._build, self._seed = build, seed
        self._inner = build(trial_seed(seed, 0))

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self._inner = self._build(trial_seed(self._seed, trial.number))
        self._inner.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: optuna.trial.FrozenTrial,
                        search_space: dict[str, Any]) -> dict[str, Any]:
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, param_name: str,
                           param_distribution: Any) -> Any:
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, state: TrialState,
                    values: Any) -> None:
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()


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


def resolved_config(config: str | Path, overrides: Overrides) -> StudyConfig:
    """The study file with the command line's overrides, checked down to buildable models."""
    cfg = overrides.apply(load_study_config(config))
    check_buildable(cfg, str(config))
    return cfg


def study_storage(cfg: StudyConfig, storage_url: str) -> RDBStorage:
    """The study's storage, checked usable, with heartbeats and the failed-trial handler."""
    return open_storage(storage_url, cfg.heartbeat_interval, cfg.grace_period,
                        recovery.FailedTrialHandler(cfg.retry_failed_trials, cfg.grace_period))


def open_study(cfg: StudyConfig, storage_url: str, tracking_uri: str,
               experiment: Callable[[], str], rdb: RDBStorage | None = None) -> tuple[optuna.Study, RDBStorage, str]:
    """The study, created or resumed in a storage whose dead workers' trials are failed
    (and retried, as the file says); refused if its directions or data settings differ.
    Between opening the storage and touching the study, the study's MLflow experiment is
    found or created (`experiment()`) and written to, so that a tracking store which
    refuses writes leaves no study behind; (study, storage, experiment id)."""
    rdb = rdb or study_storage(cfg, storage_url)
    experiment_id = store.check_writable(tracking_uri, experiment, f"study {cfg.study_name} from {WORKER} "
                                            f"at {time.strftime('%Y-%m-%d %H:%M:%S %z')}")
    try:
        study = load_or_create(cfg, rdb, storage_url)
        check_same_data(study, cfg, storage_url)
    except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError) as exc:
        raise unusable_storage(storage_url, exc) from None
    return study, rdb, experiment_id


def load_or_create(cfg: StudyConfig, storage: RDBStorage, storage_url: str) -> optuna.Study:
    """The study named in `cfg`, created or resumed; refuses one with other directions."""
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
    study = optuna.create_study(study_name=cfg.study_name, storage=storage, directions=cfg.directions,
                                sampler=make_sampler(cfg), pruner=make_pruner(cfg), load_if_exists=True)
    with warnings.catch_warnings():  # experimental since Optuna 3.2; optuna-dashboard shows these names
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(cfg.objectives))
    return study


def parent_run_id(study: optuna.Study, storage: RDBStorage, cfg: StudyConfig, experiment_id: str,
                  launched: str | None) -> tuple[str, str | None]:
    """The study's parent run, shared by all its workers and found again on resume, and,
    under a second `mlflow run`, the run MLflow made for this session (`launched`), filed
    under the parent as a 'session'."""
    client = MlflowClient()
    if launched and not _exists(client, launched):
        launched = None  # --tracking-uri points elsewhere than `mlflow run` logged

    def create() -> str:
        tags = {ROLE_TAG: ROLE_STUDY, STUDY_TAG: cfg.study_name, FAMILY_TAG: cfg.family}
        if not launched:
            return client.create_run(experiment_id, run_name=cfg.study_name, tags=tags).info.run_id
        for key, value in tags.items():
            client.set_tag(launched, key, value)
        client.update_run(launched, name=cfg.study_name)  # not the name `mlflow run` drew
        return launched

    parent = _shared_parent(study, storage, client, create)
    session = launched if launched and launched != parent else None
    if session:
        client.set_tag(session, "mlflow.parentRunId", parent)
        client.set_tag(session, ROLE_TAG, ROLE_SESSION)
        client.update_run(session, name=f"{cfg.study_name}-session")
        client.set_tag(session, STUDY_TAG, cfg.study_name)
    return parent, session


def _shared_parent(study: optuna.Study, storage: RDBStorage, client: MlflowClient,
                   create: Callable[[], str]) -> str:
    """The parent run recorded on the study, else one made by exactly one worker: the one
    holding the lock study `<name>:parent-lock` (storage.study_lock)."""
    known = study.user_attrs.get(PARENT_ATTR)
    if known and _exists(client, known):
        return known
    with study_lock(storage, f"{study.study_name}:parent-lock"):
        known = study.user_attrs.get(PARENT_ATTR)  # another worker may have made it meanwhile
        if known and _exists(client, known):
            return known
        parent = create()
        study.set_user_attr(PARENT_ATTR, parent)
        return parent


def _exists(client: MlflowClient, run_id: str) -> bool:
    """Whether the run exists and is not deleted; other errors (a server hiccup) are raised,
    not read as "no such run" (which would make a second parent run)."""
    try:
        return client.get_run(run_id).info.lifecycle_stage == "active"
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise


def pruning_hook(trial: optuna.Trial) -> Callable[[int, dict[str, float]], None]:
    """Report each epoch's validation accuracy; stop the trial when the pruner says so."""

    def hook(epoch: int, metrics: dict[str, float]) -> None:
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
        tags = {ROLE_TAG: ROLE_TRIAL, STUDY_TAG: cfg.study_name, TRIAL_NUMBER_TAG: str(trial.number),
                TRIAL_STATE_TAG: "RUNNING", FAMILY_TAG: cfg.family, PRESET_TAG: "study", WORKER_TAG: WORKER}
        name = f"{cfg.study_name}-trial-{trial.number}"
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
                    outcome = train_and_log(spec, data, hooks)
                    for key in (VAL_ACCURACY, TEST_ACCURACY, TEST_F1, TEST_AUG_ACCURACY, N_PARAMS):
                        trial.set_user_attr(key, float(outcome.metrics[key]))
                    # what a refit needs to retrain this trial: its best epoch and LR schedule
                    trial.set_user_attr("best_epoch", int(outcome.metrics["best_epoch"]))
                    trial.set_user_attr("lr_schedule", [h["learning_rate"] for h in outcome.fit.history])
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
            free_graph()
        values = tuple(float(outcome.metrics[OBJECTIVE_METRIC[o]]) for o in cfg.objectives)
        return values if cfg.multi_objective else values[0]

    return objective


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


class Progress:
    """A progress bar over trials, with one line per finished trial; its postfix follows the
    running trial's epochs (a slow epoch and a hang look different). The bar is drawn only
    on a terminal (`disable=None`: CI logs keep the trial lines alone)."""

    def __init__(self, total: int, enabled: bool, label: str = ""):
        self.bar = tqdm(total=total, unit="trial", disable=None if enabled else True, dynamic_ncols=True)
        self.label = label
        self.started = time.perf_counter()
        self.finished = 0  # trials this process ran (other workers' are not counted)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.finished += 1
        self.bar.update(1)
        value = "" if trial.values is None else " ".join(f"{v:.4g}" for v in trial.values)
        seconds = trial.duration.total_seconds() if trial.duration else 0.0
        same = trial.user_attrs.get(SAME_AS_ATTR)
        note = "" if same is None else f", same params as trial {same}: not trained again"
        tqdm.write(f"{self.label}trial {trial.number} {trial.state.name} {value} ({seconds:.0f} s{note})")

    def epochs(self, trial: optuna.Trial, total: int) -> EpochHook:
        """A hook that shows the trial's epoch and latest validation accuracy on the bar."""

        def hook(epoch: int, metrics: dict[str, float]) -> None:
            self.bar.set_postfix_str(f"trial {trial.number}: epoch {epoch + 1}/{total}, "
                                     f"val_acc {metrics.get('val_accuracy', float('nan')):.4f}")

        return hook

    def close(self) -> None:
        self.bar.close()


def run_study(config: str | Path, overrides: Overrides | None = None, storage: str | None = None,
              tracking_uri: str | None = None, data_dir: str | None = None, progress: bool = True,
              echo: Callable[[str], None] = print, worker: int | None = None,
              launched: str | None = None) -> optuna.Study:
    """Run (or resume) the study described by a study file; returns the Optuna study.
    `worker`: this worker's number among several, shown on its output lines; `launched`: the
    run `mlflow run` started this session in, if any.

    Any number of such workers may run one study at once (same storage and tracking URI):
    each trial is claimed by one worker, all share one parent run, and `max_total_trials`
    caps the study's trials, all workers together."""
    from signlab import config as paths

    overrides = overrides or Overrides()
    cfg = resolved_config(config, overrides)
    storage_url = storage or paths.DEFAULT_STORAGE
    data = prepare_data(data_dir, cfg.subset, cfg.validation.fraction, cfg.seed,
                        cfg.validation.strategy)  # bad data: nothing created
    # nothing is created anywhere unless both stores can work: a tracking server that does
    # not answer stops us before the storage is opened, a damaged storage before the
    # tracking store is set up
    store.check_server(paths.tracking_uri(tracking_uri))
    rdb = study_storage(cfg, storage_url)
    uri = store.setup(tracking_uri)
    study, rdb, experiment_id = open_study(cfg, storage_url, uri, lambda: study_experiment(cfg, launched), rdb)
    parent, session = parent_run_id(study, rdb, cfg, experiment_id, launched)
    repaired = recovery.repair_runs(study, experiment_id)
    if repaired:
        echo(f"ended {len(repaired)} run(s) left RUNNING by a dead worker: {', '.join(repaired)}")
    before = len(study.trials)
    n_trials, callbacks = _budget(cfg, overrides.max_total_trials, before)
    rdb.cap = overrides.max_total_trials
    label = f"worker {worker}: " if worker else ""
    bar = Progress(n_trials, progress, label)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    stopped: KeyboardInterrupt | None = None
    try:
        with lifecycle.tracked_run(run_id=parent):
            records.log_params(_study_params(cfg, storage_url))
            records.log_metrics(data.leakage.metrics("leak_val"))
            try:
                if n_trials:
                    with _no_interrupt_tracebacks(), suppress(TrialCapReached):  # another worker took the last
                        study.optimize(make_objective(cfg, data, bar.epochs), n_trials=n_trials, timeout=cfg.timeout,
                                       catch=(Exception,), callbacks=[*callbacks, bar], gc_after_trial=True)
            finally:
                bar.close()
            log_study_outputs(study, cfg)
            chosen = best_trial(study, cfg)
            if needs_refit(cfg, chosen, mlflow.get_run(parent).data.tags):
                if _running(study):  # the last worker to finish refits
                    echo(label + "refit left to the workers still running trials")
                else:
                    run_refits(chosen, cfg, data, echo=lambda line: echo(label + line))
    except KeyboardInterrupt as exc:
        stopped = exc
        raise
    finally:
        resumed = recovery.keep_parent_running(study, parent)
        if stopped is not None:  # notes for the CLI's one line
            if resumed:
                stopped.add_note("other workers still run trials, so the study's run is RUNNING again")
            stopped.add_note("the same command resumes the study")
    if session:
        MlflowClient().log_metric(session, "trials_added", bar.finished)
    for line in summary_lines(study, cfg, uri, experiment_id, parent, bar.finished):
        echo(label + line)
    return study


def _running(study: optuna.Study) -> bool:
    return any(t.state == optuna.trial.TrialState.RUNNING for t in study.get_trials(deepcopy=False))


def refit_study(config: str | Path, overrides: Overrides | None = None, seeds: int | None = None,
                storage: str | None = None, tracking_uri: str | None = None, data_dir: str | None = None,
                echo: Callable[[str], None] = print) -> None:
    """Refit a stored study's chosen trial again (`signlab study refit`), `seeds` times
    (default: the file's `refit.seeds`)."""
    from signlab import config as paths

    cfg = resolved_config(config, overrides or Overrides())
    if seeds is not None:
        cfg = cfg.model_copy(update={"refit": cfg.refit.model_copy(update={"seeds": seeds})})
    if not cfg.refit.seeds:
        raise UserError(f"{config}: refit.seeds is 0; set it in the study file or pass --seeds N")
    storage_url = storage or paths.DEFAULT_STORAGE
    store.setup(tracking_uri)
    data = prepare_data(data_dir, cfg.subset, cfg.validation.fraction, cfg.seed, cfg.validation.strategy)
    try:
        study = optuna.load_study(study_name=cfg.study_name, storage=open_storage(storage_url))
    except KeyError:
        raise UserError(f"no study {cfg.study_name!r} in {redact(storage_url)}: run it first") from None
    check_same_data(study, cfg, storage_url)
    chosen = best_trial(study, cfg)
    parent = study.user_attrs.get(PARENT_ATTR)
    if chosen is None or parent is None:
        raise UserError(f"study {cfg.study_name!r} has no complete trial to refit")
    with lifecycle.tracked_run(run_id=parent):
        run_refits(chosen, cfg, data, echo=echo)


class _InterruptFilter(logging.Filter):
    """Drops Optuna's "Trial N failed" warnings, traceback included, from the moment a trial
    is interrupted: the CLI reports the interrupt in one line."""

    def __init__(self) -> None:
        super().__init__()
        self.interrupted = False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
            self.interrupted = True
        return not self.interrupted


@contextmanager
def _no_interrupt_tracebacks() -> Iterator[None]:
    """Optuna's own failure warnings, except those about an interrupted trial."""
    logger = logging.getLogger(optuna.study._optimize.__name__)  # where Optuna logs failed trials
    quiet = _InterruptFilter()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def _budget(cfg: StudyConfig, max_total: int | None, existing: int) -> tuple[int, list[Any]]:
    """Trials this worker may start, and the callback that stops it when the study (all
    workers together, trials of every state counted) reaches `max_total`."""
    if max_total is None:
        return cfg.n_trials, []
    return max(0, min(cfg.n_trials, max_total - existing)), [optuna.study.MaxTrialsCallback(max_total, states=None)]


def check_same_data(study: optuna.Study, cfg: StudyConfig, storage_url: str) -> None:
    """A resumed study must see the same validation data, or its trials don't compare."""
    settings = {"subset": cfg.subset, "val_fraction": cfg.validation.fraction, "seed": cfg.seed,
                "val_strategy": cfg.validation.strategy}
    stored = study.user_attrs.get("data")
    if stored is None:
        study.set_user_attr("data", settings)
    elif stored != settings:
        # a study stored before validation strategies existed used the random split
        diff = ", ".join(f"{k} {stored.get(k, 'random' if k == 'val_strategy' else None)} (now {settings[k]})"
                         for k in settings if stored.get(k) != settings[k])
        raise UserError(f"study {cfg.study_name!r} in {redact(storage_url)} was run with {diff}: its trials "
                        "would not compare; resume with the same settings or use another study_name")


def study_experiment(cfg: StudyConfig, launched: str | None) -> str:
    """The experiment id: that of `mlflow run`'s run, else the study file's `experiment`
    (default: the study name)."""
    client = MlflowClient()
    if launched and _exists(client, launched):
        experiment_id = client.get_run(launched).info.experiment_id
        mlflow.set_experiment(experiment_id=experiment_id)
        return experiment_id
    name = cfg.experiment or cfg.study_name
    try:
        return mlflow.set_experiment(name).experiment_id
    except mlflow.exceptions.MlflowException as exc:  # another worker created it just now
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return mlflow.set_experiment(name).experiment_id


def _study_params(cfg: StudyConfig, storage_url: str) -> dict[str, Any]:
    import json

    return {
        "study_name": cfg.study_name, "family": cfg.family, "objectives": ",".join(cfg.objectives),
        "directions": ",".join(cfg.directions or []), "sampler": cfg.sampler.type,
        "sampler_seed": cfg.sampler.seed, "pruner": cfg.pruner.type, "max_epochs": cfg.max_epochs,
        "val_strategy": cfg.validation.strategy, "val_fraction": cfg.validation.fraction, "subset": cfg.subset, "seed": cfg.seed,
        "storage": redact(normalise(storage_url)), "space": json.dumps({k: v.model_dump() for k, v in cfg.space.items()})[:6000],
        "fixed": json.dumps(cfg.fixed)[:6000],
    }
