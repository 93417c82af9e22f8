"""Running a study: the study's session from start to summary, for one worker of many (Optuna
trials as MLflow runs through our own small bridge: Optuna's MLflowCallback is deprecated and
logs each trial only after it ends, with no nesting, models or per-epoch metrics), and refits
run again on their own.

The study is one parent MLflow run; each trial is a nested child run with the trial's
params, per-epoch metrics, final validation and test metrics, its model, and the tags
`study`, `trial_number` and `trial_state`. The trial keeps its run id as the user attribute
`mlflow_run_id`; the study keeps its parent run id as `mlflow_parent_run_id`, so running the
same study again finds the same parent. Trials are chosen on validation data only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import mlflow
import optuna
from mlflow.tracking import MlflowClient
from optuna.storages import RDBStorage
from tqdm import tqdm

from signlab.contract import (
    N_COMPLETE_METRIC,
    PARENT_ATTR,
    SAME_AS_ATTR,
    TRIALS_ADDED_METRIC,
)
from signlab.data.dataset import DataFiles, load_files
from signlab.errors import UserError
from signlab.models.family import family
from signlab.models.train import EpochHook, size_thread_pools
from signlab.runs import lifecycle, records, store
from signlab.runs.job import Data, prepare_data
from signlab.search import recovery
from signlab.search.confirm import candidates, run_confirmations
from signlab.search.finish import post_search_work
from signlab.search.objective import make_objective
from signlab.search.optuna_internals import OPTIMIZE_LOGGER, TrialCapReached
from signlab.search.outputs import best_trial, counts, log_study_outputs, ranked_trials, summary_lines
from signlab.search.parent import Session, start_session, study_params
from signlab.search.refit import RefitLauncher, needs_refit, refit_seed, run_refits
from signlab.search.setup import Overrides, resolved_config, trial_budget, with_stored_data
from signlab.search.storage import open_storage
from signlab.search.study_config import StudyConfig
from signlab.stores import redact


class Progress:
    """A progress bar over trials, with one line per finished trial; its postfix follows the
    running trial's epochs (a slow epoch and a hang look different). The bar is drawn only
    on a terminal (`disable=None`: CI logs keep the trial lines alone)."""

    def __init__(self, total: int, enabled: bool, label: str = "", objectives: list[str] | None = None):
        self.bar = tqdm(total=total, unit="trial", disable=None if enabled else True, dynamic_ncols=True)
        self.label = label
        self.objectives = objectives or ["value"]
        self.started = time.perf_counter()
        self.finished = 0  # trials this process ran (other workers' are not counted)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.finished += 1
        self.bar.update(1)
        value = "" if trial.values is None else " " + ", ".join(
            f"{name} {v:.4g}" for name, v in zip(self.objectives, trial.values, strict=False))
        seconds = trial.duration.total_seconds() if trial.duration else 0.0
        same = trial.user_attrs.get(SAME_AS_ATTR)
        note = "" if same is None else f", same params as trial {same}: not trained again"
        tqdm.write(f"{self.label}trial {trial.number} {trial.state.name}{value} ({seconds:.0f} s{note})")

    def epochs(self, trial: optuna.Trial, total: int) -> EpochHook:
        """A hook that shows the trial's epoch and latest validation accuracy on the bar."""

        def hook(epoch: int, metrics: dict[str, float]) -> None:
            self.bar.set_postfix_str(f"trial {trial.number}: epoch {epoch + 1}/{total}, "
                                     f"val_acc {metrics.get('val_accuracy', float('nan')):.4f}")

        return hook

    def close(self) -> None:
        self.bar.close()


