"""Refit: the study's chosen trial retrained on the whole training file, several seeds.

A trial model never sees its validation fifth of the source photos; the refit does, and it
is the model users get. It trains for the chosen trial's best epoch count, replaying the
learning rates that trial followed (so nothing in it depends on validation data), once per
seed (`refit.seeds`: the study's seed, seed+1, ...). Each refit is a run nested under the
study's parent, tagged `signlab.role=refit`; the parent holds the mean, std, min and max of
their test accuracy. The refit with the first seed is the primary one (`refit_primary`),
the one `signlab promote` registers: fixed before any test figure exists, so the test split
chooses nothing.

A launcher of parallel workers refits the seeds at once, one process per seed sharing the
cores (`launch`, from `signlab.search.workers`): on 2 cores three refits then take about two
refits' time, where one after another left a core idle (docs/benchmarks.md, "The refit's
seeds at once"). Alone (`parallel: 1`), they run one after another in this process.
"""

from __future__ import annotations

from collections.abc import Callable

import mlflow
import numpy as np
import optuna
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from signlab.contract import (
    BEST_EPOCH_ATTR,
    FAMILY_TAG,
    LR_SCHEDULE_ATTR,
    REFIT_COUNT,
    REFIT_PREFIX,
    REFIT_PRIMARY_RUN_TAG,
    REFIT_PRIMARY_TAG,
    REFIT_RUNS_TAG,
    REFIT_SEED,
    REFIT_SPEC_TAG,
    REFIT_TRIAL_TAG,
    ROLE_REFIT,
    ROLE_TAG,
    SOURCE_VAL_ACCURACY,
    STUDY_TAG,
    TEST_ACCURACY,
    TRIAL_NUMBER_TAG,
    VAL_ACCURACY,
    WORKER_TAG,
)
from signlab.models.presets import Spec, spec_digest
from signlab.models.train import free_graph
from signlab.runs import lifecycle
from signlab.runs.job import Data, train_and_log
from signlab.search.space import trial_spec
from signlab.search.study_config import StudyConfig


def refit_spec(trial: optuna.trial.FrozenTrial, cfg: StudyConfig) -> Spec:
    """The chosen trial's spec, for its best epoch count, with its learning rates replayed."""
    spec = trial_spec(optuna.trial.FixedTrial(trial.params), cfg)
    epochs = int(trial.user_attrs.get(BEST_EPOCH_ATTR) or cfg.max_epochs)
    update: dict[str, object] = {"epochs": epochs}
    schedule = trial.user_attrs.get(LR_SCHEDULE_ATTR)
    if schedule and LR_SCHEDULE_ATTR in type(spec).model_fields:
        update[LR_SCHEDULE_ATTR] = [float(v) for v in schedule[:epochs]]  # the CNN spec's field of the same name
    return type(spec).model_validate({**spec.model_dump(), **update})


def refit_seeds(cfg: StudyConfig) -> list[int]:
    return [cfg.seed + i for i in range(cfg.refit.seeds)]


def needs_refit(cfg: StudyConfig, trial: optuna.trial.FrozenTrial | None, parent_tags: dict[str, str]) -> bool:
    """Whether the chosen trial has no refit yet (a resumed study that found a new best)."""
    return bool(cfg.refit.seeds) and trial is not None and parent_tags.get(REFIT_TRIAL_TAG) != str(trial.number)


# Refits these seeds of the chosen trial elsewhere, all at once (other processes), and
# returns when all have ended; raises if one did not end FINISHED.
RefitLauncher = Callable[[optuna.trial.FrozenTrial, list[int]], None]


