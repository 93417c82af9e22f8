"""Refit: the study's chosen trial retrained on the whole training file, several seeds.

A trial model never sees its validation fifth of the source photos; the refit does, and it
is the model users get. It trains for the chosen trial's best epoch count, replaying the
learning rates that trial followed (so nothing in it depends on validation data), once per
seed (`refit.seeds`: the study's seed, seed+1, ...). Each refit is a run nested under the
study's parent, tagged `signlab.role=refit`; the parent holds the mean, std, min and max of
their test accuracy. The refit with the first seed is the primary one (`refit_primary`),
the one `signlab promote` registers: fixed before any test figure exists, so the test split
chooses nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import mlflow
import numpy as np
import optuna

from signlab.models.presets import Spec
from signlab.models.train import free_graph
from signlab.runs import tracking
from signlab.runs.job import Data, Outcome, train_and_log
from signlab.search.space import trial_spec
from signlab.search.study_config import StudyConfig


def refit_spec(trial: optuna.trial.FrozenTrial, cfg: StudyConfig) -> Spec:
    """The chosen trial's spec, for its best epoch count, with its learning rates replayed."""
    spec = trial_spec(optuna.trial.FixedTrial(trial.params), cfg)
    epochs = int(trial.user_attrs.get("best_epoch") or cfg.max_epochs)
    update: dict[str, object] = {"epochs": epochs}
    schedule = trial.user_attrs.get("lr_schedule")
    if spec.family == "cnn" and schedule:
        update["lr_schedule"] = [float(v) for v in schedule[:epochs]]
    return type(spec).model_validate({**spec.model_dump(), **update})


def refit_seeds(cfg: StudyConfig) -> list[int]:
    return [cfg.seed + i for i in range(cfg.refit.seeds)]


def needs_refit(cfg: StudyConfig, trial: optuna.trial.FrozenTrial | None, parent_tags: dict[str, str]) -> bool:
    """Whether the chosen trial has no refit yet (a resumed study that found a new best)."""
    return bool(cfg.refit.seeds) and trial is not None and parent_tags.get("refit.trial_number") != str(trial.number)


def run_refits(trial: optuna.trial.FrozenTrial, cfg: StudyConfig, data: Data,
               echo: Callable[[str], None] = print) -> list[Outcome]:
    """Refit `trial` once per seed as runs nested under the active (parent) run, then log
    the summary on the parent."""
    spec = refit_spec(trial, cfg)
    outcomes = []
    for i, seed in enumerate(refit_seeds(cfg)):
        tags = {"signlab.role": "refit", "study": cfg.study_name, "trial_number": str(trial.number),
                "refit_seed": str(seed), "refit_primary": str(i == 0).lower(), "family": cfg.family,
                "preset": "study"}
        echo(f"refit of trial {trial.number}, seed {seed}: {spec.epochs} epochs on the whole training file")
        with tracking.tracked_run(nested=True, run_name=f"{cfg.study_name}-refit-{trial.number}-seed-{seed}",
                                  tags=tags):
            mlflow.log_metric("source_val_accuracy", float(trial.user_attrs.get("final_val_accuracy", float("nan"))))
            outcome = train_and_log(spec, data, refit_seed=seed)
        outcomes.append(outcome)
        echo(f"  test accuracy {outcome.metrics['test_accuracy']:.4f} (run {outcome.run_id})")
        free_graph()
    accuracies = np.array([o.metrics["test_accuracy"] for o in outcomes])
    mlflow.log_metrics({"refit_test_accuracy_mean": float(accuracies.mean()),
                        "refit_test_accuracy_std": float(accuracies.std(ddof=1)) if len(accuracies) > 1 else 0.0,
                        "refit_test_accuracy_min": float(accuracies.min()),
                        "refit_test_accuracy_max": float(accuracies.max()), "refit_n": float(len(accuracies))})
    mlflow.set_tags({"refit.trial_number": str(trial.number), "refit.primary_run_id": outcomes[0].run_id,
                     "refit.run_ids": ",".join(o.run_id for o in outcomes)})
    return outcomes