def run_study(config: str | Path, overrides: Overrides | None = None, storage: str | None = None,
              tracking_uri: str | None = None, files: DataFiles | None = None, progress: bool = True,
              echo: Callable[[str], None] = print, worker: int | None = None,
              launched: str | None = None) -> optuna.Study:
    """Run (or resume) the study described by a study file.

    Args:
        config: the study file.
        overrides: command-line values that replace the file's.
        storage: Optuna's storage URL (default: $SIGNLAB_STORAGE, else sqlite:///optuna.db).
        tracking_uri: MLflow's (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db).
        files: the data set, loaded by the caller (default: read from $SIGNLAB_DATA_DIR or ./data).
        progress: draw a progress bar on a terminal.
        echo: where the trial and summary lines go.
        worker: this worker's number among several, shown on its output lines.
        launched: the run `mlflow run` started this session in, if any.

    Returns:
        The Optuna study.

    Any number of such workers may run one study at once (same storage and tracking URI):
    each trial is claimed by one worker, all share one parent run, and `max_total_trials`
    caps the study's trials, all workers together."""
    from signlab import config as paths

    overrides = overrides or Overrides()
    cfg = resolved_config(config, overrides)
    if cfg.confirm is not None and (cfg.multi_objective or cfg.simulate is not None):
        raise UserError(f"{config}: confirm: needs a single objective and real trainings "
                        "(drop it, or the second objective and simulate:)")
    storage_url = storage or paths.DEFAULT_STORAGE
    data = prepare_data(files or load_files(), cfg.data_settings)  # bad data: nothing created
    started = start_session(cfg, storage_url, tracking_uri, launched, cap=overrides.max_total_trials)
    study, uri, experiment_id = started.study, started.tracking_uri, started.experiment_id
    parent, session = started.parent, started.session
    repaired = recovery.repair_runs(study, experiment_id)
    if repaired:
        echo(f"ended {len(repaired)} run(s) left RUNNING by a dead worker: {', '.join(repaired)}")
    before = len(study.trials)
    n_trials, callbacks = trial_budget(cfg, overrides.max_total_trials, before)
    label = f"worker {worker}: " if worker else ""
    bar = Progress(n_trials, progress, label, cfg.objectives)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if cfg.simulate is None:
        # imported now, not inside the first trial: TensorFlow's import takes seconds and holds
        # the GIL in long stretches, starving the trial's heartbeat thread, so that on a busy
        # machine another worker could take the trial for dead and fail it
        family(cfg.family).preload()
        size_thread_pools()  # before any model is built: as a launcher of parallel trials sized them (TensorFlow's, if loaded)
    stopped: KeyboardInterrupt | None = None
    try:
        with lifecycle.tracked_run(run_id=parent):
            records.log_params(study_params(cfg, storage_url))
            records.log_metrics(data.leakage.metrics("leak_val"))
            try:
                if n_trials:
                    with _no_interrupt_tracebacks(), suppress(TrialCapReached):  # another worker took the last
                        study.optimize(make_objective(cfg, data, bar.epochs), n_trials=n_trials, timeout=cfg.timeout,
                                       catch=(Exception,), callbacks=[*callbacks, bar], gc_after_trial=True)
            finally:
                bar.close()
            if not paths.launched_worker():  # a launched worker's launcher does it, with every core
                finish_search(study, started.storage, cfg, data, parent, echo=lambda line: echo(label + line))
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
        MlflowClient().log_metric(session, TRIALS_ADDED_METRIC, bar.finished)
    if paths.launched_worker():  # the launcher prints the study's summary, once
        echo(f"{label}done: {bar.finished} new trials")
        return study
    for line in summary_lines(study, cfg, uri, experiment_id, parent, bar.finished):
        echo(label + line)
    return study


def finish_search(study: optuna.Study, storage: RDBStorage, cfg: StudyConfig, data: Data, parent: str,
                  echo: Callable[[str], None] = print, launch: RefitLauncher | None = None) -> None:
    """The work after the search, inside the parent run: `confirm:`'s retrainings, the study's
    outputs (plots, importances, the choice) and the chosen trial's refit (its seeds at once
    through `launch`, if given). Done once, by a process that ends with no trial running
    (`finish.post_search_work`); the others say who does it."""
    with post_search_work(study, storage, post_search_trials(study, cfg)) as elsewhere:
        if cfg.confirm is not None and counts(study)[N_COMPLETE_METRIC]:
            if elsewhere:
                echo("confirmation " + elsewhere)
            else:
                run_confirmations(study, cfg, data, ranked_trials(study), echo=echo)
        log_study_outputs(study, cfg)
        chosen = best_trial(study, cfg)
        if needs_refit(cfg, chosen, mlflow.get_run(parent).data.tags):
            if elsewhere:
                echo("refit " + elsewhere)
            else:
                run_refits(chosen, cfg, data, echo=echo, launch=launch)