def run_refits(trial: optuna.trial.FrozenTrial, cfg: StudyConfig, data: Data,
               echo: Callable[[str], None] = print, launch: RefitLauncher | None = None) -> list[str]:
    """Refit `trial` once per seed as runs nested under the active (parent) run, then log
    the summary on the parent; the refit run ids. A seed that already has a FINISHED refit of
    this trial with the same spec is not trained again (an interrupted refit resumes).
    `launch`: trains two or more missing seeds at once in other processes (a parallel study's
    launcher); without it, each seed is trained here in turn."""
    spec = refit_spec(trial, cfg)
    parent = mlflow.active_run().info
    lifecycle.end_orphaned_runs(parent.experiment_id)
    digest = spec_digest(spec)
    done = _finished_refits(parent.experiment_id, parent.run_id, trial.number, digest)
    missing = [seed for seed in refit_seeds(cfg) if seed not in done]
    if launch is not None and len(missing) > 1:
        echo(f"refit of trial {trial.number}, seeds {', '.join(map(str, missing))} at once: "
             f"{spec.epochs} epochs each on the whole training file")
        launch(trial, missing)
        done = _finished_refits(parent.experiment_id, parent.run_id, trial.number, digest)
    run_ids, accuracies = [], []
    for seed in refit_seeds(cfg):
        earlier = done.get(seed)
        if earlier is not None:
            if seed not in missing:  # (one trained just now printed its own lines)
                echo(f"refit of trial {trial.number}, seed {seed}: skipped, run {earlier.info.run_id} already FINISHED")
            run_ids.append(earlier.info.run_id)
            accuracies.append(earlier.data.metrics[TEST_ACCURACY])
            continue
        run_id, accuracy = refit_seed(trial, cfg, data, seed, echo=echo)
        run_ids.append(run_id)
        accuracies.append(accuracy)
    scores = np.array(accuracies)
    mlflow.log_metrics({REFIT_PREFIX + "mean": float(scores.mean()),
                        REFIT_PREFIX + "std": float(scores.std(ddof=1)) if len(scores) > 1 else 0.0,
                        REFIT_PREFIX + "min": float(scores.min()),
                        REFIT_PREFIX + "max": float(scores.max()), REFIT_COUNT: float(len(scores))})
    mlflow.set_tags({REFIT_TRIAL_TAG: str(trial.number), REFIT_PRIMARY_RUN_TAG: run_ids[0],
                     REFIT_RUNS_TAG: ",".join(run_ids)})
    return run_ids


def refit_seed(trial: optuna.trial.FrozenTrial, cfg: StudyConfig, data: Data, seed: int,
               echo: Callable[[str], None] = print) -> tuple[str, float]:
    """One refit of `trial` (seed `seed`) as a run nested under the active (parent) run;
    (its run id, its test accuracy). The refit with the study's own seed is the primary one."""
    spec = refit_spec(trial, cfg)
    tags = {ROLE_TAG: ROLE_REFIT, STUDY_TAG: cfg.study_name, TRIAL_NUMBER_TAG: str(trial.number),
            REFIT_SEED: str(seed), REFIT_PRIMARY_TAG: str(seed == cfg.seed).lower(), FAMILY_TAG: cfg.family,
            WORKER_TAG: lifecycle.this_process(), REFIT_SPEC_TAG: spec_digest(spec)}
    echo(f"refit of trial {trial.number}, seed {seed}: {spec.epochs} epochs on the whole training file")
    whole = data.whole_file()  # the same path as `signlab train --val-fraction 0`
    with lifecycle.tracked_run(nested=True, run_name=f"refit {trial.number} s{seed}", tags=tags):
        mlflow.log_metric(SOURCE_VAL_ACCURACY, float(trial.user_attrs.get(VAL_ACCURACY, float("nan"))))
        outcome = train_and_log(spec, whole, seed=seed, extra_params={REFIT_SEED: seed})
    echo(f"  seed {seed}: test accuracy {outcome.metrics[TEST_ACCURACY]:.4f} (run {outcome.run_id})")
    free_graph()
    return outcome.run_id, outcome.metrics[TEST_ACCURACY]


def _finished_refits(experiment_id: str, parent: str, trial_number: int, digest: str) -> dict[int, Run]:
    """The FINISHED refits of this trial under `parent` with the spec digest `digest`, by seed."""
    runs = MlflowClient().search_runs([experiment_id], max_results=1000, filter_string=(
        f"attributes.status = 'FINISHED' and tags.`mlflow.parentRunId` = '{parent}' "
        f"and tags.`{ROLE_TAG}` = '{ROLE_REFIT}' and tags.`{TRIAL_NUMBER_TAG}` = '{trial_number}' "
        f"and tags.`{REFIT_SPEC_TAG}` = '{digest}'"))
    return {int(r.data.tags[REFIT_SEED]): r for r in runs if TEST_ACCURACY in r.data.metrics}