def finish_launched_study(started: Session, cfg: StudyConfig, files: DataFiles,
                          echo: Callable[[str], None] = print, launch: RefitLauncher | None = None) -> None:
    """The launcher of local workers (`study run --parallel N`), once they have all ended: the
    work after the search (`finish_search`), in this process, whose thread pools have every core
    (a worker's have its share: a refit there would leave the others idle); the refit's seeds
    at once in processes of their own through `launch`."""
    data = prepare_data(files, cfg.data_settings)
    if cfg.simulate is None and (cfg.confirm is not None or cfg.refit.seeds):
        family(cfg.family).preload()
    try:
        with lifecycle.tracked_run(run_id=started.parent):
            finish_search(started.study, started.storage, cfg, data, started.parent, echo=echo, launch=launch)
    finally:
        recovery.keep_parent_running(started.study, started.parent)


def post_search_trials(study: optuna.Study, cfg: StudyConfig) -> list[int]:
    """The trials the work after the search is about: those `confirm:` retrains, else the
    chosen trial when the file asks for refits; none when there is no such work."""
    if not counts(study)[N_COMPLETE_METRIC]:
        return []
    if cfg.confirm is not None:
        return [t.number for t in candidates(cfg, ranked_trials(study))]
    chosen = best_trial(study, cfg)
    return [chosen.number] if cfg.refit.seeds and chosen is not None else []


def refit_study(config: str | Path, overrides: Overrides | None = None,
                storage: str | None = None, tracking_uri: str | None = None, files: DataFiles | None = None,
                echo: Callable[[str], None] = print, trial_number: int | None = None,
                only_seed: int | None = None, launch: RefitLauncher | None = None) -> None:
    """Refit a stored study's chosen trial again (`signlab study refit`), the file's
    `refit.seeds` times (or `overrides.refit_seeds`); seeds already refit are skipped.

    Args:
        config: the study file.
        overrides: command-line values that replace the file's (`refit_seeds`, `study_name`).
        storage: Optuna's storage URL holding the study.
        tracking_uri: MLflow's, holding its parent run.
        files: the data set, loaded by the caller (default: read from $SIGNLAB_DATA_DIR or ./data).
        echo: where the refit lines go.
        trial_number: the trial to refit instead of the study's choice (a launcher's refit process).
        only_seed: refit this one seed and log no summary (a launcher's refit process, one of
            several at once; the launcher logs the summary).
        launch: refits two or more missing seeds at once in other processes.
    """
    from signlab import config as paths

    cfg = resolved_config(config, overrides or Overrides())
    if not cfg.refit.seeds:
        raise UserError(f"{config}: refit.seeds is 0; set it in the study file or pass --seeds N")
    storage_url = storage or paths.DEFAULT_STORAGE
    store.setup(tracking_uri)
    try:
        study = optuna.load_study(study_name=cfg.study_name, storage=open_storage(storage_url))
    except KeyError:
        raise UserError(f"no study {cfg.study_name!r} in {redact(storage_url)}: run it first") from None
    cfg = with_stored_data(cfg, study)  # `study run --seed 7`: refit with 7, 8, ... on that split
    data = prepare_data(files or load_files(), cfg.data_settings)
    chosen = best_trial(study, cfg) if trial_number is None else study.trials[trial_number]
    parent = study.user_attrs.get(PARENT_ATTR)
    if chosen is None or parent is None:
        raise UserError(f"study {cfg.study_name!r} has no complete trial to refit")
    # nested runs go to the active experiment, not their parent's: make it the study's
    mlflow.set_experiment(experiment_id=mlflow.get_run(parent).info.experiment_id)
    with lifecycle.tracked_run(run_id=parent):
        if only_seed is None:
            run_refits(chosen, cfg, data, echo=echo, launch=launch)
        else:
            refit_seed(chosen, cfg, data, only_seed, echo=echo)


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
    logger = logging.getLogger(OPTIMIZE_LOGGER)  # where Optuna logs failed trials
    quiet = _InterruptFilter()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)
